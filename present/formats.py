"""The output formats of row and object results; light, so the command line can offer them at start-up."""

from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"

"""Everything mypy is configured to check type-checks, and polars' scalars become typed values once."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clv.scalars import to_date, to_datetime, to_float, to_int

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_reports_nothing_in_any_configured_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    monkeypatch.chdir(ROOT)  # no paths given: mypy checks the `files` of [tool.mypy], relative to the root
    out, err, status = api.run(["--cache-dir", str(tmp_path / "mypy")])
    assert status == 0 and out.startswith("Success: no issues found"), out
    assert not err
    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    n_files = sum(1 for package in configured for _ in (ROOT / package).rglob("*.py"))
    assert f"in {n_files} source files" in out, f"mypy left some of {configured} unchecked: {out}"


def test_polars_scalars_become_floats():
    s = pl.Series([1, 2, 3, 4])
    assert to_float(s.quantile(0.5, interpolation="linear")) == 2.5
    assert type(to_float(s.max())) is float
    assert to_float(pl.Series([True, False]).mean()) == 0.5
    assert to_float(np.float32(0.5)) == 0.5


def test_an_empty_column_gives_its_stated_default_or_a_type_error():
    empty = pl.Series([], dtype=pl.Float64)
    assert to_float(empty.mean(), null=0.0) == 0.0
    assert to_int(pl.Series([], dtype=pl.Int64).max(), null=-1) == -1
    with pytest.raises(TypeError, match="expected a number, got None"):
        to_float(empty.max())
    with pytest.raises(TypeError, match="expected a whole number, got None"):
        to_int(empty.max())


def test_non_numbers_are_refused():
    with pytest.raises(TypeError, match="expected a number, got 'a'"):
        to_float(pl.Series(["a"]).max())
    with pytest.raises(TypeError, match=r"expected a whole number, got 2\.5"):
        to_int(2.5)
    assert to_int(pl.Series([3, 7]).max()) == 7


def test_polars_dates_and_datetimes_become_dates_and_datetimes():
    day, stamp = dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 13, 5)
    assert to_date(pl.Series([day, dt.date(2024, 1, 1)]).max()) == day
    assert to_datetime(pl.Series([stamp]).min()) == stamp
    with pytest.raises(TypeError, match="expected a date, got None"):
        to_date(pl.Series([], dtype=pl.Date).max())
    with pytest.raises(TypeError, match="expected a date, got datetime"):  # a datetime is not silently a day
        to_date(stamp)
    with pytest.raises(TypeError, match="expected a datetime, got datetime.date"):
        to_datetime(day)

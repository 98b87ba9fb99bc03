"""The core type-checks: mypy reports nothing in the modules it owns, and polars' scalars become typed numbers once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clv.scalars import to_float, to_int

ROOT = Path(__file__).resolve().parents[1]
# clv/load.py is checked once its rewrite lands; everything else in the core is clean.
NOT_YET_CLEAN = {"clv/load.py"}


def test_mypy_reports_nothing_in_the_core(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    out, err, _ = api.run(["--cache-dir", str(tmp_path / "mypy"), "--no-error-summary", "clv", "segments"])
    errors = [line for line in out.splitlines() if ": error:" in line and line.split(":")[0] not in NOT_YET_CLEAN]
    assert errors == [], "\n".join(errors)
    assert not err


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

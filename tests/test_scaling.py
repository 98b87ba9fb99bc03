"""The warehouse SQL in docs/rfm_summary.sql gives exactly clvx's RFM summary (run here with DuckDB)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clv.load import ColumnMapping, load_transactions
from clv.rfm import Period, collect, rfm_summary
from clv.sample import bundled_sample_path

duckdb = pytest.importorskip("duckdb")
SQL = (Path(__file__).parents[1] / "docs" / "rfm_summary.sql").read_text()


def run_sql(con, as_of: dt.date) -> pl.DataFrame:
    sql = SQL.replace("DATE '2024-12-30'", f"DATE '{as_of.isoformat()}'")
    return pl.DataFrame(con.execute(sql).fetchall(), schema=["customer_id", "frequency", "recency", "T", "monetary_value"], orient="row")


def assert_same(sql: pl.DataFrame, ours: pl.DataFrame) -> None:
    assert sql["customer_id"].to_list() == ours["customer_id"].to_list()
    for col in ("frequency", "recency", "T"):
        assert sql[col].cast(pl.Int64).to_list() == ours[col].to_list(), col
    np.testing.assert_allclose(sql["monetary_value"].to_numpy(), ours["monetary_value"].to_numpy(), atol=1e-6)


def test_sql_summary_equals_clvx_rfm_on_the_sample():
    tx = load_transactions(bundled_sample_path())
    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW transactions AS SELECT customer_id, date AS ts, price * quantity AS amount FROM read_parquet('{bundled_sample_path()}')"
    )
    assert_same(run_sql(con, tx.as_of), collect(rfm_summary(tx.frame, tx.as_of, Period.day)))


def test_sql_nets_returns_like_clvx(tiny_csv):
    tx = load_transactions(tiny_csv, ColumnMapping(customer="customer", date="when"))
    con = duckdb.connect()
    con.execute(f"CREATE VIEW raw AS SELECT * FROM read_csv('{tiny_csv}', all_varchar=true, header=true)")
    con.execute('CREATE VIEW transactions AS SELECT customer AS customer_id, CAST("when" AS TIMESTAMP) AS ts, CAST(amount AS DOUBLE) AS amount FROM raw')
    assert_same(run_sql(con, tx.as_of), collect(rfm_summary(tx.frame, tx.as_of, Period.day)))

"""A fit on the histories of `clvx sql histories` (distinct rows with counts) is the fit on the customers.

Oracle: the fit on the bundled sample's log; the likelihoods are weighted sums, so every
parameter must agree to the last digit.
"""

from __future__ import annotations

import polars as pl
import pytest

import clvx
from clv.errors import InputError
from clv.load import ColumnMapping
from clv.sample import bundled_sample_path
from clv.sql import Aggregate, Dialect, aggregate_sql

duckdb = pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def histories(tmp_path_factory):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW sales AS SELECT * FROM read_parquet('{bundled_sample_path()}')")
    sql = aggregate_sql(Aggregate.histories, Dialect.duckdb, columns=ColumnMapping(price="price", quantity="quantity"), table="sales")
    path = tmp_path_factory.mktemp("hist") / "histories.parquet"
    con.sql(sql).pl().write_parquet(path)
    return path


def test_fit_on_histories_equals_fit_on_the_log(histories):
    rows = pl.read_parquet(histories)
    assert rows.height < 5_000 + 4_424  # fewer rows than customers: the point of histories
    on_histories, on_log = clvx.fit(clvx.Source(input=histories)), clvx.fit(clvx.Source())
    assert on_histories.bgnbd.params == on_log.bgnbd.params
    assert on_histories.bgnbd.n_customers == on_log.bgnbd.n_customers == 5_000
    assert (on_histories.gamma_gamma.p, on_histories.gamma_gamma.q, on_histories.gamma_gamma.v) == (
        on_log.gamma_gamma.p, on_log.gamma_gamma.q, on_log.gamma_gamma.v)


def test_predict_refuses_histories_which_name_no_customer(histories):
    with pytest.raises(InputError, match="holds histories"):
        clvx.predict(clvx.Source(input=histories))


def test_histories_of_different_runs_are_refused(histories, tmp_path):
    rows = pl.read_parquet(histories)
    broken = tmp_path / "broken.parquet"
    rows.filter(~(pl.col("recency").is_null() & (pl.col("frequency") == 1))).write_parquet(broken)
    with pytest.raises(InputError, match="do not count the same repeat customers per frequency"):
        clvx.fit(clvx.Source(input=broken))

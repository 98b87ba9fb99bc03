"""The aggregates' SQL (clv/sql.py) on real engines gives exactly clvx's own numbers.

Oracle: clvx's polars RFM summary (itself checked against lifetimes in test_rfm.py), on the
bundled sample and on a fixture with returns, placeholder ids and blank customers. The
SQL runs on DuckDB, on a PostgreSQL server started for the session and on Spark in local
mode; every dialect parses with sqlglot.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlglot

from clv.errors import InputError
from clv.load import ColumnMapping, load_transactions
from clv.rfm import Period, collect, rfm_summary
from clv.sample import bundled_sample_path
from clv.sql import Aggregate, Dialect, aggregate_sql
from tests.engines import RETURNS_CSV, returns_lines

duckdb = pytest.importorskip("duckdb")

SAMPLE_COLUMNS = ColumnMapping(price="price", quantity="quantity", order="order_id", product="product_id", category="category")
RETURNS_COLUMNS = ColumnMapping(customer="customer", date="when", amount="amount", order="order")
SUMMARY_COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value", "total_spend", "first_purchase", "last_purchase"]


@pytest.fixture(scope="session")
def sample_lines() -> pl.DataFrame:
    return pl.read_parquet(bundled_sample_path())


@pytest.fixture(scope="session")
def sample_tx():
    return load_transactions(bundled_sample_path())


@pytest.fixture(scope="session")
def returns_tx():
    return load_transactions(RETURNS_CSV, RETURNS_COLUMNS)


def ours(tx, period: Period) -> pl.DataFrame:
    return collect(rfm_summary(tx.frame, tx.as_of, period, count_orders=tx.has("order_id")))


def same_rows(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Every column and every digit equal (the SQL sums money exactly, as clvx does)."""
    got = got.select(expected.columns).sort("customer_id")
    assert got.schema == expected.schema
    assert got.equals(expected), pl.concat([got, expected]).filter(pl.struct(pl.all()).is_unique()).head()


def histories_of(summary: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    counts = summary.group_by("frequency", "recency", "T").agg(pl.len().cast(pl.Int64).alias("n_customers"))
    spend = (summary.filter(pl.col("frequency") > 0).group_by("frequency", "monetary_value")
             .agg(pl.len().cast(pl.Int64).alias("n_customers")))
    return counts.sort(pl.all()), spend.sort(pl.all())


def split_histories(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = rows.with_columns(pl.col("n_customers").cast(pl.Int64), pl.col("recency", "T").cast(pl.Int64))
    counts = rows.filter(pl.col("monetary_value").is_null()).select("frequency", "recency", "T", "n_customers")
    spend = rows.filter(pl.col("recency").is_null()).select("frequency", "monetary_value", "n_customers")
    return counts.sort(pl.all()), spend.sort(pl.all())


def products_of(tx) -> pl.DataFrame:
    return collect(
        tx.frame.filter((pl.col("amount") > 0) & pl.col("product_id").is_not_null())
        .group_by("customer_id", "product_id")
        .agg(pl.col("date").min().dt.date().alias("first_purchase"), pl.col("date").max().dt.date().alias("last_purchase"),
             pl.col("order_id").n_unique().cast(pl.Int64).alias("n_orders"), pl.len().cast(pl.Int64).alias("n_lines"))
    ).sort("customer_id", "product_id")


# --------------------------------------------------------------------------- every dialect


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("aggregate", list(Aggregate))
@pytest.mark.parametrize("period", list(Period))
def test_every_dialect_parses_with_sqlglot(dialect, aggregate, period):
    sql = aggregate_sql(aggregate, dialect, columns=SAMPLE_COLUMNS, table="shop.sales", period=period)
    tree = sqlglot.parse_one(sql, read=dialect.value)
    assert "sales" in {t.name for t in tree.find_all(sqlglot.exp.Table)}


def test_user_column_names_are_quoted_identifiers_not_sql():
    sql = aggregate_sql(Aggregate.rfm, Dialect.postgres, columns=ColumnMapping(customer='Customer "ID"; DROP TABLE x', date="Invoice Date",
                                                                               amount="amount"), table="sales")
    assert '"Customer ""ID""; DROP TABLE x"' in sql and '"Invoice Date"' in sql
    assert len(sqlglot.parse(sql, read="postgres")) == 1


def test_bigquery_weeks_start_on_monday_like_clvx():
    assert "ISOWEEK" in aggregate_sql(Aggregate.rfm, Dialect.bigquery, table="d.sales", period=Period.week)


def test_products_without_a_product_column_is_an_input_error():
    with pytest.raises(InputError, match="product column"):
        aggregate_sql(Aggregate.products, Dialect.duckdb, table="sales")


def far_past_lines() -> pl.DataFrame:
    """Seven days of purchases in 2020 and placeholder dates in 1900: the loader's far-past rule drops the latter."""
    days = [dt.datetime(2020, 1, 1) + dt.timedelta(days=3 * k) for k in range(7)]
    rows = [(f"c{k % 3}", day, 10.0 + k) for k, day in enumerate(days)]
    rows += [("c0", dt.datetime(1900, 1, 1), 5.0), ("c9", dt.datetime(1900, 1, 1), 7.0), ("c9", dt.datetime(1901, 6, 1), 1.0)]
    return pl.DataFrame(rows, schema=["customer_id", "date", "amount"], orient="row")


@pytest.fixture(scope="session")
def far_past_tx(tmp_path_factory):
    path = tmp_path_factory.mktemp("far") / "far.parquet"
    far_past_lines().write_parquet(path)
    tx = load_transactions(path)
    assert tx.quality.n_far_past_date == 3  # the oracle does drop them
    return tx


# --------------------------------------------------------------------------- DuckDB


def duck(frame: pl.DataFrame):
    con = duckdb.connect()
    con.register("sales", frame.to_arrow())
    return con


@pytest.mark.parametrize("period", list(Period))
def test_duckdb_rfm_equals_clvx_rfm_on_the_sample(sample_lines, sample_tx, period):
    sql = aggregate_sql(Aggregate.rfm, Dialect.duckdb, columns=SAMPLE_COLUMNS, table="sales", period=period)
    same_rows(duck(sample_lines).sql(sql).pl(), ours(sample_tx, period).select(*SUMMARY_COLUMNS, "n_orders"))


def test_duckdb_rfm_nets_returns_and_drops_blank_customers_like_clvx(returns_tx):
    sql = aggregate_sql(Aggregate.rfm, Dialect.duckdb, columns=RETURNS_COLUMNS, table="sales")
    same_rows(duck(returns_lines()).sql(sql).pl(), ours(returns_tx, Period.day).select(*SUMMARY_COLUMNS, "n_orders"))


def test_duckdb_rfm_with_an_as_of_equals_clvx_rfm_as_of(sample_lines):
    as_of = dt.date(2023, 9, 30)
    tx = load_transactions(bundled_sample_path(), as_of=as_of)
    sql = aggregate_sql(Aggregate.rfm, Dialect.duckdb, columns=SAMPLE_COLUMNS, table="sales", as_of=as_of)
    same_rows(duck(sample_lines).sql(sql).pl(), ours(tx, Period.day).select(*SUMMARY_COLUMNS, "n_orders"))


def test_duckdb_histories_are_the_summarys_distinct_rows_with_counts(sample_lines, sample_tx):
    sql = aggregate_sql(Aggregate.histories, Dialect.duckdb, columns=SAMPLE_COLUMNS, table="sales")
    got = split_histories(duck(sample_lines).sql(sql).pl())
    expected = histories_of(ours(sample_tx, Period.day))
    assert got[0].equals(expected[0]) and got[1].equals(expected[1])
    assert got[0]["n_customers"].sum() == sample_tx.frame.select("customer_id").unique().collect().height


def test_duckdb_products_equals_the_customer_product_group_by(sample_lines, sample_tx):
    sql = aggregate_sql(Aggregate.products, Dialect.duckdb, columns=SAMPLE_COLUMNS, table="sales")
    got = duck(sample_lines).sql(sql).pl().sort("customer_id", "product_id")
    expected = products_of(sample_tx)
    assert got.select(expected.columns).equals(expected)
    assert got["revenue"].sum() == pytest.approx(collect(sample_tx.frame.filter(pl.col("amount") > 0).select(pl.col("amount").sum())).item())


def test_duckdb_drops_far_past_placeholder_dates_like_the_loader(far_past_tx):
    got = duck(far_past_lines()).sql(aggregate_sql(Aggregate.rfm, Dialect.duckdb, table="sales")).pl()
    same_rows(got, ours(far_past_tx, Period.day).select(*SUMMARY_COLUMNS))


def test_docs_rfm_summary_sql_is_the_generated_query():
    """docs/rfm_summary.sql is what `clvx sql rfm` prints for the documented columns, so it cannot drift."""
    doc = (Path(__file__).parents[1] / "docs" / "rfm_summary.sql").read_text()
    body = "\n".join(line for line in doc.splitlines() if not line.startswith("--")).strip()
    assert body == aggregate_sql(Aggregate.rfm, Dialect.duckdb, table="transactions", pretty=True) + ";"


# --------------------------------------------------------------------------- PostgreSQL


def read_pg(postgres, sql: str) -> pl.DataFrame:
    return pl.read_database_uri(sql, postgres.uri(), engine="adbc")


@pytest.mark.parametrize("period", list(Period))
def test_postgres_rfm_equals_clvx_rfm_on_the_sample(postgres, sample_tx, period):
    sql = aggregate_sql(Aggregate.rfm, Dialect.postgres, columns=SAMPLE_COLUMNS, table="sales", period=period)
    same_rows(read_pg(postgres, sql), ours(sample_tx, period).select(*SUMMARY_COLUMNS, "n_orders"))


def test_postgres_rfm_nets_returns_like_clvx(postgres, returns_tx):
    sql = aggregate_sql(Aggregate.rfm, Dialect.postgres, columns=RETURNS_COLUMNS, table="returns_log")
    same_rows(read_pg(postgres, sql), ours(returns_tx, Period.day).select(*SUMMARY_COLUMNS, "n_orders"))


def test_postgres_drops_far_past_placeholder_dates_like_the_loader(postgres, far_past_tx):
    far_past_lines().write_database("far_past", postgres.uri(), engine="adbc", if_table_exists="replace")
    same_rows(read_pg(postgres, aggregate_sql(Aggregate.rfm, Dialect.postgres, table="far_past")),
              ours(far_past_tx, Period.day).select(*SUMMARY_COLUMNS))


def test_postgres_histories_and_products_equal_clvx(postgres, sample_tx):
    got = split_histories(read_pg(postgres, aggregate_sql(Aggregate.histories, Dialect.postgres, columns=SAMPLE_COLUMNS, table="sales")))
    expected = histories_of(ours(sample_tx, Period.day))
    assert got[0].equals(expected[0]) and got[1].equals(expected[1])
    products = read_pg(postgres, aggregate_sql(Aggregate.products, Dialect.postgres, columns=SAMPLE_COLUMNS, table="sales"))
    expected_products = products_of(sample_tx)
    assert products.sort("customer_id", "product_id").select(expected_products.columns).equals(expected_products)


# --------------------------------------------------------------------------- Spark


@pytest.fixture(scope="session")
def spark_sales(spark, sample_lines):
    spark.createDataFrame(sample_lines.to_arrow()).createOrReplaceTempView("sales")
    return spark


@pytest.mark.slow
@pytest.mark.parametrize("period", list(Period))
def test_spark_rfm_equals_clvx_rfm_on_the_sample(spark_sales, sample_tx, period):
    sql = aggregate_sql(Aggregate.rfm, Dialect.spark, columns=SAMPLE_COLUMNS, table="sales", period=period)
    got = pl.from_arrow(spark_sales.sql(sql).toArrow())
    same_rows(got, ours(sample_tx, period).select(*SUMMARY_COLUMNS, "n_orders"))


@pytest.mark.slow
def test_spark_drops_far_past_placeholder_dates_like_the_loader(spark, far_past_tx):
    spark.createDataFrame(far_past_lines().to_arrow()).createOrReplaceTempView("far_past")
    got = pl.from_arrow(spark.sql(aggregate_sql(Aggregate.rfm, Dialect.spark, table="far_past")).toArrow())
    same_rows(got, ours(far_past_tx, Period.day).select(*SUMMARY_COLUMNS))

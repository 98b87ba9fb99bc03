"""Cross-sell from a database or Spark: the same offers, rules, bundles and ranking as from the Parquet file.

Oracle: ``clvx cross-sell`` on the bundled sample's Parquet file. Cross-sell reads the log
only through three aggregates (segments/aggregates.py); the same aggregates computed by
the SQL of clv/sql.py in DuckDB, a real PostgreSQL server (tests/engines.py) and Spark
local mode must give the files byte for byte.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from cli import app
from clv.errors import InputError
from clv.load import ColumnMapping, load_transactions
from clv.sql import Aggregate, aggregate_sql
from segments.aggregates import CrossSellAggregates, crosssell_aggregates, crosssell_baskets, typical_values

duckdb = pytest.importorskip("duckdb")

OUTPUTS = ("targets.csv", "rules.csv", "bundles.csv")


def _cross_sell(runner, tmp_path, *source: str) -> dict[str, str]:
    """stdout (the segment ranking) and the targets, rules and bundles files of one cross-sell run."""
    args = ["cross-sell", *source, "-q", "-f", "csv", "--targets", str(tmp_path / "targets.csv"),
            "--rules", str(tmp_path / "rules.csv"), "--bundles", str(tmp_path / "bundles.csv")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return {"ranking": res.stdout, **{name: (tmp_path / name).read_text() for name in OUTPUTS}}


@pytest.fixture(scope="session")
def offers_from_file(tmp_path_factory):
    from typer.testing import CliRunner

    return _cross_sell(CliRunner(), tmp_path_factory.mktemp("file"))


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory):
    from clv.sample import bundled_sample_path

    path = tmp_path_factory.mktemp("duck") / "shop.db"
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE sales AS SELECT * FROM read_parquet('{bundled_sample_path()}')")
    return path


@pytest.mark.slow
def test_duckdb_offers_equal_the_parquet_file_byte_for_byte(runner, tmp_path, sample_db, offers_from_file):
    got = _cross_sell(runner, tmp_path, f"duckdb:///{sample_db}", "--table", "sales")
    assert got["targets.csv"].count("\n") > 1_000  # the oracle is not empty
    for name, text in offers_from_file.items():
        assert got[name] == text, name


@pytest.mark.slow
def test_postgres_offers_equal_the_parquet_file_byte_for_byte(runner, tmp_path, postgres, offers_from_file):
    got = _cross_sell(runner, tmp_path, postgres.uri(), "--table", "sales")
    for name, text in offers_from_file.items():
        assert got[name] == text, name


# --------------------------------------------------------------------------- the aggregates themselves, on a tiny log

TINY = ColumnMapping(customer="customer", date="ts", amount="amount", order="order", product="product", description="description")
ROWS = [  # customer, order, ts, product, amount, description
    ("c1", "o1", dt.datetime(2024, 1, 1, 9), "A1", 10.0, "Mug "),
    ("c1", "o1", dt.datetime(2024, 1, 1, 9), "B2", 4.0, "Plate"),
    ("c1", "o1", dt.datetime(2024, 1, 1, 9), "A1", 2.5, "Mug"),
    ("c1", "o2", dt.datetime(2024, 3, 1, 17, 30), "B2", 6.0, "Plate"),
    ("c1", "o3", dt.datetime(2024, 3, 2), "B2", -6.0, "Plate"),  # a return: in the catalogue, not a purchase
    ("c2", "o4", dt.datetime(2024, 2, 10), "A1", 10.0, "Big mug"),
    ("c2", "o4", dt.datetime(2024, 2, 10), "PADS", 0.001, "Pads"),
    ("c2", "o5", dt.datetime(2024, 3, 5), "PADS", 0.001, "Pads"),
    ("c3", None, dt.datetime(2024, 3, 6), "C3", 7.0, None),  # no order id: in no basket
    ("c1", "o2", dt.datetime(2024, 3, 1, 17, 30), "D4", 100.0, "Vase"),  # D4: one big order and two small ones
    ("c2", "o5", dt.datetime(2024, 3, 5), "D4", 2.0, "Vase"),
    ("c3", None, dt.datetime(2024, 3, 6), "D4", 3.0, "Vase"),
    ("", "o6", dt.datetime(2024, 3, 6), "C3", 7.0, "Cup"),  # no customer: left out everywhere
]
AS_OF = dt.date(2024, 3, 6)
HOLDOUT_DAYS = 10  # inner split: lines up to 2024-02-25


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "lines.parquet"
    pl.DataFrame(ROWS, schema=["customer", "order", "ts", "product", "amount", "description"], orient="row").write_parquet(path)
    return path


def _sql_aggregates(path) -> CrossSellAggregates:
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW lines AS SELECT * FROM read_parquet('{path}')")
        frames = [con.sql(aggregate_sql(a, columns=TINY, table="lines", as_of=AS_OF, holdout_days=HOLDOUT_DAYS)).pl()
                  for a in (Aggregate.purchases, Aggregate.catalogue, Aggregate.baskets)]
    return CrossSellAggregates(*frames, HOLDOUT_DAYS).checked(HOLDOUT_DAYS)


def test_sql_aggregates_equal_the_polars_ones_on_a_log_with_returns_ties_and_missing_ids(tiny_log):
    tx = load_transactions(tiny_log, TINY, as_of=AS_OF)
    polars_side, sql_side = crosssell_aggregates(tx, HOLDOUT_DAYS), _sql_aggregates(tiny_log)
    assert sql_side.purchases.equals(polars_side.purchases)
    assert sql_side.catalogue.select(polars_side.catalogue.columns).equals(polars_side.catalogue)
    assert sql_side.baskets is not None and polars_side.baskets is not None
    assert sql_side.baskets.equals(polars_side.baskets)


def test_baskets_read_from_the_purchases_equal_a_pass_over_the_lines_with_shared_and_missing_order_ids(tmp_path):
    """The aggregates' baskets come from the purchases' per-order table; on bad data (an order id two customers
    share, lines without one, a product twice in an order) they are still the baskets of a group-by of the lines."""
    rows = [*ROWS,
            ("c2", "o1", dt.datetime(2024, 1, 1, 9), "A1", 1.25, "Mug"),  # o1 is c1's order too: one row, c1's, 13.75
            ("c2", "o1", dt.datetime(2024, 1, 1, 9), "E5", 3.0, "Bowl"),
            ("c3", None, dt.datetime(2024, 3, 6), "B2", 5.0, "Plate")]
    path = tmp_path / "lines.parquet"
    pl.DataFrame(rows, schema=["customer", "order", "ts", "product", "amount", "description"], orient="row").write_parquet(path)
    tx = load_transactions(path, TINY, as_of=AS_OF)
    baskets = crosssell_aggregates(tx, HOLDOUT_DAYS).baskets
    assert baskets is not None and baskets.equals(crosssell_baskets(tx))
    assert baskets.filter(pl.col("order_id") == "o1").rows() == [("o1", "A1", "c1", 13.75), ("o1", "B2", "c1", 4.0), ("o1", "E5", "c2", 3.0)]
    assert baskets["order_id"].null_count() == 0 and baskets.height == 9


def test_purchases_split_counts_and_values_by_hand(tiny_log):
    agg = _sql_aggregates(tiny_log)
    rows = {(r["customer_id"], r["product_id"]): r for r in agg.purchases.iter_rows(named=True)}
    c1_b2 = rows[("c1", "B2")]  # o1 before the split, o2 after it; the return is not a purchase
    assert (c1_b2["n_orders"], c1_b2["inner_orders"], c1_b2["revenue"], c1_b2["inner_revenue"], c1_b2["holdout_revenue"]) == (2, 1, 10.0, 4.0, 6.0)
    assert rows[("c1", "A1")]["first_purchase_at"] == dt.datetime(2024, 1, 1, 9)
    assert rows[("c3", "C3")]["inner_lines"] == 0 and rows[("c3", "C3")]["inner_revenue"] is None
    assert ("", "C3") not in rows
    catalogue = {r["product_id"]: r for r in agg.catalogue.iter_rows(named=True)}
    assert catalogue["A1"]["description"] == "Mug"  # "Mug " trimmed ties with "Mug": 2 of 3 lines
    assert (catalogue["B2"]["n_lines"], catalogue["B2"]["revenue"]) == (3, 4.0)
    assert catalogue["PADS"]["n_tiny_lines"] == 2
    # Revenue per order of the product, pooled over its buyers: A1 earned 12.5 in o1 and 10 in o4; D4 105 in
    # three orders (c3's line has no order id: an order of its own), where the median buyer spent 3.
    values = dict(typical_values(agg.purchases).iter_rows())
    assert values["A1"] == pytest.approx(22.5 / 2) and values["B2"] == pytest.approx(5.0) and values["D4"] == pytest.approx(105 / 3)
    assert agg.baskets is not None
    assert agg.baskets.filter(pl.col("order_id") == "o1")["revenue"].sort().to_list() == [4.0, 12.5]


def test_aggregates_for_another_offer_horizon_are_refused_in_one_line(tiny_log):
    with pytest.raises(InputError, match="^the purchases aggregate splits the log 10 days before its end, but the offer horizon is 90 days; "
                                         "compute it again with clvx sql purchases offer_horizon='90d'$"):
        _sql_aggregates(tiny_log).checked(90)


# --------------------------------------------------------------------------- a folder of aggregates as INPUT

SAMPLE_FLAGS = ["--price-col", "price", "--quantity-col", "quantity", "--order-col", "order_id", "--product-col", "product_id",
                "--category-col", "category"]


@pytest.fixture(scope="session")
def aggregates_folder(tmp_path_factory, sample_db):
    """The rows of each `clvx sql <name>` query, run in DuckDB and exported as Parquet: what a warehouse user hands clvx."""
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("aggregates")
    with duckdb.connect(str(sample_db), read_only=True) as con:
        for name in ("rfm", "products", "purchases", "catalogue", "baskets"):
            res = CliRunner().invoke(app, ["sql", name, "--table", "sales", *SAMPLE_FLAGS])
            assert res.exit_code == 0, res.output
            con.execute(f"COPY ({res.stdout.strip().rstrip(';')}) TO '{folder / name}.parquet' (FORMAT parquet)")
    return folder


@pytest.mark.slow
def test_a_folder_of_exported_aggregates_gives_the_offers_of_the_parquet_file(runner, tmp_path, aggregates_folder, offers_from_file):
    got = _cross_sell(runner, tmp_path, str(aggregates_folder))
    for name, text in offers_from_file.items():
        assert got[name] == text, name


def test_commands_that_split_the_log_refuse_a_folder_of_aggregates_in_one_line(runner, aggregates_folder):
    res = runner.invoke(app, ["validate", str(aggregates_folder), "--calibration-end", "2024-01-01"])
    assert res.exit_code == 2
    assert res.stderr == (f"Error: {aggregates_folder}: this command needs the order lines, not a folder of aggregates; "
                          "segment and cross-sell read aggregates, or give the log's file\n")


def test_a_folder_without_the_purchases_aggregate_names_what_is_missing(runner, tmp_path, aggregates_folder):
    import shutil

    shutil.copy(aggregates_folder / "rfm.parquet", tmp_path / "rfm.parquet")
    res = runner.invoke(app, ["cross-sell", str(tmp_path), "-q"])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"Error: {tmp_path}: a folder of aggregates needs purchases.parquet, catalogue.parquet (cross-sell reads")
    assert res.stderr.count("\n") == 1


# --------------------------------------------------------------------------- Spark


@pytest.mark.slow
def test_spark_aggregates_give_the_offers_of_the_parquet_file_byte_for_byte(spark, offers_from_file, tmp_path):
    import clvx
    from clv.sample import bundled_sample_path
    from clvx import spark as clv_spark
    from present import render

    columns = ColumnMapping(price="price", quantity="quantity", order="order_id", product="product_id", category="category")
    lines = spark.createDataFrame(pl.read_parquet(bundled_sample_path()).to_arrow())
    aggregates = clv_spark.aggregates(lines, columns=columns)
    expected = crosssell_aggregates(clvx.load(clvx.Source()), 90)
    assert aggregates.cross_sell.checked(90).purchases.equals(expected.purchases)
    result = clvx.cross_sell(aggregates, offers=clvx.CrossSellOptions(targets=True))
    assert result.targets is not None
    render.write_frame(result.targets, tmp_path / "targets.csv")
    assert (tmp_path / "targets.csv").read_text() == offers_from_file["targets.csv"]


# --------------------------------------------------------------------------- report


def _report(runner, path, *source: str) -> list[str]:
    res = runner.invoke(app, ["report", *source, "-q", "-o", str(path)])
    assert res.exit_code == 0, res.output
    return path.read_text().splitlines()


@pytest.mark.slow
def test_duckdb_report_is_the_parquet_files_but_for_the_lines_that_name_the_source(runner, tmp_path, sample_db):
    from_file = _report(runner, tmp_path / "file.md")
    from_db = _report(runner, tmp_path / "db.md", f"duckdb:///{sample_db}", "--table", "sales")
    differ = [(a, b) for a, b in zip(from_file, from_db, strict=True) if a != b]
    assert [b.split(":")[0] if b.startswith("- **") else "lede" for _, b in differ] == ["lede", "- **Data**", "- **Excluded**"]
    assert differ[1][1].endswith("aggregates computed where the log lives, to 2024-12-30")


def test_report_from_aggregates_refuses_a_calibration_end_in_one_line(runner, tmp_path, sample_db):
    res = runner.invoke(app, ["report", f"duckdb:///{sample_db}", "--table", "sales", "--calibration-end", "2024-06-30", "-q",
                              "-o", str(tmp_path / "r.md")])
    assert res.exit_code == 2
    assert res.stderr == (f"Error: duckdb:///{sample_db}: --calibration-end holds back or windows the order lines, "
                          "which the aggregates no longer have; drop it for the report of the aggregates, or give the log's file\n")


# --------------------------------------------------------------------------- a log with product names and no category


@pytest.fixture(scope="session")
def named_log(tmp_path_factory):
    """The sample with its categories as product names, one product sold under two names: Parquet and a DuckDB copy."""
    from clv.sample import bundled_sample_path

    folder = tmp_path_factory.mktemp("named")
    frame = pl.read_parquet(bundled_sample_path()).rename({"category": "description"})
    other = (pl.col("product_id") == "CM-200") & pl.col("order_id").str.ends_with("7")
    frame.with_columns(pl.when(other).then(pl.lit("Coffee machine (old name)")).otherwise("description").alias("description")).write_parquet(
        folder / "named.parquet")
    with duckdb.connect(str(folder / "named.db")) as con:
        con.execute(f"CREATE TABLE sales AS SELECT * FROM read_parquet('{folder / 'named.parquet'}')")
    return folder


@pytest.mark.slow
def test_segments_and_offers_of_a_named_log_in_duckdb_equal_the_parquet_files(runner, tmp_path, named_log):
    """Without a category, segments are profiled by each product's most frequent name, in both paths."""
    for command in (["segment", "--k", "4"], ["cross-sell", "--targets", str(tmp_path / "{}.csv")]):
        outputs = []
        for source in ([str(named_log / "named.parquet")], [f"duckdb:///{named_log / 'named.db'}", "--table", "sales"]):
            args = [a.format(len(outputs)) for a in command]
            res = runner.invoke(app, [args[0], *source, *args[1:], "-q", "-f", "csv"])
            assert res.exit_code == 0, res.output
            outputs.append(res.stdout)
        assert outputs[0] == outputs[1], command[0]
        assert "Coffee machine (old name)" not in outputs[0]
    assert (tmp_path / "0.csv").read_text() == (tmp_path / "1.csv").read_text()


def test_a_baskets_aggregate_repeating_an_order_and_product_is_refused_in_one_line(tiny_log):
    """Ownership reads the baskets aggregate as one row per order and product; a repeated row would double a basket."""
    agg = _sql_aggregates(tiny_log)
    assert agg.baskets is not None
    repeated = pl.concat([agg.baskets, agg.baskets.filter(pl.col("order_id") == "o1")])
    with pytest.raises(InputError, match=r"^the baskets aggregate has 2 repeated \(order_id, product_id\) rows \(first: order 'o1', "
                                         r"product 'A1'\); it holds one row per order and product: compute it with clvx sql baskets$"):
        CrossSellAggregates(agg.purchases, agg.catalogue, repeated, HOLDOUT_DAYS).checked(HOLDOUT_DAYS)

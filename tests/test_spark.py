"""clvx/spark.py in Spark local mode: the aggregates and the scores are clvx's own, digit for digit.

Oracle: ``clvx.rfm`` and ``clvx.predict`` with the same saved model on the bundled sample.
One SparkSession for the test session (tests/engines.py); marked slow because starting
Spark takes seconds.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

import clvx
from clv.load import ColumnMapping
from clv.sample import bundled_sample_path

pytestmark = pytest.mark.slow

SAMPLE = ColumnMapping(price="price", quantity="quantity", order="order_id")


@pytest.fixture(scope="session")
def spark_lines(spark):
    return spark.createDataFrame(pl.read_parquet(bundled_sample_path()).to_arrow())


@pytest.fixture(scope="session")
def document(tmp_path_factory):
    fitted = clvx.fit(clvx.Source())
    path = tmp_path_factory.mktemp("model") / "model.json"
    path.write_text(json.dumps(fitted.document()))
    return path


def test_spark_aggregate_equals_clvx_rfm(spark_lines):
    from clvx import spark as clv_spark

    got = pl.from_arrow(clv_spark.aggregate(spark_lines, "rfm", columns=SAMPLE).toArrow())
    expected = clvx.rfm(clvx.Source(), scores=False).summary
    assert isinstance(got, pl.DataFrame)
    assert got.select(expected.columns).sort("customer_id").equals(expected)


def test_spark_histories_count_every_customer_once(spark_lines):
    from clvx import spark as clv_spark

    rows = pl.from_arrow(clv_spark.aggregate(spark_lines, "histories", columns=SAMPLE).toArrow())
    assert isinstance(rows, pl.DataFrame)
    assert rows.filter(pl.col("monetary_value").is_null())["n_customers"].sum() == 5_000


def test_spark_scores_equal_clvx_predict_with_the_saved_model(spark, spark_lines, document):
    from clvx import spark as clv_spark

    summaries = clv_spark.aggregate(spark_lines, "rfm", columns=SAMPLE)
    doc = json.loads(document.read_text())
    got = pl.from_arrow(clv_spark.score(summaries, doc, horizon="12m").toArrow())
    assert isinstance(got, pl.DataFrame)
    got = got.sort("customer_id")
    expected = clvx.predict(clvx.Source(), saved_model=document).scores.sort("customer_id")
    assert got["customer_id"].to_list() == expected["customer_id"].to_list()
    for ours, theirs in (("p_alive", "p_alive"), ("expected_purchases_12m", "expected_purchases"),
                         ("expected_avg_value", "expected_avg_value"), ("clv_12m", "clv")):
        assert got[ours].to_list() == expected[theirs].to_list(), ours


@pytest.fixture(scope="session")
def segments_document(tmp_path_factory):
    result = clvx.segment(clvx.Source())
    path = tmp_path_factory.mktemp("segments") / "model.json"
    path.write_text(json.dumps(result.document()))
    return path, result.run.segmentation.assignments


def test_spark_segments_equal_clvx_segment_from_the_saved_centres(spark_lines, segments_document):
    from clvx import spark as clv_spark

    path, assignments = segments_document
    summaries = clv_spark.aggregate(spark_lines, "rfm", columns=SAMPLE)
    got = pl.from_arrow(clv_spark.score(summaries, json.loads(path.read_text())).toArrow())
    assert isinstance(got, pl.DataFrame)
    pairs = got.select("customer_id", "segment").sort("customer_id")
    assert pairs.equals(assignments.select("customer_id", "segment").sort("customer_id"))

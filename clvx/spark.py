"""clvx inside Spark: the aggregates from a Spark DataFrame, and scoring where the customers live.

``pip install 'clvx[spark]'`` (pyspark, with Java 17 or later). Two functions:

* :func:`aggregate` runs clvx's SQL (:mod:`clv.sql`, the same definition every engine
  runs, in Spark's dialect) over a DataFrame of order lines and returns a DataFrame: the
  RFM summary, the histories a fit needs, or customer x product. Collect the histories
  (a few thousand rows) or the summary to the driver and fit there with ``clvx fit``.
* :func:`score` adds P(alive), expected purchases, expected spend and CLV to a DataFrame
  of RFM summaries with the parameters of a saved ``model.json`` (``clvx fit --save``),
  through ``mapInArrow``: each executor scores its Arrow batches with clvx's own closed
  forms (:func:`clv.models.score_customers`), so a billion-customer table is scored where
  it is and the numbers are those of ``clvx predict``.

pyspark is imported only inside the functions: the rest of clvx never needs it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

import polars as pl

from clv.errors import InputError
from clv.load import ColumnMapping
from clv.models import Horizon, models_from_document, score_customers
from clv.sql import DEFAULT_HOLDOUT_DAYS, Aggregate, Dialect, aggregate_sql
from clv.terms import Period
from segments.cluster import SegmentCentres, customer_features

DEFAULT_HORIZON = "12m"
DEFAULT_DISCOUNT_RATE = 0.10
SCORE_INPUTS = ("frequency", "recency", "T", "monetary_value")
_views = itertools.count()


def aggregate(
    lines: Any,
    what: Aggregate | str = Aggregate.rfm,
    *,
    columns: ColumnMapping = ColumnMapping(),
    as_of: dt.date | None = None,
    period: Period = Period.day,
    keep_placeholder_ids: bool = False,
    holdout_days: int = DEFAULT_HOLDOUT_DAYS,
) -> Any:
    """One of clvx's aggregates over ``lines``, a Spark DataFrame of order lines, as a Spark DataFrame.

    ``columns`` names the DataFrame's columns as the command line's column flags do
    (defaults ``customer_id``, ``date``, ``amount``). On the same rows the ``rfm`` result
    is exactly ``clvx rfm``'s summary (lifetimes' conventions, returns netted, as-of).
    ``purchases``, ``catalogue`` and ``baskets`` are what cross-sell reads (``holdout_days``:
    the offer horizon in days); collect them to the driver and pass them to
    :func:`crosssell` for the offers of ``clvx cross-sell`` on the same rows.
    """
    view = f"clvx_lines_{next(_views)}"
    lines.createOrReplaceTempView(view)
    sql = aggregate_sql(Aggregate(what), Dialect.spark, columns=columns, table=view, as_of=as_of, period=period,
                        keep_placeholder_ids=keep_placeholder_ids, holdout_days=holdout_days)
    return lines.sparkSession.sql(sql)


def aggregates(lines: Any, *, columns: ColumnMapping = ColumnMapping(), as_of: dt.date | None = None, period: Period = Period.day,
               keep_placeholder_ids: bool = False, offer_horizon: str = "90d") -> Any:
    """What ``clvx.cross_sell`` reads, computed in Spark over ``lines`` and collected to the driver (a ``clvx.Aggregates``).

    The RFM summary (one row per customer), the (customer, category) pairs, and per customer
    and product the purchases; per product the catalogue; per order and product the baskets
    (when ``columns`` names an order column). ``clvx.cross_sell(clvx.spark.aggregates(df,
    ...))`` gives the offers ``clvx cross-sell`` gives on the same rows.
    """
    import polars as pl

    from clv.database import customer_categories_of, typed_rfm
    from clvx import Aggregates
    from segments.aggregates import CrossSellAggregates, holdout_days

    days = holdout_days(Horizon.parse(offer_horizon).days)

    def collected(what: Aggregate) -> pl.DataFrame:
        frame = pl.from_arrow(aggregate(lines, what, columns=columns, as_of=as_of, period=period,
                                        keep_placeholder_ids=keep_placeholder_ids, holdout_days=days).toArrow())
        assert isinstance(frame, pl.DataFrame)
        return frame

    baskets = collected(Aggregate.baskets) if columns.order is not None else None
    catalogue = collected(Aggregate.catalogue)
    return Aggregates(typed_rfm(collected(Aggregate.rfm)), customer_categories_of(collected(Aggregate.products), catalogue),
                      CrossSellAggregates(collected(Aggregate.purchases), catalogue, baskets, days), "Spark DataFrame", period)


def _scored_names(horizon: Horizon) -> tuple[str, str]:
    suffix = horizon.label.replace(" ", "").lower()
    return f"expected_purchases_{suffix}", f"clv_{suffix}"


def score_batches(batches: Iterator[Any], document: dict, *, horizon: str = DEFAULT_HORIZON,
                  discount_rate: float = DEFAULT_DISCOUNT_RATE) -> Iterator[Any]:
    """Arrow record batches of RFM summaries in, the same batches with clvx's scores out (what each executor runs)."""
    import pyarrow as pa

    period, bg, gg = models_from_document(document, "model.json")
    period_days = Period(period).days
    h = Horizon.parse(horizon)
    purchases, clv = _scored_names(h)
    segments = _segments(document)
    for batch in batches:
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        assert isinstance(frame, pl.DataFrame)
        if frame.height == 0:
            continue
        typed = frame.with_columns(pl.col("frequency", "recency", "T").cast(pl.Float64), pl.col("monetary_value").cast(pl.Float64))
        scored = score_customers(typed, bg, gg, period_days=period_days, horizon=h, annual_discount_rate=discount_rate)
        out = frame.with_columns(
            scored["p_alive"], scored["expected_purchases"].alias(purchases), scored["expected_avg_value"], scored["clv"].alias(clv),
        )
        if segments is not None and "total_spend" in frame.columns:
            centres, seg_horizon, seg_rate = segments
            # The clv feature is the one the segments were built on: their horizon and discount rate.
            base = score_customers(typed.with_columns(pl.col("total_spend").cast(pl.Float64)), bg, gg, period_days=period_days,
                                   horizon=seg_horizon, annual_discount_rate=seg_rate)
            out = out.with_columns(centres.assign(customer_features(base, period_days)))
        yield from out.to_arrow().to_batches()


def _segments(document: dict) -> tuple[SegmentCentres, Horizon, float] | None:
    """The saved segments of a model.json (``clvx segment --save``), or None when it has none."""
    section = document.get("segments")
    if not isinstance(section, dict):
        return None
    try:
        return SegmentCentres.from_dict(section), Horizon.parse(str(section["horizon"])), float(section["discount_rate"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model.json: the segments section is incomplete ({exc}); save it again with clvx segment --save") from None


def score(summaries: Any, document: dict, *, horizon: str = DEFAULT_HORIZON, discount_rate: float = DEFAULT_DISCOUNT_RATE) -> Any:
    """``summaries`` (a Spark DataFrame with ``frequency, recency, T, monetary_value`` per customer, in the
    saved model's period) with ``p_alive``, ``expected_purchases_<horizon>``, ``expected_avg_value`` and
    ``clv_<horizon>`` added, scored on the executors with the models of ``document`` (a parsed model.json)."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    missing = [c for c in SCORE_INPUTS if c not in summaries.columns]
    if missing:
        raise InputError(f"the DataFrame to score has no {', '.join(missing)} column; score RFM summaries (clvx.spark.aggregate)")
    models_from_document(document, "model.json")  # a bad document fails here, on the driver, not on every executor
    segmented = _segments(document) is not None and "total_spend" in summaries.columns
    purchases, clv = _scored_names(Horizon.parse(horizon))
    schema = StructType([*summaries.schema.fields, *(StructField(n, DoubleType(), False)
                                                     for n in ("p_alive", purchases, "expected_avg_value", clv)),
                         *([StructField("segment", StringType(), True)] if segmented else [])])
    return summaries.mapInArrow(lambda batches: score_batches(batches, document, horizon=horizon, discount_rate=discount_rate), schema)

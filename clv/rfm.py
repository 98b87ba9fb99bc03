"""Recency, frequency and monetary value per customer, exactly as lifetimes computes them.

The conventions are those of ``lifetimes.utils.summary_data_from_transaction_data``:

* each transaction date is truncated to the start of its period (day; week starting
  Monday, pandas' ``W``; calendar month), and all purchases of a customer in one
  period collapse into a single purchase whose amount is their sum;
* ``frequency`` is the number of periods with a purchase after the first one;
* ``recency`` is the number of periods from the first to the last purchase period;
* ``T`` is the number of periods from the first purchase period to the period of
  the observation end (the as-of date);
* ``monetary_value`` is the mean amount of the repeat periods (0 when frequency is 0).

For ``month`` the unit is the calendar month (lifetimes divides by a 30.4-day
``timedelta64``, which newer pandas refuses); for day and week the numbers match
lifetimes exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from clv.errors import InputError, option
from clv.scalars import to_float
from clv.terms import DAYS_PER_WEEK, Period

# Money is summed as whole nano-units in 128-bit integers: exact whatever the row order, for
# lines up to MAX_AMOUNT and more than 10^11 such lines per sum (Int128 holds 1.7e38).
AMOUNT_DECIMALS = 9
AMOUNT_UNITS = 10**AMOUNT_DECIMALS
MAX_AMOUNT = 1e18
N_SCORES = 5
ORDER_KEY_SEED = 7  # fixed: the order hash, and so every count, is the same on every run
SCORE_QUANTILES = (0.2, 0.4, 0.6, 0.8)


def period_start(expr: pl.Expr, period: Period) -> pl.Expr:
    """The first day of the period containing each date (weeks start on Monday)."""
    return expr.dt.truncate(period.truncate_every).cast(pl.Date)


def period_start_of(day: dt.date, period: Period) -> dt.date:
    """``period_start`` for one Python date."""
    if period is Period.week:
        return day - dt.timedelta(days=day.weekday())
    if period is Period.month:
        return day.replace(day=1)
    return day


def periods_between(start: pl.Expr, end: pl.Expr, period: Period) -> pl.Expr:
    """Whole periods from ``start`` to ``end``, both already period starts."""
    if period is Period.month:
        months = lambda e: e.dt.year().cast(pl.Int64) * 12 + e.dt.month().cast(pl.Int64)  # noqa: E731
        return months(end) - months(start)
    days = (end - start).dt.total_days()
    return days // DAYS_PER_WEEK if period is Period.week else days


def _day_after(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


def collect(frame: pl.LazyFrame) -> pl.DataFrame:
    """Run a query on polars' streaming engine.

    It is several times faster than the in-memory engine for clvx's large group-bys
    (measured on 2 cores) and keeps memory bounded on logs larger than RAM. An amount
    beyond ``MAX_AMOUNT`` (see :func:`amount_units`) is an :class:`InputError`.
    """
    try:
        return frame.collect(engine="streaming")
    except pl.exceptions.InvalidOperationError as exc:
        if "to `i128` failed" not in str(exc):
            raise
        raise InputError(
            f"an amount is beyond +/-{MAX_AMOUNT:.0e}, the largest clvx sums exactly; "
            "check the amount column for a wrong unit or a corrupt value"
        ) from None


def amount_units(expr: pl.Expr) -> pl.Expr:
    """An amount as a whole number of nano-units (Int128), exact for any amount up to ``MAX_AMOUNT``.

    The whole part is converted without rounding and only the fraction is scaled, so
    a line of 1e15 keeps every digit its float has; digits below 1e-9 are rounded half
    to even (no currency has them; 0.0000004 is kept). An amount beyond ``MAX_AMOUNT``
    becomes NaN, whose conversion fails; :func:`collect` turns that into an
    :class:`InputError`, so a sum can never wrap.
    """
    guarded = pl.when(expr.abs() <= MAX_AMOUNT).then(expr).otherwise(float("nan"))
    whole = guarded.cast(pl.Int128)  # truncates toward zero, so the fraction has the amount's sign
    fraction = ((guarded - whole.cast(pl.Float64)) * AMOUNT_UNITS).round(0).cast(pl.Int128)
    return whole * AMOUNT_UNITS + fraction


def units_amount(expr: pl.Expr) -> pl.Expr:
    """Nano-units back to money (Float64): the float nearest the exact decimal sum.

    The count becomes a Decimal(38, 9) without rounding and polars converts that to
    the nearest float. Dividing by 10^9 instead would not do: polars multiplies by
    the (inexact) reciprocal, so 0.1 + 0.2 + 0.3 would print as 0.6000000000000001.
    """
    nano = pl.lit(Decimal(1).scaleb(-AMOUNT_DECIMALS), dtype=pl.Decimal(38, AMOUNT_DECIMALS))
    return (expr.cast(pl.Decimal(38, 0)) * nano).cast(pl.Float64)


def exact_sum(expr: pl.Expr) -> pl.Expr:
    """Sum of money in fixed point (:func:`amount_units`), so the result is the same whatever order
    the (multi-threaded) engine adds rows in: same input, byte-identical output."""
    return units_amount(amount_units(expr).sum())


def _periods(transactions: pl.LazyFrame, period: Period, *, count_orders: bool = False) -> pl.LazyFrame:
    """One row per (customer, period) with the period's summed amount in nano-units (``_units``).

    With ``count_orders``, also ``n_orders``: the period's distinct ``order_id`` values
    with at least one positive line (a return is not an order). The lines are first
    grouped per order, in the same pass, which costs far less than a second pass over
    the log to count orders; an order whose lines fall in two periods counts in each.

    Orders are grouped on a 64-bit hash of ``order_id`` (``ORDER_KEY_SEED``) rather than
    on its text: the per-order table, the largest of the run, then holds 8 bytes per
    order instead of a string. Within one customer and period, two distinct ids would
    have to share a hash to count as one order: for m orders the chance is about
    m^2 / 2^65 (1e-17 for a customer with 20 orders in a day).
    """
    keys = ("customer_id", period_start(pl.col("date"), period).alias("period"))
    if not count_orders:
        return transactions.group_by(*keys).agg(amount_units(pl.col("amount")).sum().alias("_units"))
    return (
        transactions.group_by(*keys, pl.col("order_id").hash(ORDER_KEY_SEED).alias("_order"))
        .agg(amount_units(pl.col("amount")).sum().alias("_units"), (pl.col("amount") > 0).any().alias("_sale"))
        .group_by("customer_id", "period")
        .agg(pl.col("_units").sum(), pl.col("_sale").sum().cast(pl.Int64).alias("n_orders"))
    )


def rfm_summary(
    transactions: pl.LazyFrame, as_of: dt.date, period: Period = Period.day, *, count_orders: bool = False
) -> pl.LazyFrame:
    """Per-customer ``frequency, recency, T, monetary_value`` (lifetimes' conventions).

    ``transactions`` has ``customer_id, date, amount`` and no row after ``as_of``.
    Also returns ``total_spend`` (all periods, first included), ``first_purchase``
    and ``last_purchase`` (period starts), and with ``count_orders`` (which needs an
    ``order_id`` column) ``n_orders``, the customer's orders. Sorted by ``customer_id``.

    Two group-bys with only fast aggregations: per (customer, period), then per
    customer; the first period's spend comes from ``min_by``, not a filter. Amounts
    stay whole nano-units (:func:`amount_units`) through both levels and become money
    once, at the end, so grouping per order first changes no digit.
    """
    end = pl.lit(period_start_of(as_of, period))
    orders = [pl.col("n_orders").sum().alias("n_orders")] if count_orders else []
    return (
        _periods(transactions, period, count_orders=count_orders)
        .group_by("customer_id")
        .agg(
            (pl.len() - 1).cast(pl.Int64).alias("frequency"),
            pl.col("period").min().alias("first_purchase"),
            pl.col("period").max().alias("last_purchase"),
            pl.col("_units").sum().alias("_total"),
            pl.col("_units").min_by("period").alias("_first"),
            *orders,
        )
        .with_columns(
            periods_between(pl.col("first_purchase"), pl.col("last_purchase"), period).cast(pl.Int64).alias("recency"),
            periods_between(pl.col("first_purchase"), end, period).cast(pl.Int64).alias("T"),
            pl.when(pl.col("frequency") > 0)
            .then(units_amount(pl.col("_total") - pl.col("_first")) / pl.col("frequency"))
            .otherwise(0.0)
            .alias("monetary_value"),
            units_amount(pl.col("_total")).alias("total_spend"),
        )
        .select(
            "customer_id", "frequency", "recency", "T", "monetary_value", "total_spend", "first_purchase", "last_purchase",
            *(["n_orders"] if count_orders else []),
        )
        .sort("customer_id")
    )


def calibration_holdout(
    transactions: pl.LazyFrame,
    calibration_end: dt.date,
    as_of: dt.date,
    period: Period = Period.day,
) -> pl.LazyFrame:
    """Split the log at ``calibration_end`` into a calibration summary and holdout counts.

    Columns follow ``lifetimes.utils.calibration_and_holdout_data``: ``frequency_cal,
    recency_cal, T_cal, monetary_value_cal, frequency_holdout, monetary_value_holdout,
    duration_holdout``, one row per customer seen in the calibration period (customers
    first seen in the holdout are not in it). ``frequency_holdout`` counts purchase
    periods after the calibration end up to ``as_of``; ``duration_holdout`` is the
    number of periods between the two ends.

    Unlike lifetimes, ``monetary_value_holdout`` is the mean of per-period sums, as on
    the calibration side (lifetimes averages raw rows there, so a period with two
    order lines would count twice). A calibration day includes all of its hours.
    """
    if calibration_end >= as_of:
        raise InputError(f"{option('calibration_end', calibration_end)} must be before the end of observation {as_of}")
    cal_cut = _day_after(calibration_end)
    calibration = (
        rfm_summary(transactions.filter(pl.col("date") < cal_cut), calibration_end, period)
        .select(
            "customer_id",
            pl.col("frequency").alias("frequency_cal"),
            pl.col("recency").alias("recency_cal"),
            pl.col("T").alias("T_cal"),
            pl.col("monetary_value").alias("monetary_value_cal"),
            pl.col("total_spend").alias("total_spend_cal"),
        )
    )
    holdout = (
        _periods(transactions.filter(pl.col("date") >= cal_cut), period)
        .group_by("customer_id")
        .agg(pl.len().cast(pl.Int64).alias("frequency_holdout"), pl.col("_units").sum().alias("_spend"))
        .with_columns((units_amount(pl.col("_spend")) / pl.col("frequency_holdout")).alias("monetary_value_holdout"))
        .drop("_spend")
    )
    duration = (period_start_of(as_of, period) - period_start_of(calibration_end, period)).days
    if period is Period.week:
        duration //= int(DAYS_PER_WEEK)
    elif period is Period.month:
        duration = (as_of.year - calibration_end.year) * 12 + as_of.month - calibration_end.month
    return (
        calibration.join(holdout, on="customer_id", how="left")
        .with_columns(
            pl.col("frequency_holdout").fill_null(0),
            pl.col("monetary_value_holdout").fill_null(0.0),
            pl.lit(duration, dtype=pl.Int64).alias("duration_holdout"),
        )
        .sort("customer_id")
    )


# --------------------------------------------------------------------------- scores

# The 11 named segments on a recency score x frequency-monetary score grid.
# Rows are R = 5..1, columns FM = 1..5.
SEGMENT_GRID: tuple[tuple[str, ...], ...] = (
    ("New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
    ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Loyal"),
    ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    ("Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"),
)
RFM_SEGMENTS: tuple[str, ...] = tuple(dict.fromkeys(name for row in SEGMENT_GRID for name in row))


@dataclass(frozen=True)
class ScoreBins:
    """Quintile edges behind the 1-5 scores and what this data cannot produce.

    A value's score is 1 + the number of edges it beats (for recency: is below), so
    equal values always share a score; when many customers share a value (most
    logs are dominated by one-time buyers) some scores cannot occur.
    """

    recency_edges: tuple[float, ...]
    frequency_edges: tuple[float, ...]
    monetary_edges: tuple[float, ...]
    unreachable_scores: dict[str, tuple[int, ...]]
    unreachable_segments: tuple[str, ...]
    period: Period


def _edges(values: pl.Series) -> tuple[float, ...]:
    return tuple(to_float(values.quantile(q, interpolation="linear")) for q in SCORE_QUANTILES)


def _score(expr: pl.Expr, edges: tuple[float, ...], *, lower_is_better: bool = False) -> pl.Expr:
    beaten = [(expr < e) if lower_is_better else (expr > e) for e in edges]
    return (1 + pl.sum_horizontal([b.cast(pl.Int8) for b in beaten])).cast(pl.Int8)


def _possible_scores(values: pl.Series, edges: tuple[float, ...], lower_is_better: bool) -> set[int]:
    scored = pl.DataFrame({"x": values}).select(_score(pl.col("x"), edges, lower_is_better=lower_is_better))
    return set(scored.to_series().unique().to_list())


def score_rfm(summary: pl.DataFrame, period: Period = Period.day) -> tuple[pl.DataFrame, ScoreBins]:
    """Add ``r_score, f_score, m_score, fm_score, rfm_segment`` to an RFM summary.

    R scores the periods since the last purchase (``T - recency``, fewer is better),
    F the frequency, M the mean spend per purchase period with the first purchase
    included (``total_spend / (frequency + 1)``, so one-time buyers are scored on
    what they spent; without ``total_spend`` it falls back to ``monetary_value``).
    FM is the half-up rounded mean of F and M, and the segment comes from
    ``SEGMENT_GRID``.
    """
    if summary.height == 0:
        raise InputError("no customers to score")
    gap = (pl.col("T") - pl.col("recency")).alias("_gap")
    spend = (
        (pl.col("total_spend") / (pl.col("frequency") + 1))
        if "total_spend" in summary.columns
        else pl.col("monetary_value")
    ).alias("_spend")
    base = summary.with_columns(gap, spend)
    r_edges = _edges(base["_gap"])
    f_edges = _edges(base["frequency"].cast(pl.Float64))
    m_edges = _edges(base["_spend"])
    scored = base.with_columns(
        _score(pl.col("_gap"), r_edges, lower_is_better=True).alias("r_score"),
        _score(pl.col("frequency"), f_edges).alias("f_score"),
        _score(pl.col("_spend"), m_edges).alias("m_score"),
    ).with_columns(((pl.col("f_score") + pl.col("m_score") + 1) // 2).cast(pl.Int8).alias("fm_score"))
    grid = pl.DataFrame(
        {
            "r_score": [N_SCORES - i for i, row in enumerate(SEGMENT_GRID) for _ in row],
            "fm_score": [j + 1 for row in SEGMENT_GRID for j in range(len(row))],
            "rfm_segment": [name for row in SEGMENT_GRID for name in row],
        },
        schema={"r_score": pl.Int8, "fm_score": pl.Int8, "rfm_segment": pl.String},
    )
    scored = scored.join(grid, on=["r_score", "fm_score"], how="left", maintain_order="left").drop("_gap", "_spend")
    all_scores = set(range(1, N_SCORES + 1))
    unreachable = {
        "r_score": tuple(sorted(all_scores - _possible_scores(base["_gap"], r_edges, True))),
        "f_score": tuple(sorted(all_scores - _possible_scores(base["frequency"], f_edges, False))),
        "m_score": tuple(sorted(all_scores - _possible_scores(base["_spend"], m_edges, False))),
    }
    present = set(scored["rfm_segment"].unique().to_list())
    bins = ScoreBins(
        recency_edges=r_edges,
        frequency_edges=f_edges,
        monetary_edges=m_edges,
        unreachable_scores={k: v for k, v in unreachable.items() if v},
        unreachable_segments=tuple(s for s in RFM_SEGMENTS if s not in present),
        period=period,
    )
    return scored, bins

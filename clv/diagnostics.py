"""What a holdout says about a model beyond its error: calibrated intervals, tracking, deciles.

The diagnostics people show stakeholders, computed on the same calibration/holdout split
as :mod:`clv.backtest`, for any model :mod:`clv.intervals` knows:

* **interval coverage**: per level (50/80/90%), the share of customers whose holdout count
  fell inside their equal-tailed interval, beside the coverage the model itself implies
  for those intervals (whole-count intervals hold more than the nominal mass, so the level
  is the wrong yardstick);
* a **randomised PIT** table (probability integral transform for counts: u = F(y - 1) +
  V (F(y) - F(y - 1)), V uniform; Czado, Gneiting & Held 2009): under a calibrated model
  each decile holds 10% of customers;
* whether the interval of the **total** (a mixture over parameter draws of the normal
  with the sum of the customers' means and variances) contains the actual total;
* the **tracking plot** data: cumulative repeat purchases per period, actual against the
  model's expectation for the calibration cohort, over calibration and holdout (Fader,
  Hardie & Lee 2005, fig. 3; the model line is sum over cohorts of n_c E[X(t - c)], eq. 9);
* a **calibration-by-decile** table: customers in ten groups of predicted holdout
  purchases, mean predicted beside mean actual.

Nothing here prints; misses are returned as one-line warnings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from clv import intervals
from clv.lazy import lazy_module
from clv.models import float_columns
from clv.rfm import Period, calibration_holdout, collect, period_start, period_start_of, periods_between

special = lazy_module("scipy.special")  # ndtr (the standard normal CDF, without loading scipy.stats: a second of start-up)

COVERAGE_LEVELS = (0.5, 0.8, 0.9)
TOTAL_LEVEL = 0.9
COVERAGE_TOLERANCE = 0.02  # empirical coverage this far from implied: said in the output
PIT_BINS = 10
N_DECILES = 10
MODEL_LABELS = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD", "pareto": "Pareto/NBD"}


@dataclass(frozen=True)
class TotalInterval:
    """The ``level`` interval of the holdout total and whether it holds the actual total."""

    level: float
    low: float
    high: float
    expected: float
    actual: float

    @property
    def contains(self) -> bool:
        return self.low <= self.actual <= self.high


@dataclass(frozen=True)
class HoldoutDiagnostics:
    """Interval coverage, PIT, total interval, tracking and deciles of one model on one holdout."""

    model: str
    period: Period
    calibration_end: dt.date
    duration_holdout: int
    n_customers: int
    draws_method: str  # how parameter uncertainty entered: covariance, bootstrap or none
    n_draws: int
    coverage: pl.DataFrame  # level, empirical, implied, gap
    pit: pl.DataFrame  # bin (e.g. "0.0-0.1"), share
    total: TotalInterval
    tracking: pl.DataFrame  # period, period_start, phase, actual, expected, actual_cumulative, expected_cumulative
    deciles: pl.DataFrame  # decile, n_customers, predicted_mean, actual_mean
    warnings: tuple[str, ...]

    @property
    def label(self) -> str:
        return MODEL_LABELS.get(self.model, self.model)

    @property
    def pit_max_gap(self) -> float:
        """The largest distance of a PIT bin's share from 1 / ``PIT_BINS``."""
        return float(np.max(np.abs(self.pit["share"].to_numpy() - 1.0 / PIT_BINS), initial=0.0))


def coverage_table(pred: intervals.Predictive, actual: np.ndarray, levels: Sequence[float] = COVERAGE_LEVELS) -> pl.DataFrame:
    """Per level: the share of customers inside their interval and the mean mass the model gives those intervals."""
    y = np.asarray(actual, np.int64)
    rows = []
    for level in levels:
        low, high = pred.interval(level)
        empirical = float(np.mean((y >= low) & (y <= high)))
        implied = float(np.mean(pred.mass(low, high)))
        rows.append({"level": level, "empirical": empirical, "implied": implied, "gap": empirical - implied})
    return pl.DataFrame(rows)


def randomised_pit(pred: intervals.Predictive, actual: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """u = F(y - 1) + V (F(y) - F(y - 1)) per customer, V ~ U(0, 1) with a fixed ``seed``."""
    y = np.asarray(actual, np.int64)
    below = 1.0 - pred.survival(y)  # F(y - 1)
    at_most = 1.0 - pred.survival(y + 1)  # F(y)
    v = np.random.default_rng(seed).random(len(y))
    return below + v * (at_most - below)


def pit_table(u: np.ndarray, bins: int = PIT_BINS) -> pl.DataFrame:
    """Share of PIT values in each of ``bins`` equal bins of [0, 1]."""
    counts = np.bincount(np.minimum((np.asarray(u) * bins).astype(np.int64), bins - 1), minlength=bins)
    labels = [f"{i / bins:.1f}-{(i + 1) / bins:.1f}" for i in range(bins)]
    return pl.DataFrame({"bin": labels, "share": counts / max(len(u), 1)})


def total_interval(pred: intervals.Predictive, actual_total: float, level: float = TOTAL_LEVEL) -> TotalInterval:
    """The ``level`` interval of the sum over customers: a mixture over the parameter draws of
    normals with the summed per-customer means and variances (customers independent given the
    parameters, so the shared parameter error is what widens it)."""
    m1, m2 = pred.moments()
    means = m1.sum(axis=1)
    sds = np.sqrt(np.maximum((m2 - m1**2).sum(axis=1), 1e-12))

    def quantile(q: float) -> float:
        lo, hi = float(np.min(means - 10 * sds)), float(np.max(means + 10 * sds))
        for _ in range(100):
            mid = (lo + hi) / 2
            if float(np.mean(special.ndtr((mid - means) / sds))) < q:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    return TotalInterval(level, quantile((1 - level) / 2), quantile((1 + level) / 2), float(means.mean()), float(actual_total))


def decile_table(predicted: np.ndarray, actual: np.ndarray, n_groups: int = N_DECILES) -> pl.DataFrame:
    """Customers ranked by predicted purchases into ``n_groups`` equal groups (1 = lowest): mean predicted and actual."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    n = len(predicted)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(predicted, kind="stable")] = np.arange(n)  # ties in input order, as polars' "ordinal" rank
    group = rank * n_groups // max(n, 1)
    # bincount sums in input order: the same bits run to run (a parallel group-by's order is not fixed)
    counts = np.bincount(group, minlength=n_groups)
    keep = counts > 0
    return pl.DataFrame({
        "decile": np.flatnonzero(keep).astype(np.int64) + 1,
        "n_customers": counts[keep].astype(np.uint32),
        "predicted_mean": np.bincount(group, weights=predicted, minlength=n_groups)[keep] / counts[keep],
        "actual_mean": np.bincount(group, weights=actual, minlength=n_groups)[keep] / counts[keep],
    })


def tracking_table(
    transactions: pl.LazyFrame, calibration_end: dt.date, as_of: dt.date, period: Period,
    model: intervals.PredictiveModel, params: Sequence[float],
) -> pl.DataFrame:
    """Repeat purchases per period of the calibration cohort, actual and expected, and their running totals.

    Periods are counted from the first period of the log; a customer's first purchase period is
    not a repeat. A period that straddles the calibration end has a row on each side, so the
    holdout rows add up to the backtest's holdout purchases. The model's line for a cohort of n_c customers whose first purchase is in
    period c is n_c E[X(t - c)] cumulated (FHL 2005 eq. 9 for BG/NBD): an unconditional
    forecast, the same over calibration and holdout.
    """
    cal_cut = dt.datetime.combine(calibration_end + dt.timedelta(days=1), dt.time())
    start = collect(transactions.select(period_start(pl.col("date").min(), period).alias("s"))).item()

    def index_of(day: dt.date) -> int:
        frame = pl.LazyFrame({"a": [start], "b": [period_start_of(day, period)]})
        return int(collect(frame.select(periods_between(pl.col("a"), pl.col("b"), period).cast(pl.Int64))).item())

    # One row per customer, period and side of the calibration end, as the backtest's split counts them: a
    # period that straddles the end counts on both sides.
    per = (
        transactions.filter(pl.col("date") <= dt.datetime.combine(as_of, dt.time.max))
        .select("customer_id", period_start(pl.col("date"), period).alias("period"), (pl.col("date") >= cal_cut).alias("holdout"))
        .unique()
        .with_columns(pl.col("period").filter(~pl.col("holdout")).min().over("customer_id").alias("first"))
        .filter(pl.col("first").is_not_null())
        .with_columns(periods_between(pl.lit(start), pl.col("period"), period).cast(pl.Int64).alias("index"),
                      periods_between(pl.lit(start), pl.col("first"), period).cast(pl.Int64).alias("cohort"))
    )
    frame = collect(per.select("index", "cohort", "holdout", (pl.col("holdout") | (pl.col("period") > pl.col("first"))).alias("repeat")))
    n_periods = index_of(as_of) + 1
    cal_index = index_of(calibration_end)
    sizes = np.bincount(frame.filter(~pl.col("repeat"))["cohort"].to_numpy(), minlength=n_periods)[:n_periods].astype(float)
    expected_cum = np.convolve(sizes, model.expected_new(params, np.arange(n_periods, dtype=float)))[:n_periods]
    # Rows: every period on the calibration side up to the end, then every period on the holdout side
    # (from the end's own period when it straddles the end).
    first_holdout = cal_index if period_start_of(calibration_end + dt.timedelta(days=1), period) == period_start_of(
        calibration_end, period) else cal_index + 1
    idx = np.concatenate([np.arange(cal_index + 1), np.arange(first_holdout, n_periods)])
    holdout = np.concatenate([np.zeros(cal_index + 1, bool), np.ones(n_periods - first_holdout, bool)])
    repeats = frame.filter(pl.col("repeat"))
    counts = {side: np.bincount(repeats.filter(pl.col("holdout") == side)["index"].to_numpy(), minlength=n_periods)[:n_periods]
              for side in (False, True)}
    actual = np.where(holdout, counts[True][idx], counts[False][idx]).astype(float)
    unit = {"day": "d", "week": "w", "month": "mo"}[period.value]
    starts = collect(pl.LazyFrame({"i": idx}).select(
        pl.lit(start).dt.offset_by(pl.format("{}" + unit, pl.col("i"))).alias("period_start")))["period_start"]
    cumulative = expected_cum[idx]
    return pl.DataFrame({
        "period": idx,
        "period_start": starts,
        "phase": np.where(holdout, "holdout", "calibration"),
        "actual": actual,
        "expected": np.diff(cumulative, prepend=0.0),
        "actual_cumulative": np.cumsum(actual),
        "expected_cumulative": cumulative,
    })


def holdout_diagnostics(
    transactions: pl.LazyFrame,
    calibration_end: dt.date,
    as_of: dt.date,
    period: Period,
    *,
    model: str,
    params: Sequence[float],
    seed: int = 42,
    n_draws: int = intervals.DEFAULT_DRAWS,
    levels: Sequence[float] = COVERAGE_LEVELS,
) -> HoldoutDiagnostics:
    """The diagnostics of a model fitted (``params``) on the calibration period of ``transactions``.

    The calibration summary is recomputed here (the same split as the backtest), so these checks
    depend on nothing but the log, the model's name and its parameters.
    """
    spec = intervals.predictive_model(model)
    split = collect(calibration_holdout(transactions, calibration_end, as_of, period))
    x, tx, T = float_columns(split, "frequency_cal", "recency_cal", "T_cal")
    actual = split["frequency_holdout"].to_numpy()
    duration = int(split["duration_holdout"][0])
    (rx, rtx, rT), inverse = intervals.distinct(x, tx, T)
    weights = np.bincount(inverse, minlength=len(rx)).astype(float)
    draws = intervals.parameter_draws(spec, params, rx, rtx, rT, weights, n_draws=n_draws, seed=seed)
    pred = intervals.predictive(spec, draws, x, tx, T, float(duration))
    coverage = coverage_table(pred, actual, levels)
    pit = pit_table(randomised_pit(pred, actual, seed=seed))
    total = total_interval(pred, float(actual.sum()))
    point = intervals.predictive(spec, intervals.ParameterDraws(np.asarray(params, float)[None, :], "none"), x, tx, T, float(duration))
    predicted = point.moments()[0][0]
    out = HoldoutDiagnostics(
        model=model, period=period, calibration_end=calibration_end, duration_holdout=duration, n_customers=split.height,
        draws_method=draws.method, n_draws=draws.n_draws, coverage=coverage, pit=pit, total=total,
        tracking=tracking_table(transactions, calibration_end, as_of, period, spec, params),
        deciles=decile_table(predicted, actual), warnings=(),
    )
    return _with_warnings(out)


def _with_warnings(d: HoldoutDiagnostics) -> HoldoutDiagnostics:
    """One line per miss: coverage off its implied value by more than the tolerance, a PIT bin far off, the total outside."""
    notes = []
    misses = [row for row in d.coverage.iter_rows(named=True) if abs(row["gap"]) > COVERAGE_TOLERANCE]
    if misses:
        narrow = sum(row["gap"] < 0 for row in misses) * 2 >= len(misses)
        shown = "; ".join(f"{row['level']:.0%} covered {row['empirical']:.1%} ({row['implied']:.1%} implied)" for row in misses)
        notes.append(
            f"{d.label} intervals are too {'narrow' if narrow else 'wide'} on this holdout ({shown}): the holdout does not "
            "behave like the calibration period (seasonality or a change does this), so read the intervals as indicative"
        )
    if d.pit_max_gap > COVERAGE_TOLERANCE * 2:
        notes.append(f"{d.label} PIT deciles are uneven (largest gap {d.pit_max_gap * 100:.1f} points from 10%): the "
                     "predictive distribution is miscalibrated on this holdout")
    t = d.total
    if not t.contains:
        side = "above" if t.actual > t.high else "below"
        notes.append(f"the actual holdout total {t.actual:,.0f} is {side} the model's {t.level:.0%} interval "
                     f"{t.low:,.0f}-{t.high:,.0f}: the forecast of the total is biased for this holdout")
    return HoldoutDiagnostics(**{**d.__dict__, "warnings": tuple(notes)})


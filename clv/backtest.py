"""Holdout backtest: fit on a calibration period, predict the holdout, compare with what happened.

Most customers buy nothing in a holdout, so a forecast of zero for everyone has a
small mean absolute error; every metric is therefore reported beside two naive
baselines computed on the same customers: *zero* for everyone, and each customer's
*calibration rate* (repeat purchases per period since their first) times the
holdout length.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from clv.models import (
    BGNBD,
    BGNBDParams,
    GammaGamma,
    GammaGammaParams,
    expected_average_value,
    expected_purchases,
    float_columns,
)
from clv.rfm import Period, calibration_holdout, collect

FREQUENCY_BUCKETS = 7  # 0, 1, ..., 6 and 7+


@dataclass(frozen=True)
class ForecastMetrics:
    """How a per-customer forecast of holdout purchases compares with the actual counts."""

    actual_total: float
    predicted_total: float
    bias: float  # predicted_total / actual_total - 1
    mae: float
    rmse: float
    msle: float  # mean of (log(1 + predicted) - log(1 + actual))^2
    pearson_r: float  # NaN when the forecast is constant


@dataclass(frozen=True)
class RevenueCheck:
    """Holdout revenue: actual, and predicted as E[X] x E[M] per customer."""

    actual_total: float
    predicted_total: float
    bias: float
    baseline_total: float  # calibration spend per period x holdout length
    baseline_bias: float


@dataclass(frozen=True)
class HoldoutBacktest:
    calibration_end: dt.date
    as_of: dt.date
    period: Period
    duration_holdout: int
    n_customers: int
    model: ForecastMetrics
    baselines: dict[str, ForecastMetrics]
    by_frequency: pl.DataFrame  # frequency_cal bucket, n_customers, actual_mean, predicted_mean, calibration_rate_mean
    revenue: RevenueCheck
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams


def forecast_metrics(actual: np.ndarray, predicted: np.ndarray) -> ForecastMetrics:
    """Totals, bias, MAE, RMSE, MSLE and Pearson r of a forecast against actual counts."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    err = predicted - actual
    actual_total = float(actual.sum())
    predicted_total = float(predicted.sum())
    if np.std(predicted) > 0 and np.std(actual) > 0:
        pearson = float(np.corrcoef(actual, predicted)[0, 1])
    else:
        pearson = math.nan
    return ForecastMetrics(
        actual_total=actual_total,
        predicted_total=predicted_total,
        bias=predicted_total / actual_total - 1 if actual_total else math.nan,
        mae=float(np.mean(np.abs(err))),
        rmse=float(np.sqrt(np.mean(err**2))),
        msle=float(np.mean((np.log1p(np.maximum(predicted, 0)) - np.log1p(actual)) ** 2)),
        pearson_r=pearson,
    )


def holdout_backtest(
    transactions: pl.LazyFrame,
    calibration_end: dt.date,
    as_of: dt.date,
    period: Period = Period.day,
    *,
    penalizer: float = 0.0,
    engine: str = "auto",
) -> HoldoutBacktest:
    """Fit BG/NBD and Gamma-Gamma on the calibration period and score the holdout forecast.

    Customers are those with a purchase on or before ``calibration_end``; the
    holdout runs to ``as_of``.
    """
    split = collect(calibration_holdout(transactions, calibration_end, as_of, period))
    cal = split.select(
        "customer_id",
        pl.col("frequency_cal").alias("frequency"),
        pl.col("recency_cal").alias("recency"),
        pl.col("T_cal").alias("T"),
        pl.col("monetary_value_cal").alias("monetary_value"),
    )
    bg = BGNBD(penalizer=penalizer, engine=engine).fit(cal).params_
    gg = GammaGamma(penalizer=penalizer, engine=engine).fit(cal).params_
    duration = int(split["duration_holdout"][0])
    x, tx, T = float_columns(split, "frequency_cal", "recency_cal", "T_cal")
    predicted = expected_purchases(bg, float(duration), x, tx, T)
    actual = split["frequency_holdout"].cast(pl.Float64).to_numpy()
    rate = np.divide(x, T, out=np.zeros_like(x), where=T > 0)
    rate_forecast = rate * duration

    avg_value = expected_average_value(gg, x, split["monetary_value_cal"].to_numpy())
    actual_revenue = float((split["frequency_holdout"] * split["monetary_value_holdout"]).sum())
    predicted_revenue = float(np.sum(predicted * avg_value))
    spend_rate = np.divide(split["total_spend_cal"].to_numpy(), T, out=np.zeros_like(T), where=T > 0)
    baseline_revenue = float(np.sum(spend_rate * duration))

    bucket = pl.min_horizontal(pl.col("frequency_cal"), FREQUENCY_BUCKETS)
    by_frequency = (
        split.select("frequency_cal", "frequency_holdout")
        .with_columns(pl.Series("predicted", predicted), pl.Series("rate", rate_forecast))
        .group_by(bucket.alias("bucket"))
        .agg(
            pl.len().alias("n_customers"),
            pl.col("frequency_holdout").mean().alias("actual_mean"),
            pl.col("predicted").mean().alias("predicted_mean"),
            pl.col("rate").mean().alias("calibration_rate_mean"),
        )
        .sort("bucket")
        .with_columns(
            pl.when(pl.col("bucket") == FREQUENCY_BUCKETS)
            .then(pl.lit(f"{FREQUENCY_BUCKETS}+"))
            .otherwise(pl.col("bucket").cast(pl.String))
            .alias("frequency_cal")
        )
        .select("frequency_cal", "n_customers", "actual_mean", "predicted_mean", "calibration_rate_mean")
    )
    return HoldoutBacktest(
        calibration_end=calibration_end,
        as_of=as_of,
        period=period,
        duration_holdout=duration,
        n_customers=split.height,
        model=forecast_metrics(actual, predicted),
        baselines={
            "zero": forecast_metrics(actual, np.zeros_like(actual)),
            "calibration_rate": forecast_metrics(actual, rate_forecast),
        },
        by_frequency=by_frequency,
        revenue=RevenueCheck(
            actual_total=actual_revenue,
            predicted_total=predicted_revenue,
            bias=predicted_revenue / actual_revenue - 1 if actual_revenue else math.nan,
            baseline_total=baseline_revenue,
            baseline_bias=baseline_revenue / actual_revenue - 1 if actual_revenue else math.nan,
        ),
        bgnbd=bg,
        gamma_gamma=gg,
    )

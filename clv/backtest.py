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

from clv.errors import ModelError, option
from clv.models import (
    ESTIMATORS,
    GammaGamma,
    GammaGammaParams,
    PurchaseParams,
    expected_average_value,
    expected_purchases,
    float_columns,
    purchase_estimator,
)
from clv.rfm import Period, calibration_holdout, collect
from clv.terms import MODEL_LABELS

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
    # frequency_cal bucket, n_customers, actual_mean, predicted_mean (the model used), calibration_rate_mean,
    # and predicted_mean_<name> for each other model compared
    by_frequency: pl.DataFrame
    revenue: RevenueCheck
    purchase_model: PurchaseParams  # the model the forecast above is from
    gamma_gamma: GammaGammaParams
    models: dict[str, ForecastMetrics]  # every purchase model that fitted, by name (bgnbd, mbgnbd, pareto)
    model_errors: dict[str, str]  # why a model did not fit, by name
    fits: dict[str, PurchaseParams]  # every fitted purchase model, by name

    @property
    def bgnbd(self) -> PurchaseParams:
        """The purchase model's fit, under its name before there were three models."""
        return self.purchase_model


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


def _calibration_frame(split: pl.DataFrame) -> pl.DataFrame:
    return split.select(
        "customer_id",
        pl.col("frequency_cal").alias("frequency"),
        pl.col("recency_cal").alias("recency"),
        pl.col("T_cal").alias("T"),
        pl.col("monetary_value_cal").alias("monetary_value"),
    )


def _forecasts(
    split: pl.DataFrame, models: tuple[str, ...], *, penalizer: float, engine: str, standard_errors: bool = True,
) -> tuple[dict[str, PurchaseParams], dict[str, np.ndarray], dict[str, str]]:
    """Each model fitted on the calibration side and its forecast of holdout purchases; why any failed."""
    cal = _calibration_frame(split)
    duration = float(split["duration_holdout"][0])
    x, tx, T = float_columns(split, "frequency_cal", "recency_cal", "T_cal")
    fits: dict[str, PurchaseParams] = {}
    predicted: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    for name in models:
        try:
            fit = purchase_estimator(name, penalizer=penalizer, engine=engine, standard_errors=standard_errors).fit(cal).params_
        except ModelError as exc:
            errors[name] = str(exc)
            continue
        assert not isinstance(fit, GammaGammaParams)
        fits[name] = fit
        predicted[name] = expected_purchases(fit, duration, x, tx, T)
    return fits, predicted, errors


def holdout_backtest(
    transactions: pl.LazyFrame,
    calibration_end: dt.date,
    as_of: dt.date,
    period: Period = Period.day,
    *,
    penalizer: float = 0.0,
    engine: str = "auto",
    model: str = "bgnbd",
    compare: bool = True,
) -> HoldoutBacktest:
    """Fit the purchase model and Gamma-Gamma on the calibration period and score the holdout forecast.

    Customers are those with a purchase on or before ``calibration_end``; the
    holdout runs to ``as_of``. With ``compare``, every other purchase model is fitted
    and scored too (``models``), side by side with the baselines.
    """
    split = collect(calibration_holdout(transactions, calibration_end, as_of, period))
    names = (model, *(m for m in ESTIMATORS if m != model)) if compare else (model,)
    fits, forecasts, errors = _forecasts(split, names, penalizer=penalizer, engine=engine)
    if model not in fits:
        raise ModelError(errors[model])
    bg = fits[model]
    predicted = forecasts[model]
    cal = _calibration_frame(split)
    gg = GammaGamma(penalizer=penalizer, engine=engine).fit(cal).params_
    duration = int(split["duration_holdout"][0])
    x, T = float_columns(split, "frequency_cal", "T_cal")
    actual = split["frequency_holdout"].cast(pl.Float64).to_numpy()
    rate = np.divide(x, T, out=np.zeros_like(x), where=T > 0)
    rate_forecast = rate * duration

    avg_value = expected_average_value(gg, x, split["monetary_value_cal"].to_numpy())
    actual_revenue = float((split["frequency_holdout"] * split["monetary_value_holdout"]).sum())
    predicted_revenue = float(np.sum(predicted * avg_value))
    spend_rate = np.divide(split["total_spend_cal"].to_numpy(), T, out=np.zeros_like(T), where=T > 0)
    baseline_revenue = float(np.sum(spend_rate * duration))

    bucket = pl.min_horizontal(pl.col("frequency_cal"), FREQUENCY_BUCKETS)
    compared = [name for name in forecasts if name != model]
    by_frequency = (
        split.select("frequency_cal", "frequency_holdout")
        .with_columns(pl.Series("predicted", predicted), pl.Series("rate", rate_forecast),
                      *(pl.Series(f"predicted_{name}", forecasts[name]) for name in compared))
        .group_by(bucket.alias("bucket"))
        .agg(
            pl.len().alias("n_customers"),
            pl.col("frequency_holdout").mean().alias("actual_mean"),
            pl.col("predicted").mean().alias("predicted_mean"),
            pl.col("rate").mean().alias("calibration_rate_mean"),
            *(pl.col(f"predicted_{name}").mean().alias(f"predicted_mean_{name}") for name in compared),
        )
        .sort("bucket")
        .with_columns(
            pl.when(pl.col("bucket") == FREQUENCY_BUCKETS)
            .then(pl.lit(f"{FREQUENCY_BUCKETS}+"))
            .otherwise(pl.col("bucket").cast(pl.String))
            .alias("frequency_cal")
        )
        .select("frequency_cal", "n_customers", "actual_mean", "predicted_mean", *(f"predicted_mean_{name}" for name in compared),
                "calibration_rate_mean")
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
        purchase_model=bg,
        gamma_gamma=gg,
        models={name: forecast_metrics(actual, f) for name, f in forecasts.items()},
        model_errors=errors,
        fits=fits,
    )


# --------------------------------------------------------------------------- choosing a model

INNER_HOLDOUT_SHARE = 1 / 3  # auto holds back the last third of the calibration span
MIN_INNER_HOLDOUT_DAYS = 28
BIAS_SLACK = 0.05  # a model's |bias| may exceed the best by 5 points and still win on MAE
MAE_TIE = 1e-3  # MAEs within 0.1% are a tie, which goes to the simpler model (BG/NBD, then MBG/NBD, then Pareto/NBD)

CHOICE_RULE = (
    "the smallest per-customer MAE on the held-back part among the models whose total bias is within "
    f"{BIAS_SLACK:.0%} points of the smallest absolute bias; MAEs within {MAE_TIE:.1%} of each other tie, and a tie "
    "goes to BG/NBD, then MBG/NBD"
)


@dataclass(frozen=True)
class ModelScore:
    """One purchase model on the inner holdout: calibration log-likelihood, per-customer MAE, total bias."""

    model: str
    log_likelihood: float
    mae: float
    bias: float
    converged: bool

    @property
    def label(self) -> str:
        return MODEL_LABELS[self.model]


@dataclass(frozen=True)
class ModelChoice:
    """What ``auto`` did: the inner split, each model's score on it, the rule, and the model it picked."""

    chosen: str
    split_end: dt.date  # the inner calibration ends here; the held-back part runs to ``as_of``
    as_of: dt.date
    duration_holdout: int  # periods held back
    n_customers: int
    scores: tuple[ModelScore, ...]
    errors: dict[str, str]
    rule: str = CHOICE_RULE

    @property
    def label(self) -> str:
        return MODEL_LABELS[self.chosen]


def pick(scores: tuple[ModelScore, ...]) -> str:
    """The rule ``auto`` applies (:data:`CHOICE_RULE`); ties go to the first of bgnbd, mbgnbd, pareto."""
    best_bias = min(abs(s.bias) for s in scores)
    near = [s for s in scores if abs(s.bias) <= best_bias + BIAS_SLACK]
    best_mae = min(s.mae for s in near)
    tied = [s.model for s in near if s.mae <= best_mae * (1 + MAE_TIE)]
    return min(tied, key=list(ESTIMATORS).index)


def inner_split_end(first_date: dt.date, as_of: dt.date) -> dt.date:
    """Where ``auto`` splits the data it was given: the last third of the span (first purchase to as-of) is held back."""
    span = (as_of - first_date).days
    held = max(round(span * INNER_HOLDOUT_SHARE), 1)
    if held < MIN_INNER_HOLDOUT_DAYS:
        raise ModelError(
            f"{option('model', 'auto')} holds back the last third of the log to compare the models, but the log spans only "
            f"{span} days; choose a {option('model')} yourself"
        )
    return as_of - dt.timedelta(days=held)


def choose_model(
    transactions: pl.LazyFrame, first_date: dt.date, as_of: dt.date, period: Period, *, penalizer: float = 0.0, engine: str = "auto",
) -> ModelChoice:
    """Fit every purchase model on all but the last third of the log, score each on that third, and pick by :func:`pick`.

    Costs one fit per model on the shorter log (no standard errors); the caller refits the pick on all the data.
    """
    split_end = inner_split_end(first_date, as_of)
    split = collect(calibration_holdout(transactions, split_end, as_of, period))
    fits, forecasts, errors = _forecasts(split, tuple(ESTIMATORS), penalizer=penalizer, engine=engine, standard_errors=False)
    if not fits:
        raise ModelError(f"no purchase model fitted on the first two thirds of the log ({next(iter(errors.values()))})")
    actual = split["frequency_holdout"].cast(pl.Float64).to_numpy()
    scores = []
    for name, fit in fits.items():
        m = forecast_metrics(actual, forecasts[name])
        scores.append(ModelScore(name, fit.log_likelihood, m.mae, m.bias, fit.converged))
    ranked = tuple(scores)
    return ModelChoice(pick(ranked), split_end, as_of, int(split["duration_holdout"][0]), split.height, ranked, errors)

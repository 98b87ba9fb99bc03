"""What each command shows: headers with units, captions and summaries.

Builds on present.output (formats, atomic files, stderr); the command line calls these
with the core's results. Nothing here computes a number the core did not.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict
from pathlib import Path

import polars as pl
from rich import box
from rich.table import Table

from clv.backtest import HoldoutBacktest, ModelChoice
from clv.diagnostics import COVERAGE_TOLERANCE, HoldoutDiagnostics
from clv.errors import InputError
from clv.intervals import INTERVAL_COLUMNS
from clv.models import GammaGammaParams, Horizon, PurchaseParams
from clv.rfm import Period, ScoreBins
from clv.sample import CUSTOMERS_FILE, TRUTH_FILE, Sample
from present.output import (
    Emitter,
    Format,
    Reporter,
    atomic_write,
    atomic_write_bytes,
    frame_bytes,
    frame_table,
    stdout_writes,
    terminal_text,
    to_json,
    write_csv_blocks,
)
from segments.pipeline import NEAR_TERM, SegmentRun


def period_headers(period: Period) -> dict[str, str]:
    unit = f"{period.value}s"
    return {
        "recency": f"recency ({unit})",
        "T": f"T ({unit})",
        "monetary_value": "monetary value",
    }


def rfm_rows(summary: pl.DataFrame, period: Period, emitter: Emitter) -> None:
    emitter.rows(
        summary,
        title="RFM summary",
        caption=(
            f"One row per customer. Frequency = repeat purchase {period.value}s; recency = first to last "
            f"purchase; T = first purchase to the as-of date; monetary value = mean spend of repeat {period.value}s."
        ),
        headers=period_headers(period),
        noun="customers",
    )


def _edges(edges: tuple[float, ...]) -> str:
    return ", ".join(f"{e:,.2f}".rstrip("0").rstrip(".") for e in edges)


def report_score_bins(bins: ScoreBins, reporter: Reporter) -> None:
    """Print the quintile edges behind the scores and warn about impossible scores."""
    unit = f"{bins.period.value}s"
    reporter.info(
        f"RFM score edges (20/40/60/80th percentiles): R on {unit} since last purchase "
        f"[{_edges(bins.recency_edges)}]; F on frequency [{_edges(bins.frequency_edges)}]; "
        f"M on spend per purchase {bins.period.value} [{_edges(bins.monetary_edges)}]."
    )
    for score, missing in bins.unreachable_scores.items():
        reporter.warn(
            f"{score} {', '.join(map(str, missing))} cannot occur in this data: many customers share "
            f"the same value, and equal values always get the same score"
        )
    if bins.unreachable_segments:
        reporter.warn(f"no customer falls in the RFM segment(s): {', '.join(bins.unreachable_segments)}")


def write_sample(sample: Sample, output: Path | None, truth_dir: Path | None) -> None:
    """Write a generated log (Parquet or CSV by extension, CSV to stdout) and its truth."""
    tx = sample.transactions
    if output is None:
        with stdout_writes():
            sys.stdout.write(tx.write_csv())
            sys.stdout.flush()
    elif output.suffix.lower() in (".parquet", ".pq"):
        atomic_write(output, lambda tmp: tx.write_parquet(tmp, compression="zstd", compression_level=19, statistics=False))
    else:
        atomic_write(output, lambda tmp: tx.write_csv(tmp))
    if truth_dir is not None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(truth_dir / TRUTH_FILE, to_json(sample.truth).encode())
        atomic_write(truth_dir / CUSTOMERS_FILE, lambda tmp: sample.customers.write_csv(tmp, float_precision=6))


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, v in rows:
        table.add_row(k, v)
    return table


# --------------------------------------------------------------------------- models

PREDICTION_COLUMNS = [
    "customer_id", "frequency", "recency", "T", "monetary_value", "p_alive", "churn_risk", "expected_purchases", "expected_avg_value", "clv",
]


def _params_table(title: str, names: tuple[str, ...], values: tuple[float, ...], ses: tuple[float, ...], intervals: dict[str, tuple[float, float]]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAVY)
    for col in ("parameter", "estimate", "std. error", "95% interval"):
        table.add_column(col, justify="left" if col == "parameter" else "right")
    for name, value, se in zip(names, values, ses, strict=True):
        lo, hi = intervals[name]
        table.add_row(name, _number(value), _number(se), f"{_number(lo)} – {_number(hi)}")
    return table


def _number(value: float) -> str:
    """A parameter with four significant decimals, in scientific notation when huge or tiny."""
    if value != value:  # NaN
        return "n/a"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:,.4f}"


def fit_result(bg: PurchaseParams, gg: GammaGammaParams, period: Period, emitter: Emitter) -> None:
    unit = f"{period.value}s"
    scaled = "alpha and beta" if bg.MODEL == "pareto" else "alpha"
    bg_table = _params_table(f"{bg.label} ({scaled} in {unit})", bg.NAMES, bg.params, bg.standard_errors, bg.intervals())
    shaky = f" · poorly identified: {', '.join(bg.poorly_identified)}" if bg.poorly_identified else ""
    bg_table.caption = (
        f"log-likelihood {bg.log_likelihood:,.2f} · {bg.n_customers:,} customers in {bg.n_distinct:,} distinct "
        f"(frequency, recency, T) rows · {'converged' if bg.converged else 'NOT converged (no proper maximum)'}"
        + (f" (start {bg.n_starts})" if bg.n_starts > 1 else "") + f" · engine {bg.engine}" + shaky
    )
    bg_table.caption_justify = "left"
    gg_table = _params_table("Gamma-Gamma (spend per purchase)", GammaGammaParams.NAMES, gg.params, gg.standard_errors, gg.intervals())
    gg_table.caption = (
        f"log-likelihood {gg.log_likelihood:,.2f} · {gg.n_customers:,} repeat customers"
        + (f" ({gg.n_excluded:,} with spend <= 0 left out)" if gg.n_excluded else "")
        + f" · population mean spend {gg.population_mean:,.2f} · spend-frequency correlation {gg.frequency_spend_correlation:.2f}"
    )
    gg_table.caption_justify = "left"
    data = {"period": period.value, "model": bg.MODEL, bg.MODEL: bg.to_dict(), "gamma_gamma": gg.to_dict()}
    frames = {"params": _params_frame(bg, gg)}
    emitter.obj(data, [bg_table, gg_table], frames)


def _params_frame(bg: PurchaseParams, gg: GammaGammaParams) -> pl.DataFrame:
    rows = []
    for model, p in ((bg.MODEL, bg), ("gamma_gamma", gg)):
        for name, value, se in zip(p.NAMES, p.params, p.standard_errors, strict=True):
            lo, hi = p.intervals()[name]
            rows.append({"model": model, "parameter": name, "estimate": value, "standard_error": se, "lower_95": lo, "upper_95": hi})
    return pl.DataFrame(rows)


def horizon_suffix(horizon: Horizon) -> str:
    """The horizon as a column-name suffix: ``12m``, ``90d``, ``1_5y``."""
    return re.sub(r"[^0-9a-z]+", "_", horizon.label.lower()).strip("_")


def with_horizon(frame: pl.DataFrame, horizon: Horizon, names: tuple[str, ...]) -> pl.DataFrame:
    """Name each column whose value depends on the horizon for it (``clv`` -> ``clv_12m``): one meaning per name."""
    suffix = horizon_suffix(horizon)
    return frame.rename({n: f"{n}_{suffix}" for n in names if n in frame.columns})


CLV_COLUMNS = ("clv", "expected_purchases", "churn_risk", *INTERVAL_COLUMNS)  # depend on the CLV horizon
OFFER_COLUMNS = ("expected_buyers", "expected_revenue")  # depend on the offers' horizon


def profile_columns(profile: pl.DataFrame, horizon: Horizon) -> pl.DataFrame:
    """The segment table's columns as files name them: ``clv`` over the CLV horizon, ``churn_risk`` over the next 90 days."""
    return with_horizon(with_horizon(profile, horizon, ("clv",)), NEAR_TERM, ("churn_risk",))


def predictions(scored: pl.DataFrame, period: Period, horizon: Horizon, discount_rate: float, emitter: Emitter, *,
                model: PurchaseParams | None = None, level: float | None = None) -> None:
    s = horizon_suffix(horizon)
    headers = period_headers(period) | {
        "p_alive": "P(alive)",
        f"churn_risk_{s}": f"churn risk ({horizon.label})",
        f"expected_purchases_{s}": f"exp. purchases ({horizon.label})",
        "expected_avg_value": "exp. spend / purchase",
        f"clv_{s}": f"CLV ({horizon.label})",
    }
    columns = list(PREDICTION_COLUMNS)
    interval_caption = ""
    if level is not None and all(c in scored.columns for c in INTERVAL_COLUMNS):
        columns += INTERVAL_COLUMNS
        pct = f"{level:.0%}"
        headers |= {
            f"purchases_low_{s}": f"purchases {pct} low", f"purchases_high_{s}": f"purchases {pct} high",
            f"clv_low_{s}": f"CLV {pct} low", f"clv_high_{s}": f"CLV {pct} high",
        }
        interval_caption = (f" {pct} prediction intervals: purchases over {horizon.label} from the model's predictive "
                            "distribution; CLV = that interval x expected spend, discounted.")
    total = scored["clv"].sum()
    frame = scored.select(columns)
    if model is not None and emitter.format is not Format.table:
        frame = with_model(frame, model)
    emitter.rows(
        with_horizon(frame, horizon, CLV_COLUMNS),
        title="Customer value",
        caption=(
            f"Most valuable first{f', by {model.label} and Gamma-Gamma' if model is not None else ''}. Total predicted CLV "
            f"over {horizon.label}: {total:,.2f} (annual discount rate {discount_rate:.0%}); mean P(alive) "
            f"{scored['p_alive'].mean():.3f}; churn risk = P(no purchase within {horizon.label})." + interval_caption
        ),
        headers=headers,
        noun="customers",
        table_order=(f"clv_{s}", True),
    )


def _metrics_frame(result: HoldoutBacktest) -> pl.DataFrame:
    others = {name: m for name, m in result.models.items() if name != result.purchase_model.MODEL}
    forecasts = {"model": result.model, **others, **result.baselines}
    names = ["actual_total", "predicted_total", "bias", "mae", "rmse", "msle", "pearson_r"]
    return pl.DataFrame({"metric": names, **{k: [getattr(m, n) for n in names] for k, m in forecasts.items()}})


def backtest_dict(result: HoldoutBacktest) -> dict:
    return {
        "calibration_end": result.calibration_end,
        "as_of": result.as_of,
        "period": result.period.value,
        "duration_holdout": result.duration_holdout,
        "n_customers": result.n_customers,
        **asdict(result.model),
        "baselines": {k: asdict(v) for k, v in result.baselines.items()},
        "by_frequency": result.by_frequency.to_dicts(),
        "revenue": asdict(result.revenue),
        "model": result.purchase_model.MODEL,
        result.purchase_model.MODEL: result.purchase_model.to_dict(),
        "models": {name: asdict(m) for name, m in result.models.items()},
        "model_errors": result.model_errors,
        "gamma_gamma": result.gamma_gamma.to_dict(),
    }


COVERAGE_POINTS = COVERAGE_TOLERANCE * 100
TRACKING_ROWS = 14  # the terminal's tracking table: about this many periods, evenly spaced


def draws_text(d: HoldoutDiagnostics) -> str:
    """How parameter uncertainty entered the intervals, in words."""
    return {
        "covariance": f"parameter uncertainty from the fit's covariance ({d.n_draws} draws)",
        "bootstrap": f"parameter uncertainty from {d.n_draws} refits on resampled customers (the optimum is on a boundary)",
        "none": "no parameter uncertainty (it could not be estimated)",
    }[d.draws_method]


def coverage_frame(d: HoldoutDiagnostics) -> pl.DataFrame:
    return d.coverage.select(
        pl.format("{}%", (pl.col("level") * 100).round(0).cast(pl.Int64)).alias("interval"),
        pl.col("empirical").alias("empirical_share"), pl.col("implied").alias("implied_share"),
        (pl.col("gap") * 100).alias("gap_points"),
    )


def tracking_rows(tracking: pl.DataFrame, n_rows: int = TRACKING_ROWS) -> pl.DataFrame:
    """About ``n_rows`` evenly spaced periods of the tracking data, always with the last calibration period and the last."""
    n = tracking.height
    step = max(1, -(-n // n_rows))
    cal_end = tracking.filter(pl.col("phase") == "calibration")["period"].max()
    keep = pl.col("period").is_in([*range(step - 1, n, step), n - 1, cal_end])
    return tracking.filter(keep).select(
        "period_start", "phase", "actual_cumulative", "expected_cumulative",
        (pl.col("expected_cumulative") / pl.col("actual_cumulative") - 1).alias("model_vs_actual_share"),
    )


def diagnostics_dict(d: HoldoutDiagnostics) -> dict:
    return {
        "model": d.model,
        "parameter_uncertainty": d.draws_method,
        "n_draws": d.n_draws,
        "coverage": d.coverage.to_dicts(),
        "pit": d.pit.to_dicts(),
        "pit_max_gap": d.pit_max_gap,
        "total": {**asdict(d.total), "contains": d.total.contains},
        "deciles": d.deciles.to_dicts(),
        "tracking": d.tracking.to_dicts(),
        "warnings": list(d.warnings),
    }


def diagnostics_tables(d: HoldoutDiagnostics, unit: str) -> list:
    """The terminal tables of the holdout diagnostics: intervals, PIT, total, tracking, deciles."""
    t = d.total
    coverage = frame_table(
        coverage_frame(d),
        title=f"Prediction intervals on the holdout ({d.label}, {draws_text(d)})",
        caption="empirical = share of customers whose holdout purchases fell inside their equal-tailed interval; implied = "
        "the probability the model gives those intervals (whole counts hold more than the level); gap = empirical - "
        f"implied, in points (over {COVERAGE_POINTS:g} is flagged).",
        headers={"empirical_share": "empirical", "implied_share": "implied", "gap_points": "gap (points)"},
        decimals={"gap_points": 1}, max_rows=None,
    )
    pit = frame_table(
        pl.DataFrame({"": ["share"], **{row["bin"]: [row["share"]] for row in d.pit.iter_rows(named=True)}}).rename(
            {b: f"{b} " for b in d.pit["bin"]}),
        title="Randomised PIT: where each customer's holdout count fell in its predictive distribution",
        caption=f"Each tenth holds 10% under a calibrated model; largest gap here {d.pit_max_gap * 100:.1f} points.",
        decimals={f"{b} ": 3 for b in d.pit["bin"]}, max_rows=None,
    )
    total = key_value_table(
        "Holdout total: repeat purchases",
        [
            ("actual", f"{t.actual:,.0f}"),
            ("expected", f"{t.expected:,.0f} ({t.expected / t.actual - 1:+.1%})" if t.actual else f"{t.expected:,.0f}"),
            (f"{t.level:.0%} interval", f"{t.low:,.0f} – {t.high:,.0f}"),
            ("contains the actual", "yes" if t.contains else "no"),
        ],
    )
    tracking = frame_table(
        tracking_rows(d.tracking),
        title=f"Tracking: cumulative repeat purchases of the calibration cohort ({d.label})",
        caption=f"Actual against the model's expectation, per {unit[:-1]} from the start of the log; the model line is "
        "the same forecast over calibration and holdout (Fader, Hardie & Lee 2005, fig. 3).",
        headers={"period_start": f"{unit[:-1]} starting", "actual_cumulative": "actual", "expected_cumulative": d.label,
                 "model_vs_actual_share": "model vs actual"},
        decimals={"actual_cumulative": 0, "expected_cumulative": 0}, max_rows=None,
    )
    deciles = frame_table(
        d.deciles,
        title="Calibration by decile of predicted holdout purchases",
        caption="Customers in ten equal groups by the forecast (1 = lowest); mean forecast beside mean actual.",
        headers={"predicted_mean": d.label, "actual_mean": "actual"},
        decimals={"predicted_mean": 3, "actual_mean": 3}, max_rows=None,
    )
    return [coverage, pit, total, tracking, deciles]


def backtest(result: HoldoutBacktest, emitter: Emitter, *, cross_sell=None, diagnostics: HoldoutDiagnostics | None = None) -> None:
    unit = f"{result.period.value}s"
    metrics = _metrics_frame(result)
    label = result.purchase_model.label
    others = {name: f"{fit.label} (compared)" for name, fit in result.fits.items() if name != result.purchase_model.MODEL}
    t1 = frame_table(
        metrics,
        title=f"Holdout backtest: {result.n_customers:,} customers, calibration to {result.calibration_end}, "
        f"holdout {result.duration_holdout} {unit} to {result.as_of}",
        caption=f"Repeat purchases per customer in the holdout, by {label} (the model used) and the other models, fitted on the "
        "same calibration data. Baselines: zero = nobody buys; calibration_rate = each customer's past repeat rate x holdout "
        "length. bias = predicted / actual - 1; msle = mean squared log error.",
        headers={"model": label, **others, "zero": "baseline: zero", "calibration_rate": "baseline: calibration rate"},
        decimals={c: 4 for c in metrics.columns if c != "metric"},
    )
    t2 = frame_table(
        result.by_frequency,
        title="Mean holdout purchases by calibration frequency",
        caption=f"{label} is the model used; the others are fitted on the same calibration data.",
        headers={"frequency_cal": "calibration repeats", "actual_mean": "actual", "predicted_mean": label,
                 "calibration_rate_mean": "baseline: calibration rate",
                 **{f"predicted_mean_{name}": text for name, text in others.items()}},
        decimals={c: 3 for c in result.by_frequency.columns if c.endswith("_mean") or c.startswith("predicted_mean_")},
    )
    rev = result.revenue
    t3 = key_value_table(
        "Holdout revenue",
        [
            ("actual", f"{rev.actual_total:,.2f}"),
            (f"predicted ({label} x Gamma-Gamma)", f"{rev.predicted_total:,.2f} ({rev.bias:+.2%})"),
            ("baseline: calibration spend rate", f"{rev.baseline_total:,.2f} ({rev.baseline_bias:+.2%})"),
        ],
    )
    data = {"clv": backtest_dict(result)}
    renderables = [t1, t2, t3]
    frames = {"metrics": metrics}
    if diagnostics is not None:
        data["diagnostics"] = diagnostics_dict(diagnostics)
        renderables += diagnostics_tables(diagnostics, unit)
    if cross_sell is not None:
        data["cross_sell"] = crosssell_backtest_dict(cross_sell)
        cs_frame = crosssell_metrics_frame(cross_sell)
        renderables.append(frame_table(
            cs_frame,
            title=f"Cross-sell backtest: {cross_sell.n_customers:,} customers who bought something new after {cross_sell.calibration_end}",
            caption="Targets built from the calibration period, scored against products each customer bought for the first time in "
            "the holdout. hit_rate@k = share with at least one new purchase in their top k; revenue_captured@k = share of new-product "
            "revenue in the top k; coverage = share of the catalogue recommended to anyone (top 10). x popularity = model / popularity.",
            headers=CROSSSELL_METRIC_HEADERS,
            max_rows=None, decimals={c: 3 for c in cs_frame.columns},
        ))
        if cross_sell.calibration is not None:
            frames["cross_sell_calibration"] = cross_sell.calibration
            data["cross_sell"]["calibration"] = cross_sell.calibration.to_dicts()
            renderables.append(frame_table(
                cross_sell.calibration,
                title=f"Cross-sell calibration: offers by score decile, expected over the {cross_sell.horizon_days}-day holdout",
                caption="Each customer's top offers, built from the calibration period. expected buyers = the sum of their "
                "purchase probabilities; actual = offers bought for the first time in the holdout; revenue likewise "
                "(decile 10 = the highest scores).",
                headers={"min_score": "lowest score", "expected_buyers": "expected\nbuyers", "actual_buyers": "actual\nbuyers",
                         "expected_revenue": "expected\nrevenue", "actual_revenue": "actual\nrevenue"},
                max_rows=None, decimals={"min_score": 3, "expected_buyers": 1, "actual_buyers": 0, "expected_revenue": 0, "actual_revenue": 0},
            ))
    emitter.obj(data, renderables, frames)


def explain_choice(choice: ModelChoice, reporter: Reporter) -> None:
    """How ``--model auto`` chose, on stderr: the split, each model's scores, the rule and the pick."""
    rows = [(f"{sc.label}{' (chosen)' if sc.model == choice.chosen else ''}",
             f"MAE {sc.mae:.4f} · bias {sc.bias:+.2%} · log-likelihood {sc.log_likelihood:,.2f}"
             + ("" if sc.converged else " · not a proper maximum")) for sc in choice.scores]
    rows += [(f"{name} (failed)", why) for name, why in choice.errors.items()]
    reporter.info(
        f"Model choice: each model fitted on the log to {choice.split_end} ({choice.n_customers:,} customers) and scored on "
        f"the {choice.duration_holdout} periods to {choice.as_of}; rule: {choice.rule}."
    )
    for name, text in rows:
        reporter.info(f"  {name}: {text}")


# --------------------------------------------------------------------------- segments

PROFILE_HEADERS = {
    "n_customers": "customers",
    "customer_share": "%\ncustomers",
    "revenue": "revenue",
    "revenue_share": "%\nrevenue",
    "clv": "CLV\n12 months",
    "clv_share": "%\nCLV",
    "mean_p_alive": "P(alive)",
    "churn_risk": "churn\nrisk 90d",
    "median_days_since_last_purchase": "days since\nlast purchase",
    "median_frequency": "repeat\npurchases",
    "avg_order_value": "avg\norder",
    "expected_purchases_90d": "purchases\nnext 90d",
}
PROFILE_DECIMALS = {"median_days_since_last_purchase": 0, "median_frequency": 0, "expected_purchases_90d": 0, "revenue": 0, "clv": 0}


def segmentation_notes(result, reporter: Reporter) -> None:
    seg = result.segmentation
    if seg.method == "kmeans" and seg.n_fit < seg.assignments.height:
        reporter.info(
            f"k-means was fitted on a fixed-seed sample of {seg.n_fit:,} of {seg.assignments.height:,} customers; "
            "everyone was then assigned to the nearest segment centre."
        )


def segment_profile(result, emitter: Emitter, *, explain: bool = False) -> None:
    """The segment profile (the headline of ``clvx segment``): a table, or one row per segment in files."""
    seg = result.segmentation
    profile = seg.profile
    if emitter.format.value != "table":
        emitter.rows(profile_columns(with_model(profile, result.purchase_model), result.horizon))
        return
    how = (
        f"k-means on days since last purchase, frequency, spend, P(alive) and CLV (log-scaled), k = {seg.k}"
        + (" chosen by silhouette among stable solutions" if seg.candidates else " (given)")
        + f", seed {seg.seed}"
        if seg.method == "kmeans"
        else "the named RFM segments"
    )
    caption = (
        f"{seg.assignments.height:,} customers in {profile.height} segments by {how}. Ordered by share of predicted "
        f"CLV over {result.horizon.words} (annual discount {result.discount_rate:.0%}), by {result.purchase_model.label} and "
        "Gamma-Gamma. Churn risk = mean P(no purchase in the next 90 days); "
        "days since last purchase and repeat purchases are medians; purchases next 90d = expected, segment total."
    )
    numbers = profile.drop("top_categories", strict=False)
    headers = PROFILE_HEADERS | {"clv": f"CLV\n{result.horizon.words}"}
    renderables = [frame_table(numbers, title="Customer segments", caption=caption, headers=headers, max_rows=None, decimals=PROFILE_DECIMALS)]
    if "top_categories" in profile.columns:
        renderables.append(frame_table(
            profile.select("segment", pl.col("top_categories").fill_null("—")),
            title="What each segment buys more of",
            caption="Categories whose share of buyers in the segment is highest relative to all customers (index = segment / overall).",
            headers={"top_categories": "over-indexed categories (index)"}, max_rows=None,
        ))
    if explain and seg.candidates:
        renderables.append(frame_table(candidates_frame(seg), title="Choosing k", caption=(
            "silhouette on a fixed-seed sample (higher is better); min share = smallest segment; stability = adjusted Rand "
            "index between fits on two subsamples with different seeds (1 = identical)."), max_rows=None, decimals={"silhouette": 3, "stability": 3}))
    emitter.tables(renderables)


def candidates_frame(seg) -> pl.DataFrame:
    return pl.DataFrame([asdict(c) for c in seg.candidates])


ASSIGNMENT_COLUMNS = [
    "customer_id", "segment", "rfm_segment", "days_since_last_purchase", "frequency", "spend_per_purchase", "p_alive",
    "churn_risk_90d", "churn_risk", "clv", "expected_purchases", "expected_purchases_90d", "expected_avg_value", "monetary_value", "total_spend", "n_orders",
    "recency", "T",
]


def with_model(frame: pl.DataFrame, model: PurchaseParams) -> pl.DataFrame:
    """``frame`` with a ``purchase_model`` column naming the model behind its forecasts (as ``--model`` spells it)."""
    return frame.with_columns(pl.lit(model.MODEL).alias("purchase_model"))


def write_assignments(run: SegmentRun, path: Path, *, raw: bool = False) -> None:
    """One row per customer for CRM import; horizon-dependent columns carry their horizon, and the
    last column names the purchase model behind them."""
    frame = with_model(run.segmentation.assignments.select(ASSIGNMENT_COLUMNS), run.purchase_model)
    write_frame(with_horizon(frame, run.horizon, CLV_COLUMNS), path, raw=raw)


# --------------------------------------------------------------------------- cross-sell


CROSSSELL_METRIC_HEADERS = {"model": "clvx", "random": "baseline: random", "popularity": "baseline: popularity",
                            "segment_popularity": "baseline: segment popularity", "vs_popularity": "x popularity"}


def crosssell_metrics_frame(bt) -> pl.DataFrame:
    forecasts = {"model": bt.model, **bt.baselines}
    names, values = [], {k: [] for k in forecasts}
    for metric in ("hit_rate", "precision", "recall", "revenue_captured"):
        for k in sorted(bt.model.hit_rate):
            names.append(f"{metric}@{k}")
            for key, m in forecasts.items():
                values[key].append(getattr(m, metric)[k])
    names.append("coverage")
    for key, m in forecasts.items():
        values[key].append(m.coverage)
    frame = pl.DataFrame({"metric": names, **values})
    return frame.with_columns((pl.col("model") / pl.col("popularity")).alias("vs_popularity"))


def _ranking_dict(m) -> dict:
    return {
        "hit_rate": {str(k): v for k, v in m.hit_rate.items()},
        "precision": {str(k): v for k, v in m.precision.items()},
        "recall": {str(k): v for k, v in m.recall.items()},
        "revenue_captured": {str(k): v for k, v in m.revenue_captured.items()},
        "coverage": m.coverage,
    }


def crosssell_backtest_dict(bt) -> dict:
    return {
        "calibration_end": bt.calibration_end,
        "as_of": bt.as_of,
        "n_customers": bt.n_customers,
        "n_products": bt.n_products,
        **_ranking_dict(bt.model),
        "baselines": {k: _ranking_dict(v) for k, v in bt.baselines.items()},
        "warnings": list(bt.warnings),
    }


RANKING_HEADERS = {
    "penetration": "% of segment\nown it",
    "population_penetration": "% of all\nown it",
    "index": "index",
    "white_space": "non-owners",
    "expected_buyers": "expected\nbuyers",
    "expected_revenue": "expected\nrevenue",
}


def ranking_sample_note(run) -> str:
    """What a reader of the segment ranking must know when its expectations come from a sample of customers, else ""."""
    if run.ranking_customers is None:
        return ""
    return (f" Expected buyers and revenue are estimated from {run.ranking_customers:,} of the {len(run.model.own.customers):,} "
            "customers (the same number drawn from each segment, weighted up to its size): scoring every customer against "
            "every product of a catalogue this wide would take too long; owners and non-owners are counted over everyone.")


def crosssell_ranking(run, emitter: Emitter) -> None:
    s = horizon_suffix(run.offer_horizon)
    ranking = with_horizon(run.ranking, run.offer_horizon, OFFER_COLUMNS)
    if emitter.format.value == "table":  # the timing names the companion; files keep it in a column of its own
        ranking = ranking.drop("companion", "companion_description", strict=False)
    emitter.rows(
        ranking,
        title="Cross-sell: products to push per segment",
        caption=(
            f"Top {ranking['rank'].max() or 0} products per segment by expected revenue over {run.offer_horizon.label} from the segment's "
            "non-owners: expected buyers = the sum of their probabilities of buying it within the horizon (the offer score "
            "calibrated on the log's last days, times P(they buy at all) from BG/NBD); revenue = buyers x what a new buyer "
            "spent on it in those days. "
            "index = segment penetration / overall penetration, shrunk toward 1 for products with few owners. timing: at checkout "
            "when most co-owners of the product and its most frequent companion bought both in one order, else a follow-up the "
            "median days after buying the companion." + ranking_sample_note(run)
        ),
        headers={(f"{k}_{s}" if k in OFFER_COLUMNS else k): v for k, v in RANKING_HEADERS.items()},
        decimals={"index": 2, f"expected_buyers_{s}": 1},
        noun="rows",
    )


def export_rows(frame: pl.DataFrame, path: Path, noun: str, reporter: Reporter, *, raw: bool = False) -> None:
    """``frame`` to ``path`` (see :func:`write_frame`), and "Wrote N <noun> to <path>." once the file is in place."""
    from present.files import when_written

    write_frame(frame, path, raw=raw)
    n = frame.height
    when_written(lambda: reporter.info(f"Wrote {n:,} {noun} to {path}."))


def association_rules(rules: pl.DataFrame, emitter: Emitter, reporter: Reporter) -> None:
    """The rules of ``clvx rules``: a table on the terminal, the cross-sell ``--rules`` file's rows otherwise."""
    from present.files import when_written

    if emitter.output is not None:
        n, path = rules.height, emitter.output
        when_written(lambda: reporter.info(f"Wrote {n:,} association rules to {path}."))
    if emitter.format.value == "table":  # the names and the timing's inputs stay in files
        rules = rules.drop("antecedent_description", "consequent_description", "same_order_owners", "bought_after",
                           "median_days_after", strict=False)
    emitter.rows(
        rules,
        title="Association rules: customers who bought the antecedent also bought the consequent",
        caption=("support = share of customers owning both; confidence = share of the antecedent's owners owning the consequent; "
                 "lift = confidence / the consequent's share of customers. timing: at checkout when most co-owners bought both "
                 "in one order, else a follow-up the median days after the antecedent."),
        noun="rules",
        priority=("consequent", "confidence", "lift"),
    )


def excluded_products(excluded: pl.DataFrame, reporter: Reporter) -> None:
    if excluded.height == 0:
        return
    by_reason = excluded.group_by("reason").agg(pl.len(), pl.col("product_id").sort().head(6)).sort("len", descending=True)
    parts = [
        f"{row['len']} {row['reason']} ({terminal_text(', '.join(row['product_id']))}{', ...' if row['len'] > 6 else ''})"
        for row in by_reason.iter_rows(named=True)
    ]
    reporter.info(f"Not products, left out: {excluded.height} codes, {int(excluded['lines'].sum()):,} lines: " + "; ".join(parts) + ".")


EXPORT_FORMATS = {".csv": Format.csv, ".json": Format.json, ".parquet": Format.parquet, ".pq": Format.parquet}


def export_format(path: Path) -> Format:
    """The file format of a data export (``--assignments``, ``--targets``, ``--rules``) from its extension.

    Call it before the work to refuse a bad name early; a plain-text table is no export.
    ``-`` (standard output) is CSV.
    """
    if str(path) == "-" or (path.exists() and not path.is_file() and not path.is_dir()):
        return Format.csv  # stdout, a device or a pipe
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the format of '{path}' from its extension '{path.suffix}'; use .csv, .json or .parquet (or .pq)")
    return fmt


def write_frame(frame: pl.DataFrame, path: Path, *, raw: bool = False) -> None:
    """A frame to a file in the format of its extension; ``raw`` CSV skips the spreadsheet-formula guard."""
    fmt = export_format(path)
    if fmt is Format.csv:
        atomic_write(path, lambda tmp: write_csv_blocks(frame, tmp, raw=raw))
    else:
        atomic_write_bytes(path, frame_bytes(frame, fmt, raw=raw))


# --------------------------------------------------------------------------- campaign

MEASURE_HEADERS = {
    "n_treatment": "treated", "n_control": "control", "conversion_treatment": "conversion\ntreated",
    "conversion_control": "conversion\ncontrol", "revenue_per_customer_treatment": "revenue /\ncustomer\ntreated",
    "revenue_per_customer_control": "revenue /\ncustomer\ncontrol", "incremental_revenue": "incremental\nrevenue",
    "incremental_revenue_lower_95": "95% low", "incremental_revenue_upper_95": "95% high", "roi": "ROI",
    "roi_lower_95": "ROI\n95% low", "roi_upper_95": "ROI\n95% high",
}


def campaign_dict(result) -> dict:
    m = result.measurement
    return {"start": result.start, "end": result.end, "n_treatment": m.n_treatment, "n_control": m.n_control,
            "n_bootstrap": m.n_bootstrap, "cost_per_contact": m.cost_per_contact, "margin": m.margin, "rows": m.table.to_dicts()}


def campaign_measurement(result, emitter: Emitter) -> None:
    """Treatment against control: a table (overall first), or one row per level in files."""
    m = result.measurement
    table = m.table
    if emitter.format.value == "json":
        emitter.obj(campaign_dict(result), [], {"measurement": table})
        return
    caption = (
        f"{m.n_treatment:,} treated and {m.n_control:,} control customers, purchases {result.start} to {result.end}. Conversion = "
        "share who bought a product offered to them (per product: that product); revenue per customer counts every purchase "
        "(per product: that product's); incremental revenue = (treated - control revenue per customer) x treated, with a 95% "
        f"bootstrap interval over customers ({m.n_bootstrap:,} resamples); ROI = (incremental revenue x margin {m.margin:.0%} - cost) / cost "
        f"at {m.cost_per_contact:,.2f} per contact. Not significant: the interval spans zero."
    )
    emitter.rows(table, title="Campaign: treatment against control", caption=caption, headers=MEASURE_HEADERS,
                 decimals={"roi": 2, "roi_lower_95": 2, "roi_upper_95": 2, "conversion_treatment": 3, "conversion_control": 3}, noun="rows",
                 priority=("key", "verdict", "incremental_revenue", "incremental_revenue_lower_95", "incremental_revenue_upper_95", "roi",
                           "conversion_treatment", "conversion_control"))

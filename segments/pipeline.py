"""From a validated transaction log to segments: RFM, CLV models, features, clustering."""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import polars as pl
from scipy import sparse

from clv.backtest import HoldoutBacktest
from clv.load import DataQuality, Transactions
from clv.models import (
    GammaGamma,
    GammaGammaParams,
    Horizon,
    PurchaseParams,
    churn_risk,
    expected_purchases,
    float_columns,
    purchase_estimator,
    score_customers,
)
from clv.rfm import Period, ScoreBins, collect, exact_sum, rfm_summary, score_rfm
from segments.associations import association_rules, build_ownership, non_product_ids, validate_pattern
from segments.cluster import K_RANGE, Segmentation, customer_features, segment_customers
from segments.crosssell import (
    CrossSellBacktest,
    CrossSellModel,
    backtest_rankings,
    build_model,
    customer_targets,
    explain_targets,
    segment_ranking,
)

CLV_HORIZON = Horizon.parse("12m")
NEAR_TERM = Horizon.parse("90d")

class Step(Protocol):
    """Reports a step of a run; ``total`` (when known) is how many units of work ``advance`` will count."""

    def __call__(self, description: str, total: float | None = None) -> AbstractContextManager[Any]: ...


def no_step(description: str, total: float | None = None) -> AbstractContextManager[Any]:
    return nullcontext()


@dataclass(frozen=True)
class SegmentRun:
    segmentation: Segmentation
    purchase_model: PurchaseParams  # the model behind P(alive), churn and CLV: its ``label`` names it
    gamma_gamma: GammaGammaParams
    bins: ScoreBins
    period: Period
    discount_rate: float
    horizon: Horizon  # of the CLV the segments are built on and profiled by

    @property
    def bgnbd(self) -> PurchaseParams:
        """The purchase model's fit, under its name from before there were three models."""
        return self.purchase_model


def customer_categories(tx: Transactions) -> pl.DataFrame | None:
    """(customer_id, category) pairs bought: the category column, else product names, else ids.

    ``category`` is Categorical: the pairs are deduplicated on its small integer codes
    rather than on text, which takes a third less memory at the peak of a large run.
    """
    for column in ("category", "description", "product_id"):
        if tx.has(column):
            return collect(
                tx.frame.filter(pl.col("amount") > 0)
                .select("customer_id", pl.col(column).str.strip_chars().cast(pl.Categorical).alias("category"))
                .drop_nulls()
                .unique()
            )
    return None


def run_segmentation(
    tx: Transactions,
    *,
    period: Period = Period.day,
    method: str = "kmeans",
    k: int | None = None,
    seed: int = 42,
    penalizer: float = 0.0,
    engine: str = "auto",
    discount_rate: float = 0.10,
    horizon: Horizon = CLV_HORIZON,
    models: tuple[PurchaseParams, GammaGammaParams] | None = None,
    step: Step = no_step,
    model: str = "bgnbd",
) -> SegmentRun:
    """RFM -> purchase model (``model``) + Gamma-Gamma -> CLV over ``horizon``, 90-day purchases and churn -> segments.

    ``models`` are already fitted on this same RFM summary (e.g. by the forecast
    backtest on the calibration period); without them the models are fitted here.
    """
    with step("Computing RFM"):
        summary = collect(rfm_summary(tx.frame, tx.as_of, period, count_orders=tx.has("order_id")))
    if models is None:
        # Segments and offers use the point estimates only: no Hessian for standard errors.
        estimator = purchase_estimator(model, penalizer=penalizer, engine=engine, standard_errors=False)
        with step(f"Fitting {estimator.label} and Gamma-Gamma"):
            fitted = estimator.fit(summary).params_
            assert not isinstance(fitted, GammaGammaParams)
            bg = fitted
            gg = GammaGamma(penalizer=penalizer, engine=engine, standard_errors=False).fit(summary).params_
    else:
        bg, gg = models
    with step("Scoring customers"):
        scored = score_customers(summary, bg, gg, period_days=period.days, horizon=horizon, annual_discount_rate=discount_rate)
        x, tx_, T = float_columns(scored, "frequency", "recency", "T")
        near = NEAR_TERM.periods(period.days)
        scored = scored.with_columns(
            pl.Series("expected_purchases_90d", expected_purchases(bg, near, x, tx_, T)),
            pl.Series("churn_risk_90d", churn_risk(bg, near, x, tx_, T, scored["p_alive"].to_numpy())),
        )
        scored, bins = score_rfm(scored, period)
        features = customer_features(scored, period.days)
        if "n_orders" not in features.columns:  # no order ids: each purchase period is an order
            features = features.with_columns((pl.col("frequency") + 1).alias("n_orders"))
    choosing_k = method == "kmeans" and k is None
    with step("Clustering customers" if method == "kmeans" else "Grouping customers by RFM segment",
              total=K_RANGE[1] - K_RANGE[0] + 1 if choosing_k else None) as progress:
        categories = customer_categories(tx)
        seg = segment_customers(features, method=method, k=k, seed=seed, categories=categories,
                                advance=getattr(progress, "advance", None))
    return SegmentRun(seg, bg, gg, bins, period, discount_rate, horizon)


# --------------------------------------------------------------------------- cross-sell

CROSS_SELL_HORIZON = Horizon.parse("90d")


@dataclass(frozen=True)
class CrossSellRun:
    segments: SegmentRun
    model: CrossSellModel
    ranking: pl.DataFrame
    excluded: pl.DataFrame  # product_id, reason, lines, revenue
    products: pl.DataFrame  # product_id with description / category when known
    offer_horizon: Horizon  # of the offers' expected buyers and revenue


def product_info(tx: Transactions) -> pl.DataFrame:
    """One row per product: its most frequent description and category, when the log has them."""
    extra = [c for c in ("description", "category") if tx.has(c)]
    lines = tx.frame.filter(pl.col("product_id").is_not_null())
    if not extra:
        return collect(lines.select("product_id").unique().sort("product_id"))
    aggs = [pl.col(c).drop_nulls().str.strip_chars().mode().sort().first().alias(c) for c in extra]
    return collect(lines.group_by("product_id").agg(aggs).sort("product_id"))


def _purchase_lines(tx: Transactions) -> pl.LazyFrame:
    cols = ["customer_id", "product_id", "date", "amount", *(c for c in ("order_id",) if tx.has(c))]
    return tx.frame.filter(pl.col("product_id").is_not_null() & (pl.col("amount") > 0)).select(cols)


def run_crosssell(
    tx: Transactions,
    *,
    exclude_products: str | None = None,
    offer_horizon: Horizon = CROSS_SELL_HORIZON,
    top: int = 5,
    step: Step = no_step,
    **segment_options,
) -> CrossSellRun:
    """Segments, then the cross-sell scorer on their non-excluded purchases, then the segment x product ranking."""
    if not tx.has("product_id"):
        from clv.errors import InputError, option

        raise InputError(f"cross-sell needs a product column; name it with {option('product_col')}")
    validate_pattern(exclude_products)
    seg = run_segmentation(tx, step=step, **segment_options)
    with step("Counting products bought together"):
        products = product_info(tx)
        all_lines = tx.frame.filter(pl.col("product_id").is_not_null()).select("product_id", "amount")
        excluded = non_product_ids(all_lines.join(products.lazy(), on="product_id", how="left"), exclude_products)
        excluded = excluded.join(
            collect(all_lines.group_by("product_id").agg(pl.len().alias("lines"), exact_sum(pl.col("amount")).alias("revenue"))),
            on="product_id", how="left",
        )
        lines = _purchase_lines(tx).join(excluded.lazy().select("product_id"), on="product_id", how="anti")
        typical = collect(lines.group_by("product_id").agg(pl.col("amount").median().alias("value")))
        assignments = seg.segmentation.assignments.sort("customer_id")
        x, tx_, T = float_columns(assignments, "frequency", "recency", "T")
        buys = 1.0 - churn_risk(seg.purchase_model, offer_horizon.periods(seg.period.days), x, tx_, T)  # P(a purchase in the horizon)
        customers = assignments.select("customer_id", "segment").with_columns(pl.Series("p_active", buys))
        own = build_ownership(lines, customers["customer_id"])
        categories = products.select("product_id", "category") if "category" in products.columns else None
        model = build_model(own, customers, typical, categories=categories)
    ranking = segment_ranking(model, top=top, products=products if products.width > 1 else None)
    order = {name: i for i, name in enumerate(seg.segmentation.profile["segment"].to_list())}
    ranking = ranking.sort(pl.col("segment").replace_strict(order, return_dtype=pl.Int32), "rank")
    return CrossSellRun(seg, model, ranking, excluded, products, offer_horizon)


def crosssell_targets(run: CrossSellRun, *, top_k: int = 5, max_offers: int | None = None, allow_substitutes: bool = False) -> pl.DataFrame:
    """Offers per customer with reasons, at most ``min(top_k, max_offers)`` each."""
    k = top_k if max_offers is None else min(top_k, max_offers)
    targets = customer_targets(run.model, top_k=k, allow_substitutes=allow_substitutes)
    return explain_targets(run.model, targets).sort("customer_id", "rank")


def crosssell_rules(run: CrossSellRun) -> pl.DataFrame:
    return association_rules(run.model.own, run.model.pairs)


def holdout_spend(lines: pl.LazyFrame, customers: pl.Series, products: pl.Series) -> pl.DataFrame:
    """Spend per (customer index ``_u``, product index ``_j``), summed exactly so row order never changes it."""
    return collect(
        lines.join(pl.LazyFrame({"customer_id": customers, "_u": np.arange(len(customers))}), on="customer_id")
        .join(pl.LazyFrame({"product_id": products, "_j": np.arange(len(products))}), on="product_id")
        .group_by("_u", "_j")
        .agg(exact_sum(pl.col("amount")).alias("amount"))
    )


def crosssell_backtest(
    tx: Transactions,
    calibration_end: dt.date,
    *,
    exclude_products: str | None = None,
    seed: int = 42,
    **options,
) -> CrossSellBacktest:
    """Build targets from the log up to ``calibration_end``; score them on first-time purchases after it.

    New purchases are products a calibration customer bought in the holdout and had
    not bought before; products first sold in the holdout cannot be recommended and
    are left out of the truth.
    """
    cut = dt.datetime.combine(calibration_end + dt.timedelta(days=1), dt.time())
    calibration = replace(tx, frame=tx.frame.filter(pl.col("date") < cut), quality=replace(tx.quality, as_of=calibration_end))
    run = run_crosssell(calibration, exclude_products=exclude_products, seed=seed, **options)
    own = run.model.own
    holdout = holdout_spend(_purchase_lines(tx).filter(pl.col("date") >= cut), own.customers, own.products)
    shape = own.X.shape
    bought = sparse.csr_matrix((holdout["amount"].to_numpy(), (holdout["_u"].to_numpy(), holdout["_j"].to_numpy())), shape=shape)
    new_revenue = bought - bought.multiply(own.X > 0)
    new_revenue.eliminate_zeros()
    truth = (new_revenue > 0).astype(np.float64)
    model_metrics, baselines, n = backtest_rankings(run.model, truth, new_revenue, seed)
    return CrossSellBacktest(calibration_end, tx.as_of, n, shape[1], model_metrics, baselines)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows; built by the pipeline, read here."""

    title: str
    source: str
    as_of: dt.date
    period: str
    columns: str
    quality: DataQuality
    segments: SegmentRun
    customers: pl.DataFrame  # segment assignments with CLV columns
    cross_sell: CrossSellRun | None
    rules: pl.DataFrame | None
    backtest: HoldoutBacktest | None
    cross_sell_backtest: CrossSellBacktest | None
    discount_rate: float
    clvx_version: str


def build_report(
    tx: Transactions,
    *,
    title: str,
    calibration_end: dt.date | None = None,
    exclude_products: str | None = None,
    clvx_version: str = "",
    step: Step = no_step,
    **options,
) -> ReportData:
    """Everything a report shows: segments, CLV, cross-sell when products are known, backtests on request."""
    from clv.backtest import holdout_backtest

    period = options.get("period", Period.day)
    cross = None
    if tx.has("product_id"):
        cross = run_crosssell(tx, exclude_products=exclude_products, step=step, **options)
        seg = cross.segments
    else:
        seg = run_segmentation(tx, step=step, **options)
    backtest = cross_backtest = None
    if calibration_end is not None:
        with step("Backtesting the forecast"):
            backtest = holdout_backtest(tx.frame, calibration_end, tx.as_of, period, penalizer=options.get("penalizer", 0.0),
                                        engine=options.get("engine", "auto"), model=options.get("model", "bgnbd"))
        if cross is not None:
            with step("Backtesting cross-sell"):
                cross_backtest = crosssell_backtest(tx, calibration_end, exclude_products=exclude_products,
                                                    models=(backtest.purchase_model, backtest.gamma_gamma), **options)
    source = tx.sources[0] if len(tx.sources) == 1 else f"{len(tx.sources)} files"
    return ReportData(
        title=title,
        source=source.rsplit("/", 1)[-1],
        as_of=tx.as_of,
        period=period.value,
        columns=tx.columns.describe(),
        quality=tx.quality,
        segments=seg,
        customers=seg.segmentation.assignments,
        cross_sell=cross,
        rules=crosssell_rules(cross) if cross is not None else None,
        backtest=backtest,
        cross_sell_backtest=cross_backtest,
        discount_rate=seg.discount_rate,
        clvx_version=clvx_version,
    )

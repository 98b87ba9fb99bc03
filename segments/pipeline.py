"""From a validated transaction log to segments: RFM, CLV models, features, clustering."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import polars as pl

from clv.load import Transactions
from clv.models import BGNBD, BGNBDParams, GammaGamma, GammaGammaParams, Horizon, expected_purchases, score_customers
from clv.rfm import Period, ScoreBins, collect, rfm_summary, score_rfm
from segments.cluster import Segmentation, customer_features, segment_customers

CLV_HORIZON = Horizon.parse("12m")
NEAR_TERM = Horizon.parse("90d")

Step = Callable[[str], AbstractContextManager]


@dataclass(frozen=True)
class SegmentRun:
    segmentation: Segmentation
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams
    bins: ScoreBins
    period: Period
    discount_rate: float


def customer_categories(tx: Transactions) -> pl.DataFrame | None:
    """(customer_id, category) pairs bought: the category column, else product names, else ids."""
    for column in ("category", "description", "product_id"):
        if tx.has(column):
            return collect(
                tx.frame.filter(pl.col("amount") > 0)
                .select("customer_id", pl.col(column).str.strip_chars().alias("category"))
                .drop_nulls()
                .unique()
            )
    return None


def order_counts(tx: Transactions, summary: pl.DataFrame) -> pl.DataFrame:
    """Orders per customer: distinct order ids when known, else purchase periods."""
    if tx.has("order_id"):
        return collect(
            tx.frame.filter(pl.col("amount") > 0).group_by("customer_id").agg(pl.col("order_id").n_unique().cast(pl.Int64).alias("n_orders"))
        )
    return summary.select("customer_id", (pl.col("frequency") + 1).alias("n_orders"))


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
    step: Step = lambda _: nullcontext(),
) -> SegmentRun:
    """RFM -> BG/NBD + Gamma-Gamma -> 12-month CLV and 90-day purchases -> segments and profile."""
    with step("Computing RFM"):
        summary = collect(rfm_summary(tx.frame, tx.as_of, period))
    with step("Fitting BG/NBD and Gamma-Gamma"):
        bg = BGNBD(penalizer=penalizer, engine=engine).fit(summary).params_
        gg = GammaGamma(penalizer=penalizer, engine=engine).fit(summary).params_
    with step("Scoring customers"):
        scored = score_customers(summary, bg, gg, period_days=period.days, horizon=CLV_HORIZON, annual_discount_rate=discount_rate)
        x, tx_, T = (scored[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
        scored = scored.with_columns(pl.Series("expected_purchases_90d", expected_purchases(bg, NEAR_TERM.periods(period.days), x, tx_, T)))
        scored, bins = score_rfm(scored, period)
        features = customer_features(scored, period.days).join(order_counts(tx, summary), on="customer_id", how="left")
        features = features.with_columns(pl.col("n_orders").fill_null(pl.col("frequency") + 1))
    with step("Clustering customers" if method == "kmeans" else "Grouping customers by RFM segment"):
        categories = customer_categories(tx)
        seg = segment_customers(features, method=method, k=k, seed=seed, categories=categories)
    return SegmentRun(seg, bg, gg, bins, period, discount_rate)

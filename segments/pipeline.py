"""From a validated transaction log to segments: RFM, CLV models, features, clustering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import polars as pl
from scipy import sparse

from clv import threads
from clv.backtest import HoldoutBacktest
from clv.diagnostics import HoldoutDiagnostics, holdout_diagnostics
from clv.likelihood import load_libraries
from clv.load import DataQuality, Transactions
from clv.models import (
    SUMMARY_KEYS,
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
from clv.scalars import to_int
from segments import _sklearn
from segments.aggregates import BOUGHT, CrossSellAggregates, catalogue_of, crosssell_aggregates, crosssell_baskets, holdout_days
from segments.associations import (
    MIN_BUNDLE_SUPPORT,
    TOP_BUNDLES,
    Bundles,
    Ownership,
    RuleBounds,
    association_rules,
    co_owner_pairs,
    excluded_products,
    find_bundles,
    order_numbers,
    ownership_of,
    pair_timing,
    rule_min_co_owners,
    scaled_timing,
    strong_pairs,
    timing_label,
    validate_pattern,
    with_names,
)
from segments.cluster import K_RANGE, Segmentation, customer_features, segment_customers
from segments.crosssell import (
    RIDGE,
    RIDGES,
    Calibration,
    CrossSellBacktest,
    CrossSellModel,
    backtest_rankings,
    build_model,
    calibration_warnings,
    choose_ridge,
    customer_spend_scale,
    customer_targets,
    explain_targets,
    fit_calibration,
    item_weights_for,
    offer_calibration,
    offer_relations,
    score_quantiles,
    segment_ranking,
    segment_ranking_calibration,
    table_sample,
    typical_order_values,
    uncalibrated,
    without_single_buyer_purchases,
    without_single_buyers,
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
    """(customer_id, category) pairs bought: the category column, else each product's name in the catalogue, else ids.

    A product's name is its most frequent description (:func:`segments.aggregates.catalogue_of`),
    so a database computes the same pairs from its products and catalogue aggregates.
    ``category`` is Categorical: the pairs are deduplicated on its small integer codes
    rather than on text, which takes a third less memory at the peak of a large run.
    """
    bought = tx.frame.filter(pl.col("amount") > 0)
    if tx.has("category"):
        pairs = bought.select("customer_id", pl.col("category").str.strip_chars())
    elif tx.has("product_id") and tx.has("description"):
        names = catalogue_of(tx).select("product_id", pl.col("description").alias("category"))
        pairs = bought.filter(pl.col("product_id").is_not_null()).select("customer_id", "product_id").unique().join(
            names.lazy(), on="product_id").select("customer_id", "category")
    elif tx.has("product_id"):
        pairs = bought.select("customer_id", pl.col("product_id").str.strip_chars().alias("category"))
    else:
        return None
    return collect(pairs.drop_nulls().with_columns(pl.col("category").cast(pl.Categorical)).unique())


def _load_libraries() -> None:
    """Import the fits' and k-means' libraries: scipy's optimiser and special functions, scikit-learn's k-means.

    About half a second of CPU, nearly all of it Python running module code. Run on a
    thread of its own beside the categories pass (polars, which releases the GIL), after
    the RFM group-by rather than beside it, so that the modules' 60 MB are not resident
    at that step's peak: ``clvx segment`` on 3M lines 5.1 -> 4.6 s wall (median of 5,
    alternating runs) at the same peak within 20 MB; beside the group-by it ran 4.3 s but
    peaked 60 MB higher. It must end before anything else imports: scikit-learn's lean
    import (:mod:`segments._sklearn`) leaves stand-ins in ``sys.modules`` while it runs,
    and Python 3.11 does not load a lazy module (:mod:`clv.lazy`) safely from two threads.
    """
    load_libraries()
    _sklearn.load()


def run_segmentation(
    tx: Transactions | None,
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
    summary: pl.DataFrame | None = None,
    categories: pl.DataFrame | None = None,
    model: str = "bgnbd",
) -> SegmentRun:
    """RFM -> purchase model (``model``) + Gamma-Gamma -> CLV over ``horizon``, 90-day purchases and churn -> segments.

    ``models`` are already fitted on this same RFM summary (e.g. by the forecast
    backtest on the calibration period); without them the models are fitted here.
    Without a log (``tx`` None), ``summary`` is the RFM summary computed elsewhere (a
    database, a warehouse, Spark: it needs ``total_spend``) and ``categories`` the
    (customer_id, category) pairs bought, when known.
    """
    with ExitStack() as stack:
        bought = lambda: categories  # noqa: E731
        loaded = _load_libraries
        if tx is not None:
            with step("Computing RFM"):
                if summary is None:
                    summary = collect(rfm_summary(tx.frame, tx.as_of, period, count_orders=tx.has("order_id")))
            loaded = stack.enter_context(threads.beside(_load_libraries))
            # The second pass over the log runs now, while little else is resident (after the fits
            # and the scoring, beside their frames and scikit-learn, it set the run's peak), on a
            # thread of its own: polars' pool takes the cores the fits' one thread leaves.
            bought = stack.enter_context(threads.beside(lambda: customer_categories(tx)))
        assert summary is not None
        loaded()
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
        categories = bought()
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
        # score_rfm's join copied every column: the summary's own copy (and the arrays) would
        # stay resident through the clustering, whose end is near the run's peak.
        del summary, scored, x, tx_, T
    choosing_k = method == "kmeans" and k is None
    with step("Clustering customers" if method == "kmeans" else "Grouping customers by RFM segment",
              total=K_RANGE[1] - K_RANGE[0] + 1 if choosing_k else None) as progress:
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
    baskets: pl.DataFrame | None = None  # the baskets aggregate of the products cross-sold, when orders are known
    ranking_customers: int | None = None  # customers the ranking's expected buyers and revenue were estimated from, when a sample


def _without_products(frame: pl.DataFrame, excluded: pl.DataFrame) -> pl.DataFrame:
    """``frame``'s rows of products not in ``excluded`` (the frame itself when nothing is excluded: no copy)."""
    if excluded.height == 0:
        return frame
    return frame.join(excluded.select("product_id"), on="product_id", how="anti")


def _purchase_lines(tx: Transactions) -> pl.LazyFrame:
    cols = ["customer_id", "product_id", "date", "amount", *(c for c in ("order_id",) if tx.has(c))]
    return tx.frame.filter(BOUGHT).select(cols)


def _first_purchases(purchases: pl.DataFrame) -> pl.DataFrame:
    """The purchases aggregate's columns ownership reads: one row per customer and product, with its first purchase."""
    return purchases.select("customer_id", "product_id", "first_purchase_at")


def run_crosssell(
    tx: Transactions | None,
    *,
    exclude_products: str | None = None,
    offer_horizon: Horizon = CROSS_SELL_HORIZON,
    top: int = 5,
    step: Step = no_step,
    aggregates: CrossSellAggregates | None = None,
    **segment_options,
) -> CrossSellRun:
    """Segments, then the cross-sell scorer on their non-excluded purchases, then the segment x product ranking.

    Cross-sell reads the log only through its aggregates (:mod:`segments.aggregates`):
    computed here from ``tx``, or given as ``aggregates`` (from a database, a warehouse or
    Spark) with the RFM ``summary`` and ``categories`` of :func:`run_segmentation`
    (``tx`` None). The same aggregates give the same offers.
    """
    if tx is not None and not tx.has("product_id"):
        from clv.errors import InputError, option

        raise InputError(f"cross-sell needs a product column; name it with {option('product_col')}")
    validate_pattern(exclude_products)
    days = holdout_days(offer_horizon.days)
    seg = run_segmentation(tx, step=step, **segment_options)
    with step("Counting products bought together"):
        if aggregates is None:
            assert tx is not None
            aggregates = crosssell_aggregates(tx, days)
        else:
            aggregates = aggregates.checked(days)
        catalogue = aggregates.catalogue
        products = catalogue.select("product_id", *(c for c in ("description", "category") if c in catalogue.columns))
        excluded = excluded_products(catalogue, exclude_products).join(
            catalogue.select("product_id", pl.col("n_lines").alias("lines"), "revenue"), on="product_id", how="left")
        purchases = without_single_buyer_purchases(_without_products(aggregates.purchases, excluded))
        baskets = _without_products(aggregates.baskets, excluded) if aggregates.baskets is not None else None
        del aggregates  # the frames above replace its own: one copy of each in memory, not two
        typical = typical_order_values(purchases)
        # The columns read, not a sorted copy of every segment and CLV column for the rest of the run.
        assignments = seg.segmentation.assignments.select("customer_id", "segment", *SUMMARY_KEYS).sort("customer_id")
        x, tx_, T = float_columns(assignments, *SUMMARY_KEYS)
        buys = 1.0 - churn_risk(seg.purchase_model, offer_horizon.periods(seg.period.days), x, tx_, T)  # P(a purchase in the horizon)
        customers = assignments.select("customer_id", "segment").with_columns(pl.Series("p_active", buys))
    with step("Calibrating offer probabilities on the last days of the log", total=1.0) as progress:
        calibration = inner_calibration(purchases, customers, offer_horizon, advance=getattr(progress, "advance", None))
    with step("Fitting the item model", total=1.0) as progress:
        own = without_single_buyers(ownership_of(_first_purchases(purchases), customers["customer_id"], orders=baskets))
        categories = products.select("product_id", "category") if "category" in products.columns else None
        model = build_model(own, customers, typical, categories=categories, products=products, ridge=calibration.ridge,
                            customer_scale=customer_spend_scale(purchases, typical), advance=getattr(progress, "advance", None))
        del purchases  # read by nothing after the models: its memory goes back before the ranking scores every customer
        if calibration.n_purchases:
            calibration = replace(calibration, applied_edges=score_quantiles(model))
        model = replace(model, calibration=calibration)
    with step("Ranking products per segment"):  # every customer scored against every product: seconds on millions
        ranking = segment_ranking(model, top=top, products=products if products.width > 1 else None)
        order = {name: i for i, name in enumerate(seg.segmentation.profile["segment"].to_list())}
        ranking = ranking.sort(pl.col("segment").replace_strict(order, return_dtype=pl.Int32), "rank")
        sample = table_sample(model)
        run = CrossSellRun(seg, model, ranking, excluded, products, offer_horizon, baskets,
                           ranking_customers=None if sample is None else len(sample[0]))
        return replace(run, ranking=ranking_timing(run, ranking))


NO_PRODUCT_LINK = "any time (popular in the segment; no product it follows)"


def _product_index(own, column: str, frame: pl.DataFrame, alias: str) -> pl.DataFrame:
    index = pl.DataFrame({column: own.products, alias: np.arange(len(own.products), dtype=np.int64)})
    return frame.join(index, on=column, how="left", maintain_order="left")


def offer_timing(run: CrossSellRun, offers: pl.DataFrame, *, cited: str, offered: str = "product_id") -> pl.Series:
    """Per offer, when to make it: at checkout, a follow-up N days after buying the ``cited`` product, or any time."""
    own = run.model.own
    frame = _product_index(own, cited, offers.select(cited, offered), "i")
    return timing_of_pairs(run, _product_index(own, offered, frame, "j").select("i", "j"))


def timing_of_pairs(run: CrossSellRun, frame: pl.DataFrame) -> pl.Series:
    """:func:`offer_timing` of offers given by product indices: ``i`` the cited product's (null: none), ``j`` the offer's."""
    own = run.model.own
    pairs = frame.select("i", "j").drop_nulls().unique()
    timed = scaled_timing(pairs.join(pair_timing(own, pairs), on=["i", "j"], how="left").join(
        run.model.pairs.select("i", "j", "co_owners"), on=["i", "j"], how="left"))
    timed = timed.with_columns(own.products.gather(timed["i"]).alias("_ante")).with_columns(timing_label(pl.col("_ante")).alias("timing"))
    out = frame.join(timed.select("i", "j", "timing"), on=["i", "j"], how="left", maintain_order="left")
    return out["timing"].fill_null(NO_PRODUCT_LINK)


def inner_calibration(purchases: pl.DataFrame, customers: pl.DataFrame, horizon: Horizon, *,
                      advance: Callable[[float], None] | None = None) -> Calibration:
    """Fit offer probabilities on an inner split: the log without its last ``horizon`` days, scored on those days.

    ``purchases`` is the purchases aggregate (:mod:`segments.aggregates`) of the products
    cross-sold, split at those days: ``inner_*`` counts the lines before them,
    ``holdout_revenue`` the spend in them. The inner model is built exactly as the real one
    (same products left out, same segments); its customers who bought anything in the
    held-out days show how often a score turns into a first purchase of that product
    within the horizon. ``advance`` is told the share done, that of the inner item models
    (one per candidate lambda, solved together), the bulk of the work.
    """
    horizon_days = holdout_days(horizon.days)
    # Only the columns read below: the split's rows are a large share of the purchases.
    inner = purchases.lazy().filter(pl.col("inner_lines") > 0).select(
        "customer_id", "product_id", "first_purchase_at", "inner_orders", "inner_lines", "inner_revenue").collect()
    later = purchases.lazy().filter(pl.col("holdout_revenue").is_not_null()).select("customer_id", "product_id", "holdout_revenue").collect()
    inner_ids = inner.select("customer_id").unique()
    if inner_ids.height == 0:
        return uncalibrated(horizon_days)
    inner_customers = customers.join(inner_ids, on="customer_id", how="semi").sort("customer_id").with_columns(pl.lit(1.0).alias("p_active"))
    own = without_single_buyers(ownership_of(_first_purchases(inner), inner_customers["customer_id"]))
    typical = typical_order_values(inner, "inner_")
    weights = item_weights_for(own.X, RIDGES, advance=advance)  # every candidate lambda at once: neighbours and Gram blocks shared
    model = build_model(own, inner_customers, typical, customer_scale=customer_spend_scale(inner, typical, "inner_"),
                        weights=weights[RIDGES.index(RIDGE)], scoring_only=True)
    spend = holdout_spend(later.lazy().select("customer_id", "product_id", pl.col("holdout_revenue").alias("amount")),
                          own.customers, own.products)
    bought = sparse.csr_matrix((spend["amount"].to_numpy(), (spend["_u"].to_numpy(), spend["_j"].to_numpy())), shape=own.X.shape)
    new = bought - bought.multiply(own.X > 0)
    new.data = np.maximum(new.data, 0.0)
    new.eliminate_zeros()
    buyers = later.select("customer_id").unique()
    active = np.flatnonzero(own.customers.is_in(buyers["customer_id"].implode()).to_numpy())
    truth = (new > 0).astype(np.float64).tocsr()
    ridge, model = choose_ridge(model, truth, weights=weights)
    return fit_calibration(model, truth, new.tocsr(), active, horizon_days, ridge)


TARGET_COLUMNS = ("customer_id", "segment", "product_id", "rank", "score", "purchase_probability", "expected_revenue", "relation",
                  "reason", "because_of", "timing")


def crosssell_targets(run: CrossSellRun, *, top_k: int = 5, max_offers: int | None = None, allow_substitutes: bool = False,
                      allow_variants: bool = False, advance: Callable[[float], None] | None = None) -> pl.DataFrame:
    """Offers per customer with reasons, their relation to what is owned, names and timing, at most ``min(top_k, max_offers)`` each.

    ``score`` only ranks; ``purchase_probability`` (of a first purchase of the product within
    the offer horizon) and ``expected_revenue`` are calibrated on the log's last days.
    ``timing`` says when to make the offer: at checkout (most co-owners of the cited
    product and the offer bought both in one order) or a follow-up the median number of
    days after buying the cited product.
    """
    k = top_k if max_offers is None else min(top_k, max_offers)
    targets = customer_targets(run.model, top_k=k, allow_substitutes=allow_substitutes, allow_variants=allow_variants, advance=advance)
    # Customer rows follow the sorted ids, so (_u, rank) is the order of (customer_id, rank), sorted on integers.
    offers = offer_relations(run.model, explain_targets(run.model, targets)).sort("_u", "rank")
    segments = run.segments.segmentation.assignments.select("customer_id", "segment")
    offers = offers.join(segments, on="customer_id", how="left", maintain_order="left").with_columns(
        timing_of_pairs(run, offers.select(pl.col("_i").alias("i"), pl.col("_j").alias("j"))).alias("timing"))
    named = with_names(offers.select(*TARGET_COLUMNS), run.products, {"product_id": "description", "because_of": "because_of_description"})
    return named


def ranking_timing(run: CrossSellRun, ranking: pl.DataFrame) -> pl.DataFrame:
    """Add ``companion`` (the product its owners most often own too) and the ``timing`` of offering it after that one."""
    own = run.model.own
    pairs = run.model.pairs
    wanted = _product_index(own, "product_id", ranking.select("product_id").unique(), "j")
    best = (
        pairs.join(wanted, on="j").sort(["j", "co_owners", "i"], descending=[False, True, False])
        .group_by("j", maintain_order=True).first().select("product_id", pl.col("i"))
    )
    best = best.with_columns(own.products.gather(best["i"]).alias("companion"))
    ranking = ranking.join(best.select("product_id", "companion"), on="product_id", how="left", maintain_order="left")
    timing = offer_timing(run, ranking, cited="companion")
    ranking = ranking.with_columns(pl.when(pl.col("companion").is_not_null()).then(timing).alias("timing"))
    return with_names(ranking, run.products, {"companion": "companion_description"})


@dataclass(frozen=True)
class BoundedRules:
    """The association rules kept by ``bounds``, and how many candidate rules there were."""

    rules: pl.DataFrame
    n_candidates: int  # ordered pairs with at least two co-owners
    bounds: RuleBounds

    @property
    def n_dropped(self) -> int:
        return self.n_candidates - self.rules.height


def crosssell_rules(run: CrossSellRun | BasketRun, bounds: RuleBounds = RuleBounds()) -> BoundedRules:
    """Association rules passing ``bounds`` (minimum support and lift, the strongest per antecedent), with names.

    A :class:`BasketRun` (:func:`run_baskets`) holds the same ownership and pairs as the
    cross-sell's model, so both give the same rules.
    """
    if isinstance(run, CrossSellRun):
        own, pairs, n_candidates = run.model.own, run.model.pairs, run.model.pairs.height
    else:
        own, pairs, n_candidates = run.own, run.pairs, run.n_candidates
        if rule_min_co_owners(own.X.shape[0], bounds.min_support) < run.min_co_owners:
            raise ValueError(f"these pairs hold only rules of {run.min_co_owners} co-owners or more; "
                             f"support {bounds.min_support} needs run_baskets(min_support={bounds.min_support})")
    kept = strong_pairs(own, pairs, bounds)
    return BoundedRules(association_rules(own, kept, run.products), n_candidates, bounds)


@dataclass(frozen=True)
class BasketRun:
    """What association rules and bundles are mined from, without segments or item models.

    The ownership, pairs (co-owner counts only), product names, excluded products and
    baskets aggregate are those :func:`run_crosssell` builds from the same log.
    """

    own: Ownership
    pairs: pl.DataFrame  # ordered pairs with at least min_co_owners co-owners (pair_counts, counts only)
    min_co_owners: int  # the fewest co-owners of a rule the bounds it was built for can keep
    n_candidates: int  # ordered pairs with at least MIN_PAIR_COUNT co-owners: the candidate rules
    products: pl.DataFrame  # product_id with description / category when known
    excluded: pl.DataFrame  # product_id, reason, lines, revenue
    baskets: pl.DataFrame | None = None


def run_baskets(tx: Transactions, *, exclude_products: str | None = None, min_support: float = 0.0, step: Step = no_step) -> BasketRun:
    """Ownership of the non-excluded products and its pair counts: the part of :func:`run_crosssell` rules and bundles read.

    Customers are every customer of the log (the rows of its RFM summary), so support's
    denominator is the cross-sell's; products and baskets follow the cross-sell's
    aggregates (:func:`segments.aggregates.crosssell_aggregates`) without the columns only
    its item model reads. Only the pairs a rule of ``min_support`` can come from are
    built (on the retail log at 1% support, 68,620 of 5.9 million); the others are only
    counted, for the number of candidate rules.
    """
    if not tx.has("product_id"):
        from clv.errors import InputError, option

        raise InputError(f"association rules need a product column; name it with {option('product_col')}")
    validate_pattern(exclude_products)
    with step("Counting products bought together"):
        catalogue = catalogue_of(tx).sort("product_id")  # in the order the checked aggregates have
        products = catalogue.select("product_id", *(c for c in ("description", "category") if c in catalogue.columns))
        excluded = excluded_products(catalogue, exclude_products).join(
            catalogue.select("product_id", pl.col("n_lines").alias("lines"), "revenue"), on="product_id", how="left")
        first = collect(_purchase_lines(tx).group_by("customer_id", "product_id").agg(pl.col("date").min().alias("first_purchase_at")))
        first = without_single_buyer_purchases(_without_products(first, excluded))
        baskets = _without_products(crosssell_baskets(tx), excluded) if tx.has("order_id") else None
        customers = collect(tx.frame.select("customer_id").unique()).sort("customer_id")["customer_id"]
        own = without_single_buyers(ownership_of(_first_purchases(first), customers, orders=baskets))
        least = rule_min_co_owners(own.X.shape[0], min_support)
        pairs, n_candidates = co_owner_pairs(own, least)
    return BasketRun(own, pairs, least, n_candidates, products, excluded, baskets)


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
    top_k: int = 5,
    **options,
) -> CrossSellBacktest:
    """Build targets from the log up to ``calibration_end``; score them on first-time purchases after it.

    New purchases are products a calibration customer bought in the holdout and had
    not bought before; products first sold in the holdout cannot be recommended and
    are left out of the truth. The offers' expectations are computed for the holdout's
    length and set beside what happened: per score decile for the ``top_k`` offers per
    customer, and per row of the segment ranking.
    """
    cut = dt.datetime.combine(calibration_end + dt.timedelta(days=1), dt.time())
    calibration = replace(tx, frame=tx.frame.filter(pl.col("date") < cut), quality=replace(tx.quality, as_of=calibration_end))
    holdout_days = max(1, (tx.as_of - calibration_end).days)
    options.setdefault("offer_horizon", Horizon.parse(f"{holdout_days}d"))
    run = run_crosssell(calibration, exclude_products=exclude_products, seed=seed, **options)
    own = run.model.own
    holdout = holdout_spend(_purchase_lines(tx).filter(pl.col("date") >= cut), own.customers, own.products)
    shape = own.X.shape
    bought = sparse.csr_matrix((holdout["amount"].to_numpy(), (holdout["_u"].to_numpy(), holdout["_j"].to_numpy())), shape=shape)
    new_revenue = bought - bought.multiply(own.X > 0)
    new_revenue.data = np.maximum(new_revenue.data, 0.0)
    new_revenue.eliminate_zeros()
    truth = (new_revenue > 0).astype(np.float64)
    model_metrics, baselines, n = backtest_rankings(run.model, truth, new_revenue, seed)
    offers = customer_targets(run.model, top_k=top_k)
    by_decile = offer_calibration(offers, truth.tocsr(), new_revenue.tocsr())
    by_segment = segment_ranking_calibration(run.model, run.ranking, truth.tocsr(), new_revenue.tocsr())
    return CrossSellBacktest(
        calibration_end, tx.as_of, n, shape[1], model_metrics, baselines,
        calibration=by_decile, segment_calibration=by_segment, horizon_days=holdout_days,
        warnings=calibration_warnings(by_decile, by_segment, holdout_days),
    )


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows; built by the pipeline, read here."""

    title: str
    source: str
    as_of: dt.date
    period: str
    columns: str
    quality: DataQuality | None  # None when the report was built from aggregates computed where the log lives
    segments: SegmentRun
    customers: pl.DataFrame  # segment assignments with CLV columns
    cross_sell: CrossSellRun | None
    rules: pl.DataFrame | None
    backtest: HoldoutBacktest | None
    cross_sell_backtest: CrossSellBacktest | None
    discount_rate: float
    clvx_version: str
    bundles: pl.DataFrame | None = None  # sets bought in one order, when orders are known
    campaign: Any = None  # a CampaignMeasurement with its window (start, end), when a campaign is measured
    opted_out: pl.Series | None = None  # customer ids never listed one by one (they still count in totals)
    diagnostics: HoldoutDiagnostics | None = None  # interval coverage, PIT, tracking, deciles on the holdout


def report_from_aggregates(
    aggregates: CrossSellAggregates,
    *,
    title: str,
    source: str,
    summary: pl.DataFrame,
    categories: pl.DataFrame | None = None,
    exclude_products: str | None = None,
    clvx_version: str = "",
    step: Step = no_step,
    **options,
) -> ReportData:
    """The report of a log known only by its aggregates (a database, a warehouse, Spark): segments, CLV and cross-sell.

    The backtests hold back the days after a calibration date, which the aggregates no
    longer have; the rest is what :func:`build_report` shows for the log itself.
    """
    cross = run_crosssell(None, exclude_products=exclude_products, step=step, aggregates=aggregates, summary=summary,
                          categories=categories, **options)
    as_of = aggregates.as_of
    assert as_of is not None
    return ReportData(
        title=title, source=source, as_of=as_of, period=options.get("period", Period.day).value,
        columns="aggregates computed where the log lives", quality=None, segments=cross.segments,
        customers=cross.segments.segmentation.assignments, cross_sell=cross, rules=crosssell_rules(cross).rules,
        bundles=crosssell_bundles(cross).bundles if cross.baskets is not None else None, backtest=None, cross_sell_backtest=None,
        discount_rate=cross.segments.discount_rate, clvx_version=clvx_version,
    )


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
    backtest = cross_backtest = diagnostics = None
    if calibration_end is not None:
        with step("Backtesting the forecast"):
            backtest = holdout_backtest(tx.frame, calibration_end, tx.as_of, period, penalizer=options.get("penalizer", 0.0),
                                        engine=options.get("engine", "auto"), model=options.get("model", "bgnbd"))
        with step("Checking the prediction intervals and tracking on the holdout"):
            diagnostics = holdout_diagnostics(tx.frame, calibration_end, tx.as_of, period, model=backtest.purchase_model.MODEL,
                                              params=backtest.purchase_model.params, seed=options.get("seed", 42))
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
        rules=crosssell_rules(cross).rules if cross is not None else None,
        bundles=crosssell_bundles(cross).bundles if cross is not None and cross.baskets is not None else None,
        backtest=backtest,
        cross_sell_backtest=cross_backtest,
        discount_rate=seg.discount_rate,
        clvx_version=clvx_version,
        diagnostics=diagnostics,
    )


def crosssell_bundles(run: CrossSellRun | BasketRun, *, min_support: float = MIN_BUNDLE_SUPPORT, top: int = TOP_BUNDLES) -> Bundles:
    """Sets of 2-3 products bought together in one order (the cross-sell's products), with names."""
    if run.baskets is None:
        from clv.errors import InputError, option

        raise InputError("bundles are products bought in one order, so they need an order column (name it with "
                         f"{option('order_col')}) or the baskets aggregate (clvx sql baskets)")
    products = (run.model.own if isinstance(run, CrossSellRun) else run.own).products
    index = pl.LazyFrame({"product_id": products, "_j": np.arange(len(products), dtype=np.int64)})
    per = collect(run.baskets.lazy().join(index, on="product_id", maintain_order="left")
                  .select("_j", "revenue", order_numbers(run.baskets).cast(pl.Int64).alias("_o")))
    n_orders = to_int(per["_o"].max(), null=-1) + 1
    revenue = sparse.csr_matrix((per["revenue"].to_numpy(), (per["_o"].to_numpy(), per["_j"].to_numpy())), shape=(n_orders, len(products)))
    found = find_bundles(revenue, products, min_support=min_support, top=top)
    named = with_names(found.bundles, run.products, {"product_1": "description_1", "product_2": "description_2", "product_3": "description_3"})
    return replace(found, bundles=named)

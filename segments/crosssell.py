"""Cross-sell: which products to offer whom, and proof that the ranking beats simple baselines.

Score of product j for customer u (never a product u owns; never a substitute of
one unless allowed):

    item(u, j)    = (sum over owned i of conf(i -> j)^ITEM_POWER)^(1 / ITEM_POWER),  conf = co_owners / (owners_i + SHRINK)
    segment(u, j) = share of u's segment that owns j
    score(u, j)   = P(u buys in the horizon) * (ITEM_WEIGHT * item + (1 - ITEM_WEIGHT) * segment)

``item`` is a soft maximum of the confidences from the products the customer owns
(a power mean: close to the strongest association, a little higher when several
agree, and, unlike a noisy-or, not saturated by many weak links to bestsellers),
with confidences shrunk toward 0 when the antecedent has few owners; ``segment`` carries
the customer's group when their own history says little. P(buys in the horizon) is
the purchase model's closed form, 1 - P(no purchase in the horizon) (``clv.models.churn_risk``). Expected revenue of an offer is its score
times the product's median line value.

The segment x product table ranks, per segment, the products with the most expected
revenue from the segment's non-owners: ``expected_buyers`` is the sum of their offer
scores, times the median line value; its ``index`` (segment penetration /
population penetration) is shrunk toward 1 with ``INDEX_PSEUDO_COUNT`` pseudo-owners so
that a product bought by two people does not top the list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from clv.errors import InputError
from segments.associations import Ownership, pair_counts, substitute_pairs

ITEM_WEIGHT = 0.75
ITEM_POWER = 8.0
SHRINK = 5.0
INDEX_PSEUDO_COUNT = 10.0
CHUNK_CELLS = 4_000_000  # customers x products scored at once
EVAL_KS = (1, 3, 5, 10)
MIN_CONFIDENCE = 0.005
MAX_OFFERS = 100  # offers per customer, and products per segment in the ranking


def _check_count(name: str, value: object, high: int) -> None:
    """A size-like setting: a whole number from 1 to ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= high:
        raise InputError(f"{name} = {value!r} must be a whole number from 1 to {high}")


@dataclass(frozen=True)
class CrossSellModel:
    own: Ownership
    conf_power: sparse.csr_matrix  # conf(i -> j) ** ITEM_POWER, products x products
    conf: sparse.csr_matrix
    segment_of: np.ndarray  # segment code per customer
    segments: list[str]
    segment_penetration: np.ndarray  # segments x products
    population_penetration: np.ndarray
    p_active: np.ndarray  # per customer
    typical_value: np.ndarray  # per product: median line value
    substitutes: sparse.csr_matrix | None
    pairs: pl.DataFrame


def segment_onehot(codes: np.ndarray, n_segments: int) -> sparse.csr_matrix:
    """Segments x customers indicator: ``onehot @ per_customer`` sums a quantity per segment."""
    return sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n_segments, len(codes)))


def build_model(
    own: Ownership,
    customers: pl.DataFrame,
    typical_values: pl.DataFrame,
    *,
    categories: pl.DataFrame | None = None,
) -> CrossSellModel:
    """Fit the scorer: pair counts, shrunk confidences, segment penetration, substitutes.

    ``customers`` has ``customer_id, segment, p_active`` in ``own.customers`` order;
    ``typical_values`` has ``product_id, value``: each product's median line value;
    ``categories`` has ``product_id, category``.
    """
    pairs = pair_counts(own)
    owners = own.owners
    n_p = len(owners)
    conf_values = (pairs["co_owners"] / (pl.Series(owners)[pairs["i"]] + SHRINK)).to_numpy()
    keep = conf_values >= MIN_CONFIDENCE
    i, j = pairs["i"].to_numpy()[keep], pairs["j"].to_numpy()[keep]
    conf = sparse.csr_matrix((conf_values[keep], (i, j)), shape=(n_p, n_p))
    conf_power = sparse.csr_matrix((conf_values[keep] ** ITEM_POWER, (i, j)), shape=(n_p, n_p))

    segments = sorted(customers["segment"].unique().to_list())
    seg_code = customers["segment"].replace_strict({s: k for k, s in enumerate(segments)}, return_dtype=pl.Int64).to_numpy()
    onehot = segment_onehot(seg_code, len(segments))
    seg_sizes = np.asarray(onehot.sum(axis=1)).ravel()
    seg_pen = np.asarray((onehot @ own.X).todense()) / seg_sizes[:, None]
    typical = (
        pl.DataFrame({"product_id": own.products})
        .join(typical_values, on="product_id", how="left")["value"]
        .fill_null(0.0)
        .to_numpy()
    )
    subs = substitute_pairs(own, pairs, categories) if categories is not None else None
    return CrossSellModel(
        own=own,
        conf_power=conf_power,
        conf=conf,
        segment_of=seg_code,
        segments=segments,
        segment_penetration=seg_pen,
        population_penetration=owners / own.X.shape[0],
        p_active=customers["p_active"].to_numpy(),
        typical_value=typical,
        substitutes=subs,
        pairs=pairs,
    )


def _chunks(n_customers: int, n_products: int) -> list[slice]:
    size = max(1, CHUNK_CELLS // max(n_products, 1))
    return [slice(s, min(s + size, n_customers)) for s in range(0, n_customers, size)]


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best per row, best first; ties broken by product order."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


def _masked(scores: np.ndarray, owned: sparse.csr_matrix, substitutes: sparse.csr_matrix | None) -> np.ndarray:
    scores[owned.nonzero()] = -np.inf
    if substitutes is not None:
        blocked = (owned @ substitutes).nonzero()
        scores[blocked] = -np.inf
    return scores


def model_scores(model: CrossSellModel, rows: slice, *, allow_substitutes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(score, preference)`` for a block of customers: preference is the part before P(buys)."""
    owned = model.own.X[rows]
    item = np.minimum(np.asarray((owned @ model.conf_power).todense()) ** (1.0 / ITEM_POWER), 1.0)
    seg = model.segment_penetration[model.segment_of[rows]]
    preference = ITEM_WEIGHT * item + (1 - ITEM_WEIGHT) * seg
    preference = _masked(preference, owned, None if allow_substitutes else model.substitutes)
    return preference * model.p_active[rows][:, None], preference


def customer_targets(model: CrossSellModel, *, top_k: int = 5, allow_substitutes: bool = False) -> pl.DataFrame:
    """The ``top_k`` offers per customer: ``customer_id, product_id, rank, score, expected_revenue``."""
    _check_count("top_k", top_k, MAX_OFFERS)
    n, p = model.own.X.shape
    frames = []
    for rows in _chunks(n, p):
        score, _ = model_scores(model, rows, allow_substitutes=allow_substitutes)
        idx, vals = _top_k(score, top_k)
        k = idx.shape[1]
        cust = np.repeat(np.arange(rows.start, rows.stop), k)
        frames.append(pl.DataFrame({"_u": cust, "_j": idx.ravel(), "rank": np.tile(np.arange(1, k + 1), rows.stop - rows.start), "score": vals.ravel()}))
    t = pl.concat(frames).filter(pl.col("score").is_finite() & (pl.col("score") > 0))
    return t.with_columns(
        model.own.customers.gather(t["_u"]).alias("customer_id"),
        model.own.products.gather(t["_j"]).alias("product_id"),
        (pl.col("score") * pl.Series(model.typical_value).gather(t["_j"])).alias("expected_revenue"),
    )


def explain_targets(model: CrossSellModel, targets: pl.DataFrame) -> pl.DataFrame:
    """Add a ``reason`` a campaign manager can read, from the strongest owned antecedent or the segment."""
    X = model.own.X.tocoo()
    owned = pl.DataFrame({"_u": X.row.astype(np.int64), "_i": X.col.astype(np.int64)})
    conf = model.conf.tocoo()
    rules = pl.DataFrame({"_i": conf.row.astype(np.int64), "_j": conf.col.astype(np.int64), "_conf": conf.data})
    raw = model.pairs.select(pl.col("i").alias("_i"), pl.col("j").alias("_j"), "co_owners")
    best = (
        targets.select("_u", "_j")
        .join(owned, on="_u")
        .join(rules, on=["_i", "_j"])
        .join(raw, on=["_i", "_j"], how="left")
        .sort(["_u", "_j", "_conf", "_i"], descending=[False, False, True, False])
        .group_by("_u", "_j", maintain_order=True)
        .first()
    )
    owners = pl.Series(model.own.owners)
    best = best.with_columns(
        model.own.products.gather(best["_i"]).alias("_ante"),
        (pl.col("co_owners") / owners.gather(best["_i"])).alias("_share"),
    )
    seg_share = pl.Series(model.segment_penetration[model.segment_of[targets["_u"].to_numpy()], targets["_j"].to_numpy()])
    out = targets.join(best.select("_u", "_j", "_ante", "_share"), on=["_u", "_j"], how="left", maintain_order="left")
    out = out.with_columns(seg_share.alias("_seg_share"), pl.Series([model.segments[s] for s in model.segment_of[out["_u"].to_numpy()]]).alias("_segment"))
    reason = (
        pl.when(pl.col("_ante").is_not_null() & (pl.col("_share") * ITEM_WEIGHT >= pl.col("_seg_share") * (1 - ITEM_WEIGHT)))
        .then(pl.format("bought {}; {}% of its buyers also buy {}", pl.col("_ante"), (pl.col("_share") * 100).round(0).cast(pl.Int64), pl.col("product_id")))
        .otherwise(pl.format("popular in segment {}: {}% own it", pl.col("_segment"), (pl.col("_seg_share") * 100).round(0).cast(pl.Int64)))
    )
    return out.with_columns(reason.alias("reason")).select("customer_id", "product_id", "rank", "score", "expected_revenue", "reason")


def expected_buyers_by_segment(model: CrossSellModel, *, allow_substitutes: bool = False) -> np.ndarray:
    """Segments x products: the sum of non-owners' offer scores (P(buys) x preference)."""
    n, p = model.own.X.shape
    out = np.zeros((len(model.segments), p))
    for rows in _chunks(n, p):
        score, _ = model_scores(model, rows, allow_substitutes=allow_substitutes)
        score[~np.isfinite(score)] = 0.0
        codes = model.segment_of[rows]
        onehot = segment_onehot(codes, len(model.segments))
        out += onehot @ score
    return out


def segment_ranking(model: CrossSellModel, *, top: int = 5, products: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per segment, the products with the most expected revenue from non-owners (see module docstring)."""
    _check_count("top", top, MAX_OFFERS)
    X = model.own.X
    n_seg = len(model.segments)
    onehot = segment_onehot(model.segment_of, n_seg)
    owners = np.asarray((onehot @ X).todense())
    sizes = np.asarray(onehot.sum(axis=1)).ravel()
    pop = model.population_penetration
    index = (owners + INDEX_PSEUDO_COUNT) / (sizes[:, None] * pop[None, :] + INDEX_PSEUDO_COUNT)
    expected_buyers = expected_buyers_by_segment(model)
    frame = pl.DataFrame(
        {
            "segment": np.repeat(model.segments, X.shape[1]),
            "product_id": np.tile(model.own.products.to_numpy(), n_seg),
            "owners": owners.ravel().astype(np.int64),
            "penetration": model.segment_penetration.ravel(),
            "population_penetration": np.tile(pop, n_seg),
            "index": index.ravel(),
            "white_space": (sizes[:, None] - owners).ravel().astype(np.int64),
            "expected_buyers": expected_buyers.ravel(),
            "expected_revenue": (expected_buyers * model.typical_value[None, :]).ravel(),
        }
    )
    ranked = (
        frame.filter(pl.col("expected_revenue") > 0)
        .sort(["segment", "expected_revenue", "product_id"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("segment").alias("rank"))
        .filter(pl.col("rank") <= top)
    )
    cols = ["segment", "rank", "product_id"]
    if products is not None:
        ranked = ranked.join(products, on="product_id", how="left")
        cols += [c for c in ("description", "category") if c in products.columns]
    return ranked.select(*cols, "owners", "penetration", "population_penetration", "index", "white_space", "expected_buyers", "expected_revenue")


# --------------------------------------------------------------------------- backtest


@dataclass(frozen=True)
class RankingMetrics:
    hit_rate: dict[int, float]
    precision: dict[int, float]
    recall: dict[int, float]
    revenue_captured: dict[int, float]
    coverage: float  # share of the catalogue recommended to someone at the largest k


@dataclass(frozen=True)
class CrossSellBacktest:
    calibration_end: dt.date
    as_of: dt.date
    n_customers: int  # calibration customers who bought something new in the holdout
    n_products: int
    model: RankingMetrics
    baselines: dict[str, RankingMetrics]


def ranking_metrics(recommended: np.ndarray, truth: sparse.csr_matrix, revenue: sparse.csr_matrix, n_products: int) -> RankingMetrics:
    """Metrics of ranked lists (rows: customers, columns: best first) against new purchases."""
    n = recommended.shape[0]
    rows = np.repeat(np.arange(n), recommended.shape[1])
    hits = np.asarray(truth[rows, recommended.ravel()]).reshape(recommended.shape) > 0
    rev = np.asarray(revenue[rows, recommended.ravel()]).reshape(recommended.shape)
    n_new = np.asarray(truth.sum(axis=1)).ravel()
    total_rev = revenue.sum()
    out: dict[str, dict[int, float]] = {"hit_rate": {}, "precision": {}, "recall": {}, "revenue_captured": {}}
    for k in EVAL_KS:
        h = hits[:, :k]
        out["hit_rate"][k] = float(h.any(axis=1).mean())
        out["precision"][k] = float(h.sum(axis=1).mean() / k)
        out["recall"][k] = float((h.sum(axis=1) / n_new).mean())
        out["revenue_captured"][k] = float(rev[:, :k].sum() / total_rev) if total_rev else float("nan")
    coverage = len(np.unique(recommended)) / n_products
    return RankingMetrics(out["hit_rate"], out["precision"], out["recall"], out["revenue_captured"], coverage)


def backtest_rankings(
    model: CrossSellModel, truth: sparse.csr_matrix, revenue: sparse.csr_matrix, seed: int
) -> tuple[RankingMetrics, dict[str, RankingMetrics], int]:
    """The model and three baselines (random, popularity, segment popularity), same customers, same masks."""
    kmax = max(EVAL_KS)
    n, p = model.own.X.shape
    evaluated = np.flatnonzero(np.asarray(truth.sum(axis=1)).ravel() > 0)
    rng = np.random.default_rng(seed)
    lists: dict[str, list[np.ndarray]] = {"model": [], "random": [], "popularity": [], "segment_popularity": []}
    for rows in _chunks(n, p):
        sel = evaluated[(evaluated >= rows.start) & (evaluated < rows.stop)]
        if not len(sel):
            continue
        block = slice(rows.start, rows.stop)
        _, pref = model_scores(model, block)
        pref = pref[sel - rows.start]
        owned = model.own.X[sel]
        lists["model"].append(_top_k(pref, kmax)[0])
        lists["random"].append(_top_k(_masked(rng.random((len(sel), p)), owned, None), kmax)[0])
        lists["popularity"].append(_top_k(_masked(np.tile(model.population_penetration, (len(sel), 1)), owned, None), kmax)[0])
        lists["segment_popularity"].append(_top_k(_masked(model.segment_penetration[model.segment_of[sel]].copy(), owned, None), kmax)[0])
    t, r = truth[evaluated], revenue[evaluated]
    metrics = {name: ranking_metrics(np.vstack(v), t, r, p) for name, v in lists.items()}
    return metrics.pop("model"), metrics, len(evaluated)

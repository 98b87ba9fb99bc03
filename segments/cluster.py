"""Customer segments: cluster value and behaviour, name each segment, profile it.

Features per customer (``FEATURES``): days since the last purchase, repeat
frequency, spend per purchase, P(alive) and predicted 12-month CLV. Counts and
money are heavy-tailed, so they enter as ``log1p``; everything is then scaled to
unit variance, which keeps a handful of big spenders from forming a "segment" of
their own.

Choosing k (``select_k``): for each candidate k, k-means (the best of ``N_INIT``
k-means++ restarts; scikit-learn's own default is one) runs on a fixed-seed
subsample of ``SELECTION_SAMPLE`` customers; a solution is rejected when a segment holds under
``MIN_SEGMENT_SHARE`` of customers or when refitting on another subsample with
another seed does not reproduce it (adjusted Rand index under
``MIN_STABILITY``). In order of silhouette (computed on a fixed-seed sample: the
full score is quadratic), the first k that passes wins.

The final k-means starts from the centres of the chosen solution on the selection
sample (the best of ``N_INIT`` restarts) and refines them with one run of Lloyd's
algorithm on at most ``MAX_FIT_CUSTOMERS`` customers (a fixed-seed sample); every
customer is then assigned to the nearest centre. Restarting on the selection sample
and refining once is as good as restarting on everyone (tested: same inertia within
1%) at a fraction of the cost.

k-means runs on one thread (OpenMP and BLAS capped at 1). Each Lloyd iteration on the
selection sample is a few milliseconds of work: a second OpenMP thread made choosing k
1.8x slower on 2 cores (0.48 s against 0.26 s for the six k's), and only 15% faster
on the 200,000-customer refit. With one thread the sums in each iteration are added in
one order on every machine: the clustering does not depend on the number of cores.

Names come from the RFM vocabulary (:data:`clv.rfm.SEGMENT_GRID`): a segment's
members' mean R and FM scores, rounded, pick the cell, so a "Champions" segment
is one whose members really are recent, frequent and high-spending. When two
segments land in the same cell they get a qualifier from the feature that
separates them most ("Loyal - high spend", "Loyal - low spend").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from clv import threads
from clv.errors import InputError, ModelError, option
from clv.rfm import N_SCORES, SEGMENT_GRID
from segments import _sklearn

FEATURES = ("days_since_last_purchase", "frequency", "spend_per_purchase", "p_alive", "clv")
LOG_FEATURES = ("days_since_last_purchase", "frequency", "spend_per_purchase", "clv")
K_RANGE = (3, 8)
N_INIT = 4
MIN_SEGMENT_SHARE = 0.02
MIN_STABILITY = 0.75
SELECTION_SAMPLE = 10_000
SILHOUETTE_SAMPLE = 2_000
STABILITY_FRACTION = 0.8
MAX_FIT_CUSTOMERS = 200_000
MIN_CUSTOMERS = 50
CHURN_P_ALIVE = 0.5
TOP_CATEGORIES = 3
MIN_INDEX = 1.1  # over-indexing below 10% is noise, not a trait
MIN_CATEGORY_BUYERS = 10  # an index from a handful of buyers is luck
WINSOR_QUANTILES = (0.005, 0.995)

QUALIFIERS = {
    "spend_per_purchase": ("high spend", "mid spend", "low spend"),
    "frequency": ("frequent", "regular", "occasional"),
    "days_since_last_purchase": ("recent", "lapsing", "lapsed"),
    "p_alive": ("likely active", "uncertain", "likely churned"),
    "clv": ("high value", "mid value", "low value"),
}


@dataclass(frozen=True)
class KCandidate:
    k: int
    silhouette: float
    min_share: float
    stability: float
    accepted: bool
    reason: str


@dataclass(frozen=True)
class SegmentCentres:
    """What assigns any customer to a k-means segment: the features' scaling, the centres and their names.

    Saved with the models (``clvx segment --save``) so that a customer table can be
    segmented where it lives (clvx/spark.py) exactly as ``clvx segment`` did.
    """

    lower: tuple[float, ...]  # winsorising bounds per feature, before standardising
    upper: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    centres: tuple[tuple[float, ...], ...]
    names: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "log_features": list(LOG_FEATURES), "lower": list(self.lower), "upper": list(self.upper),
                "mean": list(self.mean), "scale": list(self.scale), "centres": [list(c) for c in self.centres], "names": list(self.names)}

    @classmethod
    def from_dict(cls, doc: dict) -> SegmentCentres:
        if tuple(doc.get("features", ())) != FEATURES or tuple(doc.get("log_features", ())) != LOG_FEATURES:
            raise InputError(f"the saved segments use features {doc.get('features')}, not clvx's {list(FEATURES)}; save them again with clvx segment --save")
        vectors = [tuple(float(v) for v in doc[key]) for key in ("lower", "upper", "mean", "scale")]
        centres = tuple(tuple(float(v) for v in c) for c in doc["centres"])
        names = tuple(str(n) for n in doc["names"])
        if any(len(v) != len(FEATURES) for v in (*vectors, *centres)) or len(names) != len(centres) or not centres:
            raise InputError("the saved segments are incomplete (a vector of the wrong length); save them again with clvx segment --save")
        lower, upper, mean, scale = vectors
        return cls(lower=lower, upper=upper, mean=mean, scale=scale, centres=centres, names=names)

    def assign(self, features: pl.DataFrame) -> pl.Series:
        """The segment name of each row of :func:`customer_features` output: the nearest centre."""
        X = _scaled(features, np.array(self.lower), np.array(self.upper), np.array(self.mean), np.array(self.scale))
        C = np.array(self.centres)
        distances = (X**2).sum(axis=1)[:, None] - 2 * X @ C.T + (C**2).sum(axis=1)[None, :]
        return pl.Series("segment", np.array(self.names, dtype=object)[np.argmin(distances, axis=1)], dtype=pl.String)


@dataclass(frozen=True)
class Segmentation:
    """Segments for every customer, a profile per segment, and how k was chosen."""

    assignments: pl.DataFrame
    profile: pl.DataFrame
    method: str
    k: int
    candidates: tuple[KCandidate, ...]
    n_fit: int
    seed: int
    centres: SegmentCentres | None = None  # k-means only: what assigns a new customer


def customer_features(scored: pl.DataFrame, period_days: float) -> pl.DataFrame:
    """The clustering features from a scored RFM summary (``clv.models.score_customers``)."""
    return scored.with_columns(
        ((pl.col("T") - pl.col("recency")) * period_days).cast(pl.Float64).alias("days_since_last_purchase"),
        (pl.col("total_spend") / (pl.col("frequency") + 1)).alias("spend_per_purchase"),
    )


def feature_matrix(features: pl.DataFrame) -> np.ndarray:
    """log1p of the heavy-tailed features, winsorised at ``WINSOR_QUANTILES``, then standardised.

    Winsorising keeps a few extreme customers (say, net spend below zero after
    returns) from pulling a centre to themselves.
    """
    return _scaled(features, *feature_scaling(features))


def _raw_features(features: pl.DataFrame) -> np.ndarray:
    cols = []
    for name in FEATURES:
        v = features[name].cast(pl.Float64).to_numpy()
        cols.append(np.log1p(np.maximum(v, 0.0)) if name in LOG_FEATURES else v)
    return np.column_stack(cols)


def feature_scaling(features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The winsorising bounds, means and scales :func:`feature_matrix` applies (saved with the segments)."""
    return _scaling_of(_raw_features(features))


def _scaling_of(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lower, upper = np.quantile(raw, WINSOR_QUANTILES, axis=0)
    X = np.clip(raw, lower, upper)
    std = X.std(axis=0)
    return lower, upper, X.mean(axis=0), np.where(std > 0, std, 1.0)


def _standardised(raw: np.ndarray, lower: np.ndarray, upper: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``raw`` winsorised and standardised, in place (it is the caller's own copy)."""
    np.clip(raw, lower, upper, out=raw)
    raw -= mean
    raw /= scale
    return raw


def _scaled(features: pl.DataFrame, lower: np.ndarray, upper: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return _standardised(_raw_features(features), lower, upper, mean, scale)


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def _kmeans(k: int, seed: int, init: np.ndarray | None = None):
    KMeans = _sklearn.kmeans_class()  # noqa: N806 - the class
    if init is None:
        return KMeans(n_clusters=k, n_init=N_INIT, random_state=seed)
    return KMeans(n_clusters=k, init=init, n_init=1, random_state=seed)


class SilhouetteSample:
    """Mean silhouettes (Rousseeuw 1987) of labellings of ``X``, each on the same fixed-seed sample of ``size`` rows.

    ``score(labels)`` is scikit-learn's ``silhouette_score(X, labels, sample_size=size,
    random_state=seed)`` to the bit: the same sample (a ``RandomState(seed)`` permutation),
    the same Euclidean distances (``-2 x.y + |x|^2 + |y|^2``, clipped at 0, 0 on the
    diagonal, square-rooted) and the same sums, each point's distances to a cluster added
    in sample order. The distances do not depend on the labels, so the sample's matrix
    is computed once for every candidate k rather than once per k (at 2,000 points, a
    third of a second of CPU on 2 cores when choosing k). Kept as its transpose: a
    point's distances to a cluster's members are then rows, summed in order.
    """

    def __init__(self, X: np.ndarray, size: int, seed: int):
        self._rows = np.random.RandomState(seed).permutation(len(X))[:size]
        sample = X[self._rows]
        sq = np.einsum("ij,ij->i", sample, sample)[:, None]
        d = -2 * (sample @ sample.T)
        d += sq
        d += sq.T
        np.maximum(d, 0, out=d)
        np.fill_diagonal(d, 0)
        np.sqrt(d, out=d)
        self._distances_t = np.ascontiguousarray(d.T)

    def score(self, labels: np.ndarray) -> float:
        classes, codes = np.unique(np.asarray(labels)[self._rows], return_inverse=True)
        n = len(codes)
        if not 1 < len(classes) < n:
            raise ValueError(f"Number of labels is {len(classes)}. Valid values are 2 to n_samples - 1 (inclusive)")
        sizes = np.bincount(codes)
        # (point, cluster) sums of distances; a sum over axis 0 adds the rows one after the other.
        sums = np.column_stack([self._distances_t[codes == c].sum(axis=0) for c in range(len(classes))])
        points = np.arange(n)
        own = sums[points, codes]
        sums[points, codes] = np.inf
        sums /= sizes
        nearest_other = sums.min(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            own /= (sizes - 1).take(codes, mode="clip")
            s = nearest_other - own
            s /= np.maximum(own, nearest_other)
        return float(np.mean(np.nan_to_num(s)))  # a point alone in its cluster scores 0


def adjusted_rand_index(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Hubert & Arabie's (1985) adjusted Rand index of two labellings of the same points, from pair counts.

    scikit-learn's ``adjusted_rand_score`` to the bit: the pairs together in both, in one
    only, or in neither are counted exactly in integers from the contingency table, and
    ARI = 2 (tp tn - fn fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn)); 1 when the two agree.
    """
    if len(labels_a) == 0:
        return 1.0
    _, a = np.unique(labels_a, return_inverse=True)
    _, b = np.unique(labels_b, return_inverse=True)
    n_b = int(b.max()) + 1
    table = np.bincount(a * n_b + b, minlength=(int(a.max()) + 1) * n_b).reshape(-1, n_b).astype(np.int64)
    n = len(a)
    sum_squares = int((table**2).sum())
    fp = int((table @ table.sum(axis=0)).sum()) - sum_squares  # ordered pairs together in a, apart in b
    fn = int((table.T @ table.sum(axis=1)).sum()) - sum_squares  # apart in a, together in b
    tp = sum_squares - n
    tn = n * n - fp - fn - sum_squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


@threads.limited(_sklearn.load, openmp=1, blas=1)
def select_k(
    X: np.ndarray, seed: int, k_range: tuple[int, int] = K_RANGE, *, advance: Callable[[], None] | None = None
) -> tuple[int, tuple[KCandidate, ...], np.ndarray]:
    """Pick k by silhouette among stable solutions without tiny segments (see module docstring).

    Every k gets k-means, its silhouette and its smallest segment; stability (a refit
    on another subsample with another seed) is then checked in order of silhouette
    until one candidate passes, since each check costs a k-means run. Returns the
    chosen k, every candidate's verdict and the chosen solution's centres. ``advance``
    is called once per candidate k fitted (a progress bar's tick).
    """
    rng = np.random.default_rng(seed)
    sel = X[_sample(len(X), SELECTION_SAMPLE, rng)]
    sub_idx = _sample(len(sel), int(len(sel) * STABILITY_FRACTION), rng)
    silhouette = SilhouetteSample(sel, SILHOUETTE_SAMPLE, seed)
    fits = []
    for k in range(k_range[0], k_range[1] + 1):
        if k >= len(sel):
            break
        km = _kmeans(k, seed).fit(sel)
        shares = np.bincount(km.labels_, minlength=k) / len(sel)
        fits.append((k, silhouette.score(km.labels_), float(shares.min()), km))
        if advance is not None:
            advance()
    if not fits:
        raise ModelError(f"too few customers ({len(X)}) to form {k_range[0]} segments")
    verdicts: dict[int, KCandidate] = {}
    chosen = None
    for k, sil, min_share, km in sorted(fits, key=lambda f: (-round(f[1], 12), f[0])):
        if min_share < MIN_SEGMENT_SHARE:
            verdicts[k] = KCandidate(k, sil, min_share, float("nan"), False, f"a segment has {min_share:.1%} of customers")
        elif chosen is not None:
            verdicts[k] = KCandidate(k, sil, min_share, float("nan"), False, f"stability not checked: k = {chosen} scored higher")
        else:
            other = _kmeans(k, seed + 1).fit(sel[sub_idx])
            stability = adjusted_rand_index(km.labels_, other.predict(sel))
            stable = stability >= MIN_STABILITY
            verdicts[k] = KCandidate(k, sil, min_share, stability, stable, "ok" if stable else f"unstable (ARI {stability:.2f})")
            chosen = k if stable else None
    candidates = tuple(verdicts[k] for k, *_ in fits)
    if chosen is None:  # nothing stable: the best silhouette without tiny segments, else the best silhouette
        roomy = [c for c in candidates if c.min_share >= MIN_SEGMENT_SHARE] or list(candidates)
        chosen = max(roomy, key=lambda c: (round(c.silhouette, 12), -c.k)).k
    centres = next(km.cluster_centers_ for k, *_, km in fits if k == chosen)
    return chosen, candidates, centres


@threads.limited(_sklearn.load, openmp=1, blas=1)
def fit_kmeans(X: np.ndarray, k: int, seed: int, centres: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Labels for every customer and the fit size (see module docstring)."""
    labels, n_fit, _ = fit_kmeans_centres(X, k, seed, centres)
    return labels, n_fit


@threads.limited(_sklearn.load, openmp=1, blas=1)
def fit_kmeans_centres(X: np.ndarray, k: int, seed: int, centres: np.ndarray | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`fit_kmeans`, also returning the final centres: each label is the nearest of them.

    ``centres`` are the chosen solution on the selection sample (from :func:`select_k`);
    without them (a k given by the user) the restarts run on that same sample here.
    """
    if centres is None:
        centres = _kmeans(k, seed).fit(X[_sample(len(X), SELECTION_SAMPLE, np.random.default_rng(seed))]).cluster_centers_
    fit_idx = _sample(len(X), MAX_FIT_CUSTOMERS, np.random.default_rng(seed + 2))
    km = _kmeans(k, seed, init=centres).fit(X[fit_idx])
    labels = km.labels_ if len(fit_idx) == len(X) else km.predict(X)
    return labels, len(fit_idx), km.cluster_centers_


# --------------------------------------------------------------------------- names


def _grid_name(r_score: float, fm_score: float) -> str:
    r = int(np.clip(np.floor(r_score + 0.5), 1, N_SCORES))
    fm = int(np.clip(np.floor(fm_score + 0.5), 1, N_SCORES))
    return SEGMENT_GRID[N_SCORES - r][fm - 1]


def name_segments(centres: pl.DataFrame) -> list[str]:
    """A unique, truthful name per segment from its members' mean scores and feature medians.

    ``centres`` has one row per segment with ``r_score, fm_score`` (member means)
    and the medians of ``FEATURES``; rows are in the segments' final order.
    """
    base = [_grid_name(r, fm) for r, fm in zip(centres["r_score"], centres["fm_score"], strict=True)]
    names = list(base)
    for name in set(base):
        members = [i for i, b in enumerate(base) if b == name]
        if len(members) < 2:
            continue
        sub = centres[members]
        spread = {}
        for f in QUALIFIERS:
            v = np.log1p(np.maximum(sub[f].to_numpy(), 0)) if f in LOG_FEATURES else sub[f].to_numpy()
            overall = np.log1p(np.maximum(centres[f].to_numpy(), 0)) if f in LOG_FEATURES else centres[f].to_numpy()
            spread[f] = (v.max() - v.min()) / (overall.std() or 1.0)
        feature = max(spread, key=lambda f: spread[f])
        values = sub[feature].to_numpy()
        order = np.argsort(values) if feature == "days_since_last_purchase" else np.argsort(-values)
        words = QUALIFIERS[feature]
        for rank, pos in enumerate(order):
            if len(members) <= 2:
                word = words[0] if rank == 0 else words[-1]
            elif len(members) == 3:
                word = words[rank]
            else:
                word = f"{words[0] if rank == 0 else words[-1] if rank == len(members) - 1 else words[1]} {rank + 1}"
            names[members[pos]] = f"{name} - {word}"
    return names


# --------------------------------------------------------------------------- profile


def profile_segments(
    assignments: pl.DataFrame,
    *,
    categories: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per segment: size, revenue, CLV, churn risk, behaviour, top categories.

    ``assignments`` has ``customer_id, segment`` and the scored columns;
    ``categories`` (optional) has one row per (customer_id, category) bought.
    Shares sum to 1. ``expected_purchases_90d`` is the segment total over 90 days.
    """
    n = assignments.height
    totals = assignments.select(pl.col("total_spend").sum(), pl.col("clv").sum()).row(0)
    # Churn risk is the segment's mean P(no purchase in the next 90 days) when the scores carry it (the
    # model's closed form); otherwise the share with P(alive) under CHURN_P_ALIVE.
    churn = (pl.col("churn_risk_90d").mean() if "churn_risk_90d" in assignments.columns
             else (pl.col("p_alive") < CHURN_P_ALIVE).mean())
    profile = (
        assignments.group_by("segment")
        .agg(
            pl.len().alias("n_customers"),
            pl.col("total_spend").sum().alias("revenue"),
            pl.col("clv").sum().alias("clv"),
            pl.col("p_alive").mean().alias("mean_p_alive"),
            churn.alias("churn_risk"),
            pl.col("days_since_last_purchase").median().alias("median_days_since_last_purchase"),
            pl.col("frequency").median().cast(pl.Float64).alias("median_frequency"),
            (pl.col("total_spend").sum() / pl.col("n_orders").sum()).alias("avg_order_value"),
            pl.col("expected_purchases_90d").sum().alias("expected_purchases_90d"),
        )
        .with_columns(
            (pl.col("n_customers") / n).alias("customer_share"),
            (pl.col("revenue") / (totals[0] or 1.0)).alias("revenue_share"),
            (pl.col("clv") / (totals[1] or 1.0)).alias("clv_share"),
        )
        .sort("clv_share", "segment", descending=[True, False])
        .select(
            "segment", "n_customers", "customer_share", "revenue", "revenue_share", "clv", "clv_share",
            "mean_p_alive", "churn_risk", "median_days_since_last_purchase", "median_frequency", "avg_order_value",
            "expected_purchases_90d",
        )
    )
    if categories is not None and categories.height:
        profile = profile.join(top_categories(assignments, categories), on="segment", how="left", maintain_order="left")
    return profile


def top_categories(assignments: pl.DataFrame, categories: pl.DataFrame, top: int = TOP_CATEGORIES) -> pl.DataFrame:
    """Per segment, the categories most over-represented: penetration in the segment / overall."""
    n = assignments.height
    seg_sizes = assignments.group_by("segment").agg(pl.len().alias("_size"))
    # One pass over the (customer, category) pairs: a category's owners overall are its owners summed over segments.
    # A category with fewer than MIN_CATEGORY_BUYERS buyers has fewer in every segment, so it is never listed: it
    # is left out first (a wide catalogue's product names: 2.1M pairs of 2M products -> 72k pairs, 1.1 s -> 0.01 s).
    owners = (
        categories.lazy().filter(pl.len().over("category") >= MIN_CATEGORY_BUYERS)
        .join(assignments.lazy().select("customer_id", "segment"), on="customer_id")
        .group_by("segment", "category").agg(pl.len().alias("_owners"))
        .collect()
    )
    overall = owners.group_by("category").agg((pl.col("_owners").sum() / n).alias("_overall"))
    return (
        owners
        .join(seg_sizes, on="segment")
        .join(overall, on="category")
        .with_columns(pl.col("category").cast(pl.String))  # sort and label as text, whatever the input type
        .with_columns((pl.col("_owners") / pl.col("_size") / pl.col("_overall")).alias("_index"))
        .filter((pl.col("_index") >= MIN_INDEX) & (pl.col("_owners") >= MIN_CATEGORY_BUYERS))
        .sort(["segment", "_index", "category"], descending=[False, True, False])
        .group_by("segment", maintain_order=True)
        .head(top)
        .with_columns(pl.format("{} ({}x)", pl.col("category"), pl.col("_index").round(1)).alias("_label"))
        .group_by("segment", maintain_order=True)
        .agg(pl.col("_label").str.join(", ").alias("top_categories"))
    )


# --------------------------------------------------------------------------- pipeline


def segment_customers(
    features: pl.DataFrame,
    *,
    method: str = "kmeans",
    k: int | None = None,
    seed: int = 42,
    categories: pl.DataFrame | None = None,
    advance: Callable[[], None] | None = None,
) -> Segmentation:
    """Cluster (``kmeans``) or group by RFM segment (``rfm``), name, order by CLV share, profile.

    ``features`` is :func:`customer_features` output (one row per customer, in the
    order assignments should list them within a segment) with ``r_score, fm_score,
    rfm_segment`` (from ``clv.rfm.score_rfm``), ``n_orders`` and
    ``expected_purchases_90d``.
    """
    n = features.height
    if method not in ("kmeans", "rfm"):
        raise InputError(f"method '{method}' is not kmeans or rfm")
    candidates: tuple[KCandidate, ...] = ()
    n_fit = n
    saved: SegmentCentres | None = None
    if method == "rfm":
        labelled = features.with_columns(pl.col("rfm_segment").alias("segment"))
        chosen_k = labelled["segment"].n_unique()
    else:
        if n < MIN_CUSTOMERS:
            raise ModelError(f"clustering needs at least {MIN_CUSTOMERS} customers; got {n} (try {option('method', 'rfm')})")
        raw = _raw_features(features)
        scaling = _scaling_of(raw)
        X = _standardised(raw, *scaling)
        centres = None
        if k is None:
            chosen_k, candidates, centres = select_k(X, seed, advance=advance)
        else:
            if not 2 <= k <= n // 10:
                raise InputError(f"{option('k', k)} is out of range for {n:,} customers (2 to {n // 10:,})")
            chosen_k = k
        labels, n_fit, final_centres = fit_kmeans_centres(X, chosen_k, seed, centres)
        del raw, X  # the profile and the sorted assignments below are the step's peak
        labelled = features.with_columns(pl.Series("_cluster", labels))
        centre_profile = (
            labelled.group_by("_cluster")
            .agg(
                pl.col("r_score").mean(),
                pl.col("fm_score").mean(),
                pl.col("clv").sum().alias("_clv"),
                *(pl.col(f).median() for f in FEATURES if f != "clv"),
                pl.col("clv").median().alias("clv"),
            )
            .sort("_clv", "_cluster", descending=[True, False])
        )
        names = name_segments(centre_profile)
        by_cluster = dict(zip(centre_profile["_cluster"].to_list(), names, strict=True))
        lower, upper, mean, scale = (tuple(float(v) for v in a) for a in scaling)
        saved = SegmentCentres(lower=lower, upper=upper, mean=mean, scale=scale,
                               centres=tuple(tuple(float(v) for v in c) for c in final_centres),
                               names=tuple(by_cluster.get(i, f"unused {i}") for i in range(len(final_centres))))
        labelled = labelled.with_columns(pl.col("_cluster").replace_strict(by_cluster, return_dtype=pl.String).alias("segment")).drop("_cluster")
    profile = profile_segments(labelled, categories=categories)
    order = {name: i for i, name in enumerate(profile["segment"].to_list())}
    # Stable: customers keep their order (the summary's, by customer_id) within a segment.
    assignments = labelled.sort(pl.col("segment").replace_strict(order, return_dtype=pl.Int32), maintain_order=True)
    return Segmentation(assignments, profile, method, chosen_k, candidates, n_fit, seed, saved)

"""Cross-sell: which products to offer whom, how likely each offer is to be taken, and proof against baselines.

Score of product j for customer u (never a product u owns, nor a competing variant or a
substitute of one unless allowed; variants their owners also buy are offered):

    item(u, j)    = sum over owned i of W[i, j]      (W: a sparse EASE, see ``item_weights``)
    segment(u, j) = share of u's segment that owns j
    trend(j)      = share of all customers who first bought j in the log's last TREND_DAYS days
    score(u, j)   = item + SEGMENT_WEIGHT * segment + TREND_WEIGHT * trend

W regresses each product's ownership on its ``NEIGHBOURS`` nearest products (Steck 2019's
EASE restricted to neighbours): it ranks as well as EASE on the retail log and needs no
dense products x products inverse; the segment and the trend add what EASE lacks (the
customer's group, what is selling now), and each weight was tuned on a split inside the
training period only. ``score`` only ranks.

Probabilities: ``P(u buys j for the first time within the offer horizon) = P(u buys at
all) x g(score)``, with P(buys at all) = 1 - P(no purchase in the horizon) from the purchase model's closed form
(``clv.models.churn_risk``) and g an
isotonic curve fitted on an inner split (the log without its last horizon of days, see
:class:`Calibration`). Expected revenue of an offer = its probability x what this customer
would spend on the product: its revenue per order (pooled over its buyers, shrunk toward the
catalogue's for products few own) x the customer's order size, times the inner split's ratio
of actual to predicted spend of new buyers in the same decile of prediction, and that of the
product's place in the customer's list (top 5, 6-20, 21-100, below): customers spend more on
the products that fit them best.

The segment x product table ranks, per segment, the products with the most expected
revenue from the segment's non-owners: ``expected_buyers`` is the sum of their
probabilities; its ``index`` (segment penetration / population penetration) is shrunk
toward 1 with ``INDEX_PSEUDO_COUNT`` pseudo-owners so that a product bought by two people
does not top the list. Beyond ``TABLE_CELLS`` customers x products its sums are estimated from
a sample of each segment (:func:`table_sample`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import polars as pl
from scipy import sparse
from threadpoolctl import threadpool_limits

from clv.errors import InputError
from clv.rfm import amount_units, collect, exact_sum, units_amount
from clv.threads import ordered_map
from segments.aggregates import typical_values
from segments.associations import MIN_PAIR_COUNT, PAIR_SCHEMA, SAME_ORDER_BUNDLE, EntryLookup, Ownership, pair_counts, substitute_pairs
from segments.bins import EdgeBins
from segments.variants import split_variants, variant_pairs

Advance = Callable[[float], None]  # told the share of a step's work just done

SEGMENT_WEIGHT = 0.1  # weight of the segment's penetration beside the item score
TREND_WEIGHT = 1.0  # weight of the share of customers who first bought the product lately
TREND_DAYS = 30  # "lately"
INDEX_PSEUDO_COUNT = 10.0
WIDE_ROW = 1_024  # products from which a row's k best are found by a bar (see _top_k_of_wide), not a partition
CHUNK_CELLS = 1_000_000  # customers x products scored at once: 8 MB arrays, which the allocator reuses (32 MB ones it maps afresh)
QUANTILE_CELLS = 4_000_000  # customers x products whose scores give the calibration's bin edges (the first customers)
DENSE_WEIGHTS_PRODUCTS = 2_048  # products up to which a mostly filled W is held as an array (32 MB)
DENSE_WEIGHTS_FILL = 0.25  # share of W's cells filled from which it is
NEIGHBOURS = 100  # inputs per product in its regression (tuned on an inner split of the retail log)
RIDGE = 400.0  # EASE's lambda, in co-owners, until one of RIDGES is chosen on the log's inner split
RIDGES = (25.0, 100.0, 400.0)  # the lambdas tried there: small logs with small baskets need less
NEIGHBOUR_BLOCK_CELLS = 8_000_000  # products x columns of X'X held at once when finding neighbours
UNION_MAX = 4_000  # up to this many products, one Gram matrix (128 MB) serves every regression
SPARSE_ABOVE = 4_000  # above this many products, neighbours come from the sparse X'X (see _pair_neighbours)
HUB_CELLS = 4_000_000  # entries of X'X among the most frequent inputs held dense for the Gram blocks (32 MB)
SOLVE_BATCH = 256  # regressions solved at once
EVAL_KS = (1, 3, 5, 10)
MIN_CONFIDENCE = 0.005
ACCESSORY_SHARE = 0.8  # of an offer's buyers who also own its base: "bought almost only with or after it"
CALIBRATION_BINS = 200  # score bins of the calibration curve
TOP_SHARE = 0.01  # the top share of scores given half of the bins
CALIBRATION_LEVELS = np.r_[np.linspace(0.0, 1.0 - TOP_SHARE, CALIBRATION_BINS // 2 + 1),
                           1.0 - np.geomspace(TOP_SHARE, 1e-5, CALIBRATION_BINS - CALIBRATION_BINS // 2)[1:], 1.0]
CALIBRATION_CUSTOMERS = 20_000  # inner customers sampled to fit it (fewer in a wide catalogue: SAMPLE_CELLS)
SAMPLE_CELLS = 200_000_000  # customers x products scored to fit the calibration or choose the ridge, at most
MIN_SAMPLE_CUSTOMERS = 2_000  # customers sampled for those, at least
TABLE_CELLS = 400_000_000  # customers x products summed for the segment table; beyond, a sample of each segment (see table_sample)
MIN_CALIBRATION_PURCHASES = 20  # first-time purchases below which scores stay uncalibrated
RIDGE_TOP = 5  # offers per customer the ridge is chosen on (hit rate at 5)
MAX_OFFERS = 100  # offers per customer, and products per segment in the ranking
CALIBRATION_TOLERANCE = 0.2  # expected over actual on a backtest beyond 1 +- this is reported as a miss
VALUE_BINS = 10  # deciles of predicted spend, each with its own ratio of actual to predicted spend
MIN_VALUE_BIN_PURCHASES = 20  # inner first purchases per decile below which one overall ratio is used
ABSENCE_BINS = 10  # deciles of days since a customer last bought something new, each with its ratio of actual to expected first purchases
MIN_ABSENCE_BIN_CUSTOMERS = 20  # inner active customers per decile below which no absence ratio is applied
SPEND_RANK_EDGES = (5, 20, 100)  # a product's place in the customer's list: top 5, 6-20, 21-100, below; each band its own spend ratio
TYPICAL_PSEUDO_OWNERS = 5.0  # pseudo-owners at the catalogue's median line value in each product's typical value
SCALE_PSEUDO_LINES = 5.0  # pseudo-orders at the typical value in each customer's order size
COMPETING_VARIANT = "variant"  # relation of an offer its owners chose instead (offered only when allowed)
COLLECTED_VARIANT = "variant, often bought together"  # relation of another colour its owners also buy
EXPLAIN_ENTRIES = 4_000_000  # (offer, owned product) entries looked at once when citing a reason
WIDE_CATALOGUE = 100_000  # products above which those with a single buyer are left out (see without_single_buyers)


def without_single_buyers(own: Ownership) -> Ownership:
    """A wide catalogue (over ``WIDE_CATALOGUE`` products) without the products that only one customer bought.

    One buyer is no evidence that anyone else wants a product: it is in no pair (fewer
    than ``MIN_PAIR_COUNT`` co-owners), its regression in the item model rests on one
    row, and on segment and trend it ties with every other such product. In a catalogue
    of millions most products are like that (a marketplace's long tail), and scoring
    them would make every step follow the catalogue's size instead of what was bought
    more than once. Smaller catalogues are returned as they are.
    """
    n_p = own.X.shape[1]
    kept = np.flatnonzero(own.owners >= MIN_PAIR_COUNT)
    if n_p <= WIDE_CATALOGUE or len(kept) == n_p:
        return own
    return Ownership(
        X=own.X.tocsc()[:, kept].tocsr(),
        first_day=own.first_day.tocsc()[:, kept].tocsr(),
        customers=own.customers,
        products=own.products.gather(kept),
        baskets=own.baskets.tocsc()[:, kept].tocsr() if own.baskets is not None else None,
        basket_customer=own.basket_customer,
    )


def without_single_buyer_purchases(purchases: pl.DataFrame) -> pl.DataFrame:
    """The purchases aggregate (a row per customer and product) of a wide catalogue without products one customer bought.

    The same products :func:`without_single_buyers` leaves out of the ownership, left out
    before anything is built from them (typical values, order sizes, both ownerships), so
    that no step follows the catalogue's long tail. Typical values and order sizes are
    then those of the products offered; smaller catalogues are returned as they are.
    """
    if purchases["product_id"].n_unique() <= WIDE_CATALOGUE:
        return purchases
    return purchases.filter(pl.len().over("product_id") >= MIN_PAIR_COUNT)


def _check_count(name: str, value: object, high: int) -> None:
    """A size-like setting: a whole number from 1 to ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= high:
        raise InputError(f"{name} = {value!r} must be a whole number from 1 to {high}")


@dataclass(frozen=True)
class CrossSellModel:
    own: Ownership
    weights: sparse.csr_matrix  # item-item regression weights W (inputs x products), see item_weights
    segment_of: np.ndarray  # segment code per customer
    segments: list[str]
    segment_penetration: np.ndarray  # segments x products
    trend: np.ndarray  # per product: share of customers who bought it for the first time in the log's last TREND_DAYS
    population_penetration: np.ndarray
    p_active: np.ndarray  # per customer
    typical_value: np.ndarray  # per product: revenue per order (shrunk, see typical_order_values)
    substitutes: sparse.csr_matrix | None
    pairs: pl.DataFrame
    variants: sparse.csr_matrix | None = None  # products x products: competing variants, offered only when allowed (symmetric)
    calibration: Calibration | None = None
    collected_variants: sparse.csr_matrix | None = None  # variants their owners also buy: offered, labelled (symmetric)
    customer_scale: np.ndarray | None = None  # per customer: line size (spend over the typical values of their lines)
    absence: np.ndarray | None = None  # per customer: days from their last first purchase of a product to the log's last (see days_absent)

    @cached_property
    def dense_weights(self) -> np.ndarray | None:
        """W as an array when it is small and mostly filled (a narrow catalogue), else None.

        ``owned @ W`` is then a sparse-times-dense product: on 48 products, 5-9x faster than
        the sparse product and its densification, with the same bits (both add each owned
        product's row of W in the order the row stores them; a zero adds nothing).
        """
        inputs, p = self.weights.shape
        if p > DENSE_WEIGHTS_PRODUCTS or self.weights.nnz < DENSE_WEIGHTS_FILL * inputs * p:
            return None
        return self.weights.toarray()

    @cached_property
    def weighted_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """``SEGMENT_WEIGHT x segment_penetration`` (segments x products) and ``TREND_WEIGHT x trend``: the score's two other terms."""
        return SEGMENT_WEIGHT * self.segment_penetration, TREND_WEIGHT * self.trend[None, :]


@dataclass(frozen=True)
class Calibration:
    """Offer scores turned into probabilities, fitted on an inner split of the log (the last ``horizon_days`` held out).

    ``probability[b]`` is the share of (customer, product) pairs in score bin ``b`` (edges
    ``edges``) whose customer, having bought anything in the held-out days, bought that
    product for the first time: isotonic in the score (pool-adjacent-violators over the
    bins). An offer's probability is ``P(the customer buys in the horizon) x probability x`` the
    ratio of the customer's decile of days absent (:meth:`absence_ratio`).
    What a new buyer spends on the product within the horizon is predicted as its revenue
    per order x the customer's order size (:func:`typical_order_values`,
    :func:`customer_spend_scale`), then multiplied by the ratio of what the inner split's new
    buyers actually spent to that prediction, per decile of the prediction (``value_edges``,
    ``value_ratios``): small predictions run low and large ones high (regression to the mean),
    and one overall ratio would carry the difference into every offer. ``value_ratio`` is the
    overall ratio, for reports. Then ``rank_ratios`` per band of the product's place in the
    customer's list (:data:`SPEND_RANK_EDGES`, :func:`rank_bands`): customers buy more of the
    products that fit them best, so a top offer's buyer spends more than the prediction pooled
    over every first purchase (mostly products deep in the list) says.
    """

    edges: np.ndarray
    probability: np.ndarray
    value_ratio: float
    horizon_days: int
    n_customers: int  # inner customers who bought something in the held-out days
    n_purchases: int  # their first-time purchases
    ridge: float = RIDGE  # the item model's lambda that ranked those purchases best
    applied_edges: np.ndarray | None = None  # the same quantiles of the model it is applied to
    value_edges: np.ndarray | None = None  # VALUE_BINS + 1 quantiles of the predicted spend of the inner new buyers
    value_ratios: np.ndarray | None = None  # per bin: their actual spend over the predicted one
    absence_edges: np.ndarray | None = None  # ABSENCE_BINS + 1 quantiles of the inner active customers' days absent
    absence_ratios: np.ndarray | None = None  # per bin: their actual first purchases over the sum of g(score)
    rank_ratios: np.ndarray | None = None  # per band of SPEND_RANK_EDGES: spend over the decile-calibrated prediction (see rank_ratios_of)

    @cached_property
    def _bins(self) -> EdgeBins:
        return EdgeBins(self.edges if self.applied_edges is None else self.applied_edges)

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return self.probability.take(np.clip(self._bins(score), 0, len(self.probability) - 1))

    def absence_ratio(self, absence: np.ndarray | None) -> np.ndarray | float:
        """Per customer, what turns the sum of ``g(score)`` into the first purchases of a customer ``absence`` days away.

        A customer back after months finds everything launched meanwhile new to them, and
        their item scores, built on what they owned long ago, do not see it: on the retail
        log, returning customers bought 20 to 37 products new to them where ``g`` promised
        13 to 17. The ratio of actual to expected first purchases per decile of days absent,
        fitted on the same inner split, puts that back; it does not change any customer's
        order of offers. 1 without the ratios or the absences.
        """
        if self.absence_edges is None or self.absence_ratios is None or absence is None:
            return 1.0
        b = np.clip(np.searchsorted(self.absence_edges, absence, side="right") - 1, 0, len(self.absence_ratios) - 1)
        return self.absence_ratios[b]

    def spend(self, predicted: np.ndarray, band: np.ndarray | None = None) -> np.ndarray:
        """What a new buyer is expected to spend within the horizon, from the predicted spend (any shape).

        ``band`` (the same shape, :func:`rank_bands`) is the product's place in the customer's
        list; without it (or without ``rank_ratios``) no band's ratio is applied.
        """
        if self.value_edges is None or self.value_ratios is None:
            out = predicted * self.value_ratio
        else:
            b = np.clip(np.searchsorted(self.value_edges, predicted, side="right") - 1, 0, len(self.value_ratios) - 1)
            out = predicted * self.value_ratios[b]
        if band is None or self.rank_ratios is None:
            return out
        return out * self.rank_ratios[np.clip(band, 0, len(self.rank_ratios) - 1)]


def uncalibrated(horizon_days: int) -> Calibration:
    """When no inner split is possible: the score itself, clipped to [0, 1]."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    return Calibration(edges, np.clip(edges[:-1], 0.0, 1.0), 1.0, horizon_days, 0, 0)


def choose_ridge(model: CrossSellModel, truth: sparse.csr_matrix, ridges: tuple[float, ...] = RIDGES, *,
                 weights: list[sparse.csr_matrix] | None = None, advance: Advance | None = None) -> tuple[float, CrossSellModel]:
    """The lambda among ``ridges`` whose item model puts most first-time purchases (``truth``) in customers' top 5, and that model.

    ``weights`` are the item weights of ``model.own.X`` for each of ``ridges`` when already
    computed (:func:`item_weights_for`); else they are computed here.
    """
    rows = np.flatnonzero(np.asarray(truth.sum(axis=1)).ravel() > 0)
    if len(rows) > (size := calibration_customers(truth.shape[1])):
        rows = np.sort(np.random.default_rng(0).choice(rows, size, replace=False))
    if weights is None:
        weights = item_weights_for(model.own.X, ridges, advance=advance)
    best: tuple[float, float, CrossSellModel] | None = None
    for ridge, W in zip(ridges, weights, strict=True):
        candidate = replace(model, weights=W)
        lists = evaluation_lists(candidate, rows, RIDGE_TOP)
        hit = float((np.asarray(truth[np.repeat(rows, lists.shape[1]), lists.ravel()]).reshape(lists.shape) > 0).any(axis=1).mean()) if len(rows) else 0.0
        if best is None or hit > best[0]:
            best = (hit, ridge, candidate)
    assert best is not None
    return best[1], best[2]


def calibration_customers(cells_per_customer: int) -> int:
    """How many customers to sample for a fit that scores ``cells_per_customer`` cells each (products, x lambdas tried).

    ``CALIBRATION_CUSTOMERS``, fewer when that would score more than ``SAMPLE_CELLS`` cells
    (a catalogue of tens of thousands of products), never fewer than
    ``MIN_SAMPLE_CUSTOMERS``: the curve has ``CALIBRATION_BINS`` bins and a few thousand
    customers give each of them millions of scored pairs.
    """
    return max(MIN_SAMPLE_CUSTOMERS, min(CALIBRATION_CUSTOMERS, SAMPLE_CELLS // max(cells_per_customer, 1)))


def score_quantiles(model: CrossSellModel) -> np.ndarray:
    """``CALIBRATION_BINS + 1`` quantiles of the allowed scores of a sample of all customers (the first ``QUANTILE_CELLS`` cells).

    Half the bins cover the lowest 99% of scores, the other half the top 1%, ever finer
    toward the top (levels 1 - 10^-2 ... 1 - 10^-5): offers are the few best products of
    each customer among thousands, so nearly all of them sit in the top 1% of scores, where
    evenly spaced quantiles would pool them all into a bin or two.
    """
    n, p = model.own.X.shape
    score = offer_scores(model, slice(0, min(n, max(1, QUANTILE_CELLS // max(p, 1)))))
    finite = score[np.isfinite(score)]
    edges = np.quantile(finite, CALIBRATION_LEVELS) if finite.size else np.zeros(CALIBRATION_BINS + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def fit_calibration(model: CrossSellModel, truth: sparse.csr_matrix, spend: sparse.csr_matrix, active: np.ndarray, horizon_days: int,
                    ridge: float = RIDGE) -> Calibration:
    """Fit :class:`Calibration` on an inner model, the first-time purchases after its end and who bought anything.

    ``truth`` and ``spend`` are customers x products of ``model``; ``active`` the indices of
    customers who bought anything in the held-out days. Bins are quantiles of the scores
    of all customers (:func:`score_quantiles`), so that the curve applies to the full
    model by quantile: its scores run higher (everyone owns more), their order does not
    change. Counts are accumulated block by block (bounded memory).
    """
    from sklearn.isotonic import IsotonicRegression

    p = model.own.X.shape[1]
    active = np.sort(active)
    if len(active) == 0 or truth[active].nnz < MIN_CALIBRATION_PURCHASES:
        return uncalibrated(horizon_days)
    if len(active) > (size := calibration_customers(p)):
        active = np.sort(np.random.default_rng(0).choice(active, size, replace=False))
    edges = score_quantiles(model)
    n_bins = len(edges) - 1
    bins = EdgeBins(edges)

    def counts_of(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per customer of ``sel``, the allowed products per score bin; the first purchases per bin; and their rank bands."""
        pref = offer_scores(model, sel)
        # Each score's bin, and bin n_bins for the products not allowed: counted in place, never gathered.
        b = np.where(np.isfinite(pref), np.clip(bins(pref), 0, n_bins - 1), n_bins)
        y = (truth[sel] > 0).tocoo()
        hits = np.bincount(b[y.row, y.col], minlength=n_bins + 1)[:n_bins].astype(float)
        b += np.arange(len(sel))[:, None] * (n_bins + 1)
        per_customer = np.bincount(b.ravel(), minlength=len(sel) * (n_bins + 1)).reshape(len(sel), n_bins + 1)[:, :n_bins]
        t = truth[sel].tocoo()  # the block's first purchases in the order truth[active].tocoo() lists them
        return per_customer.astype(float), hits, rank_bands(pref[t.row, t.col], rank_cuts(pref)[t.row])

    blocks = list(ordered_map(counts_of, _row_chunks(active, p)))  # integer counts: the same on any thread count
    in_bin = np.vstack([c for c, _, _ in blocks]) if blocks else np.zeros((0, n_bins))  # per customer: allowed products per score bin
    hits = np.sum([h for _, h, _ in blocks], axis=0) if blocks else np.zeros(n_bins)
    purchase_bands = np.concatenate([r for _, _, r in blocks]) if blocks else np.zeros(0, dtype=np.int64)
    totals = in_bin.sum(axis=0)
    used = totals > 0
    iso = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0).fit(np.flatnonzero(used), hits[used] / totals[used], sample_weight=totals[used])
    probability = iso.predict(np.arange(len(totals)))
    bought = truth[active]
    absence_edges, absence_ratios = (None, None) if model.absence is None else decile_ratios(
        model.absence[active], np.asarray(bought.sum(axis=1)).ravel(), in_bin @ probability, ABSENCE_BINS, MIN_ABSENCE_BIN_CUSTOMERS)
    t = bought.tocoo()
    predicted = predicted_spend(model, active[t.row], t.col)
    paid = np.asarray(spend[active][t.row, t.col]).ravel()
    ratio = float(paid.sum() / predicted.sum()) if predicted.sum() > 0 else 1.0
    value_edges, value_ratios = value_deciles(predicted, paid, ratio)
    decile_only = Calibration(edges, probability, ratio, horizon_days, len(active), int(t.nnz), ridge, value_edges=value_edges, value_ratios=value_ratios)
    return replace(decile_only, absence_edges=absence_edges, absence_ratios=absence_ratios,
                   rank_ratios=rank_ratios_of(purchase_bands, decile_only.spend(predicted), paid))


def rank_cuts(score: np.ndarray) -> np.ndarray:
    """Per customer (a row of ``score``), their ``e``-th best score for each ``e`` of ``SPEND_RANK_EDGES`` (customers x edges).

    One partition finds each row's best ``SPEND_RANK_EDGES[-1]``; only those are sorted.
    """
    n, p = score.shape
    if n == 0 or p == 0:
        return np.full((n, len(SPEND_RANK_EDGES)), -np.inf)
    k = min(SPEND_RANK_EDGES[-1], p)
    best = np.sort(np.partition(-score, k - 1, axis=1)[:, :k], axis=1)  # negated: the best first
    return -best[:, [min(e, p) - 1 for e in SPEND_RANK_EDGES]]


def rank_bands(score: np.ndarray, cuts: np.ndarray | None = None) -> np.ndarray:
    """Per score, its band of the customer's list: 0 for the top ``SPEND_RANK_EDGES[0]``, 1 for the next, ...

    ``score`` is customers x products and ``cuts`` None; or ``cuts`` holds, on its last axis,
    each score's customer's :func:`rank_cuts` (of their full row), shaped to broadcast
    against ``score`` (e.g. ``cuts[rows]`` for one score per row in ``rows``). A product is in
    the top ``e`` when its score is at least the customer's ``e``-th best (ties share the
    better band), so a band follows from the scores alone, the same for the offers, the
    segment ranking and the calibration. (A product not allowed, -inf, has no probability: its band is never read.)
    """
    at = rank_cuts(score)[:, None, :] if cuts is None else cuts
    band = np.zeros(score.shape, dtype=np.int8)
    for e in range(len(SPEND_RANK_EDGES)):
        band += score < at[..., e]
    return band


def rank_ratios_of(band: np.ndarray, predicted: np.ndarray, paid: np.ndarray) -> np.ndarray | None:
    """Per band of :func:`rank_bands`, the factor on the decile-calibrated spend ``predicted`` of first purchases that ``paid``.

    The factor is the band's geometric mean of ``paid / predicted`` over that of every
    purchase: a geometric mean, because spend is heavy-tailed (on the retail log's inner
    splits three orders can make a quarter of the top offers' spend) and a band of a few
    hundred purchases would otherwise follow its largest orders; the deciles' sums already
    carry the mean's level. On the retail log's inner splits the top 5 spend 1.08-1.18x what
    all purchases do, and the real holdouts after them show 1.12-1.24x. A band with fewer than
    ``MIN_VALUE_BIN_PURCHASES`` purchases keeps 1; then all factors are scaled so that the
    inner split's predicted spend still sums to what was paid. None without purchases.
    """
    ok = (predicted > 0) & (paid > 0)
    if ok.sum() < MIN_VALUE_BIN_PURCHASES:
        return None
    n_bands = len(SPEND_RANK_EDGES) + 1
    log_ratio = np.log(paid[ok] / predicted[ok])
    b = band[ok]
    count = np.bincount(b, minlength=n_bands)
    mean = np.bincount(b, weights=log_ratio, minlength=n_bands) / np.maximum(count, 1)
    factor = np.where(count >= MIN_VALUE_BIN_PURCHASES, np.exp(mean - log_ratio.mean()), 1.0)
    scaled = float((predicted[ok] * factor[b]).sum())
    return factor * (float(paid[ok].sum()) / scaled) if scaled > 0 else factor


def value_deciles(predicted: np.ndarray, paid: np.ndarray, overall: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Edges of ``VALUE_BINS`` quantile bins of ``predicted`` and, per bin, ``sum(paid) / sum(predicted)``.

    Too few purchases (under ``MIN_VALUE_BIN_PURCHASES`` per bin) leave only the ``overall`` ratio (None, None).
    """
    ok = predicted > 0
    return decile_ratios(predicted[ok], paid[ok], predicted[ok], VALUE_BINS, MIN_VALUE_BIN_PURCHASES, overall)


def decile_ratios(key: np.ndarray, actual: np.ndarray, predicted: np.ndarray, n_bins: int, min_per_bin: int,
                  overall: float = 1.0) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Edges of ``n_bins`` quantile bins of ``key`` (outer edges infinite) and, per bin, ``sum(actual) / sum(predicted)``.

    A bin with nothing predicted keeps ``overall``; fewer than ``n_bins x min_per_bin`` rows give (None, None).
    """
    if len(key) < n_bins * min_per_bin:
        return None, None
    edges = np.quantile(key, np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    b = np.clip(np.searchsorted(edges, key, side="right") - 1, 0, n_bins - 1)
    pred_sum = np.bincount(b, weights=predicted, minlength=n_bins)
    actual_sum = np.bincount(b, weights=actual, minlength=n_bins)
    return edges, np.where(pred_sum > 0, actual_sum / np.maximum(pred_sum, 1e-300), overall)


def typical_order_values(purchases: pl.DataFrame, prefix: str = "") -> pl.DataFrame:
    """``product_id, value``: what a buyer typically spends on a product per order, shrunk toward the
    catalogue's on a log scale.

    Per product, the geometric mean over its buyers of each buyer's revenue per order of it:
    robust like a median (one wholesale order moves it by its share of buyers, not its share
    of revenue), and a mean of logs, which the purchases aggregate gives exactly whatever
    engine computed it. Then ``log value_j = (owners_j x log g_j + TYPICAL_PSEUDO_OWNERS x log
    m) / (owners_j + TYPICAL_PSEUDO_OWNERS)``, m the median over products of their g: a
    product one customer bought once in bulk (74,215 storage jars in one order) would
    otherwise promise every new buyer that order. ``prefix`` ``"inner_"`` reads the counts
    before the inner split.
    """
    revenue, orders, lines = (f"{prefix}revenue", f"{prefix}orders", f"{prefix}lines") if prefix else ("revenue", "n_orders", "n_lines")
    per_order = pl.col(revenue) / pl.when(pl.col(orders) > 0).then(pl.col(orders)).otherwise(pl.col(lines))
    per = (
        purchases.lazy()  # lazy: only the columns read are filtered, not a copy of the whole aggregate
        .filter((pl.col(lines) > 0) & (pl.col(revenue) > 0))
        .group_by("product_id")
        .agg(exact_sum(per_order.log()).alias("_log_sum"), pl.len().alias("_owners"))  # fixed point: the same bits in any order
        .with_columns((pl.col("_log_sum") / pl.col("_owners")).alias("_log"))
        .collect()
    )
    if per.height == 0:
        return typical_values(purchases, prefix)
    log_m = float(per["_log"].median())  # type: ignore[arg-type]
    shrunk = ((pl.col("_owners") * pl.col("_log") + TYPICAL_PSEUDO_OWNERS * log_m) / (pl.col("_owners") + TYPICAL_PSEUDO_OWNERS)).exp()
    everyone = purchases.lazy().select(pl.col("product_id").unique())  # products with no positive spend keep a value of 0
    return (everyone.join(per.lazy().select("product_id", shrunk.alias("value")), on="product_id", how="left")
            .with_columns(pl.col("value").fill_null(0.0)).sort("product_id").collect())


def customer_spend_scale(purchases: pl.DataFrame, typical_values: pl.DataFrame, prefix: str = "") -> pl.DataFrame:
    """``customer_id, scale``: the customer's order size, their spend over the typical values of their orders.

    A wholesaler ordering by the carton has a scale of 10; a shop buying singles, 0.5. What
    a customer will spend on a product new to them is its typical value x their scale. The
    ratio is shrunk toward 1 on a log scale with ``SCALE_PSEUDO_LINES`` typical orders
    (``log scale = n x log ratio / (n + SCALE_PSEUDO_LINES)``, n the customer's orders of
    products): one bulk order (74,215 jars, a ratio of 5,000) says little about the next
    purchase. From the purchases aggregate (``prefix`` as in :func:`typical_order_values`).
    """
    n_orders, n_lines, revenue = (f"{prefix}orders", f"{prefix}lines", f"{prefix}revenue") if prefix else ("n_orders", "n_lines", "revenue")
    orders = pl.when(pl.col(n_orders) > 0).then(pl.col(n_orders)).otherwise(pl.col(n_lines))
    ratio = pl.col("_spend") / pl.col("_typical")
    # Both sums in fixed point (nano-units), so they do not depend on the order rows are added in, and the
    # query can be lazy end to end: only the columns read, no copy of the aggregate (10M lines: 1.5 -> 0.7 s a call).
    # The typical value is made whole once and multiplied by the whole number of orders: their product is no
    # amount of the log, and may pass the largest amount clvx sums while every line is well under it.
    return collect(
        purchases.lazy()
        .select("customer_id", "product_id", n_orders, n_lines, revenue)
        .filter(pl.col(n_lines) > 0)
        .join(typical_values.lazy(), on="product_id", how="inner")
        .group_by("customer_id")
        .agg(exact_sum(pl.col(revenue)).alias("_spend"), units_amount((amount_units(pl.col("value")) * orders.cast(pl.Int128)).sum()).alias("_typical"),
             orders.sum().alias("_n"))
        .filter((pl.col("_spend") > 0) & (pl.col("_typical") > 0))
        .select("customer_id", (ratio.log() * pl.col("_n") / (pl.col("_n") + SCALE_PSEUDO_LINES)).exp().alias("scale"))
        .sort("customer_id")
    )


def predicted_spend(model: CrossSellModel, u: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Typical value of products ``j`` x the line size of customers ``u`` (before the calibrated ratio)."""
    scale = model.customer_scale[u] if model.customer_scale is not None else 1.0
    return model.typical_value[j] * scale


def segment_onehot(codes: np.ndarray, n_segments: int, weights: np.ndarray | None = None) -> sparse.csr_matrix:
    """Segments x customers indicator (or ``weights``): ``onehot @ per_customer`` sums a quantity per segment."""
    data = np.ones(len(codes)) if weights is None else weights
    return sparse.csr_matrix((data, (codes, np.arange(len(codes)))), shape=(n_segments, len(codes)))


def _cosine_neighbours(X: sparse.csr_matrix, k: int, *, gram: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per product, the ``k`` products whose owners overlap most with its own (cosine), and the diagonal of X'X.

    Column blocks of X'X are formed one at a time and reduced to their top ``k`` at
    once, so memory follows ``products x block width``, never products squared; or read
    from ``gram``, X'X as a dense array, where the caller holds it already.
    """
    n_p = X.shape[1]
    Xc, Xt = (X.tocsc(), X.T.tocsr()) if gram is None else (None, None)
    owners = np.asarray(X.sum(axis=0)).ravel()
    norms = np.sqrt(np.maximum(owners, 1.0))
    k = min(k, max(n_p - 1, 1))
    neighbours = np.zeros((n_p, k), dtype=np.int64)
    width = max(1, NEIGHBOUR_BLOCK_CELLS // max(n_p, 1))
    for start in range(0, n_p, width):
        stop = min(start + width, n_p)
        if gram is not None:
            block = gram[:, start:stop].copy()  # products x width: co-owners of each column
        else:
            assert Xt is not None and Xc is not None
            block = (Xt @ Xc[:, start:stop]).toarray()
        block /= norms[:, None] * norms[None, start:stop]
        block[np.arange(start, stop), np.arange(stop - start)] = -np.inf  # a product is not its own input
        part = np.argpartition(-block, k - 1, axis=0)[:k, :]
        neighbours[start:stop] = part.T
    return neighbours, owners


def item_weights(X: sparse.csr_matrix, *, neighbours: int = NEIGHBOURS, ridge: float = RIDGE, advance: Advance | None = None) -> sparse.csr_matrix:
    """Item-item weights W (inputs x products): a sparse EASE, one ridge regression per product.

    EASE (Steck 2019, eq. 8) regresses every product's ownership column on all other
    products at once, ``B = (X'X + lambda I)^-1 X'X`` with a zero diagonal, which needs a dense
    inverse of products x products. Here each product j is regressed only on its
    ``neighbours`` nearest products N_j (by cosine): ``w_j = (X_N'X_N + lambda I)^-1 X_N'x_j``,
    the same normal equations restricted to N_j (and j left out of its own inputs, as EASE's
    diagonal constraint does). Memory: ``SOLVE_BATCH`` systems of ``k x k`` and, up to
    ``UNION_MAX`` products, one Gram matrix; above it each product's block, looked up in the sparse
    X'X (:class:`_GramLookup`). ``advance`` is
    told the share of the products done after each batch (they sum to 1).
    """
    return item_weights_for(X, (ridge,), neighbours=neighbours, advance=advance)[0]


def item_weights_for(X: sparse.csr_matrix, ridges: tuple[float, ...], *, neighbours: int = NEIGHBOURS,
                     advance: Advance | None = None) -> list[sparse.csr_matrix]:
    """:func:`item_weights` for several ridges at once: neighbours and Gram blocks are shared, only the solves differ.

    Above ``SPARSE_ABOVE`` products the neighbours come from the sparse X'X
    (:func:`_pair_neighbours`: only products sharing ``MIN_PAIR_COUNT`` owners), and
    products with fewer of them than ``neighbours`` are solved in smaller systems.
    """
    n_p = X.shape[1]
    if n_p < 2:
        return [sparse.csr_matrix((n_p, n_p)) for _ in ridges]
    Xc = X.tocsc()
    C = _canonical_gram(Xc) if n_p > UNION_MAX else None
    full = (Xc.T @ Xc).toarray() if C is None else None  # a small catalogue: one Gram matrix for all
    if n_p > SPARSE_ABOVE:
        assert C is not None
        N = _pair_neighbours(C, neighbours)
    else:
        N, _ = _cosine_neighbours(X, neighbours, gram=full)
    n_inputs = (N >= 0).sum(axis=1)
    order = np.argsort(n_inputs, kind="stable") if n_p > SPARSE_ABOVE else np.arange(n_p)  # batches of like sizes
    gram = _GramLookup(Xc, C, N) if C is not None else None
    vals: list[list[np.ndarray]] = [[] for _ in ridges]
    rows, cols = [], []
    # Many small systems: BLAS threads only contend (100x slower on a busy machine). One limit for all
    # of them: each limit finds the libraries again by reading the process's memory maps.
    with threadpool_limits(1):
        for start in range(0, n_p, SOLVE_BATCH):
            targets = order[start:start + SOLVE_BATCH]
            k = max(1, int(n_inputs[targets].max()))
            pos = N[targets, :k]  # (m, k); -1 pads a product with fewer than k inputs
            if full is not None:
                A = full[pos[:, :, None], pos[:, None, :]]
                rhs = full[pos, targets[:, None]][:, :, None]
            else:
                # Each target's Gram block looked up in the sparse X'X: co-owner counts, exact integers, so the
                # systems are those of one big Gram matrix; padded inputs get zero rows and so zero weights.
                assert gram is not None
                valid = pos >= 0
                at = np.where(valid, pos, 0)
                A = gram(at[:, :, None], at[:, None, :])
                A *= valid[:, :, None] & valid[:, None, :]
                rhs = (gram(at, targets[:, None]) * valid)[:, :, None]
            for r, ridge in enumerate(ridges):
                Ar = A.copy()
                Ar[:, np.arange(k), np.arange(k)] += ridge
                vals[r].append(np.linalg.solve(Ar, rhs)[:, :, 0].ravel())
            rows.append(pos.ravel())
            cols.append(np.repeat(targets, k))
            if advance is not None:
                advance(len(targets) / n_p)
    row, col = np.concatenate(rows), np.concatenate(cols)
    real = row >= 0
    out = []
    for v in vals:
        W = sparse.csr_matrix((np.concatenate(v)[real], (row[real], col[real])), shape=(n_p, n_p))
        W.eliminate_zeros()
        out.append(W)
    return out


def _canonical_gram(Xc: sparse.csc_matrix) -> sparse.csr_matrix:
    """X'X (co-owners of every pair of products) in canonical CSR: sorted indices, no duplicates."""
    C = (Xc.T @ Xc).tocsr()
    C.sum_duplicates()
    C.sort_indices()
    return C


class _GramLookup:
    """``C[a, b]`` elementwise (broadcast) from X'X ``C`` (canonical CSR), 0 where it stores nothing.

    Random searches in a large sorted array miss the cache at every step, so the block of
    X'X among the hubs (the products that are most often someone's input, up to
    ``HUB_CELLS`` entries) is held dense, straight from their columns of X; the other
    entries are searched among C's sorted keys (``row x columns + column``).
    """

    def __init__(self, Xc: sparse.csc_matrix, C: sparse.csr_matrix, N: np.ndarray) -> None:
        n_p = C.shape[1]
        self.C = C
        row = np.repeat(np.arange(n_p, dtype=np.int64), np.diff(C.indptr))
        self.keys = row * np.int64(n_p) + C.indices
        appearances = np.bincount(N[N >= 0], minlength=n_p)
        n_hubs = min(int(np.sqrt(HUB_CELLS)), int((appearances > 1).sum()))
        hubs = np.sort(np.argsort(-appearances, kind="stable")[:n_hubs])
        self.hub_of = np.full(n_p, -1, dtype=np.int64)
        self.hub_of[hubs] = np.arange(n_hubs)
        Xh = Xc[:, hubs]
        self.dense = (Xh.T @ Xh).toarray()

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.broadcast_arrays(a, b)
        ha, hb = self.hub_of[a], self.hub_of[b]
        both = (ha >= 0) & (hb >= 0)
        out = np.empty(a.shape)
        out[both] = self.dense[ha[both], hb[both]]
        rest = ~both
        wanted = a[rest].astype(np.int64) * np.int64(self.C.shape[1]) + b[rest]
        if len(self.keys):
            at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
            out[rest] = np.where(self.keys[at] == wanted, self.C.data[at], 0.0)
        else:
            out[rest] = 0.0
        return out


def _pair_neighbours(C: sparse.csr_matrix, k: int) -> np.ndarray:
    """Per product, its ``k`` nearest products by cosine among those with at least ``MIN_PAIR_COUNT`` co-owners; -1 pads.

    ``C`` is X'X (canonical, :func:`_canonical_gram`). Cosine as in
    :func:`_cosine_neighbours`, ``C_ij / sqrt(n_i n_j)``; ties go to the smaller product
    index. A product sharing one customer with another is that customer's basket, not a
    relation (the same bound that keeps it out of the pairs), so it is no input; in a wide
    catalogue most products are such, and this keeps each regression to what repeats.
    Columns are trimmed to the most inputs any product has.
    """
    n_p = C.shape[0]
    owners = C.diagonal()
    coo = C.tocoo()
    keep = (coo.data >= MIN_PAIR_COUNT) & (coo.row != coo.col)
    j, i, c = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
    norms = np.sqrt(np.maximum(owners, 1.0))
    cosine = c / (norms[j] * norms[i])
    order = np.lexsort((i, -cosine, j))
    j, i = j[order], i[order]
    counts = np.bincount(j, minlength=n_p)
    rank = np.arange(len(j)) - np.repeat(np.cumsum(counts) - counts, counts)
    take = rank < k
    width = max(1, min(k, int(counts.max()) if len(counts) else 1))
    N = np.full((n_p, width), -1, dtype=np.int64)
    N[j[take], rank[take]] = i[take]
    return N


def recent_first_buyers(own: Ownership) -> np.ndarray:
    """Per product, the share of customers whose first purchase of it falls in the last ``TREND_DAYS`` days of the log.

    What is selling now (seasonal lines, new ranges) is what the next weeks' first
    purchases are made of; a model of co-ownership alone does not see it.
    """
    T = own.first_day.tocsc()
    if T.nnz == 0:
        return np.zeros(T.shape[1])
    recent = T.copy()
    recent.data = (recent.data >= T.data.max() - TREND_DAYS).astype(np.float64)
    return np.asarray(recent.sum(axis=0)).ravel() / max(T.shape[0], 1)


def days_absent(own: Ownership) -> np.ndarray:
    """Per customer, the days from their last first purchase of a product to the last one in the log (see :meth:`Calibration.absence_ratio`).

    The last day anyone bought something new stands for the end of the log, so the inner
    split's model and the full one measure absence alike; a customer with nothing left
    to score (every product pruned) counts from the log's first day.
    """
    T = own.first_day.tocsr()
    if T.nnz == 0:
        return np.zeros(T.shape[0])
    return float(T.data.max()) - np.asarray(T.max(axis=1).todense()).ravel().astype(np.float64)


def build_model(
    own: Ownership,
    customers: pl.DataFrame,
    typical_values: pl.DataFrame,
    *,
    categories: pl.DataFrame | None = None,
    products: pl.DataFrame | None = None,
    ridge: float = RIDGE,
    customer_scale: pl.DataFrame | None = None,
    weights: sparse.csr_matrix | None = None,
    scoring_only: bool = False,
    advance: Advance | None = None,
) -> CrossSellModel:
    """Fit the scorer: pair counts, shrunk confidences, segment penetration, substitutes.

    ``customers`` has ``customer_id, segment, p_active`` in ``own.customers`` order;
    ``typical_values`` has ``product_id, value``: each product's revenue per order
    (:func:`typical_order_values`); ``customer_scale`` has ``customer_id, scale``
    (:func:`customer_spend_scale`, 1 for customers not in it);
    ``categories`` has ``product_id, category``; ``products`` has ``product_id`` with
    ``description`` (and ``category``) for finding variants (blocked when competing, offered
    when collected: :func:`segments.variants.split_variants`). ``advance`` follows the item
    weights, the bulk of the work (see :func:`item_weights`); ``weights`` are those weights
    when already computed for ``ridge``. A ``scoring_only`` model (the inner split's, which
    only ranks and calibrates) counts no pairs: only reasons, relations, timing, rules and
    substitutes read them, so its ``pairs`` is empty (and it takes no ``categories``).
    """
    if scoring_only and categories is not None:
        raise ValueError("a scoring-only model counts no pairs, so it cannot find substitutes: give no categories")
    pairs = pair_counts(own) if not scoring_only else pl.DataFrame(schema=PAIR_SCHEMA)
    owners = own.owners
    if weights is None:
        weights = item_weights(own.X, ridge=ridge, advance=advance)

    segments = sorted(customers["segment"].unique().to_list())
    seg_code = customers["segment"].replace_strict({s: k for k, s in enumerate(segments)}, return_dtype=pl.Int64).to_numpy()
    onehot = segment_onehot(seg_code, len(segments))
    seg_sizes = np.asarray(onehot.sum(axis=1)).ravel()
    seg_pen = np.asarray((onehot @ own.X).todense()) / seg_sizes[:, None]
    typical = (
        pl.DataFrame({"product_id": own.products})
        .join(typical_values, on="product_id", how="left", maintain_order="left")["value"]
        .fill_null(0.0)
        .to_numpy()
    )
    subs = substitute_pairs(own, pairs, categories) if categories is not None else None
    competing, collected = split_variants(variant_pairs(products, own.products), own.X) if products is not None else (None, None)
    return CrossSellModel(
        own=own,
        weights=weights,
        segment_of=seg_code,
        segments=segments,
        segment_penetration=seg_pen,
        trend=recent_first_buyers(own),
        population_penetration=owners / own.X.shape[0],
        p_active=customers["p_active"].to_numpy(),
        typical_value=typical,
        substitutes=subs,
        pairs=pairs,
        variants=competing,
        collected_variants=collected,
        absence=days_absent(own),
        customer_scale=None if customer_scale is None else (
            pl.DataFrame({"customer_id": own.customers}).join(customer_scale, on="customer_id", how="left", maintain_order="left")
            ["scale"].fill_null(1.0).to_numpy()),
    )


def _chunks(n_customers: int, n_products: int) -> list[slice]:
    size = max(1, CHUNK_CELLS // max(n_products, 1))
    return [slice(s, min(s + size, n_customers)) for s in range(0, n_customers, size)]


def _row_chunks(rows: np.ndarray, n_products: int) -> list[np.ndarray]:
    """``rows`` (customer indices) cut into blocks of at most ``CHUNK_CELLS`` scores: only those customers are scored."""
    size = max(1, CHUNK_CELLS // max(n_products, 1))
    return [rows[s:s + size] for s in range(0, len(rows), size)]


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best per row, best first; ties broken by product order.

    Wide rows (``WIDE_ROW`` products or more) are cut to the few scores that can be among
    the k best before anything is sorted (:func:`_top_k_of_wide`); others by a partition
    (:func:`_top_k_by_partition`). Both give the first k of the row in the order (-score, product).
    """
    k = min(k, scores.shape[1])
    if scores.shape[1] >= WIDE_ROW and k and len(scores):
        return _top_k_of_wide(scores, k)
    return _top_k_by_partition(scores, k)


def _top_k_of_wide(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top_k` of wide rows: the maxima of k disjoint groups of a row are k of its scores, so its k-th best is at
    least their minimum; only scores at or above that bar are sorted (tens of a row's tens of thousands).

    A row whose bar is -inf (fewer than k allowed in its groups) is ranked by the partition.
    """
    n, p = scores.shape
    width = p // k
    bar = scores[:, :k * width].reshape(n, k, width).max(axis=2).min(axis=1)
    open_ = np.flatnonzero(bar == -np.inf)
    bar[open_] = np.inf  # ranked below, by the partition
    row, col = np.nonzero(scores >= bar[:, None])
    value = scores[row, col]
    order = np.lexsort((col, -value, row))  # by row, then best first, then product
    row, col, value = row[order], col[order], value[order]
    within = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    first = within < k
    idx, vals = np.zeros((n, k), dtype=np.int64), np.zeros((n, k))
    idx[row[first], within[first]] = col[first]
    vals[row[first], within[first]] = value[first]
    if len(open_):
        idx[open_], vals[open_] = _top_k_by_partition(scores[open_], k)
    return idx, vals


def _top_k_by_partition(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top_k` by a partition of each row.

    A partition finds the k best; where products tie with the k-th value beyond what it
    kept, that row is chosen again with the tied products taken in product order, so the
    lists never depend on how the partition happened to split a tie.
    """
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    kth = vals.min(axis=1)
    ties = np.flatnonzero((scores == kth[:, None]).sum(axis=1) > (vals == kth[:, None]).sum(axis=1))
    if len(ties):
        block, v = scores[ties], kth[ties][:, None]
        above = block > v
        tied = block == v
        take = above | (tied & (np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)))
        part[ties] = np.nonzero(take)[1].reshape(len(ties), k)
        vals[ties] = np.take_along_axis(block, part[ties], axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


def _masked(scores: np.ndarray, owned: sparse.csr_matrix, *blocks: sparse.csr_matrix | None) -> np.ndarray:
    """Owned products, and products related to an owned one by any of ``blocks``, set to -inf."""
    scores[owned.nonzero()] = -np.inf
    for block in blocks:
        if block is not None:
            scores[(owned @ block).nonzero()] = -np.inf
    return scores


def offer_scores(model: CrossSellModel, rows: slice | np.ndarray, *, allow_substitutes: bool = False,
                 allow_variants: bool = False) -> np.ndarray:
    """``score`` of every product for a block of customers (a slice of rows, or their indices): -inf where not allowed.

    ``score(u, j) = item + SEGMENT_WEIGHT * segment + TREND_WEIGHT * trend`` (module docstring).
    Each customer's row is computed alone (a row of ``owned @ W``), so it does not depend
    on which other customers share the block.
    """
    owned = model.own.X[rows]
    W = model.dense_weights
    score = owned @ W if W is not None else np.asarray((owned @ model.weights).todense())
    segment, trend = model.weighted_terms
    np.add(score, segment[model.segment_of[rows]], out=score)  # in place: (item + segment) + trend, each term as it was weighted
    np.add(score, trend, out=score)
    return _masked(score, owned, None if allow_substitutes else model.substitutes, None if allow_variants else model.variants)


def offer_probability(model: CrossSellModel, rows: slice | np.ndarray, score: np.ndarray) -> np.ndarray:
    """P(customer buys the product for the first time within the offer horizon) = P(buys at all) x g(score); 0 where not allowed.

    ``score`` has a row per customer of ``rows`` and any columns (all products, or only the
    offers kept), so only the scores needed are calibrated.
    """
    calibration = model.calibration or uncalibrated(0)
    allowed = np.isfinite(score)
    per_customer = model.p_active[rows] * calibration.absence_ratio(None if model.absence is None else model.absence[rows])
    return np.where(allowed, calibration(np.where(allowed, score, 0.0)), 0.0) * per_customer[:, None]


def model_scores(model: CrossSellModel, rows: slice | np.ndarray, *, allow_substitutes: bool = False,
                 allow_variants: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(probability, score)`` for a block of customers: :func:`offer_scores` and :func:`offer_probability` of all of them."""
    score = offer_scores(model, rows, allow_substitutes=allow_substitutes, allow_variants=allow_variants)
    return offer_probability(model, rows, score), score


def evaluation_lists(model: CrossSellModel, rows: np.ndarray, k: int, *, allow_variants: bool = False) -> np.ndarray:
    """The ``k`` best products (indices) for customers ``rows`` (in that order), as offers rank them: for backtests."""
    out = list(ordered_map(lambda sel: _top_k(offer_scores(model, sel, allow_variants=allow_variants), k)[0],
                           _row_chunks(rows, model.own.X.shape[1])))
    return np.vstack(out) if out else np.zeros((0, k), dtype=np.int64)


def value_per_buyer(model: CrossSellModel, u: np.ndarray, j: np.ndarray, band: np.ndarray | None = None) -> np.ndarray:
    """What customer ``u`` is expected to spend on product ``j`` in the horizon if they buy it (calibrated, see :class:`Calibration`).

    ``band`` is the product's band of the customer's list (:func:`rank_bands`), when known.
    """
    predicted = predicted_spend(model, u, j)
    return model.calibration.spend(predicted, band) if model.calibration is not None else predicted


def customer_targets(model: CrossSellModel, *, top_k: int = 5, allow_substitutes: bool = False, allow_variants: bool = False,
                     advance: Advance | None = None) -> pl.DataFrame:
    """The ``top_k`` offers per customer: ``customer_id, product_id, rank, score, purchase_probability, expected_revenue``.

    ``advance`` is told the share of the customers scored after each block (they sum to 1).
    """
    _check_count("top_k", top_k, MAX_OFFERS)
    n, p = model.own.X.shape

    def offers_of(rows: slice) -> pl.DataFrame:
        idx, vals = _top_k(offer_scores(model, rows, allow_substitutes=allow_substitutes, allow_variants=allow_variants), top_k)
        k = idx.shape[1]
        # An offer's band from the kept scores alone: the e-th best score of each edge e within the top k is vals[:, e - 1];
        # no offer ranks below an edge beyond k. The same bands rank_bands gives the full row.
        band = sum(((vals < vals[:, e - 1:e]) for e in SPEND_RANK_EDGES if e <= k), np.zeros(vals.shape, dtype=np.int8))
        return pl.DataFrame({
            "_u": np.repeat(np.arange(rows.start, rows.stop), k), "_j": idx.ravel(), "rank": np.tile(np.arange(1, k + 1), rows.stop - rows.start),
            "score": vals.ravel(), "purchase_probability": offer_probability(model, rows, vals).ravel(),  # only the offers kept are calibrated
            "_band": np.asarray(band, dtype=np.int8).ravel(),
        })

    chunks = _chunks(n, p)
    frames = []
    for rows, frame in zip(chunks, ordered_map(offers_of, chunks), strict=True):
        frames.append(frame)
        if advance is not None:
            advance((rows.stop - rows.start) / n)
    t = pl.concat(frames).filter(pl.col("score").is_finite())
    return t.with_columns(
        model.own.customers.gather(t["_u"]).alias("customer_id"),
        model.own.products.gather(t["_j"]).alias("product_id"),
        (pl.col("purchase_probability") * value_per_buyer(model, t["_u"].to_numpy(), t["_j"].to_numpy(), t["_band"].to_numpy())).alias("expected_revenue"),
    ).drop("_band")


def explain_targets(model: CrossSellModel, targets: pl.DataFrame) -> pl.DataFrame:
    """Add a ``reason`` a campaign manager can read: the owned product that contributes most, or the segment.

    The cited product is the one with the largest weight toward the offer in the item
    model; its share is the plain count "of its buyers, how many also bought the offer".
    """
    u, j = targets["_u"].to_numpy(), targets["_j"].to_numpy()
    best_i, best_w = _strongest_inputs(model.own.X, model.weights, u, j)
    cited = best_i >= 0
    raw = model.pairs.select(pl.col("i").alias("_i"), pl.col("j").alias("_j"), "co_owners")
    best = pl.DataFrame({"_i": best_i[cited], "_j": j[cited].astype(np.int64), "_w": best_w[cited]}).join(
        raw, on=["_i", "_j"], how="left", maintain_order="left")
    owners = pl.Series(model.own.owners)
    best = best.with_columns(
        model.own.products.gather(best["_i"]).alias("_ante"),
        (pl.col("co_owners").fill_null(1.0) / owners.gather(best["_i"])).alias("_share"),
    )
    codes = model.segment_of[u]
    out = targets.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_k")).join(
        best.select(pl.Series("_k", np.flatnonzero(cited)), "_i", "_ante", "_share", "_w"), on="_k", how="left", maintain_order="left",
    ).drop("_k")
    out = out.with_columns(pl.Series("_seg_share", model.segment_penetration[codes, j]), pl.Series("_code", codes.astype(np.int64)))
    by_item = pl.col("_ante").is_not_null() & (pl.col("_w") >= pl.col("_seg_share") * SEGMENT_WEIGHT)
    # A reason's text follows from its key alone, (cited product, offer) or (segment, offer): it is written
    # once per key and every offer of that key shares it, not formatted again for each of millions of rows.
    out = out.with_columns(pl.when(by_item).then(pl.col("_i")).otherwise(-1 - pl.col("_code")).alias("_key"))
    by_product = pl.col("_key") >= 0  # by_item, read back from the key
    texts = out.select("_key", "_j", "_ante", "_share", "_seg_share", "_code", "product_id").unique(["_key", "_j"])
    texts = texts.with_columns(pl.Series(model.segments).gather(texts["_code"]).alias("_segment"))
    reason = (
        pl.when(by_product)
        .then(pl.format("bought {}; {}% of its buyers also buy {}", pl.col("_ante"), (pl.col("_share") * 100).round(0).cast(pl.Int64), pl.col("product_id")))
        .otherwise(pl.format("popular in segment {}: {}% own it", pl.col("_segment"), (pl.col("_seg_share") * 100).round(0).cast(pl.Int64)))
    )
    out = out.join(texts.select("_key", "_j", reason.alias("reason")), on=["_key", "_j"], how="left", maintain_order="left")
    out = out.with_columns(pl.when(by_product).then(pl.col("_i")).alias("_i"), pl.when(by_product).then(pl.col("_ante")).alias("because_of"))
    return out.drop("_ante", "_share", "_w", "_seg_share", "_code", "_key")


def _strongest_inputs(X: sparse.csr_matrix, W: sparse.csr_matrix | EntryLookup, u: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per offer ``(u[k], j[k])``: the owned product i with the largest positive weight ``W[i, j]`` (ties: the smallest i) and that weight.

    -1 (and 0) where no owned product has a positive weight toward the offer. Vectorised
    over every (offer, owned product) entry: one look-up of W, one maximum per offer.
    """
    weight = W if isinstance(W, EntryLookup) else EntryLookup(W)  # prepared once for every run of offers
    n = len(u)
    counts = np.diff(X.indptr)[u].astype(np.int64)
    total = int(counts.sum())
    best_i, best_w = np.full(n, -1, dtype=np.int64), np.zeros(n)
    if total == 0:
        return best_i, best_w
    if total > EXPLAIN_ENTRIES and n > 1:  # bounded memory: offers in consecutive runs of about EXPLAIN_ENTRIES entries
        cuts = np.searchsorted(np.cumsum(counts), np.arange(EXPLAIN_ENTRIES, total, EXPLAIN_ENTRIES), side="right")
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
            if hi > lo:
                best_i[lo:hi], best_w[lo:hi] = _strongest_inputs(X, weight, u[lo:hi], j[lo:hi])
        return best_i, best_w
    ends = np.cumsum(counts)
    starts = ends - counts
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts, counts) + np.repeat(X.indptr[u].astype(np.int64), counts)
    i = X.indices[pos].astype(np.int64)
    w = weight(i, np.repeat(j.astype(np.int64), counts))
    w = np.where(w > 0, w, -np.inf)
    some = counts > 0
    first = starts[some]
    top = np.full(n, -np.inf)
    top[some] = np.maximum.reduceat(w, first)
    is_top = (w == np.repeat(top, counts)) & np.isfinite(w)
    smallest = np.minimum.reduceat(np.where(is_top, i, np.iinfo(np.int64).max), first)
    found = np.isfinite(top)
    found_some = found[some]
    best_i[np.flatnonzero(some)[found_some]] = smallest[found_some]
    best_w[found] = top[found]
    return best_i, best_w


def offer_relations(model: CrossSellModel, targets: pl.DataFrame) -> pl.DataFrame:
    """Add each offer's ``relation`` to what the customer owns (``targets`` from :func:`explain_targets`).

    - ``variant``: another colour, size or pattern of something they own that its owners
      rarely buy too (they chose one): only offered with allow_variants;
    - ``variant, often bought together``: another colour, size or pattern its owners also
      buy (a set people collect, see :func:`segments.variants.split_variants`);
    - ``bundle``: at least half of the co-owners bought both in one order (a set member);
    - ``accessory``: of the offer's buyers, at least ``ACCESSORY_SHARE`` also own the cited
      product and, on average, bought it no earlier: bought almost only after its base;
    - ``complement``: any other offer that follows from a product they own;
    - ``segment favourite``: offered for the customer's segment, not for a product they own.
    """
    X = model.own.X.tocoo()
    owned = pl.DataFrame({"_u": X.row.astype(np.int64), "_i": X.col.astype(np.int64)})

    def variant_of_owned(V: sparse.csr_matrix | None) -> pl.DataFrame:
        """The offers (_u, _j) that are a variant in ``V`` of something the customer owns."""
        if V is None or not V.nnz:
            return pl.DataFrame(schema={"_u": pl.Int64, "_j": pl.Int64})
        C = V.tocoo()
        var = pl.DataFrame({"_i": C.row.astype(np.int64), "_j": C.col.astype(np.int64)})
        return targets.select("_u", "_j").join(owned, on="_u").join(var, on=["_i", "_j"], how="semi").select("_u", "_j").unique()

    is_variant = variant_of_owned(model.variants)
    is_collected = variant_of_owned(model.collected_variants)
    pairs = model.pairs.select(
        pl.col("i").alias("_i"), pl.col("j").alias("_j"), "co_owners", "same_order",
        (pl.col("days_sum_j") >= pl.col("days_sum_i")).alias("_after"),
    )
    owners_j = pl.Series(model.own.owners).gather(targets["_j"])
    out = (
        targets.with_columns(owners_j.alias("_owners_j"))
        .join(pairs, on=["_i", "_j"], how="left", maintain_order="left")
        .join(is_variant.with_columns(pl.lit(True).alias("_variant")), on=["_u", "_j"], how="left", maintain_order="left")
        .join(is_collected.with_columns(pl.lit(True).alias("_collected")), on=["_u", "_j"], how="left", maintain_order="left")
    )
    relation = (
        pl.when(pl.col("_variant").fill_null(False)).then(pl.lit(COMPETING_VARIANT))
        .when(pl.col("_collected").fill_null(False)).then(pl.lit(COLLECTED_VARIANT))
        .when(pl.col("_i").is_null()).then(pl.lit("segment favourite"))
        .when(pl.col("same_order") >= SAME_ORDER_BUNDLE * pl.col("co_owners")).then(pl.lit("bundle"))
        .when((pl.col("co_owners") >= ACCESSORY_SHARE * pl.col("_owners_j")) & pl.col("_after")).then(pl.lit("accessory"))
        .otherwise(pl.lit("complement"))
    )
    return out.with_columns(relation.alias("relation")).drop("_owners_j", "co_owners", "same_order", "_after", "_variant", "_collected")


def expected_buyers_by_segment(model: CrossSellModel, *, allow_substitutes: bool = False, allow_variants: bool = False) -> np.ndarray:
    """Segments x products: the sum of non-owners' calibrated probabilities of buying within the offer horizon."""
    return expected_by_segment(model, allow_substitutes=allow_substitutes, allow_variants=allow_variants)[0]


def table_sample(model: CrossSellModel) -> tuple[np.ndarray, np.ndarray] | None:
    """Customers (indices, ascending) and their weights when every customer x product would exceed ``TABLE_CELLS``; else None.

    A million customers over fifty thousand products are 5e10 cells, where each segment's
    sums are well estimated from a few thousand of its customers: the same number drawn
    from each segment (all of a smaller one), each weighted by its segment's size over
    those drawn, so that every sum estimates the whole segment's (Horvitz-Thompson). The
    draw is seeded: the same log gives the same table.
    """
    n, p = model.own.X.shape
    if n * p <= TABLE_CELLS:
        return None
    per_segment = max(1, TABLE_CELLS // p // max(len(model.segments), 1))
    rng = np.random.default_rng(0)
    rows, weights = [], []
    for code in range(len(model.segments)):
        members = np.flatnonzero(model.segment_of == code)
        drawn = members if len(members) <= per_segment else np.sort(rng.choice(members, per_segment, replace=False))
        rows.append(drawn)
        weights.append(np.full(len(drawn), len(members) / max(len(drawn), 1)))
    rows_, weights_ = np.concatenate(rows), np.concatenate(weights)
    order = np.argsort(rows_, kind="stable")
    return rows_[order], weights_[order]


def expected_by_segment(model: CrossSellModel, *, allow_substitutes: bool = False, allow_variants: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Segments x products: non-owners' expected buyers (sum of probabilities) and expected revenue within the horizon.

    Revenue sums each non-owner's probability x what they would spend (:func:`value_per_buyer`).
    Over every customer, or estimated from a sample of each segment when that would be too
    many cells (:func:`table_sample`).
    """
    n, p = model.own.X.shape
    buyers = np.zeros((len(model.segments), p))
    revenue = np.zeros((len(model.segments), p))
    products = np.arange(p)
    sample = table_sample(model)
    # Blocks of (customers, their weights): every customer once, or the sample's.
    blocks: list[tuple[slice | np.ndarray, np.ndarray | None]] = (
        [(rows, None) for rows in _chunks(n, p)] if sample is None
        else [(sample[0][at], sample[1][at]) for at in _row_chunks(np.arange(len(sample[0])), p)])

    def sums_of(block: tuple[slice | np.ndarray, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        rows, weight = block
        u = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        probability, score = model_scores(model, rows, allow_substitutes=allow_substitutes, allow_variants=allow_variants)
        onehot = segment_onehot(model.segment_of[u], len(model.segments), weight)
        band = rank_bands(score) if model.calibration is not None and model.calibration.rank_ratios is not None else None
        return onehot @ probability, onehot @ (probability * value_per_buyer(model, u[:, None], products[None, :], band))

    for block_buyers, block_revenue in ordered_map(sums_of, blocks):  # added in block order: the same bits on any thread count
        buyers += block_buyers
        revenue += block_revenue
    return buyers, revenue


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
    expected_buyers, expected_revenue = expected_by_segment(model)
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
            "expected_revenue": expected_revenue.ravel(),
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
    calibration: pl.DataFrame | None = None  # offers by score decile: expected against actual buyers and revenue
    segment_calibration: pl.DataFrame | None = None  # the segment ranking's rows: expected against actual
    horizon_days: int = 0  # of the expectations checked (the holdout's length)
    warnings: tuple[str, ...] = ()  # expectations that missed the holdout by more than CALIBRATION_TOLERANCE


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
        owned = model.own.X[sel]
        lists["model"].append(_top_k(offer_scores(model, sel), kmax)[0])
        lists["random"].append(_top_k(_masked(rng.random((len(sel), p)), owned, None), kmax)[0])
        lists["popularity"].append(_top_k(_masked(np.tile(model.population_penetration, (len(sel), 1)), owned, None), kmax)[0])
        lists["segment_popularity"].append(_top_k(_masked(model.segment_penetration[model.segment_of[sel]].copy(), owned, None), kmax)[0])
    t, r = truth[evaluated], revenue[evaluated]
    metrics = {name: ranking_metrics(np.vstack(v), t, r, p) for name, v in lists.items()}
    return metrics.pop("model"), metrics, len(evaluated)


def offer_calibration(targets: pl.DataFrame, truth: sparse.csr_matrix, spend: sparse.csr_matrix) -> pl.DataFrame:
    """Offers (``_u, _j, score, purchase_probability, expected_revenue``) by score decile, with a total row.

    Actual buyers: offers whose customer bought the product for the first time in the
    holdout; actual revenue: what they spent on it there.
    """
    u, j = targets["_u"].to_numpy().copy(), targets["_j"].to_numpy().copy()
    frame = targets.select("score", "purchase_probability", "expected_revenue").with_columns(
        pl.Series("_bought", np.asarray(truth[u, j]).ravel() > 0),
        pl.Series("_spent", np.asarray(spend[u, j]).ravel()),
        (10 - (pl.col("score").rank("ordinal", descending=True) - 1) * 10 // pl.len()).cast(pl.Int64).alias("decile"),
    )
    aggs = [
        pl.len().alias("offers"),
        pl.col("score").min().alias("min_score"),
        # Fixed-point sums: the same offers give byte-identical totals whatever order the threads add them in.
        exact_sum(pl.col("purchase_probability")).alias("expected_buyers"),
        pl.col("_bought").sum().cast(pl.Float64).alias("actual_buyers"),
        exact_sum(pl.col("expected_revenue")).alias("expected_revenue"),
        exact_sum(pl.col("_spent")).alias("actual_revenue"),
    ]
    by_decile = frame.group_by("decile").agg(aggs).sort("decile", descending=True).with_columns(pl.col("decile").cast(pl.String))
    total = frame.select(aggs).with_columns(pl.lit("all").alias("decile"))
    return pl.concat([by_decile, total.select(by_decile.columns)])


def segment_ranking_calibration(model: CrossSellModel, ranking: pl.DataFrame, truth: sparse.csr_matrix, spend: sparse.csr_matrix) -> pl.DataFrame:
    """The segment ranking's rows beside the segment's actual first-time buyers of each product and their spend."""
    onehot = segment_onehot(model.segment_of, len(model.segments))
    buyers = np.asarray((onehot @ truth).todense())
    spent = np.asarray((onehot @ spend).todense())
    seg = ranking["segment"].replace_strict({s: k for k, s in enumerate(model.segments)}, return_dtype=pl.Int64).to_numpy()
    prod = pl.DataFrame({"product_id": model.own.products, "_j": np.arange(len(model.own.products))})
    j = ranking.select("product_id").join(prod, on="product_id", how="left", maintain_order="left")["_j"].to_numpy().copy()
    return ranking.select("segment", "rank", "product_id", "expected_buyers", "expected_revenue").with_columns(
        pl.Series("actual_buyers", buyers[seg, j]), pl.Series("actual_revenue", spent[seg, j]),
    )


def calibration_warnings(offers: pl.DataFrame | None, segments: pl.DataFrame | None, horizon_days: int) -> tuple[str, ...]:
    """One line per sum of expected buyers or revenue (offers, segment ranking) off the actual by more than ``CALIBRATION_TOLERANCE``.

    The probabilities and spend are calibrated on the log's last ``horizon_days`` before the
    holdout; a holdout in another season (an autumn peak after a summer) or after a change
    does not behave like them, and nothing fitted before the holdout can know. Spend is
    heavy-tailed: a few large orders move a sum over a few hundred buyers, and the segment
    ranking's rows, chosen for their expected revenue, run high by that choice.
    """
    totals = []
    if offers is not None and offers.height:
        totals.append(("top offers", offers.filter(pl.col("decile") == "all").row(0, named=True)))
    if segments is not None and segments.height:
        totals.append(("segment ranking", segments.select(pl.col("expected_buyers", "actual_buyers", "expected_revenue", "actual_revenue").sum())
                       .row(0, named=True)))
    notes = []
    for name, row in totals:
        missed = []
        for what in ("buyers", "revenue"):
            expected, actual = row[f"expected_{what}"], row[f"actual_{what}"]
            if actual > 0 and abs(expected / actual - 1) > CALIBRATION_TOLERANCE:
                missed.append(f"expected {what} {expected:,.0f} against {actual:,.0f} actual ({expected / actual:.2f}x)")
        if missed:
            notes.append(f"cross-sell {name}: {'; '.join(missed)} on this holdout: it does not behave like the {horizon_days} days "
                         "before it that the probabilities and spend were calibrated on (seasonality, a change or a few large "
                         "orders do this), so read expected buyers and revenue as indicative")
    return tuple(notes)

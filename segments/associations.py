"""Who owns what, and which products go together: sparse counting, no one-hot table.

Ownership is a sparse customer x product matrix X (1 where the customer bought the
product). Every pair statistic is a sparse product: co-owners ``C = X'X``, orders
containing both ``B = Xo'Xo`` (Xo: order x product), and the sum over co-owners of
the first purchase day of each product ``S = X'T`` (T: X with first-purchase days
for values), from which ``mean_days_between(i, j) = (S_ij - S_ji) / C_ij``. Products
are processed in column blocks and pairs below ``min_count`` co-owners are dropped
as each block is done, so memory follows the number of pairs kept, not products
squared.

Rule metrics (customer level, N customers): ``support = C_ij / N``, ``confidence(i ->
j) = C_ij / n_i``, ``lift = confidence / (n_j / N)``, ``leverage = support - (n_i / N)(n_j /
N)``, ``conviction = (1 - n_j / N) / (1 - confidence)`` (infinite when confidence is 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from clv.errors import InputError, option
from clv.rfm import collect
from clv.scalars import to_float, to_int

BLOCK_NONZEROS = 20_000_000  # entries of a dense-ish product block before pruning
MIN_PAIR_COUNT = 2
SAME_ORDER_BUNDLE = 0.5  # pairs co-bought in one order by at least half their co-owners are bundles
SUBSTITUTE_LIFT = 0.5  # same category, co-owned at under half the rate independence predicts
SUBSTITUTE_MIN_EXPECTED = 5.0  # ... when independence predicts at least this many co-owners

# Lines that are not products: a short description (or id) that ends in a service word,
# so "Next Day Carriage" is a service and "BLACK BAROQUE CARRIAGE CLOCK" a product.
SERVICE_PATTERN = (
    r"(?i)^\s*(\S+\s+){0,2}(postage|carriage|shipping|delivery( charges?)?|manual|discounts?|adjust(ment)?|"
    r"bank charges?|fees?|commission|samples?|vouchers?|bad debt)\s*$"
)
DIGIT_SHARE_FOR_CODE_RULE = 0.9
TINY_AMOUNT = 0.01


@dataclass(frozen=True)
class Ownership:
    """Sparse ownership: ``X[u, j] = 1`` when customer ``customers[u]`` bought ``products[j]``."""

    X: sparse.csr_matrix
    first_day: sparse.csr_matrix  # same pattern as X: day number of the first purchase
    customers: pl.Series
    products: pl.Series
    baskets: sparse.csr_matrix | None  # order x product, when orders are known

    @property
    def owners(self) -> np.ndarray:
        return np.asarray(self.X.sum(axis=0)).ravel()


def non_product_ids(lines: pl.DataFrame | pl.LazyFrame, exclude: str | None = None) -> pl.DataFrame:
    """Products that are not products, with the rule that caught each (``product_id, reason``).

    A product id is excluded when:

    1. it or its description matches ``exclude`` (a regular expression), or
    2. its description matches ``SERVICE_PATTERN`` (postage, carriage, fee, discount,
       manual, adjustment, bank charges, commission, samples, voucher, ...), or
    3. most ids (over 90%) contain a digit and this one has none (``POST``, ``DOT``, ``M``), or
    4. its median line amount is at most 0.01 (``PADS`` at 0.001; adjustments and
       discounts, which are negative).

    ``lines`` (lazy or not) has ``product_id, amount`` and optionally ``description``.
    """
    lines = lines.lazy()
    has_desc = "description" in lines.collect_schema().names()
    per = collect(lines.group_by("product_id").agg(
        pl.col("amount").median().alias("_median"),
        (pl.col("description").drop_nulls().first() if has_desc else pl.lit(None, dtype=pl.String)).alias("_desc"),
    ))
    ids = per["product_id"]
    with_digit = to_float(ids.str.contains(r"\d").mean(), null=0.0)
    reasons = [
        (pl.col("product_id").str.contains(exclude) | pl.col("_desc").fill_null("").str.contains(exclude), "matches --exclude-products")
        if exclude else None,
        (pl.col("_desc").fill_null("").str.contains(SERVICE_PATTERN) | pl.col("product_id").str.contains(SERVICE_PATTERN), "service or fee line"),
        (~pl.col("product_id").str.contains(r"\d"), "service code (no digits, unlike most ids)") if with_digit > DIGIT_SHARE_FOR_CODE_RULE else None,
        (pl.col("_median") <= TINY_AMOUNT, "zero, tiny or negative prices"),
    ]
    reason = pl.lit(None, dtype=pl.String)
    for rule in reversed([r for r in reasons if r is not None]):
        reason = pl.when(rule[0]).then(pl.lit(rule[1])).otherwise(reason)
    excluded = per.select("product_id", reason.alias("reason")).filter(pl.col("reason").is_not_null()).sort("product_id")
    n_products = per["product_id"].drop_nulls().len()
    if n_products and excluded["product_id"].drop_nulls().len() == n_products:
        how = f"{option('exclude_products', exclude)} and the built-in rules" if exclude else "the built-in rules (services, fees, tiny prices)"
        raise InputError(
            f"{how} leave out all {n_products:,} products, so there is nothing to cross-sell; "
            f"narrow {option('exclude_products')}, e.g. '^POST$', or check the product and amount columns"
        )
    return excluded


MAX_PATTERN_LENGTH = 1_000


def _regex_problem(message: str) -> str:
    """The one line of a polars (Rust ``regex``) error that says what is wrong."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("error:"):
            return ln.removeprefix("error:").strip()
    return lines[0].removeprefix("regex error:").strip() if lines else "it does not compile"


def validate_pattern(pattern: str | None) -> None:
    """Check an ``--exclude-products`` pattern with the engine that runs it, before any work.

    polars uses Rust's ``regex`` syntax: no look-ahead, look-behind or backreferences.
    A pattern that matches the empty text (``.*``, ``x?``) matches every product id, so
    it would leave nothing to cross-sell; both are one :class:`InputError`.
    """
    if pattern is None:
        return
    shown = pattern if len(pattern) <= 60 else pattern[:60] + "..."
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InputError(f"{option('exclude_products', shown)} is {len(pattern):,} characters long; keep it under {MAX_PATTERN_LENGTH:,}")
    try:
        matches_empty = pl.select(pl.lit("").str.contains(pattern)).item()
    except pl.exceptions.PolarsError as exc:
        problem = _regex_problem(str(exc))
        if "look-around" in problem:
            hint = ("list what to leave out instead of what to keep, e.g. '^(POST|DOT|M)$' or 'GIFT|VOUCHER'; "
                    "the built-in rules already drop postage, fees and codes without digits")
        elif "backreference" in problem:
            hint = "spell the repeated text out, e.g. 'AA|BB' instead of '(A|B)\\1'"
        else:
            hint = "fix the pattern; a plain word such as 'POSTAGE' or an anchored '^POST$' works"
        raise InputError(f"{option('exclude_products', shown)} is not a valid regular expression here ({problem}); {hint}") from None
    if matches_empty:
        raise InputError(
            f"{option('exclude_products', shown)} matches every product (it matches even empty text), which would leave nothing "
            "to cross-sell; name what to leave out, e.g. '^POST$' or 'POSTAGE|CARRIAGE'"
        )


def build_ownership(lines: pl.LazyFrame | pl.DataFrame, customers: pl.Series | None = None) -> Ownership:
    """Ownership from purchase lines (``customer_id, product_id, date[, order_id]``, amounts > 0).

    ``customers`` fixes the row order (default: sorted ids in ``lines``); products are
    sorted ids. Only aggregates are collected (first purchase per customer and product,
    distinct order-product pairs), never the lines themselves. A line without an order id
    is in no basket; when no line has one there are no baskets, as without the column.
    """
    lines = lines.lazy()
    first = collect(lines.group_by("customer_id", "product_id").agg(pl.col("date").min().alias("_first")))
    if first.height == 0:
        raise InputError(
            "no purchase line has a product id, so there is nothing to cross-sell; "
            f"check that the product column is filled in, or name another with {option('product_col')}"
        )
    if customers is None:
        customers = first["customer_id"].unique().sort()
    products = first["product_id"].unique().sort()
    cust_idx = pl.DataFrame({"customer_id": customers, "_u": np.arange(len(customers), dtype=np.int64)})
    prod_idx = pl.DataFrame({"product_id": products, "_j": np.arange(len(products), dtype=np.int64)})
    first = first.join(cust_idx, on="customer_id").join(prod_idx, on="product_id")
    day0 = first["_first"].min()
    days = ((first["_first"] - day0).dt.total_seconds() / 86_400.0).to_numpy() + 1.0  # +1: keep day 0 non-zero
    shape = (len(customers), len(products))
    rows, cols = first["_u"].to_numpy(), first["_j"].to_numpy()
    X = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=shape)
    T = sparse.csr_matrix((days, (rows, cols)), shape=shape)
    del first
    baskets = None
    if "order_id" in lines.collect_schema().names():
        orders = collect(
            lines.select("order_id", "product_id").drop_nulls("order_id").unique()
            .join(prod_idx.lazy(), on="product_id")
            .select(pl.col("order_id").rank("dense").cast(pl.Int64).alias("_o") - 1, "_j")
        )
        if orders.height:
            baskets = sparse.csr_matrix(
                (np.ones(orders.height), (orders["_o"].to_numpy(), orders["_j"].to_numpy())),
                shape=(to_int(orders["_o"].max()) + 1, len(products)),
            )
    return Ownership(X, T, customers, products, baskets)


def _blocks(bounds: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive column ranges whose summed ``bounds`` (at most the nonzeros each column of a product
    can hold) stay within ``BLOCK_NONZEROS``; a column above it is a block of its own."""
    ends = np.cumsum(bounds, dtype=np.float64)
    blocks = []
    start, n = 0, len(bounds)
    while start < n:
        done = ends[start - 1] if start else 0.0
        stop = max(start + 1, int(np.searchsorted(ends, done + BLOCK_NONZEROS, side="right")))
        blocks.append((start, min(stop, n)))
        start = stop
    return blocks


def _canonical(m: sparse.spmatrix) -> sparse.csr_matrix:
    m = m.tocsr()
    m.sum_duplicates()
    m.sort_indices()
    return m


def _lookup(m: sparse.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``m[rows[k], cols[k]]`` for every k (0 where ``m`` holds nothing), by one sort of ``m``'s own entries."""
    coo = m.tocoo()
    width = np.int64(m.shape[1])
    keys = coo.row.astype(np.int64) * width + coo.col
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], coo.data[order]
    wanted = rows.astype(np.int64) * width + cols
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found = (keys[at] == wanted) if len(keys) else np.zeros(len(wanted), dtype=bool)
    return np.where(found, values[at] if len(keys) else 0.0, 0.0)


def pair_counts(own: Ownership, min_count: int = MIN_PAIR_COUNT) -> pl.DataFrame:
    """Ordered pairs (i != j) with at least ``min_count`` co-owners.

    Columns ``i, j, co_owners, same_order, days_sum_i, days_sum_j``. X'X, X'T and T'X
    share one sparsity pattern (T holds positive days where X holds ones), and the
    basket counts Xo'Xo fit inside it, so in canonical form all their data arrays
    line up: no joins, no element look-ups.

    A product with fewer than ``min_count`` owners is in no such pair, so it is left out
    before any product is formed: in a wide catalogue (millions of products, most bought
    by one customer) that leaves few columns. Column blocks are cut by an exact bound on
    the nonzeros of their block of X'X (column j holds at most the sum, over j's owners,
    of how many products each owns), so a block never outgrows ``BLOCK_NONZEROS`` however
    the purchases are spread, and the counts stay exact.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise InputError(f"min_count = {min_count!r} must be a whole number of co-owners, at least 1")
    kept = np.flatnonzero(own.owners >= min_count)
    X = _canonical(own.X).tocsc()[:, kept]
    Xt = X.T.tocsr()
    T = _canonical(own.first_day).tocsc()[:, kept]
    Tt = T.T.tocsr()
    B = own.baskets.tocsc()[:, kept] if own.baskets is not None else None
    Bt = B.T.tocsr() if B is not None else None
    products_per_customer = np.diff(X.tocsr().indptr).astype(np.float64)
    bounds = Xt @ products_per_customer
    frames = [pl.DataFrame(schema={"i": pl.Int64, "j": pl.Int64, "co_owners": pl.Float64, "same_order": pl.Float64,
                                   "days_sum_i": pl.Float64, "days_sum_j": pl.Float64})]
    for start, stop in _blocks(bounds):
        # Same patterns in the same index order give the same output order: the three data arrays
        # line up without sorting the products (T's values are positive, so no entry cancels).
        C = Xt @ X[:, start:stop]
        days_j = (Xt @ T[:, start:stop]).data
        days_i = (Tt @ X[:, start:stop]).data
        coo = C.tocoo()
        keep = (coo.data >= min_count) & (coo.row != coo.col + start)
        rows, cols = coo.row[keep], coo.col[keep]
        if Bt is not None and B is not None:
            same = _lookup(Bt @ B[:, start:stop], rows, cols)
        else:
            same = np.full(rows.size, np.nan)
        frames.append(
            pl.DataFrame(
                {
                    "i": kept[rows].astype(np.int64),
                    "j": kept[cols + start].astype(np.int64),
                    "co_owners": coo.data[keep],
                    "same_order": same,
                    "days_sum_i": days_i[keep],
                    "days_sum_j": days_j[keep],
                }
            )
        )
    pairs = pl.concat(frames).with_columns(pl.col("same_order").fill_nan(None))
    return pairs.sort("i", "j")


def association_rules(own: Ownership, pairs: pl.DataFrame) -> pl.DataFrame:
    """Rules ``antecedent -> consequent`` with counts, support, confidence, lift, leverage, conviction and timing."""
    n = float(own.X.shape[0])
    owners = own.owners
    prod = own.products
    rules = pairs.with_columns(
        pl.Series("antecedent_owners", owners[pairs["i"].to_numpy()]),
        pl.Series("consequent_owners", owners[pairs["j"].to_numpy()]),
    ).with_columns(
        (pl.col("co_owners") / n).alias("support"),
        (pl.col("co_owners") / pl.col("antecedent_owners")).alias("confidence"),
        (pl.col("co_owners") * n / (pl.col("antecedent_owners") * pl.col("consequent_owners"))).alias("lift"),
        (pl.col("co_owners") / n - pl.col("antecedent_owners") * pl.col("consequent_owners") / n**2).alias("leverage"),
        ((pl.col("days_sum_j") - pl.col("days_sum_i")) / pl.col("co_owners")).alias("mean_days_between"),
    ).with_columns(
        pl.when(pl.col("confidence") < 1)
        .then((1 - pl.col("consequent_owners") / n) / (1 - pl.col("confidence")))
        .otherwise(float("inf"))
        .alias("conviction"),
        pl.when(pl.col("same_order").is_null())
        .then(pl.lit("unknown (no order column)"))
        .when(pl.col("same_order") >= SAME_ORDER_BUNDLE * pl.col("co_owners"))
        .then(pl.lit("same order"))
        .otherwise(pl.lit("later order"))
        .alias("timing"),
    )
    return rules.select(
        prod.gather(rules["i"]).alias("antecedent"),
        prod.gather(rules["j"]).alias("consequent"),
        pl.col("antecedent_owners").cast(pl.Int64),
        pl.col("consequent_owners").cast(pl.Int64),
        pl.col("co_owners").cast(pl.Int64),
        pl.col("same_order").cast(pl.Int64).alias("orders_together"),
        "support", "confidence", "lift", "leverage", "conviction", "timing", "mean_days_between",
    ).sort(["lift", "co_owners", "antecedent", "consequent"], descending=[True, True, False, False])


def substitute_pairs(own: Ownership, pairs: pl.DataFrame, category: pl.DataFrame) -> sparse.csr_matrix:
    """Same-category pairs owned together far less than independence predicts (symmetric, boolean).

    Pairs never co-owned are not in ``pairs``; they count as co-owned 0 times.
    """
    n = float(own.X.shape[0])
    owners = own.owners
    prod_cat = pl.DataFrame({"product_id": own.products}).join(category, on="product_id", how="left")["category"]
    cats = prod_cat.fill_null("").to_numpy()
    n_p = len(owners)
    cat_frame = pl.DataFrame({"j": np.arange(n_p), "category": cats, "owners": owners}).filter(pl.col("category") != "")
    same = cat_frame.join(cat_frame, on="category", suffix="_b").filter(pl.col("j") < pl.col("j_b"))
    same = same.with_columns((pl.col("owners") * pl.col("owners_b") / n).alias("expected")).filter(pl.col("expected") >= SUBSTITUTE_MIN_EXPECTED)
    if same.height == 0:
        return sparse.csr_matrix((n_p, n_p), dtype=bool)
    observed = same.join(pairs.select(pl.col("i").alias("j"), pl.col("j").alias("j_b"), "co_owners"), on=["j", "j_b"], how="left")
    subs = observed.filter(pl.col("co_owners").fill_null(0.0) < SUBSTITUTE_LIFT * pl.col("expected"))
    i = subs["j"].to_numpy()
    j = subs["j_b"].to_numpy()
    data = np.ones(2 * len(i), dtype=bool)
    return sparse.csr_matrix((data, (np.r_[i, j], np.r_[j, i])), shape=(n_p, n_p))

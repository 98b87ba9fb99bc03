"""Who owns what, and which products go together: sparse counting, no one-hot table.

Ownership is a sparse customer x product matrix X (1 where the customer bought the
product). Every pair statistic is a sparse product: co-owners ``C = X'X``, orders
containing both ``B = Xo'Xo`` (Xo: order x product), and the sum over co-owners of
the first purchase day of each product ``S = X'T`` (T: X with first-purchase days
for values), from which ``mean_days_between(i, j) = (S_ij - S_ji) / C_ij``. Products
are processed in column blocks and pairs below ``min_count`` co-owners are dropped
as each block is done, so memory follows the number of pairs kept, not products
squared. A few products owned by many customers (most shops' logs) are counted from
dense blocks of rows instead, BLAS products of whole numbers that are exact in any order.

Rule metrics (customer level, N customers): ``support = C_ij / N``, ``confidence(i ->
j) = C_ij / n_i``, ``lift = confidence / (n_j / N)``, ``leverage = support - (n_i / N)(n_j /
N)``, ``conviction = (1 - n_j / N) / (1 - confidence)`` (infinite when confidence is 1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from clv import threads
from clv.errors import InputError, option
from clv.rfm import collect
from clv.scalars import to_float

BLOCK_NONZEROS = 20_000_000  # entries of a dense-ish product block before pruning
# A few products owned by many: a product of dense row blocks beats the sparse product when its
# multiply-adds (rows x products^2) are at most this many times the sparse product's (the sum over
# rows of entries^2). Measured on 2 cores, 917,431 customers x 48 products (a ratio of 36): X'X
# 0.29 s dense against 0.74-1.43 s sparse; 2,853,821 orders of two products or more (a ratio of
# 385): 0.67 s against 1.0 s.
DENSE_GRAM_RATIO = 400
DENSE_GRAM_PRODUCTS = 2_000  # at most: the dense path holds a few products^2 arrays at once (about 200 MB at 2,000)
DENSE_GRAM_CELLS = 4_000_000  # rows x products made dense at once (16 MB as float32)
FLOAT32_EXACT = 2**24  # whole numbers up to this are exact in float32
TRIANGLE_BLOCKS = 8  # column blocks X'X is cut into at least, when only its upper triangle is formed
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
    basket_customer: np.ndarray | None = None  # customer row (in X) of each basket row

    @property
    def owners(self) -> np.ndarray:
        return np.asarray(self.X.sum(axis=0)).ravel()


def non_product_ids(lines: pl.DataFrame | pl.LazyFrame, exclude: str | None = None) -> pl.DataFrame:
    """Products that are not products, with the rule that caught each (``product_id, reason``).

    ``lines`` (lazy or not) has ``product_id, amount`` and optionally ``description``; they
    are counted per product as in the catalogue aggregate (:mod:`segments.aggregates`) and
    judged by :func:`excluded_products`.
    """
    lines = lines.lazy()
    has_desc = "description" in lines.collect_schema().names()
    per = collect(lines.group_by("product_id").agg(
        pl.len().cast(pl.Int64).alias("n_lines"),
        (pl.col("amount") <= TINY_AMOUNT).sum().cast(pl.Int64).alias("n_tiny_lines"),
        *([pl.col("description").drop_nulls().mode().sort().first()] if has_desc else []),
    ))
    return excluded_products(per, exclude)


def excluded_products(catalogue: pl.DataFrame, exclude: str | None = None) -> pl.DataFrame:
    """Products of the catalogue (``product_id, n_lines, n_tiny_lines[, description]``) that are not products, with the rule.

    A product id is excluded when:

    1. it or its description matches ``exclude`` (a regular expression), or
    2. its description matches ``SERVICE_PATTERN`` (postage, carriage, fee, discount,
       manual, adjustment, bank charges, commission, samples, voucher, ...), or
    3. most ids (over 90%) contain a digit and this one has none (``POST``, ``DOT``, ``M``), or
    4. at least half of its lines are at most 0.01 (``PADS`` at 0.001; adjustments and
       discounts, which are negative): a count, so a database computes it exactly too.
    """
    desc = pl.col("description") if "description" in catalogue.columns else pl.lit(None, dtype=pl.String)
    per = catalogue.select("product_id", desc.alias("_desc"), (2 * pl.col("n_tiny_lines") >= pl.col("n_lines")).alias("_tiny"))
    ids = per["product_id"]
    with_digit = to_float(ids.str.contains(r"\d").mean(), null=0.0)
    reasons = [
        (pl.col("product_id").str.contains(exclude) | pl.col("_desc").fill_null("").str.contains(exclude), "matches --exclude-products")
        if exclude else None,
        (pl.col("_desc").fill_null("").str.contains(SERVICE_PATTERN) | pl.col("product_id").str.contains(SERVICE_PATTERN), "service or fee line"),
        (~pl.col("product_id").str.contains(r"\d"), "service code (no digits, unlike most ids)") if with_digit > DIGIT_SHARE_FOR_CODE_RULE else None,
        (pl.col("_tiny"), "zero, tiny or negative prices"),
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


def build_ownership(lines: pl.LazyFrame | pl.DataFrame, customers: pl.Series | None = None, *,
                    orders: pl.LazyFrame | pl.DataFrame | None = None) -> Ownership:
    """Ownership from purchase lines (``customer_id, product_id, date[, order_id]``, amounts > 0).

    ``customers`` fixes the row order (default: sorted ids in ``lines``); products are
    sorted ids. Only aggregates are collected (first purchase per customer and product,
    distinct order-product pairs), never the lines themselves. A line without an order id
    is in no basket; when no line has one there are no baskets, as without the column.
    ``orders`` (``order_id, product_id, customer_id``: the baskets aggregate, one row per
    order and product) gives the baskets instead of the lines' own order ids.
    """
    lines = lines.lazy()
    first = collect(lines.group_by("customer_id", "product_id").agg(pl.col("date").min().alias("first_purchase_at")))
    if orders is None and "order_id" in lines.collect_schema().names():
        orders = lines.select("order_id", "product_id", "customer_id").drop_nulls("order_id").group_by("order_id", "product_id").agg(
            pl.col("customer_id").min())
    return ownership_of(first, customers, orders=orders)


def ownership_of(first: pl.DataFrame, customers: pl.Series | None = None, *, orders: pl.LazyFrame | pl.DataFrame | None = None) -> Ownership:
    """Ownership from first purchases: one row per customer and product (``customer_id, product_id, first_purchase_at``).

    The purchases aggregate is such a frame already, so cross-sell builds its ownership
    from it without grouping the rows again. ``customers`` and ``orders`` (the baskets
    aggregate, one row per order and product) are as in :func:`build_ownership`. Rows
    sorted by customer (as the checked aggregates are) are numbered by one pass over the
    runs of equal ids, and baskets sorted by order alike; other orders give the same
    ownership by joins and a ranking.
    """
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
    first = first.select(_row_numbers(first["customer_id"], cust_idx, "_u"), "product_id", "first_purchase_at").drop_nulls("_u").join(
        prod_idx, on="product_id")
    day0 = first["first_purchase_at"].min()
    days = ((first["first_purchase_at"] - day0).dt.total_seconds() / 86_400.0).to_numpy() + 1.0  # +1: keep day 0 non-zero
    shape = (len(customers), len(products))
    rows, cols = first["_u"].to_numpy(), first["_j"].to_numpy()
    X = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=shape)
    T = sparse.csr_matrix((days, (rows, cols)), shape=shape)
    del first
    baskets = basket_customer = None
    if orders is not None:
        # Orders are numbered before the joins, so these need not keep the rows' order: the matrix and
        # each order's customer are the same for rows in any order.
        order_code = order_numbers(orders)
        basket_rows = collect(
            orders.lazy().drop_nulls("order_id").select(order_code.cast(pl.Int64).alias("_o"), "product_id", "customer_id")
            .join(prod_idx.lazy(), on="product_id")
            .join(cust_idx.lazy(), on="customer_id", how="left")
            .select("_o", "_j", pl.col("_u").fill_null(-1))
        )
        if basket_rows.height:
            o, u = basket_rows["_o"].to_numpy(), basket_rows["_u"].to_numpy()
            # The orders with a product in the ownership, numbered again 0, 1, ... in the same order: an
            # order whose products were all left out (a wide catalogue's single-buyer products) is no row.
            present = np.zeros(int(o.max()) + 1, dtype=bool)
            present[o] = True
            o = (np.cumsum(present) - 1)[o]
            n_orders = int(present.sum())
            # Built from coordinates, the matrix is canonical (sorted indices, no duplicates) whatever the rows' order.
            baskets = sparse.csr_matrix((np.ones(basket_rows.height), (o, basket_rows["_j"].to_numpy())), shape=(n_orders, len(products)))
            # An order id shared by two customers (bad data) belongs to the first of them: the smallest customer
            # number among its rows, where -1 (a customer not in ``customers``) is smaller than any.
            basket_customer = np.full(n_orders, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(basket_customer, o, u)
    return Ownership(X, T, customers, products, baskets, basket_customer)


def order_numbers(orders: pl.LazyFrame | pl.DataFrame) -> pl.Expr:
    """Each row's order numbered 0, 1, ... in the order of the ids: by runs of equal ids when ``orders`` is a frame
    sorted by ``order_id`` (the checked baskets aggregate), else by a dense rank (a sort of every id).

    Applied to ``orders``'s rows, or to rows taken from them in their order (an inner join
    that keeps the left order drops rows, never reorders them: the runs stay sorted)."""
    if isinstance(orders, pl.DataFrame) and orders["order_id"].is_sorted():
        return pl.col("order_id").rle_id()
    return pl.col("order_id").rank("dense") - 1


def _row_numbers(ids: pl.Series, index: pl.DataFrame, name: str) -> pl.Series:
    """Each id's number in ``index`` (``customer_id, <name>``; null when absent), by runs of equal ids when ``ids`` is sorted.

    A sorted column of millions of ids holds far fewer distinct ones: those are joined,
    and each row takes its run's number, instead of a join of every row.
    """
    if ids.is_sorted():
        runs = ids.rle_id()
        distinct = pl.DataFrame({"customer_id": ids.gather(runs.arg_unique())})  # arg_unique: each run's first row, in order
        numbers = distinct.join(index, on="customer_id", how="left", maintain_order="left")[name]
        return numbers.gather(runs).alias(name)
    return ids.to_frame("customer_id").join(index, on="customer_id", how="left", maintain_order="left")[name]


def _blocks(bounds: np.ndarray, limit: float | None = None) -> list[tuple[int, int]]:
    """Consecutive ranges (of columns, or rows) whose summed ``bounds`` stay within ``limit`` (default
    ``BLOCK_NONZEROS``: for pair counts, at most the nonzeros each column of a product can hold); an
    entry above it is a block of its own."""
    limit = BLOCK_NONZEROS if limit is None else limit
    ends = np.cumsum(bounds, dtype=np.float64)
    blocks = []
    start, n = 0, len(bounds)
    while start < n:
        done = ends[start - 1] if start else 0.0
        stop = max(start + 1, int(np.searchsorted(ends, done + limit, side="right")))
        blocks.append((start, min(stop, n)))
        start = stop
    return blocks


def _canonical(m: sparse.spmatrix) -> sparse.csr_matrix:
    m = m.tocsr()
    m.sum_duplicates()
    m.sort_indices()
    return m


class _FlatLookup:
    """Values stored at flat keys (row x width + column), read back for many keys at once; ``missing`` at any other key.

    A dense table of ``size`` cells when ``dense`` (one gather per look-up), else the keys
    sorted once and searched (memory of the keys only). The keys are unique.
    """

    def __init__(self, keys: np.ndarray, values: np.ndarray, size: int, missing: float, *, dense: bool) -> None:
        self.missing = missing
        self.table: np.ndarray | None = None
        if dense:
            self.table = np.full(size, missing, dtype=values.dtype)
            self.table[keys] = values
        else:
            order = np.argsort(keys, kind="stable")
            self.keys, self.values = keys[order], values[order]

    def __call__(self, wanted: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return self.table[wanted]
        if not len(self.keys):
            return np.full(len(wanted), self.missing, dtype=self.values.dtype)
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return np.where(self.keys[at] == wanted, self.values[at], self.missing)


LOOKUP_TABLE_CELLS = 4_000_000  # rows x columns up to which entries are looked up in a dense table (32 MB)


class EntryLookup:
    """``m[rows[k], cols[k]]`` for many k (0 where ``m`` holds nothing), from one preparation of ``m``.

    A dense table when ``m`` has at most ``LOOKUP_TABLE_CELLS`` cells (a catalogue of
    hundreds or a few thousand products), else ``m``'s entries sorted once and searched
    (any size, memory of its entries).
    """

    def __init__(self, m: sparse.spmatrix) -> None:
        coo = m.tocoo()
        coo.sum_duplicates()  # a copy's: ``m`` is left as it is
        self.width = np.int64(m.shape[1])
        size = m.shape[0] * m.shape[1]
        self._entries = _FlatLookup(coo.row.astype(np.int64) * self.width + coo.col, coo.data.astype(np.float64), size, 0.0,
                                    dense=size <= LOOKUP_TABLE_CELLS)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self._entries(rows.astype(np.int64) * self.width + cols)


def _check_min_count(min_count: int) -> None:
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise InputError(f"min_count = {min_count!r} must be a whole number of co-owners, at least 1")


def _owned_columns(own: Ownership, min_count: int) -> tuple[np.ndarray, sparse.csc_matrix, sparse.csr_matrix, np.ndarray]:
    """The products with at least ``min_count`` owners (the only ones that can be in such a pair): their numbers,
    X's columns of them and its transpose, and per column the bound on its block of X'X that :func:`_blocks` cuts by."""
    _check_min_count(min_count)
    kept = np.flatnonzero(own.owners >= min_count)
    X = _canonical(own.X).tocsc()[:, kept]
    Xt = X.T.tocsr()
    return kept, X, Xt, Xt @ np.diff(X.tocsr().indptr).astype(np.float64)


def co_owner_pairs(own: Ownership, min_count: int, min_counted: int = MIN_PAIR_COUNT) -> tuple[pl.DataFrame, int]:
    """:func:`pair_counts` with ``counts_only`` (pairs of at least ``min_count`` co-owners), and how many ordered pairs
    (i != j) have at least ``min_counted`` (at most ``min_count``), counted from X'X's blocks without building them:
    one pass over the blocks serves both.

    A pair of ``min_count`` co-owners has ``min_counted`` too, so the blocks of the products
    with ``min_counted`` owners hold every pair kept. X'X is symmetric: each block of
    columns j is formed only for the rows i < j (the products before the block's end),
    and each pair found gives both ordered pairs. In at least ``TRIANGLE_BLOCKS`` blocks
    that is about half the product's work (the retail log's 8.2M entries of X'X).
    """
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < min_counted:
        raise InputError(f"min_count = {min_count!r} must be a whole number of co-owners, at least {min_counted}")
    kept, X, Xt, bounds = _owned_columns(own, min_counted)
    n = 0
    i_parts, j_parts, counts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float64)]
    for start, stop in _blocks(bounds, min(BLOCK_NONZEROS, float(bounds.sum()) / TRIANGLE_BLOCKS)):
        C = (Xt[:stop] @ X[:, start:stop]).tocoo()
        col = C.col.astype(np.int64) + start
        upper = C.row < col  # i < j: each unordered pair once
        data = C.data[upper]
        n += 2 * int(np.count_nonzero(data >= min_counted))
        keep = data >= min_count
        i, j = kept[C.row[upper][keep]].astype(np.int64), kept[col[upper][keep]].astype(np.int64)
        i_parts += [i, j]
        j_parts += [j, i]
        counts += [data[keep], data[keep]]
    pairs = pl.DataFrame({"i": np.concatenate(i_parts), "j": np.concatenate(j_parts), "co_owners": np.concatenate(counts)})
    nulls = [pl.lit(None, dtype=pl.Float64).alias(c) for c in PAIR_SCHEMA if c not in ("i", "j", "co_owners")]
    return pairs.with_columns(nulls).sort("i", "j"), n


def rule_min_co_owners(n_customers: int, min_support: float) -> int:
    """The fewest co-owners a rule with support at least ``min_support`` has (never below ``MIN_PAIR_COUNT``).

    ``co_owners >= min_support x n`` (as :func:`strong_pairs` filters) holds for a whole
    number of co-owners exactly when it holds for the ceiling of the float product.
    """
    return max(MIN_PAIR_COUNT, math.ceil(min_support * float(n_customers)))


PAIR_SCHEMA = {"i": pl.Int64, "j": pl.Int64, "co_owners": pl.Float64, "same_order": pl.Float64,
               "days_sum_i": pl.Float64, "days_sum_j": pl.Float64}  # the columns of pair_counts


def pair_counts(own: Ownership, min_count: int = MIN_PAIR_COUNT, *, counts_only: bool = False) -> pl.DataFrame:
    """Ordered pairs (i != j) with at least ``min_count`` co-owners.

    ``counts_only`` leaves ``same_order`` and the day sums null: association rules need
    only the co-owners (their timing is :func:`pair_timing`'s), so they skip three of the
    four sparse products.

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
    if not counts_only and (dense := _dense_pair_counts(own, min_count)) is not None:
        return dense
    kept, X, Xt, bounds = _owned_columns(own, min_count)
    T = _canonical(own.first_day).tocsc()[:, kept] if not counts_only else X
    Tt = T.T.tocsr() if not counts_only else Xt
    # Orders of one product count only on the diagonal, which no pair reads.
    B = _pairs_off_diagonal(_canonical(own.baskets)).tocsc()[:, kept] if own.baskets is not None and not counts_only else None
    Bt = B.T.tocsr() if B is not None else None
    frames = [pl.DataFrame(schema=PAIR_SCHEMA)]
    for start, stop in _blocks(bounds):
        # Same patterns in the same index order give the same output order: the three data arrays
        # line up without sorting the products (T's values are positive, so no entry cancels).
        C = Xt @ X[:, start:stop]
        coo = C.tocoo()
        keep = (coo.data >= min_count) & (coo.row != coo.col + start)
        rows, cols = coo.row[keep], coo.col[keep]
        nothing = np.full(rows.size, np.nan)
        days_j = (Xt @ T[:, start:stop]).data[keep] if not counts_only else nothing
        days_i = (Tt @ X[:, start:stop]).data[keep] if not counts_only else nothing
        if Bt is not None and B is not None:
            same = EntryLookup(Bt @ B[:, start:stop])(rows, cols)
        else:
            same = nothing
        frames.append(
            pl.DataFrame(
                {
                    "i": kept[rows].astype(np.int64),
                    "j": kept[cols + start].astype(np.int64),
                    "co_owners": coo.data[keep],
                    "same_order": same,
                    "days_sum_i": days_i,
                    "days_sum_j": days_j,
                }
            )
        )
    pairs = pl.concat(frames).with_columns(pl.col("same_order", *(("days_sum_i", "days_sum_j") if counts_only else ())).fill_nan(None))
    return pairs.sort("i", "j")


def _pairs_off_diagonal(m: sparse.csr_matrix) -> sparse.csr_matrix:
    """The rows of ``m`` with at least two entries: the only ones an off-diagonal entry of m'm counts."""
    return m[np.flatnonzero(np.diff(m.indptr) >= 2)]


def _dense_is_cheaper(m: sparse.csr_matrix) -> bool:
    per_row = np.diff(m.indptr).astype(np.float64)
    return m.shape[0] * float(m.shape[1]) ** 2 <= DENSE_GRAM_RATIO * float(per_row @ per_row)


def _gram(m: sparse.csr_matrix) -> np.ndarray:
    """m'm of a matrix of whole numbers as a dense array: from dense blocks of its rows when that is
    cheaper (``DENSE_GRAM_RATIO``), else the sparse product.

    Exact either way: every product and partial sum is a whole number, no larger than the
    rows for a 0/1 matrix, so a BLAS product in any order gives the integers the sparse
    product does (in float32 below ``FLOAT32_EXACT`` rows of 0/1 entries, else float64).
    """
    if not _dense_is_cheaper(m):
        return (m.T.tocsr() @ m).toarray()
    rows, width = m.shape
    dtype = np.float32 if rows < FLOAT32_EXACT and (m.data == 1.0).all() else np.float64
    gram = np.zeros((width, width), dtype=dtype)
    step = max(1, DENSE_GRAM_CELLS // max(width, 1))
    for start in range(0, rows, step):
        block = m[start:start + step].toarray().astype(dtype, copy=False)
        gram += block.T @ block
    return gram.astype(np.float64)


def _dense_pair_counts(own: Ownership, min_count: int) -> pl.DataFrame | None:
    """:func:`pair_counts` for a few products owned by many: X'X from dense row blocks (see
    ``DENSE_GRAM_RATIO``); None when the sparse column blocks are cheaper.

    The basket counts are :func:`_gram` of the orders with two products or more, and the day
    sums one sparse product S = X'T: ``days_sum_j`` is S_ij and ``days_sum_i`` S_ji, the
    same sum over the same co-owners in the same order as (T'X)_ij, so the same bits (and a
    pair bought at the same moment has equal sums).
    """
    _check_min_count(min_count)
    kept = np.flatnonzero(own.owners >= min_count)
    if not 0 < len(kept) <= DENSE_GRAM_PRODUCTS:
        return None
    every = len(kept) == own.X.shape[1]  # the usual case: no product left out, no columns to select

    def columns(m: sparse.csr_matrix) -> sparse.csr_matrix:
        return _canonical(m) if every else _canonical(_canonical(m)[:, kept])

    X = columns(own.X)
    if not _dense_is_cheaper(X):
        return None
    C = _gram(X)
    B = _gram(_pairs_off_diagonal(columns(own.baskets))) if own.baskets is not None else None
    S = (X.T.tocsr() @ columns(own.first_day)).toarray()
    np.fill_diagonal(C, 0.0)
    rows, cols = np.nonzero(C >= min_count)
    return pl.DataFrame(
        {
            "i": kept[rows].astype(np.int64),
            "j": kept[cols].astype(np.int64),
            "co_owners": C[rows, cols],
            "same_order": B[rows, cols] if B is not None else np.full(rows.size, np.nan),
            "days_sum_i": S[cols, rows],
            "days_sum_j": S[rows, cols],
        },
        schema=PAIR_SCHEMA,
    ).with_columns(pl.col("same_order").fill_nan(None)).sort("i", "j")


# Rules worth reading: the defaults keep a file a person (or a CRM) can use. On the UCI
# retail log every pair with two co-owners is 5.9 million rules; these keep thousands.
MIN_RULE_SUPPORT = 0.005  # share of customers who own both
MIN_RULE_LIFT = 1.5
RULES_PER_PRODUCT = 10  # strongest consequents kept per antecedent
TIMING_ROWS_PER_BLOCK = 1_000_000  # (antecedent, consequent) entries crossed at once when timing pairs (5M: 12% slower, from page faults)
PAIR_TABLE_CELLS = 16_000_000  # antecedents x consequents up to which wanted pairs are numbered by a table
# Timing needs every co-owner's dates, so its cost grows with the log: above this many
# customers it is estimated on an evenly spaced sample of them (every k-th by id), and its
# counts are scaled up to the pair's co-owners. Shares and medians move little; the cost
# stays that of a log this size.
TIMING_SAMPLE_CUSTOMERS = 100_000


@dataclass(frozen=True)
class RuleBounds:
    """Which rules are kept: ``support >= min_support``, ``lift >= min_lift``, the ``per_product`` most confident per antecedent."""

    min_support: float = MIN_RULE_SUPPORT
    min_lift: float = MIN_RULE_LIFT
    per_product: int = RULES_PER_PRODUCT


def strong_pairs(own: Ownership, pairs: pl.DataFrame, bounds: RuleBounds = RuleBounds()) -> pl.DataFrame:
    """The pairs whose rule passes ``bounds``: per antecedent, most confident first (ties: higher lift, then product order)."""
    n = float(own.X.shape[0])
    owners = own.owners
    ante = pl.Series(owners[pairs["i"].to_numpy()])
    cons = pl.Series(owners[pairs["j"].to_numpy()])
    kept = (
        pairs.with_columns((pl.col("co_owners") / ante).alias("_conf"), (pl.col("co_owners") * n / (ante * cons)).alias("_lift"))
        .filter((pl.col("co_owners") >= bounds.min_support * n) & (pl.col("_lift") >= bounds.min_lift))
        .sort(["i", "_conf", "_lift", "j"], descending=[False, True, True, False])
        .filter(pl.int_range(pl.len()).over("i") < bounds.per_product)
    )
    return kept.drop("_conf", "_lift").sort("i", "j")


def _row_cross(A: sparse.csr_matrix, B: sparse.csr_matrix, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (entry of ``A``, entry of ``B``) in the same row, rows ``lo`` to ``hi``: indices into their data arrays."""
    ca = np.diff(A.indptr[lo:hi + 1]).astype(np.int64)
    cb = np.diff(B.indptr[lo:hi + 1]).astype(np.int64)
    row_a = np.repeat(np.arange(lo, hi), ca)
    reps = cb[row_a - lo]
    ea = np.repeat(np.arange(A.indptr[lo], A.indptr[hi], dtype=np.int64), reps)
    first = np.cumsum(reps) - reps
    eb = np.repeat(B.indptr[row_a].astype(np.int64) - first, reps) + np.arange(int(reps.sum()), dtype=np.int64)
    return ea, eb


class _PairNumbers:
    """The number of each wanted pair (``a[k], b[k]``: column numbers), looked up by columns; -1 for others.

    A flat table when it is small (one gather per look-up), else a search in the sorted keys.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> None:
        small = n_a * n_b <= PAIR_TABLE_CELLS
        self.dtype: type[np.signedinteger] = np.int32 if small else np.int64  # small: cheaper keys, a table that stays in cache
        self.n_b = int(n_b)
        keys = a.astype(self.dtype) * self.n_b + b.astype(self.dtype)
        self._numbers = _FlatLookup(keys, np.arange(len(a), dtype=self.dtype), n_a * n_b, -1, dense=small)

    def __getitem__(self, ab: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        a, b = ab
        return self._numbers(a.astype(self.dtype, copy=False) * self.n_b + b.astype(self.dtype, copy=False))


def _row_triangle(A: sparse.csr_matrix, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Every two entries of ``A`` in the same row, the first left of the second, rows ``lo`` to ``hi``: indices into its data array."""
    counts = np.diff(A.indptr[lo:hi + 1]).astype(np.int64)
    e = np.arange(A.indptr[lo], A.indptr[hi], dtype=np.int64)
    reps = np.repeat(A.indptr[lo + 1:hi + 1].astype(np.int64), counts) - e - 1  # the entries right of each in its row
    first = np.cumsum(reps) - reps
    ea = np.repeat(e, reps)
    eb = np.repeat(e + 1 - first, reps) + np.arange(int(reps.sum()), dtype=np.int64)
    return ea, eb


Crossings = Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _co_owned_pairs(entry: sparse.csr_matrix, i: np.ndarray, j: np.ndarray) -> list[Crossings]:
    """Blocks of rows, each a function giving ``(pairs, ia, ib)``: a wanted pair ``k`` (antecedent ``i[k]``, consequent
    ``j[k]``) for every row holding both products, with the row's two entries (``entry``'s data: each entry's number) of
    ``i[k]`` and ``j[k]``.

    Each row's antecedents are crossed with its consequents, or, when that takes fewer
    crossings (the rule set holds most pairs both ways, as with a low lift bound), each
    two of its products in either set are crossed once, left to right, and give the pair
    each way it is wanted: half the crossings of a symmetric rule set. The blocks only
    read what is built here, so they can run on threads of their own.
    """
    ants, a_of = np.unique(i, return_inverse=True)
    cons, b_of = np.unique(j, return_inverse=True)
    union = np.union1d(ants, cons)
    rows = np.repeat(np.arange(entry.shape[0]), np.diff(entry.indptr))

    def per_row(products: np.ndarray) -> np.ndarray:
        member = np.zeros(entry.shape[1], dtype=bool)
        member[products] = True
        return np.bincount(rows[member[entry.indices]], minlength=entry.shape[0]).astype(np.float64)

    n_a, n_b, n_u = per_row(ants), per_row(cons), per_row(union)
    if (n_u * (n_u - 1) / 2).sum() >= (n_a * n_b).sum():
        A, B = entry[:, ants].tocsr(), entry[:, cons].tocsr()
        crossed = _PairNumbers(a_of, b_of, len(ants), len(cons))

        def cross(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            ea, eb = _row_cross(A, B, lo, hi)
            pair = crossed[A.indices[ea], B.indices[eb]]
            hit = pair >= 0
            return pair[hit], A.data[ea[hit]], B.data[eb[hit]]

        return [functools.partial(cross, lo, hi) for lo, hi in _blocks(n_a * n_b, TIMING_ROWS_PER_BLOCK)]
    U = entry[:, union].tocsr()
    U.sort_indices()
    p, q = np.searchsorted(union, i), np.searchsorted(union, j)
    width = len(union)
    keys, unordered = np.unique(np.minimum(p, q).astype(np.int64) * width + np.maximum(p, q), return_inverse=True)
    number = np.arange(len(i), dtype=np.int64)
    forward, backward = np.full(len(keys), -1, dtype=np.int64), np.full(len(keys), -1, dtype=np.int64)
    forward[unordered[p < q]] = number[p < q]  # the pair left to right in the row
    backward[unordered[p > q]] = number[p > q]
    pair_of = _PairNumbers(keys // width, keys % width, width, width)

    def triangle(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        es, et = _row_triangle(U, lo, hi)
        m = pair_of[U.indices[es], U.indices[et]]
        hit = m >= 0
        m, left, right = m[hit], U.data[es[hit]], U.data[et[hit]]
        f, b = forward[m], backward[m]
        fw, bw = f >= 0, b >= 0
        return np.r_[f[fw], b[bw]], np.r_[left[fw], right[bw]], np.r_[right[fw], left[bw]]

    return [functools.partial(triangle, lo, hi) for lo, hi in _blocks(n_u * (n_u - 1) / 2, TIMING_ROWS_PER_BLOCK)]


MASK_ORDERS = 64  # orders of one customer a mask holds: the bits of an unsigned 64-bit integer


def _order_masks(timed: sparse.csr_matrix, basket: sparse.csr_matrix, owner: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Per entry of ``timed`` (customer ``stride x row`` x product), the customer's orders holding the product as bits,
    and the rows of ``basket`` (order x product, its customer ``owner``) whose customer no mask describes.

    Bit r of a mask is the customer's r-th order (in basket row order), so two products
    were bought in one order exactly when their masks share a bit. A customer is left to
    the returned rows when they have more than ``MASK_ORDERS`` orders, an order holds a
    product they do not own (an order id shared by two customers: it is the first's), or
    they are no known customer (``owner`` -1); their masks stay 0.
    """
    n_orders = basket.shape[0]
    known = owner >= 0
    orders_of = np.bincount(owner[known], minlength=timed.shape[0] * stride)
    fits = orders_of <= MASK_ORDERS
    by_owner = np.argsort(owner, kind="stable")
    first = np.r_[True, owner[by_owner][1:] != owner[by_owner][:-1]] if n_orders else np.zeros(0, bool)
    rank = np.empty(n_orders, dtype=np.int64)
    rank[by_owner] = np.arange(n_orders) - np.maximum.accumulate(np.where(first, np.arange(n_orders), 0))
    order = np.repeat(np.arange(n_orders), np.diff(basket.indptr))
    customer = np.where(known, owner, 0)[order]
    width = np.int64(timed.shape[1])
    keys = np.repeat(np.arange(timed.shape[0], dtype=np.int64), np.diff(timed.indptr)) * width + timed.indices  # sorted: canonical
    wanted = (customer // stride) * width + basket.indices
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    owned = known[order] & (keys[at] == wanted) if len(keys) else np.zeros(len(wanted), bool)
    fits[customer[known[order] & ~owned]] = False
    masked = owned & fits[customer]
    masks = np.zeros(timed.nnz, dtype=np.uint64)
    np.bitwise_or.at(masks, at[masked], np.left_shift(np.uint64(1), rank[order[masked]].astype(np.uint64)))
    return masks, np.flatnonzero(~known | ~fits[np.where(known, owner, 0)])


def _same_order_owners(Ba: sparse.csr_matrix, Bb: sparse.csr_matrix, owner: np.ndarray, pair_of: _PairNumbers, n_pairs: int) -> np.ndarray:
    """Per wanted pair, the customers with an order (a row of ``Ba``, ``Bb``; its customer ``owner``) holding both products.

    One sparse product per block of customers: ``Ba' Bx``, where Bx puts each order's
    consequents in its customer's own range of columns, so an entry (a, customer x b)
    is that customer's orders holding both and each customer counts once per pair.
    """
    if not len(owner):
        return np.zeros(n_pairs, dtype=np.int64)
    by_owner = np.argsort(owner, kind="stable")
    owner = owner[by_owner]
    Ba, Bb = Ba[by_owner], Bb[by_owner]
    new_owner = np.r_[True, owner[1:] != owner[:-1]]
    code = np.cumsum(new_owner) - 1  # customers numbered 0.. in order
    n_b = np.int64(Bb.shape[1])
    per_block = max(1, int(PAIR_TABLE_CELLS // max(int(n_b), 1)))
    counts = np.zeros(n_pairs, dtype=np.int64)
    starts = np.flatnonzero(new_owner)
    for first in range(0, len(starts), per_block):
        lo = starts[first]
        hi = starts[first + per_block] if first + per_block < len(starts) else len(owner)
        part = Bb[lo:hi]
        row = np.repeat(np.arange(hi - lo), np.diff(part.indptr))
        cols = (code[lo:hi][row] - code[lo]) * n_b + part.indices
        n_customers = int(code[hi - 1] - code[lo]) + 1
        Bx = sparse.csr_matrix((np.ones(len(cols)), cols, part.indptr), shape=(hi - lo, n_customers * int(n_b)))
        R = (Ba[lo:hi].T.tocsr() @ Bx).tocoo()
        pair = pair_of[R.row, R.col % n_b]
        counts += np.bincount(pair[pair >= 0], minlength=n_pairs)
    return counts


def pair_timing(own: Ownership, ij: pl.DataFrame, *, max_customers: int = TIMING_SAMPLE_CUSTOMERS) -> pl.DataFrame:
    """When the co-owners of each pair ``(i, j)`` bought ``j``, relative to ``i``.

    Columns ``i, j, same_order_owners`` (co-owners who bought both in one order; null
    when orders are unknown), ``bought_after`` and ``bought_before`` (co-owners whose
    first purchase of ``j`` came strictly after, resp. before, their first of ``i``) and
    ``median_days_after`` (the median of those later gaps, in days). Counted per
    co-owner, never per order, so ``same_order_owners <= co_owners`` always holds.

    With more than ``max_customers`` customers, every k-th customer is timed (k =
    ``ceil(customers / max_customers)``) and ``timed_owners`` says how many co-owners
    were; :func:`scaled_timing` scales the counts up to all co-owners. One vectorised
    pass: each timed customer's products are crossed within their row of T
    (:func:`_co_owned_pairs`), the wanted pairs kept and counted, in blocks of about
    ``TIMING_ROWS_PER_BLOCK`` crossings. A crossed pair was bought in one order when the two entries' order masks
    (:func:`_order_masks`) share a bit; the customers whose orders no mask holds are
    counted by :func:`_same_order_owners` from their baskets.
    """
    ij = ij.select(pl.col("i").cast(pl.Int64), pl.col("j").cast(pl.Int64)).unique().sort("i", "j")
    schema = {"i": pl.Int64, "j": pl.Int64, "timed_owners": pl.Int64, "same_order_owners": pl.Int64, "bought_after": pl.Int64,
              "bought_before": pl.Int64, "median_days_after": pl.Float64}
    if ij.height == 0:
        return pl.DataFrame(schema=schema)
    i, j = ij["i"].to_numpy(), ij["j"].to_numpy()
    stride = max(1, -(-own.X.shape[0] // max_customers))
    timed = _canonical(own.first_day)[::stride] if stride > 1 else _canonical(own.first_day)
    days = timed.data
    # Each co-owned pair's two entries are read back by their numbers in ``timed``: their days, and their orders' masks.
    entry = sparse.csr_matrix((np.arange(timed.nnz, dtype=np.int64), timed.indices, timed.indptr), shape=timed.shape)
    masks = rest = None
    if own.baskets is not None and own.basket_customer is not None:
        basket = _canonical(own.baskets)
        owner = own.basket_customer
        if stride > 1:
            sampled = np.flatnonzero(owner % stride == 0)
            basket, owner = basket[sampled], owner[sampled]
        masks, rest = _order_masks(timed, basket, owner, stride)
    n_pairs = len(i)
    timed_owners, after, before = np.zeros(n_pairs, np.int64), np.zeros(n_pairs, np.int64), np.zeros(n_pairs, np.int64)
    same_owners = np.zeros(n_pairs, np.int64)
    later_pair, later_gap = [], []

    def counted(crossings: Crossings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        pair, ia, ib = crossings()
        gap = days[ib] - days[ia]
        later = gap > 0
        together = np.bincount(pair[(masks[ia] & masks[ib]) != 0], minlength=n_pairs) if masks is not None else None
        return (np.bincount(pair, minlength=n_pairs), np.bincount(pair[later], minlength=n_pairs),
                np.bincount(pair[gap < 0], minlength=n_pairs), together, pair[later], gap[later])

    # Blocks on threads of their own (numpy releases the GIL), folded in order: whole-number sums, the same bits.
    for owners, n_after, n_before, together, pair, gap in threads.ordered_map(counted, _co_owned_pairs(entry, i, j)):
        timed_owners += owners
        after += n_after
        before += n_before
        later_pair.append(pair)
        later_gap.append(gap)
        if together is not None:
            same_owners += together
    later = pl.DataFrame({"_p": np.concatenate(later_pair) if later_pair else np.zeros(0, np.int64),
                          "_gap": np.concatenate(later_gap) if later_gap else np.zeros(0)})
    median = later.group_by("_p").agg(pl.col("_gap").median().alias("median_days_after"))
    same: pl.Series | None = None
    if masks is not None and rest is not None:
        if len(rest):
            ants, a_of = np.unique(i, return_inverse=True)
            cons, b_of = np.unique(j, return_inverse=True)
            others = basket[rest]
            same_owners += _same_order_owners(others[:, ants].tocsr(), others[:, cons].tocsr(), owner[rest],
                                              _PairNumbers(a_of, b_of, len(ants), len(cons)), n_pairs)
        same = pl.Series("same_order_owners", same_owners)
    out = ij.with_columns(
        pl.Series("timed_owners", timed_owners),
        same if same is not None else pl.lit(None, dtype=pl.Int64).alias("same_order_owners"),
        pl.Series("bought_after", after), pl.Series("bought_before", before),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_p"),
    ).join(median.with_columns(pl.col("_p").cast(pl.Int64)), on="_p", how="left", maintain_order="left")
    return out.filter(pl.col("timed_owners") > 0).select(*schema)


def scaled_timing(frame: pl.DataFrame) -> pl.DataFrame:
    """:func:`pair_timing` counts scaled from the timed co-owners to all ``co_owners`` (unchanged when all were timed)."""
    scale = pl.col("co_owners") / pl.col("timed_owners")
    return frame.with_columns(
        pl.when(pl.col("timed_owners") < pl.col("co_owners")).then((pl.col(c) * scale).round(0)).otherwise(pl.col(c))
        .cast(pl.Int64).alias(c) for c in ("same_order_owners", "bought_after", "bought_before")
    ).drop("timed_owners")


CHECKOUT = "at checkout"


def timing_label(antecedent: pl.Expr) -> pl.Expr:
    """When to make an offer of ``j`` to an owner of ``antecedent``: at checkout, or a follow-up N days later.

    At checkout when at least ``SAME_ORDER_BUNDLE`` of the co-owners bought both in one
    order; else a follow-up the median number of days after the antecedent, when more
    co-owners bought it after the antecedent than before; else it is usually bought
    first, and the label says so. Reads ``co_owners, same_order_owners, bought_after,
    bought_before, median_days_after``.
    """
    days = pl.col("median_days_after").round(0).cast(pl.Int64)
    return (
        pl.when(pl.col("same_order_owners").is_not_null() & (pl.col("same_order_owners") >= SAME_ORDER_BUNDLE * pl.col("co_owners")))
        .then(pl.lit(CHECKOUT))
        .when((pl.col("bought_after") > 0) & (pl.col("bought_after") >= pl.col("bought_before")))
        .then(pl.when(days < 1).then(pl.format("follow-up, the same day as buying {}", antecedent))
              .when(days == 1).then(pl.format("follow-up, 1 day after buying {}", antecedent))
              .otherwise(pl.format("follow-up, {} days after buying {}", days, antecedent)))
        .when(pl.col("co_owners") > 0)
        .then(pl.format("usually bought before {}, not after", antecedent))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def with_names(frame: pl.DataFrame, products: pl.DataFrame | None, columns: dict[str, str]) -> pl.DataFrame:
    """Put each product's description beside its id: ``columns`` maps an id column to the name column to add after it."""
    if products is None or "description" not in products.columns:
        return frame
    names = products.select("product_id", "description")
    order = []
    for col in frame.columns:
        order.append(col)
        if col in columns:
            order.append(columns[col])
    for id_col, name_col in columns.items():
        if id_col in frame.columns:
            frame = frame.join(names.rename({"product_id": id_col, "description": name_col}), on=id_col, how="left", maintain_order="left")
    return frame.select([c for c in order if c in frame.columns])


def association_rules(own: Ownership, pairs: pl.DataFrame, products: pl.DataFrame | None = None) -> pl.DataFrame:
    """Rules ``antecedent -> consequent`` with counts, support, confidence, lift, leverage, conviction and timing.

    ``pairs`` are the pairs to turn into rules (all of :func:`pair_counts`, or the
    :func:`strong_pairs`); with ``products`` (``product_id, description``) each id has
    its name beside it.
    """
    n = float(own.X.shape[0])
    owners = own.owners
    prod = own.products
    timing = pair_timing(own, pairs.select("i", "j"))
    rules = scaled_timing(pairs.select("i", "j", "co_owners").join(timing, on=["i", "j"], how="left")).with_columns(
        pl.Series("antecedent_owners", owners[pairs["i"].to_numpy()]),
        pl.Series("consequent_owners", owners[pairs["j"].to_numpy()]),
    )
    rules = rules.with_columns(prod.gather(rules["i"]).alias("antecedent"), prod.gather(rules["j"]).alias("consequent")).with_columns(
        (pl.col("co_owners") / n).alias("support"),
        (pl.col("co_owners") / pl.col("antecedent_owners")).alias("confidence"),
        (pl.col("co_owners") * n / (pl.col("antecedent_owners") * pl.col("consequent_owners"))).alias("lift"),
        (pl.col("co_owners") / n - pl.col("antecedent_owners") * pl.col("consequent_owners") / n**2).alias("leverage"),
    ).with_columns(
        pl.when(pl.col("confidence") < 1)
        .then((1 - pl.col("consequent_owners") / n) / (1 - pl.col("confidence")))
        .otherwise(float("inf"))
        .alias("conviction"),
        timing_label(pl.col("antecedent")).alias("timing"),
    )
    rules = rules.select(
        "antecedent", "consequent",
        pl.col("antecedent_owners").cast(pl.Int64),
        pl.col("consequent_owners").cast(pl.Int64),
        pl.col("co_owners").cast(pl.Int64),
        "same_order_owners", "bought_after",
        "support", "confidence", "lift", "leverage", "conviction", "timing", "median_days_after",
    ).sort(["lift", "co_owners", "antecedent", "consequent"], descending=[True, True, False, False])
    return with_names(rules, products, {"antecedent": "antecedent_description", "consequent": "consequent_description"})


def substitute_pairs(own: Ownership, pairs: pl.DataFrame, category: pl.DataFrame) -> sparse.csr_matrix:
    """Same-category pairs owned together far less than independence predicts (symmetric, boolean).

    Pairs never co-owned are not in ``pairs``; they count as co-owned 0 times.
    """
    n = float(own.X.shape[0])
    owners = own.owners
    prod_cat = pl.DataFrame({"product_id": own.products}).join(category, on="product_id", how="left")["category"]
    n_p = len(owners)
    code = prod_cat.cast(pl.String).replace("", None).rank("dense").fill_null(0).cast(pl.Int64).to_numpy() - 1  # -1: none
    a, b = _expected_pairs(code, owners, n)
    same = pl.DataFrame({"j": a, "j_b": b, "owners": owners[a], "owners_b": owners[b]})
    same = same.with_columns((pl.col("owners") * pl.col("owners_b") / n).alias("expected")).filter(pl.col("expected") >= SUBSTITUTE_MIN_EXPECTED)
    if same.height == 0:
        return sparse.csr_matrix((n_p, n_p), dtype=bool)
    observed = same.join(pairs.select(pl.col("i").alias("j"), pl.col("j").alias("j_b"), "co_owners"), on=["j", "j_b"], how="left")
    subs = observed.filter(pl.col("co_owners").fill_null(0.0) < SUBSTITUTE_LIFT * pl.col("expected"))
    i = subs["j"].to_numpy()
    j = subs["j_b"].to_numpy()
    data = np.ones(2 * len(i), dtype=bool)
    return sparse.csr_matrix((data, (np.r_[i, j], np.r_[j, i])), shape=(n_p, n_p))


def _expected_pairs(category: np.ndarray, owners: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``a < b`` of products in one category (code >= 0) that independence could give ``SUBSTITUTE_MIN_EXPECTED`` co-owners.

    ``owners_a x owners_b / n >= SUBSTITUTE_MIN_EXPECTED`` needs ``owners_b`` of at least
    ``SUBSTITUTE_MIN_EXPECTED x n / owners_a``: within a category sorted by owners, most
    first, that is a prefix, so only those pairs are made, not every pair of a category
    (fifty categories of a thousand products are 25 million pairs, nearly all of products
    too rarely owned to be anyone's substitute). The bound is loosened by a part in 10^9 so
    that the caller's exact test of the expected count decides every pair at its edge.
    """
    counted = np.flatnonzero(category >= 0)
    if len(counted) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    whole = np.rint(owners[counted]).astype(np.int64)  # counts of customers
    by_owners = np.lexsort((counted, -whole, category[counted]))
    order, code, held = counted[by_owners], category[counted][by_owners].astype(np.int64), whole[by_owners]
    span = int(held.max()) + 2
    keys = code * span + (span - 1 - held)  # ascending: by category, then most owners first
    need = np.ceil(SUBSTITUTE_MIN_EXPECTED * n / np.maximum(held, 1) * (1 - 1e-9)).astype(np.int64)
    start = np.searchsorted(keys, code * span, side="left")
    # A need beyond every count is capped at span - 1, a count nobody has: such a product gets no partner.
    stop = np.searchsorted(keys, code * span + (span - 1 - np.minimum(need, span - 1)), side="right")
    length = np.maximum(stop - start, 0)
    first = np.repeat(order, length)
    second = order[np.repeat(start - np.cumsum(length) + length, length) + np.arange(int(length.sum()))]
    keep = first < second
    return first[keep], second[keep]


# --------------------------------------------------------------------------- bundles

MIN_BUNDLE_SUPPORT = 0.005  # share of orders holding the whole set
MIN_BUNDLE_ORDERS = 2
TOP_BUNDLES = 50
MAX_BUNDLE_SIZE = 3


@dataclass(frozen=True)
class Bundles:
    """Sets of 2-3 products bought together in one order, best first, and how many sets passed the support bound."""

    bundles: pl.DataFrame
    n_candidates: int
    n_orders: int


def find_bundles(revenue: sparse.csr_matrix, products: pl.Series, *, min_support: float = MIN_BUNDLE_SUPPORT,
                 top: int = TOP_BUNDLES) -> Bundles:
    """Frequent sets of 2 and 3 products in one order (Agrawal & Srikant 1994, Apriori: a set is only as frequent as its parts).

    ``revenue`` is orders x products, each order's revenue per product (positive lines).
    For a set S held by ``orders`` of the N orders: ``support = orders / N``; ``lift =
    support / prod(support of each product)`` (how much more often than by chance the
    products meet in one order); ``attach_rate = orders / orders with the anchor``, the
    anchor being the set's most ordered product (of the orders with the anchor, the
    share that hold the whole set); ``revenue`` is what the set's products earned in
    the orders holding all of them. Sets with lift at most 1 are not bundles. Best
    first by attach rate (comparable across set sizes, unlike lift), then orders; the
    ``top`` best are kept.
    """
    if not 0 < min_support < 1:
        raise InputError(f"{option('bundle_min_support', min_support)} must be a share of orders above 0 and below 1 (0.005 = 0.5%)")
    B = (revenue > 0).astype(np.float64).tocsc()
    R = revenue.tocsc()
    n_orders = B.shape[0]
    counts = np.asarray(B.sum(axis=0)).ravel()
    need = max(MIN_BUNDLE_ORDERS, int(np.ceil(min_support * n_orders - 1e-9)))
    frequent = np.flatnonzero(counts >= need)
    empty = pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64, "c": pl.Int64, "orders": pl.Int64, "revenue": pl.Float64})
    sets = [empty]
    if len(frequent) >= 2:
        Bf, Rf = B[:, frequent], R[:, frequent]
        C = sparse.triu(Bf.T @ Bf, k=1).tocoo()
        keep = C.data >= need
        a, b, n_ab = C.row[keep], C.col[keep], C.data[keep]
        if len(a):
            # Z: orders x frequent pairs, 1 where the order holds both.
            Z = Bf[:, a].multiply(Bf[:, b]).tocsc()
            rev_ab = np.asarray(Z.multiply(Rf[:, a] + Rf[:, b]).sum(axis=0)).ravel()
            sets.append(pl.DataFrame({"a": frequent[a], "b": frequent[b], "c": None, "orders": n_ab, "revenue": rev_ab},
                                     schema=empty.schema, strict=False))
            ZR = Z.multiply(Rf[:, a] + Rf[:, b]).tocsc()
            T3 = (Z.T @ Bf).tocoo()  # pair x product: orders holding the pair and the product
            ok = (T3.data >= need) & (T3.col > b[T3.row])
            rows, cols = T3.row[ok], T3.col[ok]
            if len(rows):
                rev = np.asarray((ZR.T @ Bf)[rows, cols]).ravel() + np.asarray((Z.T @ Rf)[rows, cols]).ravel()
                sets.append(pl.DataFrame({"a": frequent[a[rows]], "b": frequent[b[rows]], "c": frequent[cols], "orders": T3.data[ok],
                                          "revenue": rev}, schema=empty.schema, strict=False))
    found = pl.concat(sets)
    count = pl.DataFrame({"_j": np.arange(len(counts), dtype=np.int64), "_n": counts, "_id": products})
    for col in ("a", "b", "c"):
        found = found.join(count.rename({"_j": col, "_n": f"_n{col}", "_id": f"_id{col}"}), on=col, how="left", maintain_order="left")
    found = found.with_columns((pl.col("orders") / n_orders).alias("support")).with_columns(
        (pl.col("support") / (pl.col("_na") / n_orders * pl.col("_nb") / n_orders * (pl.col("_nc").fill_null(n_orders) / n_orders))).alias("lift"),
        (pl.col("orders") / pl.max_horizontal("_na", "_nb", pl.col("_nc").fill_null(0))).alias("attach_rate"),
    ).filter(pl.col("lift") > 1)
    n_candidates = found.height
    found = found.sort(["attach_rate", "orders", "a", "b", "c"], descending=[True, True, False, False, False], nulls_last=True).head(top)
    out = found.select(
        pl.int_range(1, pl.len() + 1).cast(pl.Int64).alias("rank"),
        pl.when(pl.col("c").is_null()).then(2).otherwise(3).cast(pl.Int64).alias("size"),
        pl.col("_ida").alias("product_1"), pl.col("_idb").alias("product_2"), pl.col("_idc").alias("product_3"),
        pl.col("orders").cast(pl.Int64), "support", "lift", "attach_rate", "revenue",
    )
    return Bundles(out, n_candidates, n_orders)

"""What cross-sell reads from the order lines, as three aggregates with one definition for polars and SQL.

Cross-sell never reads the order lines themselves: it reads these aggregates, which
:func:`crosssell_aggregates` computes from a loaded log in polars and :mod:`clv.sql` writes
in SQL for a database, a warehouse or Spark, over the same rows with the same rules. So
the offers from a log in PostgreSQL are those from its Parquet export by construction.

* ``purchases``: one row per customer and product bought (positive lines with a product):
  ``first_purchase_at`` (the earliest line's timestamp), ``n_orders`` (distinct orders, a
  line without an order id being one of its own; purchase days when the log has no order ids), ``n_lines``, ``revenue``; and the same
  counted on the lines before the offer horizon's inner split (``inner_orders``,
  ``inner_lines``, ``inner_revenue``: lines dated at least ``holdout_days`` before the
  as-of date) and the spend after it (``holdout_revenue``). The inner split is the one
  the offer probabilities are calibrated on. ``holdout_days`` and ``as_of`` (the end of
  observation) repeat on every row, so an exported aggregate says what it was computed for.
* ``catalogue``: one row per product on any line (returns too): its most frequent
  ``description`` and ``category`` (ties: the first in byte order; text trimmed of
  spaces), ``n_lines``, ``n_tiny_lines`` (lines of at most ``TINY_AMOUNT``) and ``revenue``.
* ``baskets``: one row per order and product bought in it (positive lines with an order id):
  the order's ``customer_id`` (the smallest, should two share an id) and ``revenue``.
  Only the same-order features need it: the "at checkout" timing, the ``bundle``
  relation and bundles. Without it, the offers are those of a log without order ids.

Medians of lines cannot be aggregated exactly (nor pushed into every engine alike), so
cross-sell uses what can: a product's value to a new buyer is its revenue per order
(:func:`typical_values`), and a product whose lines are mostly tiny is a non-product when
at least half of its lines are at most ``TINY_AMOUNT``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from clv.errors import InputError, option
from clv.load import Transactions
from clv.rfm import amount_units, collect, exact_sum, units_amount
from segments.associations import TINY_AMOUNT  # a line of at most this is a zero, tiny or negative price

PURCHASE_COLUMNS = {
    "customer_id": pl.String, "product_id": pl.String, "first_purchase_at": pl.Datetime("us"),
    "n_orders": pl.Int64, "n_lines": pl.Int64, "revenue": pl.Float64,
    "inner_orders": pl.Int64, "inner_lines": pl.Int64, "inner_revenue": pl.Float64, "holdout_revenue": pl.Float64,
    "holdout_days": pl.Int64, "as_of": pl.Date,
}
CATALOGUE_COLUMNS = {"product_id": pl.String, "n_lines": pl.Int64, "n_tiny_lines": pl.Int64, "revenue": pl.Float64}
BOUGHT = pl.col("product_id").is_not_null() & (pl.col("amount") > 0)  # a purchase: a positive line with a product
CATALOGUE_NAMES = ("description", "category")  # optional, when the log has them
BASKET_COLUMNS = {"order_id": pl.String, "product_id": pl.String, "customer_id": pl.String, "revenue": pl.Float64}


def holdout_days(horizon_days: float) -> int:
    """The whole days of the inner split the offers are calibrated on (at least one)."""
    return max(1, round(horizon_days))


@dataclass(frozen=True)
class CrossSellAggregates:
    """The three aggregates cross-sell reads (see the module's docstring); ``holdout_days`` is their inner split."""

    purchases: pl.DataFrame
    catalogue: pl.DataFrame
    baskets: pl.DataFrame | None
    holdout_days: int

    @property
    def as_of(self) -> dt.date | None:
        """The end of observation the purchases were computed to (None when there are none)."""
        value = self.purchases["as_of"].max() if "as_of" in self.purchases.columns else None
        return value if isinstance(value, dt.date) else None

    def checked(self, horizon_days: int, *, purchases_sorted: bool = False, baskets_sorted: bool = False) -> CrossSellAggregates:
        """The aggregates typed and sorted as cross-sell expects; an :class:`InputError` when a column or the split is wrong.

        ``purchases_sorted``: the purchases are sorted by customer and product already (as
        :func:`crosssell_aggregates` makes them), so they are not sorted again;
        ``baskets_sorted``: the baskets are sorted by order and product, one row each (as
        :func:`crosssell_baskets` makes them), so they are neither sorted nor checked again.
        """
        split = self.purchases["holdout_days"].unique().to_list() if "holdout_days" in self.purchases.columns else [self.holdout_days]
        if split != [horizon_days] and self.purchases.height:
            days = ", ".join(str(d) for d in split)
            raise InputError(f"the purchases aggregate splits the log {days} days before its end, but the offer horizon is {horizon_days} "
                             f"days; compute it again with clvx sql purchases {option('offer_horizon', f'{horizon_days}d')}")
        baskets = _typed(self.baskets, BASKET_COLUMNS, "baskets") if self.baskets is not None else None
        if baskets is not None and not baskets_sorted:
            baskets = baskets.sort("order_id", "product_id")
            _check_one_row_per_basket_item(baskets)
        purchases = _typed(self.purchases, PURCHASE_COLUMNS, "purchases")
        return CrossSellAggregates(
            purchases if purchases_sorted else purchases.sort("customer_id", "product_id"),
            _typed(self.catalogue, {**CATALOGUE_COLUMNS, **{c: pl.String for c in CATALOGUE_NAMES if c in self.catalogue.columns}},
                   "catalogue").sort("product_id"),
            baskets,
            horizon_days,
        )


def _check_one_row_per_basket_item(baskets: pl.DataFrame) -> None:
    """An :class:`InputError` when the baskets aggregate (sorted by order and product) repeats an (order, product)."""
    repeated = baskets.filter((pl.col("order_id") == pl.col("order_id").shift(1)) & (pl.col("product_id") == pl.col("product_id").shift(1)))
    if repeated.height:
        first = repeated.row(0, named=True)
        raise InputError(f"the baskets aggregate has {repeated.height:,} repeated (order_id, product_id) rows (first: order "
                         f"{first['order_id']!r}, product {first['product_id']!r}); it holds one row per order and product: "
                         "compute it with clvx sql baskets")


def _typed(frame: pl.DataFrame, columns: Mapping[str, Any], name: str) -> pl.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"the {name} aggregate has no {', '.join(missing)} column; compute it with clvx sql {name}")

    def typed(column: str, dtype: Any) -> pl.Expr:
        # A CSV export holds timestamps and dates as text.
        if frame.schema[column] == pl.String and dtype == pl.Datetime("us"):
            return pl.col(column).str.to_datetime(time_unit="us")
        if frame.schema[column] == pl.String and dtype == pl.Date:
            return pl.col(column).str.to_date()
        return pl.col(column).cast(dtype)

    try:
        return frame.select(typed(c, t) for c, t in columns.items())
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"the {name} aggregate has a column of the wrong type ({str(exc).splitlines()[0]}); "
                         f"compute it with clvx sql {name}") from None


def crosssell_aggregates(tx: Transactions, horizon_days: int) -> CrossSellAggregates:
    """The three aggregates of a loaded log, in polars: what :mod:`clv.sql` computes in a database.

    The purchases are grouped twice, per (customer, product, order) and then per (customer,
    product), so that every aggregation is a plain sum, minimum or count that polars runs
    on its fast path; distinct orders, filtered counts and sums inside one group-by would
    be evaluated group by group (four times the CPU on a log of millions of lines). Money
    is summed in whole nano-units (:func:`clv.rfm.amount_units`) at both levels, so the
    totals are exactly those of one sum over the lines.

    Both group-bys key customers and products by their rank among the sorted ids (the
    second on one number per pair, customer rank x products + product rank), so sorting the
    result by those numbers sorts it by id, and the ids are put back once, per row of the
    result. The per-order table, one row per customer, product and order, is
    also what the baskets aggregate groups: with order ids, the baskets are read from it
    (:func:`_baskets_of`) instead of from a second pass over the lines, which grouped
    millions of lines on two texts again (10M lines: 6.3 s and 0.5 GB more at the peak,
    against 2.6 s).
    """
    cut = dt.datetime.combine(tx.as_of + dt.timedelta(days=1 - horizon_days), dt.time())
    bought = tx.frame.filter(BOUGHT)
    customers = collect(bought.select(pl.col("customer_id").unique())).sort("customer_id").with_row_index("_c")
    products = collect(bought.select(pl.col("product_id").unique())).sort("product_id").with_row_index("_p")
    order = pl.col("order_id") if tx.has("order_id") else pl.col("date").dt.date()
    lines = bought.join(customers.lazy(), on="customer_id").join(products.lazy(), on="product_id").select(
        "_c", "_p", order.alias("_order"), "date",
        amount_units(pl.col("amount")).alias("_units"), (pl.col("date") < cut).cast(pl.Int64).alias("_inner"))
    grouped = lines.group_by("_c", "_p", "_order").agg(
        pl.col("date").min().alias("_first"), pl.len().cast(pl.Int64).alias("_lines"), pl.col("_units").sum(),
        pl.col("_inner").sum().alias("_inner_lines"), (pl.col("_units") * pl.col("_inner")).sum().alias("_inner_units"))
    # With orders the baskets are read from the per-order table too; without, it streams into the next group-by.
    per_order = collect(grouped) if tx.has("order_id") else None
    lone = pl.col("_order").is_null()  # lines without an order id: each is an order of its own
    inner_lines = pl.col("inner_lines")
    # One whole-number key per (customer, product), in the same order as the pair: polars groups and sorts
    # one integer column in about half the time of two (10M lines: 3.2 s against 5.4-6.2 s).
    n_products = max(products.height, 1)
    pair = (pl.col("_c").cast(pl.Int64) * n_products + pl.col("_p")).alias("_cp")
    per = collect((grouped if per_order is None else per_order.lazy()).group_by(pair).agg(
        pl.col("_first").min().alias("first_purchase_at"),
        pl.when(lone).then(pl.col("_lines")).otherwise(1).sum().cast(pl.Int64).alias("n_orders"),
        pl.col("_lines").sum().alias("n_lines"),
        pl.col("_units").sum(),
        pl.when(lone).then(pl.col("_inner_lines")).otherwise((pl.col("_inner_lines") > 0).cast(pl.Int64)).sum().alias("inner_orders"),
        pl.col("_inner_lines").sum().alias("inner_lines"),
        pl.col("_inner_units").sum(),
    ).sort("_cp").select(
        (pl.col("_cp") // n_products).alias("_c"), (pl.col("_cp") % n_products).alias("_p"),
        "first_purchase_at", "n_orders", "n_lines", units_amount(pl.col("_units")).alias("revenue"),
        "inner_orders", "inner_lines", pl.when(inner_lines > 0).then(units_amount(pl.col("_inner_units"))).alias("inner_revenue"),
        pl.when(pl.col("n_lines") > inner_lines).then(units_amount(pl.col("_units") - pl.col("_inner_units"))).alias("holdout_revenue"),
    ))
    purchases = per.select(
        customers["customer_id"].gather(per["_c"]), products["product_id"].gather(per["_p"]), pl.exclude("_c", "_p"),
        pl.lit(horizon_days, dtype=pl.Int64).alias("holdout_days"), pl.lit(tx.as_of, dtype=pl.Date).alias("as_of"))
    del per
    baskets = _baskets_of(per_order, customers["customer_id"], products["product_id"]) if per_order is not None else None
    del per_order
    catalogue = catalogue_of(tx)
    return CrossSellAggregates(purchases, catalogue, baskets, horizon_days).checked(horizon_days, purchases_sorted=True, baskets_sorted=True)


def _baskets_of(per_order: pl.DataFrame, customers: pl.Series, products: pl.Series) -> pl.DataFrame:
    """:func:`crosssell_baskets` from the purchases' per-order table (``_c, _p, _order`` numbered as in
    :func:`crosssell_aggregates`, ``_units``): its rows with an order id, sorted by order and product.

    A row is a customer's; an order id two customers share (bad data) gives two rows of one
    order and product, which become one, with the smaller customer (the smaller number: the
    numbers follow the sorted ids) and the summed revenue.
    """
    rows = per_order.lazy().filter(pl.col("_order").is_not_null()).select("_order", "_p", "_c", "_units").sort("_order", "_p", "_c").collect()
    if rows.select(((pl.col("_order") == pl.col("_order").shift(1)) & (pl.col("_p") == pl.col("_p").shift(1))).any()).item():
        rows = rows.group_by("_order", "_p").agg(pl.col("_c").min(), pl.col("_units").sum()).sort("_order", "_p")
    return rows.select(pl.col("_order").alias("order_id"), products.gather(rows["_p"]).alias("product_id"),
                       customers.gather(rows["_c"]).alias("customer_id"), units_amount(pl.col("_units")).alias("revenue"))


def crosssell_baskets(tx: Transactions) -> pl.DataFrame:
    """The baskets aggregate of a loaded log with order ids: per order and product bought in it, its customer and revenue.

    Sorted by order and product inside the query, so that no unsorted copy of its millions
    of rows is held beside the sorted one.
    """
    bought = tx.frame.filter(BOUGHT & pl.col("order_id").is_not_null())
    return collect(bought.select("order_id", "product_id", "customer_id", amount_units(pl.col("amount")).alias("_units"))
                   .group_by("order_id", "product_id").agg(pl.col("customer_id").min(), pl.col("_units").sum())
                   .select("order_id", "product_id", "customer_id", units_amount(pl.col("_units")).alias("revenue"))
                   .sort("order_id", "product_id"))


def catalogue_of(tx: Transactions) -> pl.DataFrame:
    """The catalogue aggregate of a loaded log: per product on any line, its names, line counts and revenue."""
    with_product = tx.frame.filter(pl.col("product_id").is_not_null())
    catalogue = with_product.group_by("product_id").agg(
        pl.len().cast(pl.Int64).alias("n_lines"),
        (pl.col("amount") <= TINY_AMOUNT).sum().cast(pl.Int64).alias("n_tiny_lines"),
        exact_sum(pl.col("amount")).alias("revenue"),
    )
    for c in (c for c in CATALOGUE_NAMES if tx.has(c)):
        catalogue = catalogue.join(_most_frequent(with_product, c), on="product_id", how="left")
    return collect(catalogue)


def _most_frequent(lines: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """``product_id, <column>``: each product's most frequent non-null text in ``column``.

    Trimmed of spaces only, as SQL's TRIM does; ties go to the first in byte order, as
    ORDER BY in C collation. Counted per (product, text) and the top one taken, rather
    than a mode over each product's lines: the lines' texts are never gathered per product.
    """
    counts = lines.filter(pl.col(column).is_not_null()).group_by("product_id", pl.col(column).str.strip_chars(" ")).agg(pl.len().alias("_n"))
    return counts.sort("product_id", "_n", column, descending=[False, True, False]).unique("product_id", keep="first").select("product_id", column)


def typical_values(purchases: pl.DataFrame, prefix: str = "") -> pl.DataFrame:
    """``product_id, value``: each product's revenue per order (per line where no order id is known).

    Pooled over its buyers: the sum of their revenue over the sum of their orders of it.
    ``prefix`` ``"inner_"`` reads the counts of the inner split. Sums are exact (whole
    nano-units), so the value does not depend on the order the rows come in. (On the
    retail log's splits it ranks as the median line value did and keeps the calibrated
    value ratio steadier; see docs/scaling.md.)
    """
    orders, lines = ("inner_orders", "inner_lines") if prefix else ("n_orders", "n_lines")
    per = purchases.group_by("product_id").agg(
        exact_sum(pl.col(f"{prefix}revenue")).alias("_revenue"), pl.col(orders).sum().alias("_orders"), pl.col(lines).sum().alias("_lines"))
    return (per.select("product_id", (pl.col("_revenue") / pl.when(pl.col("_orders") > 0).then("_orders").otherwise("_lines")).alias("value"))
            .sort("product_id"))

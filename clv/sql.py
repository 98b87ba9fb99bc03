"""clvx's aggregates as SQL for the engines where large logs live, from one definition.

The heavy step of every analysis is a group-by over the order lines; everything after it
works on one row per customer (or per customer and product). This module writes that
group-by once, in DuckDB's dialect, and lets sqlglot translate it to PostgreSQL, Spark,
BigQuery, Snowflake, Redshift and Trino, so every engine runs the same query:

* ``rfm``: ``customer_id, frequency, recency, T, monetary_value, total_spend,
  first_purchase, last_purchase[, n_orders]``, exactly :func:`clv.rfm.rfm_summary`
  (lifetimes' conventions) over the rows :func:`clv.load.load_transactions` keeps;
* ``histories``: what a fit needs and nothing more: the distinct ``(frequency, recency,
  T)`` rows with their ``n_customers`` (``monetary_value`` null), and the repeat
  customers' distinct ``(frequency, monetary_value)`` with theirs (``recency`` and ``T``
  null). The likelihoods are weighted sums, so a fit on these rows is the fit on the
  customers;
* ``products``: one row per customer and product bought (``first_purchase``,
  ``last_purchase``, ``n_orders``, ``n_lines``, ``revenue``), over positive lines.

The loader's rules are repeated in SQL: rows without a customer (blank or a placeholder
id such as ``NULL``), rows dated after today and rows after the as-of date are left out;
purchases in one period are one purchase; a return (negative amount) is moved onto the
customer's latest purchase at or before it (a window, not a join, so it runs on every
engine), and a return with no earlier purchase is dropped. Money is summed as
DECIMAL(38, 9), as clvx sums whole nano-units, so the totals are exact whatever order the
engine adds rows in. Rows dated far before the bulk of the log (a placeholder
``1900-01-01``) are dropped by the loader's own rule: before the first quartile of the
distinct days with customers, by more than five inter-quartile spans and at least ten
years. As in clvx, the rule cannot be turned off for rows after today or in the far past
(``--keep-outlying-dates`` reads files only).
"""

from __future__ import annotations

import datetime as dt

from clv.errors import InputError, option
from clv.lazy import lazy_module
from clv.load import FAR_PAST_MIN_GAP, FAR_PAST_QUANTILE, FAR_PAST_SPANS, PLACEHOLDER_IDS, ColumnMapping
from clv.terms import Aggregate, Dialect, Period

sqlglot = lazy_module("sqlglot")  # loaded when SQL is first written or parsed: a log on disk never needs it

# The dialect the one definition is written in; every other dialect is a translation.
SOURCE_DIALECT = "duckdb"
# Exact money: clvx sums amounts as whole nano-units (clv.rfm.AMOUNT_DECIMALS = 9).
MONEY = "DECIMAL(38, 9)"


def _ident(name: str) -> str:
    """A user's column name as a quoted identifier: any spelling, no injection."""
    return sqlglot.exp.to_identifier(name, quoted=True).sql(SOURCE_DIALECT)


def _table(table: str, dialect: Dialect) -> str:
    """The table as the user wrote it for their engine (``schema.sales``, ```project.ds.sales```)."""
    try:
        parsed = sqlglot.exp.to_table(table, dialect=dialect.value)
    except sqlglot.errors.ParseError as exc:
        raise InputError(f"{option('table', table)} is not a table name in {dialect.value} SQL: {str(exc).splitlines()[0]}") from None
    if not isinstance(parsed, sqlglot.exp.Table) or not parsed.name:
        raise InputError(f"{option('table', table)} is not a table name; give a name such as sales or schema.sales")
    return parsed.sql(SOURCE_DIALECT)


def _source(columns: ColumnMapping, table: str | None, query: str | None, dialect: Dialect) -> tuple[str, list[str]]:
    """The first CTE, mapping the user's columns to clvx's names; also the optional columns it has."""
    if columns.amount:
        amount = f"CAST({_ident(columns.amount)} AS DOUBLE)"
    elif columns.price and columns.quantity:
        amount = f"CAST({_ident(columns.price)} AS DOUBLE) * CAST({_ident(columns.quantity)} AS DOUBLE)"
    else:
        amount = f"CAST({_ident('amount')} AS DOUBLE)"
    select = [
        f"CAST({_ident(columns.customer or 'customer_id')} AS VARCHAR) AS customer_id",
        f"CAST({_ident(columns.date or 'date')} AS TIMESTAMP) AS ts",
        f"{amount} AS amount",
    ]
    extra = []
    for role, name in (("order", "order_id"), ("product", "product_id"), ("category", "category"), ("description", "description")):
        column = getattr(columns, role)
        if column:
            select.append(f"CAST({_ident(column)} AS VARCHAR) AS {name}")
            extra.append(name)
    if query is not None:
        inner = sqlglot.transpile(query, read=dialect.value, write=SOURCE_DIALECT)[0] if dialect.value != SOURCE_DIALECT else query
        origin = f"({inner}) AS custom"
    else:
        origin = _table(table or "transactions", dialect)
    return f"SELECT {', '.join(select)} FROM {origin}", extra


def _period_start(expr: str, period: Period) -> str:
    if period is Period.day:
        return f"CAST({expr} AS DATE)"
    return f"CAST(DATE_TRUNC('{period.value}', CAST({expr} AS DATE)) AS DATE)"


def _periods_between(start: str, end: str, period: Period) -> str:
    if period is Period.month:
        months = lambda e: f"(EXTRACT(YEAR FROM {e}) * 12 + EXTRACT(MONTH FROM {e}))"  # noqa: E731
        return f"CAST({months(end)} - {months(start)} AS BIGINT)"
    days = f"DATE_DIFF('day', {start}, {end})"
    return f"CAST({days} AS BIGINT)" if period is Period.day else f"CAST({days} / 7 AS BIGINT)"  # exact: both are week starts


def _lines(columns: ColumnMapping, table: str | None, query: str | None, dialect: Dialect, as_of: dt.date | None,
           keep_placeholder_ids: bool) -> tuple[list[str], list[str]]:
    """The CTEs up to ``lines``: the rows clvx's loader keeps, with ``ts``, ``amount`` and the optional columns."""
    source, extra = _source(columns, table, query, dialect)
    placeholders = "" if keep_placeholder_ids else (
        " AND LOWER(TRIM(customer_id)) NOT IN (" + ", ".join(f"'{p}'" for p in PLACEHOLDER_IDS) + ")"
    )
    bounds = f"SELECT DATE '{as_of.isoformat()}' AS as_of" if as_of is not None else "SELECT MAX(CAST(ts AS DATE)) AS as_of FROM kept"
    # clv.load's far-past rule (_far_past_cutoff) over the distinct days with customer rows: the quartile
    # positions int(q (n - 1)) and round((1 - q)(n - 1)), the latter rounded half to even as Python does.
    spans, min_gap = FAR_PAST_SPANS, FAR_PAST_MIN_GAP.days
    low_at = f"CAST(FLOOR(CAST(n - 1 AS DOUBLE) * {FAR_PAST_QUANTILE}) AS BIGINT)"
    high_x = f"CAST(n - 1 AS DOUBLE) * {1 - FAR_PAST_QUANTILE}"
    high_at = (f"CAST(FLOOR({high_x}) AS BIGINT) + CASE WHEN {high_x} - FLOOR({high_x}) > 0.5 THEN 1 "
               f"WHEN {high_x} - FLOOR({high_x}) = 0.5 AND MOD(CAST(FLOOR({high_x}) AS BIGINT), 2) = 1 THEN 1 ELSE 0 END")
    ctes = [
        f"source AS ({source})",
        "known AS (SELECT * FROM source WHERE ts IS NOT NULL AND customer_id IS NOT NULL AND TRIM(customer_id) <> ''"
        f"{placeholders} AND CAST(ts AS DATE) <= CURRENT_DATE)",
        "known_days AS (SELECT day, ROW_NUMBER() OVER (ORDER BY day) - 1 AS i, COUNT(*) OVER () AS n "
        "FROM (SELECT DISTINCT CAST(ts AS DATE) AS day FROM known) AS distinct_days)",
        f"quartiles AS (SELECT MAX(CASE WHEN i = {low_at} THEN day END) AS low, MAX(CASE WHEN i = {high_at} THEN day END) AS high "
        "FROM known_days)",
        f"far_past AS (SELECT low, GREATEST({spans} * DATE_DIFF('day', low, high), {min_gap}) AS gap_days FROM quartiles)",
        "kept AS (SELECT known.* FROM known CROSS JOIN far_past "
        "WHERE far_past.low IS NULL OR DATE_DIFF('day', CAST(known.ts AS DATE), far_past.low) <= far_past.gap_days)",
        f"bounds AS ({bounds})",
        "lines AS (SELECT kept.* FROM kept CROSS JOIN bounds WHERE CAST(kept.ts AS DATE) <= bounds.as_of)",
    ]
    return ctes, extra


def _summary_ctes(ctes: list[str], extra: list[str], period: Period) -> list[str]:
    orders = "order_id" in extra
    n_orders = ", COUNT(DISTINCT CASE WHEN amount > 0 THEN order_id END) AS n_orders" if orders else ""
    return [
        *ctes,
        # The latest purchase at or before each line (RANGE frame: same-time purchases included);
        # for a purchase that is itself, for a return the purchase it is netted against. ts is never null
        # here; NULLS FIRST is every engine's default or accepted, so no dialect needs a rewrite.
        "anchored AS (SELECT customer_id, amount" + (", order_id" if orders else "")
        + ", MAX(CASE WHEN amount >= 0 THEN ts END) OVER (PARTITION BY customer_id ORDER BY ts NULLS FIRST) AS anchor FROM lines)",
        f"periods AS (SELECT customer_id, {_period_start('anchor', period)} AS period, SUM(CAST(amount AS {MONEY})) AS spend{n_orders} "
        f"FROM anchored WHERE anchor IS NOT NULL GROUP BY customer_id, {_period_start('anchor', period)})",
        "firsts AS (SELECT periods.*, MIN(period) OVER (PARTITION BY customer_id) AS first_period FROM periods)",
        "customers AS (SELECT customer_id, COUNT(*) - 1 AS frequency, MIN(period) AS first_purchase, MAX(period) AS last_purchase, "
        f"SUM(spend) AS total, SUM(CASE WHEN period > first_period THEN spend ELSE CAST(0 AS {MONEY}) END) AS repeat_spend"
        + (", SUM(n_orders) AS n_orders" if orders else "") + " FROM firsts GROUP BY customer_id)",
        "summary AS (SELECT customer_id, CAST(frequency AS BIGINT) AS frequency, "
        f"{_periods_between('first_purchase', 'last_purchase', period)} AS recency, "
        f"{_periods_between('first_purchase', _period_start('bounds.as_of', period), period)} AS \"T\", "
        "CASE WHEN frequency > 0 THEN CAST(repeat_spend AS DOUBLE) / frequency ELSE CAST(0 AS DOUBLE) END AS monetary_value, "
        "CAST(total AS DOUBLE) AS total_spend, first_purchase, last_purchase"
        + (", CAST(n_orders AS BIGINT) AS n_orders" if orders else "") + " FROM customers CROSS JOIN bounds)",
    ]


HISTORIES = (
    "SELECT frequency, recency, \"T\", CAST(NULL AS DOUBLE) AS monetary_value, COUNT(*) AS n_customers "
    "FROM summary GROUP BY frequency, recency, \"T\" "
    "UNION ALL "
    "SELECT frequency, CAST(NULL AS BIGINT) AS recency, CAST(NULL AS BIGINT) AS \"T\", monetary_value, COUNT(*) AS n_customers "
    "FROM summary WHERE frequency > 0 GROUP BY frequency, monetary_value"
)


def _products(ctes: list[str], extra: list[str]) -> str:
    if "product_id" not in extra:
        raise InputError(f"the products aggregate needs a product column; name it with {option('product_col')}")
    keys = "customer_id, product_id" + (", category" if "category" in extra else "")
    orders = "COUNT(DISTINCT order_id)" if "order_id" in extra else "COUNT(DISTINCT CAST(ts AS DATE))"
    return (
        "WITH " + ", ".join(ctes) + f" SELECT {keys}, MIN(CAST(ts AS DATE)) AS first_purchase, MAX(CAST(ts AS DATE)) AS last_purchase, "
        f"CAST({orders} AS BIGINT) AS n_orders, CAST(COUNT(*) AS BIGINT) AS n_lines, CAST(SUM(CAST(amount AS {MONEY})) AS DOUBLE) AS revenue "
        f"FROM lines WHERE amount > 0 AND product_id IS NOT NULL GROUP BY {keys}"
    )


# A line of at most this is a zero, tiny or negative price (segments.associations.TINY_AMOUNT).
TINY_AMOUNT = 0.01
DEFAULT_HOLDOUT_DAYS = 90  # the default offer horizon's inner split
BYTE_ORDERED = ("description", "category", "customer_id")  # text whose order picks a value (ties, an order's customer)


def _need_product(extra: list[str], aggregate: str) -> None:
    if "product_id" not in extra:
        raise InputError(f"the {aggregate} aggregate needs a product column; name it with {option('product_col')}")


def _purchases(ctes: list[str], extra: list[str], holdout_days: int) -> str:
    """Cross-sell's customer x product rows, split ``holdout_days`` before the end (segments.aggregates.crosssell_aggregates)."""
    _need_product(extra, "purchases")
    order = "order_id" if "order_id" in extra else "CAST(ts AS DATE)"
    money = f"CAST(amount AS {MONEY})"
    # A line without an order id is an order of its own.
    no_order = "COUNT(*) - COUNT(order_id)" if "order_id" in extra else "0"
    inner_no_order = "COUNT(CASE WHEN is_inner AND order_id IS NULL THEN 1 END)" if "order_id" in extra else "0"
    return (
        "WITH " + ", ".join([*ctes, "bought AS (SELECT lines.*, "
                             f"DATE_DIFF('day', CAST(lines.ts AS DATE), bounds.as_of) >= {int(holdout_days)} AS is_inner "
                             "FROM lines CROSS JOIN bounds WHERE amount > 0 AND product_id IS NOT NULL)"])
        + " SELECT customer_id, product_id, MIN(ts) AS first_purchase_at, "
        f"CAST(COUNT(DISTINCT {order}) + {no_order} AS BIGINT) AS n_orders, CAST(COUNT(*) AS BIGINT) AS n_lines, "
        f"CAST(SUM({money}) AS DOUBLE) AS revenue, "
        f"CAST(COUNT(DISTINCT CASE WHEN is_inner THEN {order} END) + {inner_no_order} AS BIGINT) AS inner_orders, "
        "CAST(COUNT(CASE WHEN is_inner THEN 1 END) AS BIGINT) AS inner_lines, "
        f"CAST(SUM(CASE WHEN is_inner THEN {money} END) AS DOUBLE) AS inner_revenue, "
        f"CAST(SUM(CASE WHEN NOT is_inner THEN {money} END) AS DOUBLE) AS holdout_revenue, "
        f"CAST({int(holdout_days)} AS BIGINT) AS holdout_days, MAX(bounds.as_of) AS as_of "
        "FROM bought CROSS JOIN bounds GROUP BY customer_id, product_id"
    )


def _catalogue(ctes: list[str], extra: list[str]) -> str:
    """Per product on any line: the most frequent description and category (ties: the first in order), line counts, revenue."""
    _need_product(extra, "catalogue")
    names = [c for c in ("description", "category") if c in extra]
    more = []
    for name in names:
        # Count each trimmed text, then keep the most frequent (the first in sort order among ties).
        more += [
            f"{name}_counts AS (SELECT product_id, TRIM({name}) AS {name}, COUNT(*) AS n FROM lines "
            f"WHERE product_id IS NOT NULL AND {name} IS NOT NULL GROUP BY product_id, TRIM({name}))",
            f"{name}_ranked AS (SELECT product_id, {name}, ROW_NUMBER() OVER (PARTITION BY product_id ORDER BY n DESC, {name}) AS r "
            f"FROM {name}_counts)",
        ]
    counts = (
        "per_product AS (SELECT product_id, CAST(COUNT(*) AS BIGINT) AS n_lines, "
        f"CAST(COUNT(CASE WHEN amount <= CAST({TINY_AMOUNT} AS DOUBLE) THEN 1 END) AS BIGINT) AS n_tiny_lines, "
        f"CAST(SUM(CAST(amount AS {MONEY})) AS DOUBLE) AS revenue FROM lines WHERE product_id IS NOT NULL GROUP BY product_id)"
    )
    select = "SELECT per_product.product_id, n_lines, n_tiny_lines, revenue" + "".join(f", {n}_ranked.{n}" for n in names)
    joins = "".join(f" LEFT JOIN {n}_ranked ON {n}_ranked.product_id = per_product.product_id AND {n}_ranked.r = 1" for n in names)
    return "WITH " + ", ".join([*ctes, *more, counts]) + f" {select} FROM per_product{joins}"


def _baskets(ctes: list[str], extra: list[str]) -> str:
    """Order x product over positive lines with an order id, with the order's customer and the product's revenue in it."""
    _need_product(extra, "baskets")
    if "order_id" not in extra:
        raise InputError(f"the baskets aggregate is products per order, so it needs an order column; name it with {option('order_col')}")
    return (
        "WITH " + ", ".join(ctes) + " SELECT order_id, product_id, MIN(customer_id) AS customer_id, "
        f"CAST(SUM(CAST(amount AS {MONEY})) AS DOUBLE) AS revenue FROM lines "
        "WHERE amount > 0 AND product_id IS NOT NULL AND order_id IS NOT NULL GROUP BY order_id, product_id"
    )


def aggregate_sql(
    aggregate: Aggregate,
    dialect: Dialect = Dialect.duckdb,
    *,
    columns: ColumnMapping = ColumnMapping(),
    table: str | None = None,
    query: str | None = None,
    as_of: dt.date | None = None,
    period: Period = Period.day,
    keep_placeholder_ids: bool = False,
    holdout_days: int = DEFAULT_HOLDOUT_DAYS,
    pretty: bool = False,
) -> str:
    """One of clvx's aggregates as a query in ``dialect``, reading ``table`` (or the SELECT ``query``).

    ``columns`` names the user's columns (``customer``, ``date``, ``amount`` or ``price`` and
    ``quantity``, and optionally ``order``, ``product``, ``category``); unnamed required
    columns default to ``customer_id``, ``date`` and ``amount``. ``as_of`` ends the
    observation; without it the query takes the last day with a customer row (not after
    today), as ``clvx rfm`` does. ``holdout_days`` is the inner split of ``purchases``
    (the offer horizon in days, see :mod:`segments.aggregates`). The rows come in no
    particular order.
    """
    if table is not None and query is not None:
        raise InputError(f"give {option('table')} or {option('query')}, not both")
    ctes, extra = _lines(columns, table, query, dialect, as_of, keep_placeholder_ids)
    if aggregate is Aggregate.products:
        text = _products(ctes, extra)
    elif aggregate is Aggregate.purchases:
        text = _purchases(ctes, extra, holdout_days)
    elif aggregate is Aggregate.catalogue:
        text = _catalogue(ctes, extra)
    elif aggregate is Aggregate.baskets:
        text = _baskets(ctes, extra)
    else:
        body = "SELECT * FROM summary" if aggregate is Aggregate.rfm else HISTORIES
        text = "WITH " + ", ".join(_summary_ctes(ctes, extra, period)) + " " + body
    return translate(text, dialect, pretty=pretty)


def translate(text: str, dialect: Dialect, *, pretty: bool = False) -> str:
    """The definition (DuckDB SQL) in ``dialect``, with the few fixes sqlglot's translation needs."""
    tree = sqlglot.parse_one(text, read=SOURCE_DIALECT)
    if dialect is Dialect.postgres:
        # Text is compared byte by byte, as clvx (polars) and the other engines compare it, not by the
        # server's locale: the ties of the catalogue's names and an order's customer come out the same.
        for column in [*(o.this for o in tree.find_all(sqlglot.exp.Ordered)), *(m.this for m in tree.find_all(sqlglot.exp.Min))]:
            if isinstance(column, sqlglot.exp.Column) and column.name in BYTE_ORDERED:
                column.replace(sqlglot.exp.Collate(this=column.copy(), expression=sqlglot.exp.Identifier(this="C", quoted=True)))
    if dialect is Dialect.bigquery:
        # BigQuery's WEEK starts on Sunday; clvx's weeks (and pandas' W) start on Monday.
        for trunc in tree.find_all(sqlglot.exp.DateTrunc, sqlglot.exp.TimestampTrunc):
            unit = trunc.args.get("unit")
            if unit is not None and unit.name.upper() == "WEEK":
                trunc.set("unit", sqlglot.exp.var("ISOWEEK"))
    return tree.sql(dialect=dialect.value, pretty=pretty, unsupported_level=sqlglot.ErrorLevel.RAISE)

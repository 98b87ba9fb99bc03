"""A database as INPUT: clvx's aggregates run inside it and only their rows come out.

``postgresql://user@host:port/db`` is read through ADBC's PostgreSQL driver (libpq, so the
password may come from the URI, ``PGPASSWORD`` or ``~/.pgpass``), ``duckdb:///path/to.db``
through DuckDB itself. The log is a table (``table``) or a SELECT (``query``); the user's
columns are found in its schema as in a file (:func:`clv.load.resolve_columns`), and the
group-bys of :mod:`clv.sql` are pushed down, so a billion order lines leave the database
as one row per customer (or per customer and product).

A password never appears in a message: every error names the URI with its password
masked, and says in one line whether the server is unreachable, refused the credentials,
or has no such database, table or column.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import polars as pl

from clv.errors import InputError, option
from clv.lazy import lazy_module
from clv.load import ColumnMapping, resolve_columns
from clv.sql import DEFAULT_HOLDOUT_DAYS, Aggregate, Dialect, aggregate_sql
from clv.terms import Period

sqlglot = lazy_module("sqlglot")  # loaded when SQL is first written or parsed: a log on disk never needs it

SCHEMES = {"postgresql": Dialect.postgres, "postgres": Dialect.postgres, "duckdb": Dialect.duckdb}


def is_database(source: object) -> bool:
    """True when ``source`` is a database URI (``scheme://...``) rather than a path."""
    return isinstance(source, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


def mask(uri: str) -> str:
    """The URI with its password (if any) replaced by ``***``: what every message shows."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _scrub(text: str, uri: str) -> str:
    """A driver's message with the URI's password (raw or percent-decoded) masked, on one line."""
    password = urlsplit(uri).password
    line = " ".join(text.split())
    for secret in (password, unquote(password or "")):
        if secret:
            line = line.replace(secret, "***")
    return line


@dataclass(frozen=True)
class Database:
    """A transaction log in a database: the URI and the table or SELECT that holds the order lines."""

    uri: str
    table: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        scheme = self.uri.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise InputError(f"{mask(self.uri)}: clvx reads postgresql:// and duckdb:/// databases, not {scheme}://; "
                             "export the log to Parquet, or compute the aggregates there with clvx sql")
        if (self.table is None) == (self.query is None):
            raise InputError(f"{mask(self.uri)}: name the log's table with {option('table')}, or give a SELECT with {option('query')}"
                             + (" (not both)" if self.table is not None else ""))

    @property
    def dialect(self) -> Dialect:
        return SCHEMES[self.uri.split("://", 1)[0].lower()]

    @property
    def label(self) -> str:
        """The masked URI and what is read from it, for messages."""
        return f"{mask(self.uri)} ({'table ' + self.table if self.table else 'query'})"

    def _relation(self) -> str:
        if self.query is not None:
            return f"({self.query}) AS custom"
        assert self.table is not None
        return sqlglot.exp.to_table(self.table, dialect=self.dialect.value).sql(self.dialect.value)

    def read(self, sql: str) -> pl.DataFrame:
        """Run ``sql`` in the database; any failure becomes one :class:`InputError` line without the password."""
        try:
            if self.dialect is Dialect.duckdb:
                import duckdb

                path = self.uri.split("://", 1)[1]
                with duckdb.connect(path, read_only=True) as con:
                    return con.sql(sql).pl()
            return pl.read_database_uri(sql, self.uri, engine="adbc")
        except ImportError as exc:
            raise InputError(f"{self.label}: reading a database needs {exc.name or 'its driver'}; "
                             "install it with: pip install 'clvx[warehouse]'") from None
        except Exception as exc:  # drivers raise their own classes; each becomes one line
            raise InputError(self._explain(exc)) from None

    def _explain(self, exc: Exception) -> str:
        text = _scrub(str(exc), self.uri)
        low = text.lower()
        where = mask(self.uri)
        if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
            return f"{where}: the server refused the user name or password; check the URI's user, PGPASSWORD or ~/.pgpass"
        if any(s in low for s in ("connection refused", "could not translate host", "timeout expired", "could not connect",
                                  "no route to host", "name or service not known")):
            return f"{where}: cannot reach the database server; check the host and port, and that the server is running"
        if self.dialect is Dialect.duckdb and any(s in low for s in ("cannot open", "no such file", "io error", "does not exist")) \
                and "table with name" not in low:
            return f"{where}: cannot open the DuckDB file; check the path after duckdb:// (three slashes for an absolute path)"
        if "database" in low and "does not exist" in low:
            return f"{where}: no such database on the server; check the database name at the end of the URI"
        if self.table is not None and (("relation" in low and "does not exist" in low) or "table with name" in low):
            return f"{where}: no table {self.table} ({option('table', self.table)}); check its name and schema, e.g. public.sales"
        if self.query is not None and ("syntax error" in low or "parser error" in low):
            return f"{where}: {option('query')} is not valid SQL for this database: {text[:300]}"
        return f"{where}: the database refused the query: {text[:300]}"

    def columns(self, mapping: ColumnMapping, *, need_amount: bool = True) -> ColumnMapping:
        """The user's columns, found in the table's (or query's) schema as in a file's header."""
        probe = self.read(f"SELECT * FROM {self._relation()} LIMIT 0")
        return resolve_columns(mapping, probe.columns, self.label, need_amount=need_amount)

    def aggregate(self, aggregate: Aggregate, columns: ColumnMapping, *, as_of: dt.date | None = None, period: Period = Period.day,
                  keep_placeholder_ids: bool = False, holdout_days: int = DEFAULT_HOLDOUT_DAYS) -> pl.DataFrame:
        """One of clvx's aggregates (:mod:`clv.sql`), computed in the database."""
        sql = aggregate_sql(aggregate, self.dialect, columns=columns, table=self.table, query=self.query, as_of=as_of,
                            period=period, keep_placeholder_ids=keep_placeholder_ids, holdout_days=holdout_days)
        return self.read(sql)


def rfm_from_database(db: Database, mapping: ColumnMapping, *, as_of: dt.date | None, period: Period,
                      keep_placeholder_ids: bool = False) -> pl.DataFrame:
    """The RFM summary computed in the database, typed and sorted as :func:`clv.rfm.rfm_summary` returns it."""
    columns = db.columns(mapping)
    frame = db.aggregate(Aggregate.rfm, columns, as_of=as_of, period=period, keep_placeholder_ids=keep_placeholder_ids)
    if frame.height == 0:
        raise InputError(f"{db.label}: no rows with a customer up to the end of observation; check the table and {option('as_of')}")
    return typed_rfm(frame)


def typed_rfm(frame: pl.DataFrame) -> pl.DataFrame:
    """An RFM aggregate read from an engine, typed and sorted as :func:`clv.rfm.rfm_summary` returns it."""
    ints = [c for c in ("frequency", "recency", "T", "n_orders") if c in frame.columns]
    return frame.with_columns(
        pl.col("customer_id").cast(pl.String), pl.col(ints).cast(pl.Int64),
        pl.col("monetary_value", "total_spend").cast(pl.Float64), pl.col("first_purchase", "last_purchase").cast(pl.Date),
    ).sort("customer_id")


def categories_from_database(db: Database, mapping: ColumnMapping, *, as_of: dt.date | None,
                             keep_placeholder_ids: bool = False) -> pl.DataFrame | None:
    """(customer_id, category) pairs bought: the category column, else products' names (the catalogue), else product ids."""
    columns = db.columns(mapping)
    if columns.product is None:
        return None
    products = db.aggregate(Aggregate.products, columns, as_of=as_of, keep_placeholder_ids=keep_placeholder_ids)
    catalogue = None
    if columns.category is None and columns.description is not None:
        catalogue = db.aggregate(Aggregate.catalogue, columns, as_of=as_of, keep_placeholder_ids=keep_placeholder_ids)
    return customer_categories_of(products, catalogue)


def customer_categories_of(products: pl.DataFrame, catalogue: pl.DataFrame | None = None) -> pl.DataFrame:
    """(customer_id, category) pairs bought, from a products aggregate: its category column, else each product's
    description in ``catalogue`` (the catalogue aggregate), else product ids; as :func:`segments.pipeline.customer_categories`."""
    if "category" in products.columns:
        pairs = products.select("customer_id", pl.col("category").cast(pl.String).str.strip_chars())
    elif catalogue is not None and "description" in catalogue.columns:
        names = catalogue.select(pl.col("product_id").cast(pl.String), pl.col("description").cast(pl.String).alias("category"))
        pairs = products.select("customer_id", pl.col("product_id").cast(pl.String)).join(names, on="product_id").select(
            "customer_id", "category")
    else:
        pairs = products.select("customer_id", pl.col("product_id").cast(pl.String).str.strip_chars().alias("category"))
    return pairs.with_columns(pl.col("customer_id").cast(pl.String)).drop_nulls().unique().with_columns(pl.col("category").cast(pl.Categorical))


def crosssell_from_database(db: Database, mapping: ColumnMapping, *, as_of: dt.date | None, holdout_days: int,
                            keep_placeholder_ids: bool = False) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """What cross-sell reads (segments.aggregates), computed in the database: purchases, catalogue and, with orders, baskets.

    The baskets (one row per order and product) are the only per-order rows; they are read
    when the log has an order column, as cross-sell uses orders whenever a log has them.
    """
    columns = db.columns(mapping)
    if columns.product is None:
        raise InputError(f"{db.label}: cross-sell needs a product column; name it with {option('product_col')}")
    options = dict(as_of=as_of, keep_placeholder_ids=keep_placeholder_ids)
    purchases = db.aggregate(Aggregate.purchases, columns, holdout_days=holdout_days, **options)  # type: ignore[arg-type]
    if purchases.height == 0:
        raise InputError(f"{db.label}: no purchase line has a product id up to the end of observation; check the product column "
                         f"and {option('as_of')}")
    catalogue = db.aggregate(Aggregate.catalogue, columns, **options)  # type: ignore[arg-type]
    baskets = db.aggregate(Aggregate.baskets, columns, **options) if columns.order is not None else None  # type: ignore[arg-type]
    return purchases, catalogue, baskets

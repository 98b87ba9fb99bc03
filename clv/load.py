"""Reading transaction logs: the one place where input is validated.

A transaction log is one row per order line in CSV or Parquet files (or a glob of
them), with the user's own column names. ``load_transactions`` maps those columns
to clvx's canonical ones, checks every value once, and returns a lazy frame that
the rest of clvx may trust:

========== ============ ===================================================
column     dtype        meaning
========== ============ ===================================================
customer_id String       exactly as written (``00042`` stays ``00042``)
date        Datetime(us) naive, the user's local time
amount      Float64      line revenue, net; negative for returns
order_id    String       optional
product_id  String       optional
category    String       optional
description String       optional
========== ============ ===================================================

Rules for messy logs (each is counted in :class:`DataQuality`):

* rows with no customer are excluded from customer analytics;
* rows dated after the as-of date are excluded;
* a return (negative amount) is netted against the customer's latest purchase
  at or before it, so it reduces that purchase occasion's spend and never counts
  as a purchase occasion itself; a return with no earlier purchase in the log
  (the sale predates the log) is dropped;
* zero-amount lines are kept as purchases, as lifetimes does.
"""

from __future__ import annotations

import datetime as dt
import difflib
import glob as globlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from clv.errors import InputError

ROLES = ("customer", "date", "amount", "price", "quantity", "order", "product", "category", "description")
CANONICAL = {
    "customer": "customer_id",
    "date": "date",
    "amount": "amount",
    "order": "order_id",
    "product": "product_id",
    "category": "category",
    "description": "description",
}
OPTIONAL_ROLES = ("order", "product", "category", "description")

# Normalised (lower case, letters and digits only) names tried, in order, when a
# column flag is not given.
ALIASES: dict[str, tuple[str, ...]] = {
    "customer": ("customerid", "customer", "custid", "clientid", "client", "userid", "memberid",
                 "accountid", "customerno", "customernumber", "buyerid", "shopperid"),
    "date": ("date", "orderdate", "invoicedate", "transactiondate", "purchasedate", "datetime",
             "timestamp", "orderdatetime", "createdat", "orderedat", "saledate", "day"),
    "amount": ("amount", "revenue", "sales", "linetotal", "total", "lineamount", "netamount",
               "salesamount", "value", "spend", "dollarvalue", "linerevenue", "grossamount"),
    "price": ("price", "unitprice", "itemprice", "priceeach"),
    "quantity": ("quantity", "qty", "units", "numberofunits", "quantityordered"),
    "order": ("orderid", "invoice", "invoiceno", "invoiceid", "invoicenumber", "ordernumber",
              "order", "transactionid", "basketid", "receiptid"),
    "product": ("productid", "stockcode", "sku", "itemid", "productcode", "product", "item",
                "articleid"),
    "category": ("category", "productcategory", "department", "categoryname", "productgroup"),
    "description": ("description", "productname", "itemname", "itemdescription", "name"),
}

DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y%m%d",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d %Y",
)
DATE_SAMPLE_ROWS = 2_000
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
SNIFF_BYTES = 8_192
ROW = "_row"


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column plays which role; ``None`` means auto-detect."""

    customer: str | None = None
    date: str | None = None
    amount: str | None = None
    price: str | None = None
    quantity: str | None = None
    order: str | None = None
    product: str | None = None
    category: str | None = None
    description: str | None = None
    date_format: str | None = None

    def describe(self) -> str:
        """One line naming the source column used for each role."""
        parts = [f"customer={self.customer}", f"date={self.date}"]
        if self.amount:
            parts.append(f"amount={self.amount}")
        else:
            parts.append(f"amount={self.price} x {self.quantity}")
        parts += [f"{role}={getattr(self, role)}" for role in OPTIONAL_ROLES if getattr(self, role)]
        return ", ".join(parts)


@dataclass(frozen=True)
class DataQuality:
    """What was read and what was left out of customer analytics, and why."""

    n_files: int
    n_rows: int
    n_no_customer: int
    n_after_as_of: int
    n_returns: int
    n_returns_unmatched: int
    n_zero_amount: int
    first_date: dt.datetime | None
    last_date: dt.datetime | None
    as_of: dt.date | None


@dataclass(frozen=True)
class Transactions:
    """A validated transaction log: a lazy frame in canonical columns plus its story."""

    frame: pl.LazyFrame
    columns: ColumnMapping
    quality: DataQuality
    sources: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def as_of(self) -> dt.date:
        assert self.quality.as_of is not None
        return self.quality.as_of

    def has(self, column: str) -> bool:
        return column in self.frame.collect_schema().names()


# --------------------------------------------------------------------------- files


def resolve_paths(source: str | Path) -> list[Path]:
    """Expand a path or glob into existing files, or raise :class:`InputError`."""
    text = str(source)
    if any(ch in text for ch in "*?["):
        matches = sorted(Path(p) for p in globlib.glob(text, recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise InputError(f"no files match '{text}'")
        return files
    path = Path(text)
    if not path.exists():
        raise InputError(f"file not found: {text}")
    if path.is_dir():
        raise InputError(f"{text} is a directory; pass a file or a glob such as '{text}/*.parquet'")
    return [path]


def file_kind(path: Path) -> str:
    """'parquet' or 'csv', from the magic bytes, else the suffix; refuse binary junk."""
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    if not head:
        raise InputError(f"{path} is empty")
    if head[:4] == b"PAR1":
        return "parquet"
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        raise InputError(f"{path} is not a valid Parquet file (it does not start with the Parquet magic bytes)")
    if head[:2] == b"\x1f\x8b":
        raise InputError(f"{path} is gzip-compressed; decompress it first (gunzip)")
    if b"\x00" in head:
        raise InputError(f"{path} is not a CSV or Parquet file (it contains binary data)")
    return "csv"


def _csv_separator(path: Path) -> str:
    if path.name.lower().endswith(".tsv"):
        return "\t"
    with path.open("rb") as fh:
        first_line = fh.readline().decode("utf-8", errors="replace")
    counts = {sep: first_line.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > 0 else ","


def scan_file(path: Path) -> pl.LazyFrame:
    """A lazy scan of one file. CSV columns are all read as text, so ids keep their digits."""
    kind = file_kind(path)
    try:
        if kind == "parquet":
            lf = pl.scan_parquet(path)
        else:
            lf = pl.scan_csv(path, infer_schema=False, separator=_csv_separator(path), encoding="utf8-lossy")
        names = lf.collect_schema().names()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path} is not a readable {'Parquet' if kind == 'parquet' else 'CSV'} file: {_first_line(exc)}") from exc
    if not names or names == [""]:
        raise InputError(f"{path} has no header row")
    cleaned = [n.lstrip("\ufeff") for n in names]
    if cleaned != names:
        lf = lf.rename(dict(zip(names, cleaned, strict=True)))
    return lf


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- columns


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _nearest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if not close:
        by_norm = {_normalise(n): n for n in names}
        close = [by_norm[m] for m in difflib.get_close_matches(_normalise(name), list(by_norm), n=1, cutoff=0.5)]
    return f"; did you mean '{close[0]}'?" if close else ""


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:20])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 20 else "")


def resolve_columns(mapping: ColumnMapping, names: Sequence[str], source: str, *, need_amount: bool = True) -> ColumnMapping:
    """Fill in auto-detected roles and check that every named column exists."""
    for role in ROLES:
        given = getattr(mapping, role)
        if given is not None and given not in names:
            raise InputError(
                f"{source}: no column '{given}' (given by --{role}-col){_nearest(given, names)} "
                f"Columns: {_listing(names)}"
            )
    by_norm: dict[str, str] = {}
    for n in names:
        by_norm.setdefault(_normalise(n), n)
    taken = {getattr(mapping, r) for r in ROLES if getattr(mapping, r)}

    def detect(role: str) -> str | None:
        for alias in ALIASES[role]:
            found = by_norm.get(alias)
            if found is not None and found not in taken:
                taken.add(found)
                return found
        return None

    resolved = {}
    for role in ROLES:
        resolved[role] = getattr(mapping, role)
    for role in ("customer", "date", "order", "product", "category", "description"):
        if resolved[role] is None:
            resolved[role] = detect(role)
    if resolved["amount"] is None and not (resolved["price"] and resolved["quantity"]):
        if resolved["price"] is None and resolved["quantity"] is None:
            resolved["amount"] = detect("amount")
        if resolved["amount"] is None:
            resolved["price"] = resolved["price"] or detect("price")
            resolved["quantity"] = resolved["quantity"] or detect("quantity")
    if resolved["amount"] is not None:
        resolved["price"] = resolved["quantity"] = None

    for role, flag in (("customer", "--customer-col"), ("date", "--date-col")):
        if resolved[role] is None:
            raise InputError(f"{source}: no {role} column found; name it with {flag}. Columns: {_listing(names)}")
    if need_amount and resolved["amount"] is None and not (resolved["price"] and resolved["quantity"]):
        raise InputError(
            f"{source}: no amount column found; name it with --amount-col, or give --price-col "
            f"and --quantity-col. Columns: {_listing(names)}"
        )
    return replace(mapping, **resolved)


# --------------------------------------------------------------------------- values


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Ids as text; integral floats (a Parquet writer's doing) lose their '.0'."""
    if dtype == pl.String:
        return expr
    if dtype.is_float():
        return pl.when(expr == expr.round(0)).then(expr.cast(pl.Int64).cast(pl.String)).otherwise(expr.cast(pl.String))
    return expr.cast(pl.String)


def _as_number(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_numeric():
        return expr.cast(pl.Float64)
    return expr.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


def detect_date_format(values: pl.Series) -> tuple[str | None, str | None]:
    """The format in ``DATE_FORMATS`` that parses the most sampled values (earliest wins ties).

    Values it cannot parse are reported later, with their row, by the full check.
    Returns ``(format, alternative)``: the alternative is the day/month-swapped format
    when it reads the sample just as well (``01/02/2021``), else None.
    """
    values = values.drop_nulls().str.strip_chars()
    if values.len() == 0:
        return None, None
    parsed = {fmt: values.len() - values.str.to_datetime(fmt, strict=False).null_count() for fmt in DATE_FORMATS}
    best = max(parsed.values())
    if best == 0:
        return None, None
    chosen = next(fmt for fmt in DATE_FORMATS if parsed[fmt] == best)
    swapped = chosen.replace("%m/%d", "%d/%m") if "%m/%d" in chosen else chosen.replace("%d/%m", "%m/%d")
    return chosen, (swapped if swapped != chosen and parsed.get(swapped) == best else None)


def _settle_day_month(lf: pl.LazyFrame, column: str, chosen: str, alternative: str) -> tuple[str, str | None]:
    """Read the whole column both ways: the order that fails less wins; a note only if both read it all."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    failures = lf.select(
        text.str.to_datetime(chosen, strict=False).null_count().alias("chosen"),
        text.str.to_datetime(alternative, strict=False).null_count().alias("alternative"),
    ).collect(engine="streaming").row(0, named=True)
    if failures["alternative"] < failures["chosen"]:
        return alternative, None
    if failures["chosen"] < failures["alternative"]:
        return chosen, None
    first = lf.select(text.drop_nulls().first()).collect().item()
    return chosen, f"dates such as '{first}' could be day/month or month/day; read as '{chosen}' (pass --date-format to choose)"


def _date_expr(expr: pl.Expr, dtype: pl.DataType, fmt: str | None) -> pl.Expr:
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us"))
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            expr = expr.dt.replace_time_zone(None)
        return expr.cast(pl.Datetime("us"))
    text = expr.cast(pl.String).str.strip_chars()
    if fmt is None:
        return pl.lit(None, dtype=pl.Datetime("us"))
    return text.str.to_datetime(fmt, strict=False, time_unit="us")


@dataclass(frozen=True)
class _Typed:
    frame: pl.LazyFrame  # canonical columns plus raw date/amount text and the row number
    path: Path
    note: str | None


def _typed(path: Path, lf: pl.LazyFrame, cols: ColumnMapping) -> _Typed:
    schema = lf.collect_schema()
    date_dtype = schema[cols.date]
    fmt = cols.date_format
    note = None
    if fmt is None and not (date_dtype == pl.Date or isinstance(date_dtype, pl.Datetime)):
        sample = lf.select(pl.col(cols.date).cast(pl.String)).drop_nulls().head(DATE_SAMPLE_ROWS).collect()
        fmt, alternative = detect_date_format(sample.to_series())
        if alternative is not None:
            fmt, note = _settle_day_month(lf, cols.date, fmt, alternative)
        if fmt is None and sample.height:
            raise InputError(
                f"{path}: column '{cols.date}' has values that are not dates in any known format "
                f"(e.g. '{sample.to_series()[0]}'); pass --date-format, e.g. --date-format '%d/%m/%Y'"
            )
    # Raw text is kept only for text columns: typed (Parquet) columns cannot hold a
    # malformed value, and casting ten million numbers to text costs seconds.
    def raw(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String) if schema[name] == pl.String else pl.lit(None, dtype=pl.String)

    if cols.amount:
        amount = _as_number(pl.col(cols.amount), schema[cols.amount])
        raw_amount = raw(cols.amount)
        null_amount = pl.col(cols.amount).is_null()
    else:
        amount = _as_number(pl.col(cols.price), schema[cols.price]) * _as_number(pl.col(cols.quantity), schema[cols.quantity])
        raw_amount = pl.format("{} x {}", raw(cols.price), raw(cols.quantity))
        if schema[cols.price] != pl.String and schema[cols.quantity] != pl.String:
            raw_amount = pl.lit(None, dtype=pl.String)
        null_amount = pl.col(cols.price).is_null() | pl.col(cols.quantity).is_null()
    exprs = [
        _as_text(pl.col(cols.customer), schema[cols.customer]).alias("customer_id"),
        _date_expr(pl.col(cols.date), date_dtype, fmt).alias("date"),
        amount.alias("amount"),
        raw(cols.date).alias("_raw_date"),
        pl.col(cols.date).is_null().alias("_null_date"),
        raw_amount.alias("_raw_amount"),
        null_amount.alias("_null_amount"),
        pl.col(ROW),
    ]
    for role in OPTIONAL_ROLES:
        name = getattr(cols, role)
        if name:
            exprs.append(_as_text(pl.col(name), schema[name]).alias(CANONICAL[role]))
    frame = lf.with_row_index(ROW, offset=1).select(exprs)
    return _Typed(frame, path, note)


def _value_checks(cols: ColumnMapping, as_of_end: dt.datetime | None) -> list[pl.Expr]:
    bad_date = ~pl.col("_null_date") & pl.col("date").is_null()
    bad_amount = ~pl.col("_null_amount") & pl.col("amount").is_null()
    customer = pl.col("customer_id").is_not_null()
    checks = [
        pl.len().alias("n_rows"),
        pl.col("_null_date").sum().alias("n_null_date"),
        pl.col(ROW).filter(pl.col("_null_date")).first().alias("first_null_date"),
        bad_date.sum().alias("n_bad_date"),
        pl.col(ROW).filter(bad_date).first().alias("first_bad_date"),
        pl.col("_raw_date").filter(bad_date).first().alias("bad_date_value"),
        pl.col("_null_amount").sum().alias("n_null_amount"),
        pl.col(ROW).filter(pl.col("_null_amount")).first().alias("first_null_amount"),
        bad_amount.sum().alias("n_bad_amount"),
        pl.col(ROW).filter(bad_amount).first().alias("first_bad_amount"),
        pl.col("_raw_amount").filter(bad_amount).first().alias("bad_amount_value"),
        pl.col("amount").is_infinite().sum().alias("n_inf_amount"),
        pl.col(ROW).filter(pl.col("amount").is_infinite()).first().alias("first_inf_amount"),
        (~customer).sum().alias("n_no_customer"),
        (customer & (pl.col("amount") < 0)).sum().alias("n_returns"),
        (customer & (pl.col("amount") == 0)).sum().alias("n_zero_amount"),
        pl.col("date").filter(customer).min().alias("first_date"),
        pl.col("date").filter(customer).max().alias("last_date"),
    ]
    if as_of_end is not None:
        checks.append((customer & (pl.col("date") >= as_of_end)).sum().alias("n_after_as_of"))
    else:
        checks.append(pl.lit(0, dtype=pl.UInt32).alias("n_after_as_of"))
    return checks


def _raise_bad_values(path: Path, cols: ColumnMapping, row: dict) -> None:
    """Raise for the first kind of malformed value found by ``_value_checks``."""
    amount_col = cols.amount or f"{cols.price}' x '{cols.quantity}"
    checks = (
        ("null_date", cols.date, "empty values", None),
        ("bad_date", cols.date, "values that are not dates in the format of the others", "bad_date_value"),
        ("null_amount", amount_col, "empty values", None),
        ("bad_amount", amount_col, "non-numeric values", "bad_amount_value"),
        ("inf_amount", amount_col, "infinite values", None),
    )
    for key, column, what, value_key in checks:
        if row[f"n_{key}"]:
            where = f"first at row {row[f'first_{key}']}" + (f": '{row[value_key]}'" if value_key else "")
            raise InputError(f"{path}: column '{column}' has {row[f'n_{key}']:,} {what} ({where})")


def _collect(lf: pl.LazyFrame, path: Path | str) -> pl.DataFrame:
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: cannot be read: {_first_line(exc)}") from exc


def load_transactions(
    source: str | Path | Sequence[str | Path],
    mapping: ColumnMapping = ColumnMapping(),
    *,
    as_of: dt.date | None = None,
    need_amount: bool = True,
) -> Transactions:
    """Read, map and validate a transaction log; see the module docstring for the rules.

    ``as_of`` ends the observation: rows dated after that day are excluded (default:
    the last date of a customer row in the log).
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    paths = [p for s in sources for p in resolve_paths(s)]
    scans = [(p, scan_file(p)) for p in paths]
    first_names = scans[0][1].collect_schema().names()
    cols = resolve_columns(mapping, first_names, str(paths[0]), need_amount=need_amount)
    typed = []
    for path, lf in scans:
        if path != paths[0]:
            resolve_columns(cols, lf.collect_schema().names(), str(path), need_amount=need_amount)
        typed.append(_typed(path, lf, cols))

    as_of_end = None if as_of is None else dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())
    checks = _value_checks(cols, as_of_end)
    try:
        results = pl.collect_all([t.frame.select(checks) for t in typed], engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{_first_line(exc)} (reading {', '.join(map(str, paths))})") from exc
    for t, res in zip(typed, results, strict=True):
        _raise_bad_values(t.path, cols, res.row(0, named=True))

    total = pl.concat(results, how="vertical_relaxed")
    n_rows = int(total["n_rows"].sum())
    if n_rows == 0:
        raise InputError(f"{paths[0] if len(paths) == 1 else source}: has a header but no rows")
    n_no_customer = int(total["n_no_customer"].sum())
    if n_no_customer == n_rows:
        raise InputError(f"{paths[0]}: column '{cols.customer}' is empty in every row")
    last_date = total["last_date"].max()
    first_date = total["first_date"].min()
    if as_of is None:
        as_of = last_date.date()
    elif first_date is not None and as_of < first_date.date():
        raise InputError(f"--as-of {as_of} is before the first transaction ({first_date.date()})")

    keep = [c for c in ("customer_id", "date", "amount", *(CANONICAL[r] for r in OPTIONAL_ROLES if getattr(cols, r)))]
    frame = pl.concat([t.frame.select(keep) for t in typed], how="vertical_relaxed").filter(
        pl.col("customer_id").is_not_null()
    )
    if as_of_end is not None:
        frame = frame.filter(pl.col("date") < as_of_end)

    n_returns = int(total["n_returns"].sum())
    n_unmatched = 0
    if n_returns:
        frame, n_unmatched = _net_returns(frame, paths[0])

    quality = DataQuality(
        n_files=len(paths),
        n_rows=n_rows,
        n_no_customer=n_no_customer,
        n_after_as_of=int(total["n_after_as_of"].sum()),
        n_returns=n_returns,
        n_returns_unmatched=n_unmatched,
        n_zero_amount=int(total["n_zero_amount"].sum()),
        first_date=first_date,
        last_date=last_date,
        as_of=as_of,
    )
    notes = tuple(dict.fromkeys(t.note for t in typed if t.note))
    return Transactions(frame, cols, quality, tuple(map(str, paths)), notes)


def _net_returns(frame: pl.LazyFrame, path: Path) -> tuple[pl.LazyFrame, int]:
    """Move each return onto the customer's latest purchase at or before it.

    Returns are few, so they and the purchases of the customers who made them are
    matched eagerly; the result is re-attached to the lazy purchases.
    """
    purchases = frame.filter(pl.col("amount") >= 0)
    returns = frame.filter(pl.col("amount") < 0)
    buyers = purchases.join(returns.select("customer_id").unique(), on="customer_id", how="semi")
    matched = (
        returns.sort("date")
        .join_asof(
            buyers.select("customer_id", pl.col("date").alias("_sale_date")).unique().sort("_sale_date"),
            left_on="date",
            right_on="_sale_date",
            by="customer_id",
            strategy="backward",
            check_sortedness=False,  # both sides are sorted by date, hence within each customer
        )
    )
    matched_df = _collect(matched, path)
    n_unmatched = matched_df["_sale_date"].null_count()
    netted = matched_df.filter(pl.col("_sale_date").is_not_null()).with_columns(pl.col("_sale_date").alias("date")).drop("_sale_date")
    return pl.concat([purchases, netted.lazy()], how="vertical_relaxed"), n_unmatched


# --------------------------------------------------------------------------- summaries

SUMMARY_COLUMNS = ("frequency", "recency", "T")
SUMMARY_ID_ALIASES = (*ALIASES["customer"], "id")


def is_summary(source: str | Path) -> bool:
    """True when the file looks like an RFM summary (has frequency, recency and T columns)."""
    paths = resolve_paths(source)
    names = set(scan_file(paths[0]).collect_schema().names())
    return set(SUMMARY_COLUMNS) <= names


def load_summary(source: str | Path, customer_col: str | None = None, *, need_spend: bool = True) -> pl.DataFrame:
    """Read and check an RFM summary: ``customer_id, frequency, recency, T[, monetary_value]``.

    For summaries computed elsewhere (a warehouse, Spark). frequency must be a whole
    number >= 0, 0 <= recency <= T, and frequency 0 must have recency 0.
    Without ``need_spend``, a missing ``monetary_value`` is filled with 0.
    """
    paths = resolve_paths(source)
    lf = pl.concat([scan_file(p) for p in paths], how="vertical_relaxed")
    names = lf.collect_schema().names()
    label = str(paths[0]) if len(paths) == 1 else str(source)
    if customer_col is not None and customer_col not in names:
        raise InputError(f"{label}: no column '{customer_col}' (given by --customer-col){_nearest(customer_col, names)} Columns: {_listing(names)}")
    if customer_col is None:
        by_norm = {_normalise(n): n for n in names}
        customer_col = next((by_norm[a] for a in SUMMARY_ID_ALIASES if a in by_norm), None)
    if customer_col is None:
        raise InputError(f"{label}: no customer id column found; name it with --customer-col. Columns: {_listing(names)}")
    if need_spend and "monetary_value" not in names:
        raise InputError(f"{label} has no monetary_value column; spend models and CLV need it (add it, or pass the transaction log)")
    schema = lf.collect_schema()
    numeric = [c for c in (*SUMMARY_COLUMNS, "monetary_value") if c in names]
    typed = lf.with_row_index(ROW, offset=1).select(
        pl.col(ROW),
        _as_text(pl.col(customer_col), schema[customer_col]).alias("customer_id"),
        *(_as_number(pl.col(c), schema[c]).alias(c) for c in numeric),
        *(pl.col(c).cast(pl.String).alias(f"_raw_{c}") for c in numeric),
    )
    frame = _collect(typed, label)
    if frame.height == 0:
        raise InputError(f"{label}: has a header but no rows")
    for c in numeric:
        bad = frame.filter(pl.col(c).is_null() | ~pl.col(c).is_finite())
        if bad.height:
            row = bad.row(0, named=True)
            raise InputError(f"{label}: column '{c}' has {bad.height:,} empty or non-numeric values (first at row {row[ROW]}: '{row[f'_raw_{c}']}')")
    rules = [
        ("customer_id", pl.col("customer_id").is_null(), "empty customer ids"),
        ("customer_id", pl.col("customer_id").is_duplicated(), "repeated customer ids (a summary has one row per customer)"),
        ("frequency", (pl.col("frequency") < 0) | (pl.col("frequency") != pl.col("frequency").round(0)), "values that are not whole numbers >= 0"),
        ("recency", pl.col("recency") < 0, "negative values"),
        ("T", pl.col("T") < pl.col("recency"), "values below recency"),
        ("recency", (pl.col("frequency") == 0) & (pl.col("recency") != 0), "non-zero values where frequency is 0"),
    ]
    for col, mask, what in rules:
        bad = frame.filter(mask)
        if bad.height:
            row = bad.row(0, named=True)
            shown = {k: row[k] for k in ("customer_id", "frequency", "recency", "T") if k in row}
            raise InputError(f"{label}: column '{col}' has {bad.height:,} {what} (first at row {row[ROW]}: {shown})")
    out = frame.select(
        "customer_id",
        pl.col("frequency").cast(pl.Int64),
        pl.col("recency"),
        pl.col("T"),
        (pl.col("monetary_value") if "monetary_value" in numeric else pl.lit(0.0)).alias("monetary_value"),
    )
    return out.sort("customer_id")


def read_json(path: str | Path) -> object:
    """A JSON document from a file, or an :class:`InputError` saying why not."""
    import json

    p = resolve_paths(path)[0]
    try:
        return json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p} is not valid JSON: {exc}") from exc

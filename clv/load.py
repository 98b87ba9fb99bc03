"""Reading transaction logs: the one place where input is validated.

A transaction log is one row per order line in CSV or Parquet files (or a glob of
them), with the user's own column names. ``load_transactions`` maps those columns
to clvx's canonical ones, checks every value once, and returns a lazy frame that
the rest of clvx may trust:

========== ============ ===================================================
column     dtype        meaning
========== ============ ===================================================
customer_id String       exactly as written (``00042`` stays ``00042``)
date        Datetime(us) naive: local time, or the chosen zone for zoned input
amount      Float64      line revenue, net; negative for returns
order_id    String       optional
product_id  String       optional
category    String       optional
description String       optional
========== ============ ===================================================

Rules for messy logs (each is counted in :class:`DataQuality`, and every count
describes the rows actually used):

* rows with no customer are excluded from customer analytics: blank ids always,
  placeholder ids (``NULL``, ``None``, ``N/A``, ``NaN``, ``-``; see
  ``PLACEHOLDER_IDS``) unless ``ReadOptions.keep_placeholder_ids``;
* rows dated after today are excluded, and so are rows dated far before the bulk
  of the log: more than max(5 x the bulk's span, 10 years) before it, where the
  bulk is the middle half (first to third quartile) of the distinct days that
  have customer rows. Days, not rows, so that a placeholder such as ``1900-01-01`` is
  caught however many rows carry it; the wide margin keeps a thin early history
  (a few sales a year for some years). A stray ``9999-12-31`` would otherwise move
  everyone's observation window; ``ReadOptions.keep_outlying_dates`` keeps them;
* rows dated after the as-of date are excluded;
* a return (negative amount) is netted against the customer's latest purchase
  at or before it, so it reduces that purchase occasion's spend and never counts
  as a purchase occasion itself; a return with no earlier purchase in the log
  (the sale predates the log) is dropped;
* zero-amount lines are kept as purchases, as lifetimes does.

Numbers written as text may use ',' as a thousands separator (``1,234.56``) or as
the decimal mark (``1.234,56``): each file with a comma is decided from its values,
with a note; a file where only ``1,234``-like values show a comma, or where both
conventions appear, is refused unless ``ReadOptions.decimal_comma`` decides.

Text is UTF-8 unless ``ReadOptions.encoding`` names another encoding; a file that
is not valid UTF-8 is refused rather than read with replacement characters (which
would merge ``José`` and ``Josè``). Timestamps with a zone or offset (ISO 8601
``...Z``, ``...+02:00``, zoned Parquet columns) and Unix times are converted to
``ReadOptions.timezone`` (UTC by default) before the day is taken.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import difflib
import glob as globlib
import io
import os
import re
import stat
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import reduce
from pathlib import Path

import polars as pl

from clv.errors import InputError, option
from clv.scalars import to_date, to_datetime

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
    # ISO 8601 with a zone: 'Z', '+02:00', '+0200' or '+02'; mixed offsets are fine.
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
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
    "%m-%d-%Y",  # month first on ties, as with '/': dashes and slashes read the same way
    "%m-%d-%Y %H:%M",
    "%m-%d-%Y %H:%M:%S",
    "%d-%m-%Y",
    "%d-%m-%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d %b %Y",
    "%b %d %Y",
)
# --date-format values for numbers: microseconds per unit since 1970-01-01 UTC, and
# Excel's serial days since 1899-12-30 (local time, as Excel has no zones).
EPOCH_FORMATS = {"epoch": 1_000_000, "epoch_ms": 1_000}
EXCEL_FORMAT = "excel"
EXCEL_EPOCH = dt.datetime(1899, 12, 30)
US_PER_DAY = 86_400_000_000
DATE_SAMPLE_ROWS = 2_000
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
SNIFF_BYTES = 8_192
GLOB_CHARS = "*?["
# Internal column names start with this; a longer prefix is picked if the data has it.
INTERNAL_PREFIX = "__clvx_"
ROW = INTERNAL_PREFIX + "row"
# Customer ids that mean "unknown", compared case-insensitively after trimming spaces;
# a blank or whitespace-only id is unknown too.
PLACEHOLDER_IDS = ("null", "none", "nil", "nan", "n/a", "na", "#n/a", "-")
_SPACE = r"[ \t\x{00A0}]*"


def _caseless(word: str) -> str:
    # '[Nn][Uu][Ll][Ll]' rather than '(?i)': the pattern runs on every id, and this is faster
    return "".join(f"[{ch.upper()}{ch.lower()}]" if ch.isalpha() else re.escape(ch) for ch in word)


PLACEHOLDER_PATTERN = f"^{_SPACE}(?:{'|'.join(_caseless(p) for p in PLACEHOLDER_IDS)})?{_SPACE}$"
BLANK_PATTERN = f"^{_SPACE}$"
PLACEHOLDER_MAX_BYTES = 64  # longer ids are never taken for placeholders
# Far-past rule, over the distinct days with customer rows: days before Q(FAR_PAST_QUANTILE)
# - max(FAR_PAST_SPANS x (Q(1 - q) - Q(q)), FAR_PAST_MIN_GAP) are outliers, not history.
FAR_PAST_QUANTILE = 0.25
FAR_PAST_SPANS = 5
FAR_PAST_MIN_GAP = dt.timedelta(days=3_653)  # ten years


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
class ReadOptions:
    """How to read the bytes and which odd rows to keep; the defaults suit clean UTF-8 logs.

    ``encoding``: None reads UTF-8 and refuses a file that is not; a name such as
    ``latin-1`` or ``cp1252`` decodes CSV files with it. ``decimal_comma``: None
    detects the convention from the values (and says what it decided); True reads
    ``1.234,56``; False reads ``1,234.56``. ``timezone``: zoned timestamps and Unix
    times are converted to this IANA zone before the day is taken. ``today``: dates
    after it are in the future (None: the real date).
    """

    encoding: str | None = None
    decimal_comma: bool | None = None
    timezone: str = "UTC"
    keep_placeholder_ids: bool = False
    keep_outlying_dates: bool = False
    today: dt.date | None = None


@dataclass(frozen=True)
class DataQuality:
    """What was read and what was left out of customer analytics, and why.

    Each row read is counted once: dated in the future or far in the past, else dated
    after the as-of date, else with no customer (placeholder ids included), else used.
    So every count describes the observation window: ``n_no_customer`` counts only
    rows inside it. ``n_returns`` and ``n_zero_amount`` count rows used;
    ``first_date`` and ``last_date`` are the range of the rows used.
    """

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
    n_placeholder_customer: int = 0
    n_future_date: int = 0
    n_far_past_date: int = 0
    far_past_cutoff: dt.date | None = None
    today: dt.date | None = None

    @property
    def n_used(self) -> int:
        """Rows that reach customer analytics (before netting returns)."""
        return self.n_rows - self.n_no_customer - self.n_future_date - self.n_far_past_date - self.n_after_as_of


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


def _file_keys(paths: Sequence[str | Path]) -> set[object]:
    """Resolved names and (device, inode) pairs, so a file is recognised under any name."""
    keys: set[object] = set()
    for p in paths:
        keys.add(os.path.realpath(p))
        try:
            st = os.stat(p)
        except OSError:
            continue
        keys.add((st.st_dev, st.st_ino))
    return keys


def _is_excluded(path: Path, keys: set[object]) -> bool:
    if os.path.realpath(path) in keys:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in keys


def resolve_paths(source: str | Path, *, exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Expand a path or glob into existing files, or raise :class:`InputError`.

    An existing path is read as it is, even if its name has glob characters
    (``sales[2024].csv``). A glob is expanded once, and files in ``exclude`` (the
    run's own outputs) are never among its matches.
    """
    text = str(source)
    path = Path(text)
    if os.path.lexists(text):
        if path.is_dir():
            raise InputError(f"{text} is a directory; pass a file or a glob such as '{text}/*.parquet'")
        if not path.exists():
            raise InputError(f"file not found: {text} (a link to a missing file)")
        return [path]
    if any(ch in text for ch in GLOB_CHARS):
        matches = sorted(Path(p) for p in globlib.glob(text, recursive=True))
        files = [p for p in matches if p.is_file()]
        keys = _file_keys(exclude) if exclude else set()
        kept = [p for p in files if not _is_excluded(p, keys)]
        if not kept:
            outputs = " other than this run's output files" if files else ""
            raise InputError(f"no files match '{text}'{outputs}")
        return kept
    raise InputError(f"file not found: {text}")


@dataclass(frozen=True)
class _Input:
    """One input file, sniffed: its kind, and its bytes when they had to be read into memory."""

    path: Path
    kind: str  # 'csv' or 'parquet'
    data: bytes | None = None  # a pipe's content, or a file transcoded to UTF-8 or with CR line ends
    separator: str = ","
    notes: tuple[str, ...] = field(default=())

    @property
    def source(self) -> Path | bytes:
        return self.path if self.data is None else self.data

    def content(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()


def _kind(head: bytes, path: Path) -> str:
    """'parquet' or 'csv', from the magic bytes, else the suffix; refuse binary junk."""
    if not head:
        raise InputError(f"{path} is empty")
    if head[:4] == b"PAR1":
        return "parquet"
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        raise InputError(f"{path} is not a valid Parquet file (it does not start with the Parquet magic bytes)")
    if head[:2] == b"\x1f\x8b":
        raise InputError(f"{path} is gzip-compressed; decompress it first (gunzip)")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"{path} is UTF-16 text; pass {option('encoding', 'utf-16')}, or save it as UTF-8")
    if b"\x00" in head:
        raise InputError(f"{path} is not a CSV or Parquet file (it contains binary data)")
    return "csv"


def file_kind(path: Path) -> str:
    """'parquet' or 'csv', from the magic bytes, else the suffix; refuse binary junk."""
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return _kind(head, path)


def _separator(path: Path, head: bytes) -> str:
    if path.name.lower().endswith(".tsv"):
        return "\t"
    first_line = head.splitlines()[0].decode("utf-8", errors="replace") if head else ""
    counts = {sep: first_line.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > 0 else ","


def _encoding(name: str | None) -> str | None:
    """The codec's canonical name, None for UTF-8 (polars reads that directly)."""
    if name is None:
        return None
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise InputError(f"unknown encoding '{name}'; use a name such as utf-8, latin-1 or cp1252") from None
    return None if canonical in ("utf-8", "utf-8-sig") else canonical


# The content of each pipe read in this process, so that a second look (is_summary, then
# load_transactions) sees the same bytes rather than an exhausted pipe.
_PIPED: dict[tuple[int, int], bytes] = {}


def open_input(path: Path, options: ReadOptions = ReadOptions()) -> _Input:
    """Sniff one input; read it into memory when it is a pipe or must be transcoded."""
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode):
            with path.open("rb") as fh:
                head = fh.read(SNIFF_BYTES)
            data = None
        else:  # a FIFO or process substitution can be read only once: keep its bytes
            key = (st.st_dev, st.st_ino)
            if key not in _PIPED:
                _PIPED[key] = path.read_bytes()
            data = _PIPED[key]
            head = data[:SNIFF_BYTES]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    encoding = _encoding(options.encoding)
    if encoding is not None and head[:4] != b"PAR1":
        raw = data if data is not None else path.read_bytes()
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise InputError(f"{path}: byte 0x{raw[exc.start]:02X} on line {line} is not valid {options.encoding}; check {option('encoding')}") from None
        data = text.lstrip("\ufeff").encode("utf-8")
        head = data[:SNIFF_BYTES]
    kind = _kind(head, path)
    if kind == "parquet":
        return _Input(path, kind, data)
    notes: tuple[str, ...] = ()
    if b"\r" in head and b"\n" not in head:
        # Old Mac line ends (CR only): polars would see a single line.
        data = (data if data is not None else path.read_bytes()).replace(b"\r", b"\n")
        head = data[:SNIFF_BYTES]
        notes = (f"{path}: lines end in CR only (old Mac style); read as line breaks",)
    return _Input(path, kind, data, _separator(path, head), notes)


def scan_input(inp: _Input) -> pl.LazyFrame:
    """A lazy scan of one input. CSV columns are all read as text, so ids keep their digits."""
    try:
        if inp.kind == "parquet":
            if inp.data is None:
                lf = pl.scan_parquet(inp.path, glob=False)
            else:
                lf = pl.read_parquet(io.BytesIO(inp.data)).lazy()
        else:
            lf = pl.scan_csv(inp.source, infer_schema=False, separator=inp.separator, encoding="utf8", glob=False)
        names = lf.collect_schema().names()
    except pl.exceptions.PolarsError as exc:
        what = "Parquet" if inp.kind == "parquet" else "CSV"
        raise _explain(exc, [inp], f"{inp.path} is not a readable {what} file") from exc
    if not names or names == [""]:
        raise InputError(f"{inp.path} has no header row")
    # polars renames a repeated header to '<name>_duplicated_<n>': which of the two is meant is
    # not ours to guess, and reading the first would be a silent choice.
    for i, name in enumerate(names):
        base = re.fullmatch(r"(.*)_duplicated_\d+", name)
        if base and base.group(1) in names:
            first = names.index(base.group(1))
            raise InputError(f"{inp.path}: column '{base.group(1)}' appears twice in the header (columns {first + 1} "
                             f"and {i + 1}); rename or remove one")
    cleaned = [n.lstrip("\ufeff") for n in names]
    if cleaned != names:
        lf = lf.rename(dict(zip(names, cleaned, strict=True)))
    return lf


def scan_file(path: Path, options: ReadOptions = ReadOptions()) -> pl.LazyFrame:
    """A lazy scan of one file. CSV columns are all read as text, so ids keep their digits."""
    return scan_input(open_input(path, options))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _invalid_utf8(inp: _Input) -> tuple[int, int] | None:
    """(line, byte) of the first byte that is not UTF-8; only called once a read has failed."""
    data = inp.content()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data.count(b"\n", 0, exc.start) + 1, data[exc.start]
    return None


def _unclosed_quote(inp: _Input) -> int | None:
    """The line where a quoted field opens and never closes; only called once a read has failed."""
    text = io.StringIO(inp.content().decode("utf-8", errors="replace"), newline="")
    reader = csv.reader(text, delimiter=inp.separator, strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as exc:
        if "end of data" in str(exc):
            return start
    return None


def _explain(exc: BaseException, inputs: Sequence[_Input], generic: str | None = None) -> InputError:
    """One line for a read that polars refused: which file, which line, what to do."""
    message = _first_line(exc)
    for inp in inputs:
        if inp.kind != "csv":
            continue
        if "utf-8" in message.lower():
            found = _invalid_utf8(inp)
            if found:
                line, byte = found
                return InputError(
                    f"{inp.path}: is not UTF-8 text (byte 0x{byte:02X} on line {line}); if it was saved as "
                    f"Latin-1 or Windows-1252, pass {option('encoding', 'latin-1')} or {option('encoding', 'cp1252')}"
                )
        else:
            open_line = _unclosed_quote(inp)
            if open_line:
                return InputError(
                    f"{inp.path}: a quoted field opens on line {open_line} and is never closed (an unbalanced '\"'); "
                    f"fix that line or export the file again"
                )
    generic = generic or f"{', '.join(str(i.path) for i in inputs)}: cannot be read"
    return InputError(f"{generic}: {message}")


def _collect_all(queries: Sequence[pl.LazyFrame], inputs: Sequence[_Input]) -> list[pl.DataFrame]:
    try:
        return pl.collect_all(queries, engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise _explain(exc, inputs) from exc
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
                f"{source}: no column '{given}' (given by {option(f'{role}_col')}){_nearest(given, names)} "
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

    for role, flag in (("customer", option("customer_col")), ("date", option("date_col"))):
        if resolved[role] is None:
            raise InputError(f"{source}: no {role} column found; name it with {flag}. Columns: {_listing(names)}")
    if need_amount and resolved["amount"] is None and not (resolved["price"] and resolved["quantity"]):
        raise InputError(
            f"{source}: no amount column found; name it with {option('amount_col')}, or give {option('price_col')} "
            f"and {option('quantity_col')}. Columns: {_listing(names)}"
        )
    return replace(mapping, **resolved)


def _resolved(name: str | None, role: str) -> str:
    """The source column of a role that :func:`resolve_columns` always fills in (customer, date)."""
    if name is None:
        raise ValueError(f"no {role} column: the mapping has not been through resolve_columns")
    return name


# --------------------------------------------------------------------------- values


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Ids as text; integral floats (a Parquet writer's doing) lose their '.0'."""
    if dtype == pl.String:
        return expr
    if dtype.is_float():
        return pl.when(expr == expr.round(0)).then(expr.cast(pl.Int64).cast(pl.String)).otherwise(expr.cast(pl.String))
    return expr.cast(pl.String)


def _as_number(expr: pl.Expr, dtype: pl.DataType, decimal_comma: bool | None = None) -> pl.Expr:
    """Numbers; text is read plain (None), with ',' as thousands separator (False) or as decimal mark (True)."""
    if dtype.is_numeric():
        return expr.cast(pl.Float64)
    text = expr.cast(pl.String).str.strip_chars()
    if decimal_comma is True:
        text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    elif decimal_comma is False:
        text = text.str.replace_all(",", "", literal=True)
    return text.cast(pl.Float64, strict=False)


# Evidence for a decimal convention, on trimmed text. A single '1,234' or '1.234' is
# evidence of neither: it is a thousands group or three decimals.
_COMMA_LAST = r"^[-+]?[0-9.]*,[0-9]*$"
_DOT_LAST = r"^[-+]?[0-9,]*\.[0-9]*$"
_COMMA_GROUPS = r"^[-+]?\d{1,3}(,\d{3})+$"
_DOT_GROUPS = r"^[-+]?\d{1,3}(\.\d{3})+$"
_MANY_COMMA_GROUPS = r"^[-+]?\d{1,3}(,\d{3}){2,}$"
_MANY_DOT_GROUPS = r"^[-+]?\d{1,3}(\.\d{3}){2,}$"
_ONE_COMMA_GROUP = r"^[-+]?\d{1,3},\d{3}$"


def _decimal_evidence(texts: Sequence[pl.Expr], row: str, raw: pl.Expr) -> list[pl.Expr]:
    """Counts and first examples of rows that show a decimal comma, a decimal point, or neither."""
    def any_of(pattern_test) -> pl.Expr:
        return reduce(lambda a, b: a | b, [pattern_test(t.str.strip_chars()) for t in texts]).fill_null(False)

    comma = any_of(lambda t: (t.str.contains(_COMMA_LAST) & ~t.str.contains(_COMMA_GROUPS)) | t.str.contains(_MANY_DOT_GROUPS))
    dot = any_of(lambda t: (t.str.contains(_DOT_LAST) & ~t.str.contains(_DOT_GROUPS)) | t.str.contains(_MANY_COMMA_GROUPS))
    ambiguous = any_of(lambda t: t.str.contains(_ONE_COMMA_GROUP))
    out = []
    for name, mask in (("comma_decimal", comma), ("dot_decimal", dot), ("one_comma_group", ambiguous)):
        out += [mask.sum().alias(f"n_{name}"), pl.col(row).filter(mask).first().alias(f"first_{name}"),
                raw.filter(mask).first().alias(f"{name}_value")]
    return out


def _swap_day_month(fmt: str) -> str:
    for sep in "/-.":
        month_first, day_first = f"%m{sep}%d", f"%d{sep}%m"
        if month_first in fmt:
            return fmt.replace(month_first, day_first)
        if day_first in fmt:
            return fmt.replace(day_first, month_first)
    return fmt


def detect_date_format(values: pl.Series) -> tuple[str | None, str | None]:
    """The format in ``DATE_FORMATS`` that parses the most sampled values (earliest wins ties).

    Values it cannot parse are reported later, with their row, by the full check.
    Returns ``(format, alternative)``: the alternative is the day/month-swapped format
    when it reads the sample just as well (``01/02/2021``, ``01-02-2021``), else None.
    """
    values = values.drop_nulls().str.strip_chars()
    if values.len() == 0:
        return None, None
    parsed = {fmt: values.len() - values.str.to_datetime(fmt, strict=False).null_count() for fmt in DATE_FORMATS}
    best = max(parsed.values())
    if best == 0:
        return None, None
    chosen = next(fmt for fmt in DATE_FORMATS if parsed[fmt] == best)
    swapped = _swap_day_month(chosen)
    return chosen, (swapped if swapped != chosen and parsed.get(swapped) == best else None)


def _settle_day_month(lf: pl.LazyFrame, column: str, chosen: str, alternative: str, inp: _Input) -> tuple[str, str | None]:
    """Read the whole column both ways: the order that fails less wins; a note only if both read it all."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    failures = _collect_all([lf.select(
        text.str.to_datetime(chosen, strict=False).null_count().alias("chosen"),
        text.str.to_datetime(alternative, strict=False).null_count().alias("alternative"),
    )], [inp])[0].row(0, named=True)
    if failures["alternative"] < failures["chosen"]:
        return alternative, None
    if failures["chosen"] < failures["alternative"]:
        return chosen, None
    first = _collect_all([lf.select(text.drop_nulls().first())], [inp])[0].item()
    return chosen, f"dates such as '{first}' could be day/month or month/day; read as '{chosen}' (pass {option('date_format')} to choose)"


def _has_zone(fmt: str) -> bool:
    return "%z" in fmt or "%#z" in fmt or "%:z" in fmt


def _date_expr(expr: pl.Expr, dtype: pl.DataType, fmt: str | None, timezone: str) -> pl.Expr:
    """Naive datetimes: zoned values and Unix times are converted to ``timezone`` first."""
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us"))
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            expr = expr.dt.convert_time_zone(timezone).dt.replace_time_zone(None)
        return expr.cast(pl.Datetime("us"))
    if fmt in EPOCH_FORMATS:
        us = (_as_number(expr, dtype) * EPOCH_FORMATS[fmt]).round(0).cast(pl.Int64, strict=False)
        return us.cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(timezone).dt.replace_time_zone(None)
    if fmt == EXCEL_FORMAT:
        offset_us = (EXCEL_EPOCH - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
        us = (_as_number(expr, dtype) * US_PER_DAY + offset_us).round(0).cast(pl.Int64, strict=False)
        return us.cast(pl.Datetime("us"))
    if fmt is None:
        return pl.lit(None, dtype=pl.Datetime("us"))
    parsed = expr.cast(pl.String).str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
    if _has_zone(fmt):
        parsed = parsed.dt.convert_time_zone(timezone).dt.replace_time_zone(None)
    return parsed


def _date_format(inp: _Input, lf: pl.LazyFrame, cols: ColumnMapping, options: ReadOptions) -> tuple[str | None, list[str]]:
    """The date format to use (given or detected) and the notes it calls for."""
    date_col = _resolved(cols.date, "date")
    dtype = lf.collect_schema()[date_col]
    fmt = cols.date_format
    notes: list[str] = []
    temporal = dtype == pl.Date or isinstance(dtype, pl.Datetime)
    if fmt is None and not temporal:
        sample = _collect_all([lf.select(pl.col(date_col).cast(pl.String)).drop_nulls().head(DATE_SAMPLE_ROWS)], [inp])[0].to_series()
        fmt, alternative = detect_date_format(sample)
        if fmt is not None and alternative is not None:  # an alternative comes only with a format
            fmt, note = _settle_day_month(lf, date_col, fmt, alternative, inp)
            notes += [note] if note else []
        if fmt is None and sample.len():
            if sample.str.strip_chars().str.contains(r"^[-+]?\d+(\.\d+)?$").all():
                raise InputError(
                    f"{inp.path}: column '{cols.date}' holds numbers, not dates (e.g. '{sample[0]}'); for Unix times pass "
                    f"{option('date_format', 'epoch')} (seconds) or {option('date_format', 'epoch_ms')} (milliseconds), for Excel serial dates "
                    f"{option('date_format', 'excel')}"
                )
            raise InputError(
                f"{inp.path}: column '{cols.date}' has values that are not dates in any known format "
                f"(e.g. '{sample[0]}'); pass {option('date_format')}, e.g. {option('date_format', '%d/%m/%Y')}"
            )
        if fmt is not None and "%Y" in fmt:
            text = sample.str.strip_chars()
            short = (text.str.to_datetime(fmt, strict=False).dt.year() < 100) & ~text.str.contains(r"\d{4}")
            if short.any():
                raise InputError(
                    f"{inp.path}: column '{cols.date}' has two-digit years (e.g. '{sample.filter(short)[0]}'); "
                    f"pass {option('date_format', fmt.replace('%Y', '%y'))}"
                )
    zoned = (isinstance(dtype, pl.Datetime) and dtype.time_zone is not None) or (
        not temporal and fmt is not None and (_has_zone(fmt) or fmt in EPOCH_FORMATS))
    if zoned:
        notes.append(f"{inp.path}: times in '{cols.date}' carry a zone; converted to {options.timezone} before taking the day")
    return fmt, notes


def _internal(base: str, names: Sequence[str]) -> str:
    """An internal column name that none of the user's columns has."""
    name = INTERNAL_PREFIX + base
    while name in names:
        name = "_" + name
    return name


def _typed(
    lf: pl.LazyFrame, cols: ColumnMapping, fmt: str | None, options: ReadOptions, *,
    decimal_comma: bool | None, placeholders: bool, decimal_evidence: bool = False,
) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """The canonical frame of one file (plus raw text, row number and flags for the checks).

    With ``decimal_comma`` None, text numbers are read plain, and the returned
    expressions count the values with a comma (or, with ``decimal_evidence``, the
    evidence for either convention).
    """
    schema = lf.collect_schema()
    names = schema.names()
    row, flag = _internal("row", names), _internal("placeholder", names)
    customer_col, date_col = _resolved(cols.customer, "customer"), _resolved(cols.date, "date")
    date_dtype = schema[date_col]

    # Raw text is kept only for text columns: typed (Parquet) columns cannot hold a
    # malformed value, and casting ten million numbers to text costs seconds.
    def raw(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String) if schema[name] == pl.String else pl.lit(None, dtype=pl.String)

    comma = decimal_comma  # None: plain; a file with commas is decided, then read again
    if cols.amount:
        amount = _as_number(pl.col(cols.amount), schema[cols.amount], comma)
        raw_amount = raw(cols.amount)
        null_amount = pl.col(cols.amount).is_null()
    elif cols.price and cols.quantity:
        amount = _as_number(pl.col(cols.price), schema[cols.price], comma) * _as_number(pl.col(cols.quantity), schema[cols.quantity], comma)
        raw_amount = pl.format("{} x {}", raw(cols.price), raw(cols.quantity))
        if schema[cols.price] != pl.String and schema[cols.quantity] != pl.String:
            raw_amount = pl.lit(None, dtype=pl.String)
        null_amount = pl.col(cols.price).is_null() | pl.col(cols.quantity).is_null()
    else:  # no amount, allowed with need_amount=False: every amount is missing, none malformed
        amount = pl.lit(None, dtype=pl.Float64)
        raw_amount = pl.lit(None, dtype=pl.String)
        null_amount = pl.lit(True)
    ident = _as_text(pl.col(customer_col), schema[customer_col])
    customer, is_placeholder = ident, pl.lit(False)
    if placeholders and schema[customer_col] == pl.String:
        pattern = BLANK_PATTERN if options.keep_placeholder_ids else PLACEHOLDER_PATTERN
        is_placeholder = ((ident.str.len_bytes() <= PLACEHOLDER_MAX_BYTES) & ident.str.contains(pattern)).fill_null(False)
        customer = pl.when(pl.col(flag)).then(None).otherwise(ident)
    # resolve_columns leaves price and quantity unset when there is an amount column
    texts = [n for n in (cols.amount, cols.price, cols.quantity) if n and schema[n] == pl.String]
    exprs = [
        customer.alias("customer_id"),
        _date_expr(pl.col(date_col), date_dtype, fmt, options.timezone).alias("date"),
        amount.alias("amount"),
        raw(date_col).alias("_raw_date"),
        pl.col(date_col).is_null().alias("_null_date"),
        raw_amount.alias("_raw_amount"),
        null_amount.alias("_null_amount"),
        pl.col(row).alias("_row"),
        pl.col(flag).alias("_placeholder"),
    ]
    for role in OPTIONAL_ROLES:
        name = getattr(cols, role)
        if name:
            exprs.append(_as_text(pl.col(name), schema[name]).alias(CANONICAL[role]))
    evidence: list[pl.Expr] = []
    if decimal_comma is None and texts:
        exprs += [pl.col(n).alias(f"_text_{i}") for i, n in enumerate(texts)]
        if decimal_evidence:
            evidence = _decimal_evidence([pl.col(f"_text_{i}") for i in range(len(texts))], "_row", pl.col("_raw_amount"))
        else:  # a cheap first look: the evidence is needed only if some value has a comma
            has_comma = reduce(lambda a, b: a | b, [pl.col(f"_text_{i}").str.contains(",", literal=True) for i in range(len(texts))])
            evidence = [has_comma.fill_null(False).sum().alias("n_has_comma")]
    frame = lf.with_row_index(row, offset=1).with_columns(is_placeholder.alias(flag)).select(exprs)
    return frame, evidence


def _value_checks(cols: ColumnMapping) -> list[pl.Expr]:
    """Malformed values, with the first row of each kind; run once over every row."""
    bad_date = ~pl.col("_null_date") & pl.col("date").is_null()
    bad_amount = ~pl.col("_null_amount") & pl.col("amount").is_null()
    checks = [
        pl.len().alias("n_rows"),
        pl.col("_null_date").sum().alias("n_null_date"),
        pl.col("_row").filter(pl.col("_null_date")).first().alias("first_null_date"),
        bad_date.sum().alias("n_bad_date"),
        pl.col("_row").filter(bad_date).first().alias("first_bad_date"),
        pl.col("_raw_date").filter(bad_date).first().alias("bad_date_value"),
        pl.col("_null_amount").sum().alias("n_null_amount"),
        pl.col("_row").filter(pl.col("_null_amount")).first().alias("first_null_amount"),
        bad_amount.sum().alias("n_bad_amount"),
        pl.col("_row").filter(bad_amount).first().alias("first_bad_amount"),
        pl.col("_raw_amount").filter(bad_amount).first().alias("bad_amount_value"),
        (pl.col("amount").is_infinite() | pl.col("amount").is_nan()).sum().alias("n_inf_amount"),
        pl.col("_row").filter(pl.col("amount").is_infinite() | pl.col("amount").is_nan()).first().alias("first_inf_amount"),
    ]
    checks += [pl.col(CANONICAL[r]).is_not_null().sum().alias(f"n_has_{r}") for r in OPTIONAL_ROLES if getattr(cols, r)]
    return checks


def _day_counts(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Counts per day, so that any observation window's counts follow without another read."""
    customer = pl.col("customer_id").is_not_null()
    return frame.group_by(pl.col("date").dt.date().alias("day")).agg(
        pl.len().alias("n_rows"),
        (~customer).sum().alias("n_no_customer"),
        pl.col("_placeholder").sum().alias("n_placeholder"),
        customer.sum().alias("n_customer"),
        (customer & (pl.col("amount") < 0)).sum().alias("n_returns"),
        (customer & (pl.col("amount") == 0)).sum().alias("n_zero_amount"),
        pl.col("date").filter(customer).min().alias("first_date"),
        pl.col("date").filter(customer).max().alias("last_date"),
    )


def _file_counts(text_ids: bool, options: ReadOptions) -> list[pl.Expr]:
    """Whole-file counts; they describe the rows used unless ``_days`` says otherwise."""
    customer = pl.col("customer_id").is_not_null()
    ids = pl.col("customer_id")
    # Placeholders are short, so the pattern runs on few rows: only their presence matters here.
    pattern = BLANK_PATTERN if options.keep_placeholder_ids else PLACEHOLDER_PATTERN
    maybe = ids.filter(ids.str.len_bytes() <= PLACEHOLDER_MAX_BYTES).str.contains(pattern).sum() if text_ids else pl.lit(0)
    return [
        (~customer).sum().alias("n_no_customer"),
        maybe.alias("n_placeholder"),
        customer.sum().alias("n_customer"),
        (customer & (pl.col("amount") < 0)).sum().alias("n_returns"),
        (customer & (pl.col("amount") == 0)).sum().alias("n_zero_amount"),
        pl.col("date").filter(customer).min().alias("first_date"),
        pl.col("date").filter(customer).max().alias("last_date"),
    ]


def _days(results: dict[int, dict], as_of: dt.date | None, today: dt.date, options: ReadOptions) -> pl.DataFrame | None:
    """The whole log as one 'day' when no row can fall outside the window, else None.

    Nothing is cut when there are no placeholder ids, no date after today or after
    ``as_of``, and the dates span at most ``FAR_PAST_MIN_GAP`` (then no date can be
    that far before the bulk). Clean logs are thus read once.
    """
    counts = ("n_rows", "n_no_customer", "n_placeholder", "n_customer", "n_returns", "n_zero_amount")
    totals = {c: sum(int(r[c]) for r in results.values()) for c in counts}
    firsts = [r["first_date"] for r in results.values() if r["first_date"] is not None]
    lasts = [r["last_date"] for r in results.values() if r["last_date"] is not None]
    if totals["n_placeholder"]:
        return None
    if lasts:
        first, last = min(firsts), max(lasts)
        if as_of is not None and as_of < last.date():
            return None
        if not options.keep_outlying_dates and (last.date() > today or last - first > FAR_PAST_MIN_GAP):
            return None
    else:
        first = last = None
    frame = pl.DataFrame({"day": [last.date() if last else None], **{c: [v] for c, v in totals.items()},
                          "first_date": [first], "last_date": [last]},
                         schema_overrides={"day": pl.Date, "first_date": pl.Datetime("us"), "last_date": pl.Datetime("us")})
    return frame


def _raise_bad_values(path: Path, cols: ColumnMapping, row: dict) -> None:
    """Raise for the first kind of malformed value found by ``_value_checks``."""
    checks: list[tuple[str, str | None, str, str | None]] = [
        ("null_date", cols.date, "empty value(s)", None),
        ("bad_date", cols.date, "values that are not dates in the format of the others|value that is not a date in the format of the others",
         "bad_date_value"),
    ]
    if cols.amount or (cols.price and cols.quantity):  # else a log without amounts (need_amount=False)
        amount_col = cols.amount or f"{cols.price}' x '{cols.quantity}"
        checks += [
            ("null_amount", amount_col, "empty value(s)", None),
            ("bad_amount", amount_col, "non-numeric value(s)", "bad_amount_value"),
            ("inf_amount", amount_col, "infinite or NaN value(s)", None),
        ]
    for key, column, what, value_key in checks:
        if row[f"n_{key}"]:
            where = f"first at row {row[f'first_{key}']}" + (f": '{row[value_key]}'" if value_key else "")
            hint = ""
            if key == "bad_amount" and re.search(r"\d\.\d{3}\.\d{3}", str(row[value_key])):
                hint = f"; if '.' separates thousands here, pass {option('decimal_comma', True)}"
            n = row[f"n_{key}"]
            raise InputError(f"{path}: column '{column}' has {n:,} {_counted(what, n)} ({where}){hint}")


def _counted(what: str, n: int) -> str:
    """``what`` for ``n`` of them: ``"value(s) ..."`` takes an s or not; ``"plural|singular"`` gives both forms."""
    plural, _, singular = what.partition("|")
    return (singular or plural.replace("(s)", "")) if n == 1 else plural.replace("(s)", "s")


def _decide_decimal(path: Path, cols: ColumnMapping, res: dict) -> tuple[bool, str | None]:
    """Decimal comma or point for one file's text numbers, from the evidence counted by ``_decimal_evidence``."""
    column = cols.amount or f"{cols.price}' and '{cols.quantity}"
    if "n_comma_decimal" not in res:  # no value has a comma
        return False, None
    comma, dot = res["n_comma_decimal"], res["n_dot_decimal"]
    if comma and dot:
        raise InputError(
            f"{path}: column '{column}' mixes decimal marks ('{res['dot_decimal_value']}' at row {res['first_dot_decimal']}, "
            f"'{res['comma_decimal_value']}' at row {res['first_comma_decimal']}); fix the file, "
            f"or pass {option('decimal_comma', True)} or {option('decimal_comma', False)}"
        )
    if comma:
        return True, (f"{path}: read ',' as the decimal mark in '{column}' (values such as '{res['comma_decimal_value']}'); "
                      f"pass {option('decimal_comma', False)} if wrong")
    if dot or not res["n_has_comma"] or not res["n_one_comma_group"]:
        note = f"{path}: read ',' as a thousands separator in '{column}'" if res["n_has_comma"] else None
        return False, note
    raise InputError(
        f"{path}: column '{column}' has values such as '{res['one_comma_group_value']}' (first at row {res['first_one_comma_group']}) "
        f"that could be thousands or decimals; pass {option('decimal_comma', True)} to read ',' as the decimal mark, "
        f"or {option('decimal_comma', False)} to read it as a thousands separator"
    )


def _far_past_cutoff(days: pl.DataFrame) -> dt.date | None:
    """The day before which dates are outliers, not history (see ``FAR_PAST_*``).

    ``days`` holds the sorted distinct days with customer rows. Their quantiles move
    little when a few days are placeholders (1900-01-01), however many rows carry
    them, so the rule is robust to the very outliers it is there to catch.
    """
    if days.height == 0:
        return None
    low = days["day"][int(FAR_PAST_QUANTILE * (days.height - 1))]
    high = days["day"][round((1 - FAR_PAST_QUANTILE) * (days.height - 1))]
    try:
        return low - max(FAR_PAST_SPANS * (high - low), FAR_PAST_MIN_GAP)
    except OverflowError:
        return None


def _check_settings(as_of: dt.date | None, today: dt.date, options: ReadOptions) -> None:
    try:
        zoneinfo.ZoneInfo(options.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone '{options.timezone}'; use an IANA name such as UTC or Europe/Paris") from None
    if as_of is None:
        return
    if as_of >= dt.date.max:
        raise InputError(f"{option('as_of', as_of)} is not a usable end date; give a date up to today ({today})")
    if as_of > today and not options.keep_outlying_dates:
        raise InputError(f"{option('as_of', as_of)} is after today ({today}); the observation cannot end in the future")


def load_transactions(
    source: str | Path | Sequence[str | Path],
    mapping: ColumnMapping = ColumnMapping(),
    *,
    as_of: dt.date | None = None,
    need_amount: bool = True,
    options: ReadOptions = ReadOptions(),
    exclude: Sequence[str | Path] = (),
) -> Transactions:
    """Read, map and validate a transaction log; see the module docstring for the rules.

    ``as_of`` ends the observation: rows dated after that day are excluded (default:
    the last date of a customer row in the log, outlying dates aside). ``exclude``
    names files a glob must not read (the run's own outputs).
    """
    today = options.today or dt.date.today()
    _check_settings(as_of, today, options)
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    paths = [p for s in sources for p in resolve_paths(s, exclude=exclude)]
    inputs = [open_input(p, options) for p in paths]
    scans = [scan_input(i) for i in inputs]
    cols = resolve_columns(mapping, scans[0].collect_schema().names(), str(paths[0]), need_amount=need_amount)
    for inp, lf in zip(inputs[1:], scans[1:], strict=True):
        resolve_columns(cols, lf.collect_schema().names(), str(inp.path), need_amount=need_amount)
    notes = [n for i in inputs for n in i.notes]
    formats = []
    for inp, lf in zip(inputs, scans, strict=True):
        fmt, date_notes = _date_format(inp, lf, cols, options)
        formats.append(fmt)
        notes += date_notes
    decimal: list[bool | None] = [options.decimal_comma] * len(inputs)

    def checked(indices: Sequence[int]) -> dict[int, dict]:
        queries = []
        for i in indices:
            frame, evidence = _typed(scans[i], cols, formats[i], options, decimal_comma=decimal[i], placeholders=False)
            text_ids = scans[i].collect_schema()[_resolved(cols.customer, "customer")] == pl.String
            queries.append(frame.select(*_value_checks(cols), *_file_counts(text_ids, options), *evidence))
        results = _collect_all(queries, [inputs[i] for i in indices])
        return {i: results[k].row(0, named=True) for k, i in enumerate(indices)}

    results = checked(range(len(inputs)))
    commas = [i for i, res in results.items() if decimal[i] is None and res.get("n_has_comma")]
    if commas:
        queries = []
        for i in commas:
            frame, evidence = _typed(scans[i], cols, formats[i], options, decimal_comma=None, placeholders=False, decimal_evidence=True)
            queries.append(frame.select(evidence))
        for i, found in zip(commas, _collect_all(queries, [inputs[i] for i in commas]), strict=True):
            results[i].update(found.row(0, named=True))
    for i in commas:
        decimal[i], note = _decide_decimal(paths[i], cols, results[i])
        notes += [note] if note else []
    if commas:  # the first read took values with a comma for non-numeric
        results.update(checked(commas))
    for i, res in sorted(results.items()):
        _raise_bad_values(paths[i], cols, res)

    label = paths[0] if len(paths) == 1 else source
    n_rows = sum(res["n_rows"] for res in results.values())
    if n_rows == 0:
        raise InputError(f"{label}: has a header but no rows")
    for role in OPTIONAL_ROLES:
        name = getattr(cols, role)
        if name and not sum(res[f"n_has_{role}"] for res in results.values()):
            notes.append(f"column '{name}' is empty in every row; read as if there were no {role} column")
            cols = replace(cols, **{role: None})

    days = _days(results, as_of, today, options)
    per_day = days is None
    if days is None:  # the window may cut rows or ids may be placeholders: count per day
        frames = [_typed(scans[i], cols, formats[i], options, decimal_comma=decimal[i], placeholders=True)[0] for i in range(len(inputs))]
        file_days = _collect_all([_day_counts(f) for f in frames], inputs)
        days = (
        pl.concat(file_days, how="vertical_relaxed")
        .group_by("day")
        .agg(pl.col("n_rows", "n_no_customer", "n_placeholder", "n_customer", "n_returns", "n_zero_amount").sum(),
             pl.col("first_date").min(), pl.col("last_date").max())
        .sort("day")
        )
    any_placeholder = bool(days["n_placeholder"].sum())
    if int(days["n_no_customer"].sum()) == n_rows:
        blank = " (or holds only placeholders such as NULL)" if any_placeholder else ""
        raise InputError(f"{paths[0]}: column '{cols.customer}' is empty in every row{blank}")
    customers = days.filter(pl.col("n_customer") > 0)
    lower = upper = None
    if not options.keep_outlying_dates:
        upper = today
        if per_day:  # else the dates span too little for any to be far before the others
            lower = _far_past_cutoff(customers.filter(pl.col("day") <= today))
    inside = customers
    if upper is not None:
        inside = inside.filter(pl.col("day") <= upper)
    if lower is not None:
        inside = inside.filter(pl.col("day") >= lower)
    # Rows with no customer are counted by date like the others, so that every count
    # describes the observation window.
    n_future = int(days.filter(pl.col("day") > upper)["n_rows"].sum()) if upper else 0
    n_far_past = int(days.filter(pl.col("day") < lower)["n_rows"].sum()) if lower else 0
    if inside.height == 0:
        raise InputError(f"{label}: every row with a customer is dated after today ({today}); check the date column and {option('date_format')}")
    first_date = to_datetime(inside["first_date"].min())
    # A given as-of date cuts every row after it; the default one, the last purchase,
    # only those with a customer (rows with none after it are simply rows with none).
    cut_all = per_day and as_of is not None
    if as_of is None:
        as_of = to_date(inside["day"].max())
    elif as_of < first_date.date():
        raise InputError(f"{option('as_of', as_of)} is before the first transaction ({first_date.date()})")
    used = inside.filter(pl.col("day") <= as_of)
    # The one-pass count is one 'day' that lies wholly inside the window.
    window = days if not per_day else days.filter(pl.lit(True) if upper is None else pl.col("day") <= upper,
                                                  pl.lit(True) if lower is None else pl.col("day") >= lower)
    in_window = window.filter(pl.col("day") <= as_of) if cut_all else window
    n_no_customer = int(in_window["n_no_customer"].sum())
    n_placeholder = int(in_window["n_placeholder"].sum())

    keep = ["customer_id", "date", "amount", *(CANONICAL[r] for r in OPTIONAL_ROLES if getattr(cols, r))]
    frames = [
        _typed(scans[i], cols, formats[i], options, decimal_comma=decimal[i], placeholders=any_placeholder)[0].select(keep)
        for i in range(len(inputs))
    ]
    frame = pl.concat(frames, how="vertical_relaxed").filter(pl.col("customer_id").is_not_null())
    if lower is not None:
        frame = frame.filter(pl.col("date") >= dt.datetime.combine(lower, dt.time()))
    if as_of < dt.date.max:
        frame = frame.filter(pl.col("date") < dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))

    n_returns = int(used["n_returns"].sum())
    n_unmatched = 0
    if n_returns:
        frame, n_unmatched = _net_returns(frame, paths[0])

    quality = DataQuality(
        n_files=len(paths),
        n_rows=n_rows,
        n_no_customer=n_no_customer,
        n_after_as_of=int(window.filter(pl.col("day") > as_of)["n_rows" if cut_all else "n_customer"].sum()) if per_day else 0,
        n_returns=n_returns,
        n_returns_unmatched=n_unmatched,
        n_zero_amount=int(used["n_zero_amount"].sum()),
        first_date=first_date,
        last_date=to_datetime(used["last_date"].max()),
        as_of=as_of,
        # Kept placeholders are customers; blank ids left out then are simply no customer.
        n_placeholder_customer=0 if options.keep_placeholder_ids else n_placeholder,
        n_future_date=n_future,
        n_far_past_date=n_far_past,
        far_past_cutoff=lower,
        today=today,
    )
    return Transactions(frame, cols, quality, tuple(map(str, paths)), tuple(dict.fromkeys(notes)))


def _collect(lf: pl.LazyFrame, path: Path | str) -> pl.DataFrame:
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: cannot be read: {_first_line(exc)}") from exc


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
# Kept when a summary has them (clvx sql rfm writes them): segments need total_spend.
SUMMARY_EXTRAS = ("total_spend", "n_orders")
SUMMARY_ID_ALIASES = (*ALIASES["customer"], "id")


def is_summary(source: str | Path, options: ReadOptions = ReadOptions(), *, exclude: Sequence[str | Path] = ()) -> bool:
    """True when the file looks like an RFM summary (has frequency, recency and T columns)."""
    paths = resolve_paths(source, exclude=exclude)
    names = set(scan_file(paths[0], options).collect_schema().names())
    return set(SUMMARY_COLUMNS) <= names


def load_summary(
    source: str | Path, customer_col: str | None = None, *, need_spend: bool = True, options: ReadOptions = ReadOptions(),
    exclude: Sequence[str | Path] = (),
) -> pl.DataFrame:
    """Read and check an RFM summary: ``customer_id, frequency, recency, T[, monetary_value]``.

    For summaries computed elsewhere (a warehouse, Spark). frequency must be a whole
    number >= 0, 0 <= recency <= T, and frequency 0 must have recency 0.
    Without ``need_spend``, a missing ``monetary_value`` is filled with 0. A glob never
    matches the files in ``exclude`` (the run's own outputs).
    """
    paths = resolve_paths(source, exclude=exclude)
    inputs = [open_input(p, options) for p in paths]
    lf = pl.concat([scan_input(i) for i in inputs], how="vertical_relaxed")
    names = lf.collect_schema().names()
    label = str(paths[0]) if len(paths) == 1 else str(source)
    if customer_col is not None and customer_col not in names:
        raise InputError(f"{label}: no column '{customer_col}' (given by {option('customer_col')}){_nearest(customer_col, names)} Columns: {_listing(names)}")
    if customer_col is None:
        by_norm = {_normalise(n): n for n in names}
        customer_col = next((by_norm[a] for a in SUMMARY_ID_ALIASES if a in by_norm), None)
    if customer_col is None:
        raise InputError(f"{label}: no customer id column found; name it with {option('customer_col')}. Columns: {_listing(names)}")
    if need_spend and "monetary_value" not in names:
        raise InputError(f"{label} has no monetary_value column; spend models and CLV need it (add it, or pass the transaction log)")
    schema = lf.collect_schema()
    numeric = [c for c in (*SUMMARY_COLUMNS, "monetary_value", *SUMMARY_EXTRAS) if c in names]
    typed = lf.with_row_index(ROW, offset=1).select(
        pl.col(ROW),
        _as_text(pl.col(customer_col), schema[customer_col]).alias("customer_id"),
        *(_as_number(pl.col(c), schema[c]).alias(c) for c in numeric),
        *(pl.col(c).cast(pl.String).alias(f"_raw_{c}") for c in numeric),
    )
    frame = _collect_all([typed], inputs)[0]
    if frame.height == 0:
        raise InputError(f"{label}: has a header but no rows")
    for c in numeric:
        bad = frame.filter(pl.col(c).is_null() | ~pl.col(c).is_finite())
        if bad.height:
            row = bad.row(0, named=True)
            raise InputError(f"{label}: column '{c}' has {bad.height:,} {_counted('empty or non-numeric value(s)', bad.height)} "
                             f"(first at row {row[ROW]}: '{row[f'_raw_{c}']}')")
    rules = [
        ("customer_id", pl.col("customer_id").is_null(), "empty customer id(s)"),
        ("customer_id", pl.col("customer_id").is_duplicated(), "repeated customer ids (a summary has one row per customer)"),
        ("frequency", (pl.col("frequency") < 0) | (pl.col("frequency") != pl.col("frequency").round(0)),
         "values that are not whole numbers >= 0|value that is not a whole number >= 0"),
        ("recency", pl.col("recency") < 0, "negative value(s)"),
        ("T", pl.col("T") < pl.col("recency"), "value(s) below recency"),
        ("recency", (pl.col("frequency") == 0) & (pl.col("recency") != 0), "non-zero value(s) where frequency is 0"),
    ]
    for col, mask, what in rules:
        bad = frame.filter(mask)
        if bad.height:
            row = bad.row(0, named=True)
            shown = {k: row[k] for k in ("customer_id", "frequency", "recency", "T") if k in row}
            raise InputError(f"{label}: column '{col}' has {bad.height:,} {_counted(what, bad.height)} (first at row {row[ROW]}: {shown})")
    out = frame.select(
        "customer_id",
        pl.col("frequency").cast(pl.Int64),
        pl.col("recency"),
        pl.col("T"),
        (pl.col("monetary_value") if "monetary_value" in numeric else pl.lit(0.0)).alias("monetary_value"),
        *(pl.col(c).cast(pl.Int64 if c == "n_orders" else pl.Float64) for c in SUMMARY_EXTRAS if c in numeric),
    )
    return out.sort("customer_id")


def read_json(path: str | Path) -> object:
    """A JSON document from a file, or an :class:`InputError` saying why not."""
    import json

    p = resolve_paths(path)[0]
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InputError(f"{p} is nested too deeply to be a clvx model file; save one with clvx fit --save") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        if "integer string conversion" in str(exc):
            raise InputError(f"{p} holds an integer of more than 4,300 digits, so it is not a clvx model file; "
                             "fit and save the model again with clvx fit --save") from None
        raise InputError(f"{p} is not a usable JSON document: {exc}") from exc

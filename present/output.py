"""Rendering and export: the one place that writes to the terminal or to files.

Everything else in clvx returns frames and dataclasses; the command line hands them
here. Data goes to stdout (or ``--output``), diagnostics and progress to stderr.
Files are written atomically: to a temporary file beside the target, then renamed
over it, so a failed run never leaves a half-written file or clobbers a good one.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clv.errors import InputError

TABLE_MAX_ROWS = 25
SHARE_SUFFIXES = ("_share", "penetration", "churn_risk", "hit_rate", "precision", "recall", "coverage", "bias")
PROBABILITY_COLUMNS = ("p_alive", "mean_p_alive", "score", "confidence")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


FORMAT_BY_SUFFIX = {
    ".csv": Format.csv,
    ".json": Format.json,
    ".parquet": Format.parquet,
    ".pq": Format.parquet,
    ".txt": Format.table,
}
SUPPORTED_OUTPUTS = ".csv, .json, .parquet (or .pq), and .txt for the plain-text table"
SUFFIX_BY_FORMAT = {Format.csv: ".csv", Format.json: ".json", Format.parquet: ".parquet", Format.table: ".txt"}
# Names of files no --format writes (clvx report writes these): refused even with --format.
REPORT_LIKE_SUFFIXES = (".xlsx", ".xls", ".html", ".htm", ".md")


def resolve_format(fmt: Format | None, output: Path | None) -> Format:
    """The explicit ``--format``, else the one implied by the output's extension, else table.

    An extension that means another format than ``--format`` is refused: a file called
    ``scores.csv`` holding JSON, or ``scores.xlsx`` holding CSV, misleads whoever opens it.
    Without ``--format`` an unknown extension is refused; with it, any other name is taken
    as meant (``/dev/stdout``, ``scores.dat``).
    """
    if output is None:
        return fmt or Format.table
    suffix = output.suffix.lower()
    implied = FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None and implied is None:
        raise InputError(
            f"cannot tell the format of '{output}' from its extension; clvx writes {SUPPORTED_OUTPUTS}: "
            f"rename the file or pass --format table|csv|json|parquet"
        )
    if fmt is None or fmt is implied or (implied is None and suffix not in REPORT_LIKE_SUFFIXES):
        return fmt or implied  # type: ignore[return-value]
    rename = output.with_suffix(SUFFIX_BY_FORMAT[fmt]).name
    if implied is None:
        raise InputError(f"'{output}' is named like a report (clvx report writes those) but --format is {fmt.value}; name it {rename}")
    raise InputError(f"'{output}' is named for {implied.value} but --format is {fmt.value}; name it {rename}, or drop --format")


# --------------------------------------------------------------------------- files


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: folder '{folder}' does not exist")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


# --------------------------------------------------------------------------- values


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _clean_json(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def to_json(obj: Any) -> str:
    """Stable JSON text: keys in the order given, NaN as null, dates in ISO form."""
    return json.dumps(_clean_json(obj), indent=2, default=_json_default, ensure_ascii=False) + "\n"


def frame_records(df: pl.DataFrame) -> list[dict[str, Any]]:
    return df.to_dicts()


# Column classes for exported numbers, decided from the column's name in one place.
# Money is shown in cents; counts are whole; every other float (rates, probabilities,
# lifts, model quantities) keeps SIGNIFICANT_DIGITS significant digits, which drops
# binary noise such as 40.580000000000005 and keeps the bytes stable run to run.
MONEY_DECIMALS = 2
SIGNIFICANT_DIGITS = 6
MONEY_NAMES = ("monetary_value", "total_spend", "spend_per_purchase", "expected_avg_value", "avg_order_value",
               "expected_spend", "revenue", "expected_revenue", "actual_total_revenue")
MONEY_PARTS = ("revenue", "spend", "clv")
COUNT_NAMES = ("rank", "owners", "white_space", "orders_together", "days_since_last_purchase")
COUNT_PARTS = ("_owners",)


def column_kind(name: str) -> str:
    """``share``, ``money``, ``count`` or ``measure``: how a column's numbers are rounded and formatted."""
    if _is_share(name) or name in PROBABILITY_COLUMNS:
        return "share"
    if name in MONEY_NAMES or name.startswith("clv") or any(part in name for part in MONEY_PARTS):
        return "money"
    if name in COUNT_NAMES or name.startswith("n_") or name.endswith(COUNT_PARTS):
        return "count"
    return "measure"


def round_for_export(df: pl.DataFrame) -> pl.DataFrame:
    """Float columns rounded by ``column_kind``: money to cents, counts to whole numbers, the rest to 6 significant digits."""
    exprs = []
    for name, dtype in df.schema.items():
        if not dtype.is_float():
            continue
        kind = column_kind(name)
        col = pl.col(name)
        if kind == "money":
            exprs.append(col.round(MONEY_DECIMALS))
        elif kind == "count":
            exprs.append(col.round(0).cast(pl.Int64, strict=False))
        else:
            exprs.append(col.round_sig_figs(SIGNIFICANT_DIGITS))
    return df.with_columns(exprs) if exprs else df


# OWASP "CSV Injection": a spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = r"^[=+\-@\t\r]"  # the same pattern for Python's re and polars' (Rust) regex


def guard_formulas(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells that start with = + - @ tab or CR get a leading ``'``; numbers are never touched."""
    text = [name for name, dtype in df.schema.items() if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))]
    exprs = [
        pl.when(col.str.contains(FORMULA_START)).then(pl.lit("'") + col).otherwise(col).alias(name)
        for name in text
        for col in [pl.col(name).cast(pl.String)]
    ]
    return df.with_columns(exprs) if exprs else df


def frame_bytes(df: pl.DataFrame, fmt: Format, *, raw: bool = False) -> bytes:
    """``df`` as CSV, JSON or Parquet bytes.

    CSV and JSON numbers are rounded by column class (``round_for_export``); Parquet keeps
    full precision. CSV text cells are guarded against spreadsheet formulas unless
    ``raw`` (for programs that read the file, not people who open it in a spreadsheet).
    """
    if fmt is Format.csv:
        out = round_for_export(df)
        return (out if raw else guard_formulas(out)).write_csv(float_precision=None).encode()
    if fmt is Format.json:
        return to_json(frame_records(round_for_export(df))).encode()
    if fmt is Format.parquet:
        buf = io.BytesIO()
        df.write_parquet(buf, compression="zstd", statistics=False)
        return buf.getvalue()
    raise ValueError(fmt)


# --------------------------------------------------------------------------- tables


def _is_share(name: str) -> bool:
    return name.endswith(SHARE_SUFFIXES) or name.startswith(("hit_rate", "precision", "recall", "revenue_captured", "coverage"))


def format_cell(name: str, value: Any, decimals: int = 2) -> str:
    """A cell as an analyst reads it: thousands separators, shares as percentages."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—" if math.isnan(value) else ("∞" if value > 0 else "-∞")
        if _is_share(name):
            return f"{value:.1%}"
        if name in PROBABILITY_COLUMNS:
            return f"{value:.3f}"
        return f"{value:,.{decimals}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# C0 and C1 controls (ESC starts colour, cursor and hyperlink sequences) and the
# bidirectional overrides that reorder what a reader sees.
_TERMINAL_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """``text`` with control characters shown as escapes (ESC as ``\\x1b``), so data cannot drive the terminal."""
    return _TERMINAL_UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def text_cell(text: str) -> Text:
    """A table cell of data text: no rich markup or emoji codes, controls made visible."""
    return Text(terminal_text(text))


def frame_table(
    df: pl.DataFrame,
    *,
    title: str | None = None,
    caption: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_rows: int | None = TABLE_MAX_ROWS,
    decimals: Mapping[str, int] | None = None,
) -> Table:
    """A rich table of ``df``; numbers right-aligned, at most ``max_rows`` rows."""
    headers = headers or {}
    decimals = decimals or {}
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAVY, caption_justify="left", title_justify="left")
    for name, dtype in df.schema.items():
        numeric = dtype.is_numeric()
        table.add_column(headers.get(name, name), justify="right" if numeric else "left", no_wrap=True)
    shown = df if max_rows is None else df.head(max_rows)
    for row in shown.iter_rows():
        table.add_row(*(text_cell(format_cell(name, v, decimals.get(name, 2))) for name, v in zip(df.columns, row, strict=True)))
    return table


def render_text(*renderables: Any, width: int = 120) -> str:
    """Plain text of rich renderables, for ``--output report.txt``."""
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    for r in renderables:
        console.print(r)
    return console.file.getvalue()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- emit

PIPE_WIDTH = 200


def stdout_console() -> Console:
    """The console for tables on stdout; wide when piped, so tables are not folded."""
    probe = Console(highlight=False)
    if probe.is_terminal:
        return probe
    width = os.environ.get("COLUMNS", "")
    return Console(highlight=False, width=int(width) if width.isdigit() else PIPE_WIDTH)


@dataclass
class Emitter:
    """Sends a command's result to stdout or a file in the chosen format."""

    fmt: Format | None = None
    output: Path | None = None
    raw_csv: bool = False  # CSV without the spreadsheet-formula guard, for programs
    stdout: Console = field(default_factory=lambda: stdout_console())

    @property
    def format(self) -> Format:
        return resolve_format(self.fmt, self.output)

    def _write(self, data: bytes) -> None:
        if self.output is not None:
            atomic_write_bytes(self.output, data)
            return
        if self.format is Format.parquet and sys.stdout.isatty():
            raise InputError("Parquet is binary; write it to a file with --output PATH.parquet")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

    def rows(
        self,
        df: pl.DataFrame,
        *,
        title: str | None = None,
        caption: str | None = None,
        headers: Mapping[str, str] | None = None,
        decimals: Mapping[str, int] | None = None,
        noun: str = "rows",
        table_order: tuple[str, bool] | None = None,
    ) -> None:
        """A row-shaped result: table, CSV, JSON list of objects, or Parquet.

        ``table_order`` (column, descending) sorts the terminal table only, so it can
        show e.g. the most valuable customers first while files keep their order.
        """
        fmt = self.format
        if fmt is not Format.table:
            self._write(frame_bytes(df, fmt, raw=self.raw_csv))
            return
        if table_order is not None:
            df = df.sort(table_order[0], descending=table_order[1], maintain_order=True)
        max_rows = None if self.output is not None else TABLE_MAX_ROWS
        if max_rows is not None and df.height > max_rows:
            more = f"Showing {max_rows} of {df.height:,} {noun}; use --format csv or --output for all."
            caption = f"{caption}\n{more}" if caption else more
        table = frame_table(df, title=title, caption=caption, headers=headers, max_rows=max_rows, decimals=decimals)
        self.tables([table])

    def tables(self, renderables: Sequence[Any]) -> None:
        if self.output is not None:
            atomic_write_bytes(self.output, render_text(*renderables).encode())
            return
        for r in renderables:
            self.stdout.print(r)

    def obj(self, data: Mapping[str, Any], renderables: Sequence[Any], frames: Mapping[str, pl.DataFrame] | None = None) -> None:
        """An object-shaped result: rich renderables for a table, a JSON object otherwise.

        CSV and Parquet take the first frame in ``frames`` (an object has no single
        row shape).
        """
        fmt = self.format
        if fmt is Format.table:
            self.tables(renderables)
        elif fmt is Format.json:
            self._write(to_json(data).encode())
        else:
            if not frames:
                raise InputError(f"this result is not a table of rows; use --format json or table, not {fmt.value}")
            self._write(frame_bytes(next(iter(frames.values())), fmt, raw=self.raw_csv))


# --------------------------------------------------------------------------- stderr


class Reporter:
    """Progress and diagnostics on stderr; progress only on a terminal and never when quiet."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and not self.quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(f"Warning: {message}", markup=False, style="yellow")

    def error(self, message: str) -> None:
        self.console.print(f"Error: {message}", markup=False, style="red")

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """Show a spinner while a step runs and its time once it took over a second."""
        if not self.interactive:
            yield
            return
        start = time.perf_counter()
        with self.console.status(description):
            yield
        elapsed = time.perf_counter() - start
        if elapsed >= 1.0:
            self.console.print(f"[green]✓[/green] {description} [dim]({elapsed:.1f} s)[/dim]")

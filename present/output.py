"""Rendering and export: the one place that writes to the terminal or to files.

Everything else in clvx returns frames and dataclasses; the command line hands them
here. Data goes to stdout (or ``--output``), diagnostics and progress to stderr.
Files are written through present.files: atomically, never over an input, all or
nothing for one run.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import polars as pl
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from clv.errors import InputError, render_options
from present.files import OutputError, atomic_write, atomic_write_bytes, discard, is_stdout, reader_gone  # noqa: F401 - re-exported
from present.formats import Format  # defined light for the command line's choices

TABLE_MAX_ROWS = 25
SHARE_SUFFIXES = ("_share", "penetration", "churn_risk", "hit_rate", "precision", "recall", "coverage", "bias", "attach_rate")
PROBABILITY_COLUMNS = ("p_alive", "mean_p_alive", "score", "confidence")


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
    if implied is None and suffix in REPORT_LIKE_SUFFIXES:  # no --format makes one: say so, rather than offer --format
        rename = output.with_suffix(SUFFIX_BY_FORMAT[fmt or Format.csv]).name
        raise InputError(f"'{output}' is named like a spreadsheet or a report, which this command does not write (clvx report "
                         f"writes .html, .xlsx and .md); it writes {SUPPORTED_OUTPUTS}: name it {rename}")
    if fmt is None and implied is None:
        raise InputError(
            f"cannot tell the format of '{output}' from its extension; clvx writes {SUPPORTED_OUTPUTS}: "
            f"rename the file or pass --format table|csv|json|parquet"
        )
    if fmt is None or fmt is implied or implied is None:
        return fmt or implied  # type: ignore[return-value]
    rename = output.with_suffix(SUFFIX_BY_FORMAT[fmt]).name
    raise InputError(f"'{output}' is named for {implied.value} but --format is {fmt.value}; name it {rename}, or drop --format")


# --------------------------------------------------------------------------- files


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
COUNT_NAMES = ("rank", "owners", "white_space", "bought_after", "days_since_last_purchase")
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


CSV_BLOCK_ROWS = 500_000  # rows rounded, guarded and formatted at once when a CSV is written to a file


def write_csv_blocks(df: pl.DataFrame, path: Path, *, raw: bool = False) -> None:
    """``df`` as the CSV of :func:`frame_bytes`, written to ``path`` ``CSV_BLOCK_ROWS`` rows at a time.

    Rounding, the formula guard and the formatting are row by row, so the file is byte for
    byte the one-piece CSV; only one block's text is in memory at once, not the whole
    file's (twice, as text and as bytes: 1.4 GB for the 4.6M offers of a 10M-line log).
    """
    with path.open("wb") as fh:
        for start in range(0, max(df.height, 1), CSV_BLOCK_ROWS):
            block = round_for_export(df.slice(start, CSV_BLOCK_ROWS))
            (block if raw else guard_formulas(block)).write_csv(fh, include_header=start == 0, float_precision=None)


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
    return name.endswith(SHARE_SUFFIXES) or name.startswith(("hit_rate", "precision", "recall", "revenue_captured", "coverage", "conversion_", "churn_risk"))


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


TEXT_MIN_WIDTH = 16  # narrowest a wrapped text column gets before columns are left out
# The numbers a table is read for: a narrow terminal keeps them right after the ids.
KEY_COLUMNS = ("clv", "expected_revenue")


def _is_token(values: Sequence[str]) -> bool:
    """Text without spaces (ids, codes, dates): it cannot wrap, so it is never cut."""
    return not any(any(ch.isspace() for ch in v) for v in values)


def _is_id(name: str) -> bool:
    return name.lower() == "id" or name.lower().endswith("_id")


class FittedTable(Table):
    """A rich table that fits the width it is rendered at without cutting a number or an id.

    Numbers, dates and space-free text (ids, codes) keep their full width; only text with
    spaces (names, descriptions) and headers wrap. When even that does not fit, columns are
    left out from the lowest priority up, and the caption says which and how to see them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per column, in column order: (width it needs whole, narrowest it may wrap to).
        self.fit_widths: list[tuple[int, int]] = []
        # Column indexes, most important first; the last ones are left out first.
        self.fit_priority: list[int] = []

    def _pad_width(self, index: int, n_columns: int) -> int:
        _, pad_right, _, pad_left = self.padding
        if not self.pad_edge:
            pad_left = 0 if index == 0 else pad_left
            pad_right = 0 if index == n_columns - 1 else pad_right
        return pad_left + pad_right

    def _needed(self, keep: Sequence[int], which: int) -> int:
        """Total width of the columns ``keep``, each at its full (0) or narrowest (1) width."""
        extra = (2 if self.box and self.show_edge else 0) + (len(keep) - 1 if self.box else 0)
        return extra + sum(self.fit_widths[i][which] + self._pad_width(n, len(keep)) for n, i in enumerate(keep))

    def fit(self, max_width: int) -> tuple[list[int], list[int]]:
        """The columns shown at ``max_width`` (in column order) and their content widths."""
        n = len(self.columns)
        if len(self.fit_widths) != n:  # columns added by hand: leave it to rich
            return list(range(n)), [c.width or 0 for c in self.columns]
        keep = set(range(n))
        for index in reversed(self.fit_priority[1:]):
            if self._needed(sorted(keep), 1) <= max_width:
                break
            keep.discard(index)
        shown = sorted(keep)
        widths = [self.fit_widths[i][0] for i in shown]
        excess = self._needed(shown, 0) - max_width
        while excess > 0:
            # Narrow the widest column that may wrap, one character at a time (as rich does).
            room = [(w, k) for k, (w, i) in enumerate(zip(widths, shown, strict=True)) if w > self.fit_widths[i][1]]
            if not room:
                break
            widths[max(room)[1]] -= 1
            excess -= 1
        return shown, widths

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        shown, widths = self.fit(options.max_width)
        if len(shown) == len(self.columns) and [self.fit_widths[i][0] for i in shown] == widths:
            yield from super().__rich_console__(console, options)
            return
        caption = self.caption
        left_out = [i for i in range(len(self.columns)) if i not in shown]
        if left_out:
            names = ", ".join(str(self.columns[i].header).replace("\n", " ") for i in left_out)
            note = (
                f"Not shown at {options.max_width} columns: {names}; use --format csv, or a terminal "
                f"at least {self._needed(list(range(len(self.columns))), 1)} columns wide."
            )
            caption = f"{caption}\n{note}" if caption else note
        narrow = Table(
            title=self.title, caption=caption, box=self.box, caption_justify=self.caption_justify,
            title_justify=self.title_justify, show_edge=self.show_edge, pad_edge=self.pad_edge,
        )
        for i, width in zip(shown, widths, strict=True):
            column = self.columns[i]
            narrow.add_column(column.header, justify=column.justify, width=width, no_wrap=False, overflow="fold")
        for r in range(self.row_count):
            narrow.add_row(*(self.columns[i]._cells[r] for i in shown))
        yield from narrow.__rich_console__(console, options)


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _header_widths(header: str) -> tuple[int, int]:
    """The widest header line, and its longest word (the narrowest it wraps to uncut)."""
    lines = _plain(header).split("\n")
    words = [w for line in lines for w in line.split()] or [""]
    return max(cell_len(line) for line in lines), max(cell_len(w) for w in words)


def _prepare_fit(table: FittedTable, df: pl.DataFrame, priority: Sequence[str]) -> None:
    """Record, per column of ``table`` (built from ``df``), how narrow it may get and its rank."""
    for column, dtype in zip(table.columns, df.dtypes, strict=True):
        texts = [_plain(c) for c in column._cells]
        data_width = max(map(cell_len, texts), default=0)
        header_full, header_word = _header_widths(column.header)
        full = max(data_width, header_full)
        if dtype.is_numeric() or dtype.is_temporal() or dtype == pl.Boolean or _is_token(texts):
            table.fit_widths.append((full, max(data_width, header_word)))
        else:
            table.fit_widths.append((full, min(full, max(TEXT_MIN_WIDTH, header_word))))
    names = list(df.columns)
    ranked = [
        *names[:1], *(c for c in priority if c in names), *(c for c in names if _is_id(c)),
        *(c for c in names if any(c == k or c.startswith(f"{k}_") for k in KEY_COLUMNS)), *names,
    ]
    table.fit_priority = [names.index(c) for c in dict.fromkeys(ranked)]


# C0 and C1 controls (ESC starts colour, cursor and hyperlink sequences) and the
# bidirectional overrides that reorder what a reader sees.
_TERMINAL_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def as_flag(name: str, value: object) -> str:
    """An option as the command line spells it: ``--date-format '%d/%m/%Y'``, ``--no-decimal-comma``."""
    flag = "--" + name.replace("_", "-")
    if value is None or value is True:
        return flag
    if value is False:
        return "--no-" + name.replace("_", "-")
    text = str(value)
    return f"{flag} {text}" if re.fullmatch(r"[A-Za-z0-9._:+-]+", text) else f"{flag} '{text}'"


def command_line_text(text: str) -> str:
    """A message or note from the core with its options named as flags."""
    return render_options(text, as_flag)


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
    priority: Sequence[str] = (),
) -> Table:
    """A rich table of ``df``; numbers right-aligned, at most ``max_rows`` rows.

    The table fits the console it is printed on (see ``FittedTable``): when it is too
    wide, columns are left out from the last, except the first column, the columns
    named in ``priority`` (most important first), id columns and ``KEY_COLUMNS``,
    which go last.
    """
    headers = headers or {}
    decimals = decimals or {}
    table = FittedTable(title=title, caption=caption, box=box.SIMPLE_HEAVY, caption_justify="left", title_justify="left")
    for name, dtype in df.schema.items():
        numeric = dtype.is_numeric()
        table.add_column(headers.get(name, name), justify="right" if numeric else "left", no_wrap=True)
    shown = df if max_rows is None else df.head(max_rows)
    for row in shown.iter_rows():
        table.add_row(*(text_cell(format_cell(name, v, decimals.get(name, 2))) for name, v in zip(df.columns, row, strict=True)))
    _prepare_fit(table, df, priority)
    return table


def render_text(*renderables: Any, width: int = 120) -> str:
    """Plain text of rich renderables, for ``--output report.txt``."""
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    for r in renderables:
        console.print(r)
    return console.file.getvalue()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- emit

PIPE_WIDTH = 200


class _StdoutConsole(Console):
    """rich's console, but a reader that closed the pipe (``| head``) is no failure: rich's own
    answer is SystemExit(1); this one stops writing and lets the command go on (exit code 0)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        reader_gone()


class _StderrConsole(Console):
    """The diagnostics' console: a closed stderr (``2>&1 | head``) silences them and the command goes on.
    (rich's own answer points stdout, not stderr, at /dev/null and exits with 1.)"""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        discard(sys.stderr)


def stdout_console() -> Console:
    """The console for tables on stdout; wide when piped, so tables are not folded."""
    probe = _StdoutConsole(highlight=False)
    if probe.is_terminal:
        return probe
    width = os.environ.get("COLUMNS", "")
    return _StdoutConsole(highlight=False, width=int(width) if width.isdigit() else PIPE_WIDTH)


@contextmanager
def stdout_writes() -> Iterator[None]:
    """A failed write to stdout (a full disk, a closed terminal) becomes one clear error.

    A closed pipe (``| head``) is not a failure (:func:`present.files.reader_gone`): the
    rest of stdout goes nowhere and the command goes on. After a failure stdout goes to
    /dev/null, so Python's final flush of what is still buffered cannot print a second,
    raw error.
    """
    if sys.stdout is None:  # started with stdout closed (>&-)
        raise OutputError("cannot write the output: stdout is closed; write to a file with --output PATH")
    try:
        yield
    except BrokenPipeError:
        reader_gone()
    except OSError as exc:
        discard(sys.stdout)
        if exc.errno == errno.ENOSPC:
            advice = "the disk is full; free some space, or write elsewhere with --output PATH"
        else:
            advice = f"{exc.strerror or exc}; write to a file with --output PATH instead"
        raise OutputError(f"cannot write the output to stdout: {advice}") from exc


@dataclass
class Emitter:
    """Sends a command's result to stdout or a file in the chosen format."""

    fmt: Format | None = None
    output: Path | None = None
    raw_csv: bool = False  # CSV without the spreadsheet-formula guard, for programs
    stdout: Console = field(default_factory=lambda: stdout_console())

    def __post_init__(self) -> None:
        if is_stdout(self.output):
            self.output = None  # `-o -`: standard output, as Unix tools read it

    @property
    def format(self) -> Format:
        if self.fmt is None and self.output is not None and self.output.suffix == "" and self.output.exists() \
                and not self.output.is_file():
            return Format.table  # a device or pipe (/dev/stdout, >(...)): the table, as on stdout
        return resolve_format(self.fmt, self.output)

    def _write(self, data: bytes) -> None:
        if self.output is not None and not is_stdout(self.output):
            atomic_write_bytes(self.output, data)
            return
        if sys.stdout is None:  # started with stdout closed (>&-)
            raise OutputError("cannot write the output: stdout is closed; write to a file with --output PATH")
        if self.format is Format.parquet and sys.stdout.isatty():
            raise InputError("Parquet is binary; write it to a file with --output PATH.parquet")
        with stdout_writes():
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
        priority: Sequence[str] = (),
    ) -> None:
        """A row-shaped result: table, CSV, JSON list of objects, or Parquet.

        ``table_order`` (column, descending) sorts the terminal table only, so it can
        show e.g. the most valuable customers first while files keep their order.
        ``priority`` names the columns a narrow terminal keeps first (after the first
        column); the ``table_order`` column comes right after them.
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
        if table_order is not None:
            priority = (*priority, table_order[0])
        table = frame_table(
            df, title=title, caption=caption, headers=headers, max_rows=max_rows, decimals=decimals, priority=priority
        )
        self.tables([table])

    def tables(self, renderables: Sequence[Any]) -> None:
        if self.output is not None:
            atomic_write_bytes(self.output, render_text(*renderables).encode())
            return
        with stdout_writes():
            for r in renderables:
                self.stdout.print(r)
            self.stdout.file.flush()

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


@contextmanager
def _diagnostics_lost() -> Iterator[None]:
    """A stderr that cannot be written (2> /dev/full) loses diagnostics, never the result."""
    try:
        yield
    except OSError:
        pass


class _IfTotal:
    """A progress column shown only for steps that know their total."""

    def __init__(self, column: Any) -> None:
        self.column = column

    def __call__(self, task: Any) -> Any:
        return self.column(task) if task.total is not None else ""

    def get_table_column(self) -> Any:
        return self.column.get_table_column()


class StepProgress:
    """What a step yields: ``advance()`` moves its bar when the total amount of work is known."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def set_total(self, total: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)


class Reporter:
    """Progress and diagnostics on stderr; never progress when quiet.

    On an interactive terminal each step shows a spinner with its elapsed time (a bar
    with an ETA when the step knows its total) and leaves a line once it took over a
    second. Anywhere else (``2> log``, CI) each step prints one plain line,
    ``Computing RFM ... 3.2 s``: its name when it starts, its time when it ends.
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or _StderrConsole(stderr=True, highlight=False, soft_wrap=True)
        self._progress: Any = None  # the live display while a step runs on a terminal
        self._open_line = False  # a step's line waits for its time (not a terminal)

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and self.console.is_interactive and not self.quiet

    def _print(self, message: str, **kwargs: Any) -> None:
        with _diagnostics_lost():
            if self._open_line:  # a message inside a step: finish the step's line first
                self.console.file.write("\n")
                self._open_line = False
            # Messages quote data (values, column and file names): control bytes are shown, never sent.
            self.console.print(terminal_text(command_line_text(message)), markup=False, **kwargs)

    def info(self, message: str) -> None:
        if not self.quiet:
            self._print(message)

    def warn(self, message: str) -> None:
        self._print(f"Warning: {message}", style="yellow")

    def error(self, message: str) -> None:
        self._print(f"Error: {message}", style="red")

    @contextmanager
    def step(self, description: str, total: float | None = None) -> Iterator[StepProgress]:
        """Report a step while it runs and how long it took; ``total`` (if known) gives it a bar."""
        if self.quiet:
            yield StepProgress()
        elif self.interactive:
            with self._live_step(description, total) as handle:
                yield handle
        else:
            with self._line_step(description) as handle:
                yield handle

    @contextmanager
    def _line_step(self, description: str) -> Iterator[StepProgress]:
        self._print(f"{description} ...", end="")
        self._open_line = True
        start = time.perf_counter()
        outcome = "failed after "
        try:
            yield StepProgress()
            outcome = ""
        finally:
            elapsed = f"{outcome}{time.perf_counter() - start:.1f} s"
            with _diagnostics_lost():
                if self._open_line:
                    self._open_line = False
                    self.console.file.write(f" {elapsed}\n")
                else:
                    self.console.print(f"{description} ... {elapsed}", markup=False)
                self.console.file.flush()

    @contextmanager
    def _live_step(self, description: str, total: float | None) -> Iterator[StepProgress]:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                _IfTotal(BarColumn()), _IfTotal(TextColumn("{task.percentage:>3.0f}% eta")), _IfTotal(TimeRemainingColumn()),
                console=self.console, transient=True,
            )
            self._progress.start()
        progress = self._progress
        task = progress.add_task(escape(description), total=total)
        start = time.perf_counter()
        try:
            yield StepProgress(progress, task)
        finally:
            progress.remove_task(task)
            if not progress.tasks:
                progress.stop()
                self._progress = None
        elapsed = time.perf_counter() - start
        if elapsed >= 1.0:
            self.console.print(f"[green]✓[/green] {escape(description)} [dim]({elapsed:.1f} s)[/dim]")

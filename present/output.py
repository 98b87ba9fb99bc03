"""Rendering and export: the one place that writes to the terminal or to files.

Everything else in clvx returns frames and dataclasses; the command line hands them
here. Data goes to stdout (or ``--output``), diagnostics and progress to stderr.
Files are written through present.files: atomically, never over an input, all or
nothing for one run.
"""

from __future__ import annotations

import io
import json
import math
import os
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

from clv.errors import InputError
from present.files import OutputError, atomic_write, atomic_write_bytes, is_stdout  # noqa: F401 - re-exported

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


def resolve_format(fmt: Format | None, output: Path | None) -> Format:
    """The explicit ``--format``, else the one implied by the output's extension, else table."""
    if fmt is not None:
        return fmt
    if output is None:
        return Format.table
    suffix = output.suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise InputError(
            f"cannot tell the format of '{output}' from its extension; use .csv, .json, .parquet "
            f"or .txt, or pass --format"
        )
    return FORMAT_BY_SUFFIX[suffix]


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


def frame_bytes(df: pl.DataFrame, fmt: Format) -> bytes:
    if fmt is Format.csv:
        return df.write_csv(float_precision=None).encode()
    if fmt is Format.json:
        return to_json(frame_records(df)).encode()
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
        table.add_row(*(format_cell(name, v, decimals.get(name, 2)) for name, v in zip(df.columns, row, strict=True)))
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
        if sys.stdout is None:
            raise OutputError("standard output is closed; write to a file with --output PATH")
        if self.format is Format.parquet and sys.stdout.isatty():
            raise InputError("Parquet is binary; write it to a file with --output PATH.parquet")
        try:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from exc

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
            self._write(frame_bytes(df, fmt))
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
        if sys.stdout is None:
            raise OutputError("standard output is closed; write to a file with --output PATH")
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
            self._write(frame_bytes(next(iter(frames.values())), fmt))


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

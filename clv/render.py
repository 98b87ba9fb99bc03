"""What each command shows: headers with units, captions and summaries.

Builds on clv.output (formats, atomic files, stderr); the command line calls these
with the core's results. Nothing here computes a number the core did not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
from rich.table import Table

from clv.output import Emitter, Reporter, atomic_write, atomic_write_bytes, to_json
from clv.rfm import Period, ScoreBins
from clv.sample import CUSTOMERS_FILE, TRUTH_FILE, Sample


def period_headers(period: Period) -> dict[str, str]:
    unit = f"{period.value}s"
    return {
        "recency": f"recency ({unit})",
        "T": f"T ({unit})",
        "monetary_value": "monetary value",
    }


def rfm_rows(summary: pl.DataFrame, period: Period, emitter: Emitter) -> None:
    emitter.rows(
        summary,
        title="RFM summary",
        caption=(
            f"One row per customer. Frequency = repeat purchase {period.value}s; recency = first to last "
            f"purchase; T = first purchase to the as-of date; monetary value = mean spend of repeat {period.value}s."
        ),
        headers=period_headers(period),
        noun="customers",
    )


def _edges(edges: tuple[float, ...]) -> str:
    return ", ".join(f"{e:,.2f}".rstrip("0").rstrip(".") for e in edges)


def report_score_bins(bins: ScoreBins, reporter: Reporter) -> None:
    """Print the quintile edges behind the scores and warn about impossible scores."""
    unit = f"{bins.period.value}s"
    reporter.info(
        f"RFM score edges (20/40/60/80th percentiles): R on {unit} since last purchase "
        f"[{_edges(bins.recency_edges)}]; F on frequency [{_edges(bins.frequency_edges)}]; "
        f"M on spend per purchase {bins.period.value} [{_edges(bins.monetary_edges)}]."
    )
    for score, missing in bins.unreachable_scores.items():
        reporter.warn(
            f"{score} {', '.join(map(str, missing))} cannot occur in this data: many customers share "
            f"the same value, and equal values always get the same score"
        )
    if bins.unreachable_segments:
        reporter.warn(f"no customer falls in the RFM segment(s): {', '.join(bins.unreachable_segments)}")


def write_sample(sample: Sample, output: Path | None, truth_dir: Path | None) -> None:
    """Write a generated log (Parquet or CSV by extension, CSV to stdout) and its truth."""
    tx = sample.transactions
    if output is None:
        sys.stdout.write(tx.write_csv())
    elif output.suffix.lower() in (".parquet", ".pq"):
        atomic_write(output, lambda tmp: tx.write_parquet(tmp, compression="zstd", compression_level=19, statistics=False))
    else:
        atomic_write(output, lambda tmp: tx.write_csv(tmp))
    if truth_dir is not None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(truth_dir / TRUTH_FILE, to_json(sample.truth).encode())
        atomic_write(truth_dir / CUSTOMERS_FILE, lambda tmp: sample.customers.write_csv(tmp, float_precision=6))


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, v in rows:
        table.add_row(k, v)
    return table

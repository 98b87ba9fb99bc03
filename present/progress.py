"""What a running analysis tells the user on stderr: steps, what was read, notices.

:class:`ReporterListener` is the command line's :class:`clvx.Listener`: the application
layer calls it as the analysis runs, so the data-quality lines appear as soon as the log
is read, not after the models are fitted.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from present.output import Reporter

if TYPE_CHECKING:
    from clv.load import DataQuality, Transactions
    from clv.rfm import Period
    from clvx import Notice


def excluded(q: DataQuality) -> list[str]:
    """What was left out, in the order rows are counted: by date first, then the rest."""
    phrases = []
    outlying = []
    if q.n_future_date:
        outlying.append(f"{q.n_future_date:,} dated after today ({q.today})")
    if q.n_far_past_date:
        outlying.append(f"{q.n_far_past_date:,} dated before {q.far_past_cutoff}, far before the rest of the log")
    if outlying:
        phrases.append(", ".join(outlying) + ", which --keep-outlying-dates keeps")
    if q.n_after_as_of:
        phrases.append(f"{q.n_after_as_of:,} dated after {q.as_of}")
    if q.n_no_customer:
        in_window = q.n_rows - q.n_future_date - q.n_far_past_date - q.n_after_as_of
        placeholders = (f"; {q.n_placeholder_customer:,} with an id such as NULL or N/A, which --keep-placeholder-ids "
                        "keeps" if q.n_placeholder_customer else "")
        rest = "of the rest, " if phrases else ""
        phrases.append(f"{rest}{q.n_no_customer:,} with no customer ({q.n_no_customer / in_window:.1%}{placeholders})")
    if q.n_returns_unmatched:
        phrases.append(f"{q.n_returns_unmatched:,} returns with no earlier purchase in the log")
    return phrases


def kept(q: DataQuality) -> list[str]:
    """What was kept that a reader might expect to be left out."""
    phrases = []
    if q.n_returns - q.n_returns_unmatched:
        phrases.append(f"{q.n_returns - q.n_returns_unmatched:,} returns netted against the purchase before them")
    if q.n_zero_amount:
        phrases.append(f"{q.n_zero_amount:,} zero-amount lines kept as purchases")
    return phrases


def quality_lines(tx: Transactions) -> list[str]:
    """The data-quality story of a log in a few lines: what was read, left out, kept, observed."""
    q = tx.quality
    files = f"{q.n_files} files" if q.n_files > 1 else Path(tx.sources[0]).name
    lines = [f"Read {q.n_rows:,} rows from {files}; columns: {tx.columns.describe()}."]
    if left_out := excluded(q):
        lines.append("Excluded: " + "; ".join(left_out) + ".")
    if kept_in := kept(q):
        lines.append("Kept: " + "; ".join(kept_in) + ".")
    first = q.first_date.date() if q.first_date else None
    lines.append(f"Observation: {first} to {q.as_of}.")
    return lines


class ReporterListener:
    """Shows an analysis's progress through a :class:`Reporter`."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def step(self, description: str, total: float | None = None) -> AbstractContextManager[object]:
        return self.reporter.step(description, total)

    def loaded(self, transactions: Transactions) -> None:
        # The log's notes arrived just before, as notices.
        for line in quality_lines(transactions):
            self.reporter.info(line)

    def summary_read(self, source: str, n_customers: int, period: Period) -> None:
        self.reporter.info(f"Read an RFM summary of {n_customers:,} customers from {source} "
                           f"(recency and T in {period.value}s).")

    def notice(self, notice: Notice) -> None:
        # The reporter spells the options the notice names as flags.
        if notice.level == "warning":
            self.reporter.warn(notice.marked)
        else:
            self.reporter.info(notice.marked)

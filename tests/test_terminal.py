"""Terminal output: tables that fit the console without cutting numbers or ids; progress on stderr."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from present.output import Emitter, Format, Reporter, format_cell, frame_table

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"-?[\d][\d,]*(?:\.\d+)?%?")


def wide_frame(n: int = 6) -> pl.DataFrame:
    """A predictions-like table about 150 columns wide, with zero-padded and 19-digit ids."""
    ids = ["003590", "000308", "1234567890123456789", "000001", "004402", "999999"][:n]
    return pl.DataFrame({
        "customer_id": ids,
        "segment": ["Potential Loyalists", "Need Attention", "Champions", "Can't Lose Them", "At Risk", "Lost"][:n],
        "frequency": [34, 60, 11, 1_234_567, 0, 7][:n],
        "recency": [370.0, 548.0, 293.0, 0.0, 12.5, 99.0][:n],
        "T": [385.0, 570.0, 304.0, 1.0, 700.0, 100.0][:n],
        "monetary_value": [251.59, 135.08, 1_234_567.891, 0.0, 15.0, 2.5][:n],
        "p_alive": [0.947, 0.919, 0.939, 0.5, 0.01, 1.0][:n],
        "expected_purchases": [23.54, 29.09, 9.65, 0.0, 1.0, 2.0][:n],
        "expected_avg_value": [248.83, 134.42, 349.24, 0.0, 1.0, 2.0][:n],
        "clv": [5_579.02, 3_722.90, 12_345_678.12, 0.0, 1.0, 2.0][:n],
    })


HEADERS = {
    "recency": "recency (days)", "T": "T (days)", "monetary_value": "monetary value", "p_alive": "P(alive)",
    "expected_purchases": "exp. purchases (12m)", "expected_avg_value": "exp. spend / purchase", "clv": "CLV (12m)",
}


def render(renderable, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()


def body_lines(text: str) -> list[str]:
    """The data lines of a SIMPLE_HEAVY table: from the ━━━ rule to the blank line under the rows."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "━━━" in line) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return lines[start:end]


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_a_narrow_table_never_cuts_a_number_or_an_id(width: int) -> None:
    df = wide_frame()
    text = render(frame_table(df, headers=HEADERS), width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text
    whole = {format_cell(name, v) for name in df.columns for v in df[name]}
    for line in body_lines(text):
        for token in NUMBER.findall(line):
            assert token in whole, f"{token!r} is a cut number in {line!r}"
    for customer in df["customer_id"]:
        assert re.search(rf"(?<![\d]){customer}(?![\d])", text), customer


def test_a_narrow_table_says_which_columns_it_left_out_and_how_to_see_them() -> None:
    text = render(frame_table(wide_frame(), headers=HEADERS, caption="Most valuable first."), 80)
    caption = " ".join(text.split("Most valuable first.")[1].split())
    assert caption.startswith("Not shown at 80 columns: ")
    assert "exp. spend / purchase" in caption and "--format csv" in caption
    # The ids, the first column and CLV (a key number) stay; later columns go first.
    header = text.split("━━━")[0]
    assert "customer_id" in header and "segment" in header and "CLV" in header
    assert "exp. spend" not in header


def test_priority_decides_which_columns_stay() -> None:
    text = render(frame_table(wide_frame(), headers=HEADERS, priority=("expected_avg_value",)), 80)
    header = text.split("━━━")[0]
    assert "exp. spend" in header
    assert "P(alive)" not in header


def test_a_table_that_fits_is_unchanged_and_has_no_note() -> None:
    df = wide_frame()
    text = render(frame_table(df, headers=HEADERS), 200)
    assert "Not shown" not in text
    first = body_lines(text)[0].split()
    assert first == ["003590", "Potential", "Loyalists", "34", "370.00", "385.00", "251.59", "0.947", "23.54", "248.83", "5,579.02"]


def test_long_text_wraps_instead_of_pushing_numbers_out() -> None:
    df = pl.DataFrame({"segment": ["A very long segment name that needs wrapping"], "customers": [1_545], "clv": [505_849.0]})
    text = render(frame_table(df), 50)
    assert "1,545" in text and "505,849.00" in text and "Not shown" not in text
    assert max(len(line) for line in text.splitlines()) <= 50
    assert len(body_lines(text)) > 1


def test_emitter_rows_keeps_the_sort_column_in_a_narrow_terminal() -> None:
    out = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=False)
    Emitter(fmt=Format.table, stdout=out).rows(
        wide_frame(), headers=HEADERS, table_order=("expected_avg_value", True), noun="customers"
    )
    text = out.file.getvalue()
    assert "exp. spend" in text.split("━━━")[0]
    assert body_lines(text)[0].split()[0] == "1234567890123456789"  # sorted by the table_order column, descending


# --------------------------------------------------------------------------- progress


def plain_reporter(quiet: bool = False) -> tuple[Reporter, io.StringIO]:
    """A Reporter on a non-terminal stderr, as with ``2> log`` or in CI."""
    buf = io.StringIO()
    return Reporter(quiet=quiet, console=Console(file=buf, width=80, highlight=False, soft_wrap=True)), buf


STEP_LINE = r"Computing RFM \.\.\. \d+\.\d s\n"


def test_steps_print_one_plain_line_with_their_time_when_stderr_is_not_a_terminal() -> None:
    reporter, buf = plain_reporter()
    with reporter.step("Computing RFM") as progress:
        progress.advance()  # a no-op without a terminal, but always allowed
    with reporter.step("Fitting BG/NBD"):
        pass
    out = buf.getvalue()
    assert re.fullmatch(STEP_LINE + r"Fitting BG/NBD \.\.\. \d+\.\d s\n", out), out
    assert "\x1b" not in out


def test_a_step_line_is_written_when_the_step_starts() -> None:
    reporter, buf = plain_reporter()
    with reporter.step("Computing RFM"):
        assert buf.getvalue() == "Computing RFM ..."


def test_a_message_inside_a_step_does_not_break_the_step_line() -> None:
    reporter, buf = plain_reporter()
    with reporter.step("Computing RFM"):
        reporter.warn("something odd")
    lines = buf.getvalue().splitlines()
    assert lines[0] == "Computing RFM ..."
    assert lines[1] == "Warning: something odd"
    assert re.fullmatch(STEP_LINE, lines[2] + "\n")


def test_a_failed_step_says_so_on_its_line() -> None:
    reporter, buf = plain_reporter()
    with pytest.raises(ValueError), reporter.step("Computing RFM"):
        raise ValueError("boom")
    assert re.fullmatch(r"Computing RFM \.\.\. failed after \d+\.\d s\n", buf.getvalue())


def test_quiet_is_silent_except_warnings_and_errors() -> None:
    reporter, buf = plain_reporter(quiet=True)
    with reporter.step("Computing RFM", total=10) as progress:
        progress.advance(5)
        reporter.info("Read 10 rows")
    reporter.warn("careful")
    reporter.error("broken")
    assert buf.getvalue() == "Warning: careful\nError: broken\n"


def test_a_terminal_shows_a_live_bar_with_an_eta_for_a_step_that_knows_its_total() -> None:
    buf = io.StringIO()
    reporter = Reporter(console=Console(file=buf, width=100, force_terminal=True, force_interactive=True))
    with reporter.step("Choosing k", total=4) as progress:
        progress.advance(2)
        time.sleep(0.3)
    out = buf.getvalue()
    assert "Choosing k" in out and "50% eta" in out
    assert "Choosing k ..." not in out  # no plain line on a terminal


# --------------------------------------------------------------------------- stdout


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["csv", "table"])
def test_a_full_disk_on_stdout_is_one_error_line_and_exit_1(fmt: str) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "rfm", "-q", "-f", fmt], cwd=ROOT, stdout=full,
            stderr=subprocess.PIPE, text=True,
        )
    assert done.returncode == 1
    assert done.stderr == (
        "Error: cannot write the output to stdout: the disk is full; free some space, or write elsewhere with --output PATH\n"
    )


def test_a_reader_that_stops_early_is_not_an_error() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "rfm", "-q", "-f", "csv"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().startswith("customer_id,frequency")
    proc.stdout.close()  # as `| head -1` does, long before the 5,000 rows are written
    assert proc.wait(timeout=120) in (0, 1)
    stderr = proc.stderr.read()
    assert stderr == "", stderr


class FullFile(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_stderr_that_cannot_be_written_loses_diagnostics_not_the_run() -> None:
    reporter = Reporter(console=Console(file=FullFile(), width=80))
    with reporter.step("Computing RFM"):
        reporter.info("Read 10 rows")
    reporter.warn("careful")

"""Reports: self-contained HTML that a real browser renders, the workbook's sheets, Markdown, determinism."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import zipfile

import pytest

from clv.load import load_transactions
from present.report import write_report
from clv.sample import bundled_sample_path
from segments.pipeline import build_report

BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def report_data():
    tx = load_transactions(bundled_sample_path())
    return build_report(tx, title="Test report", calibration_end=dt.date(2024, 6, 30), clvx_version="test")


@pytest.fixture(scope="module")
def html_file(report_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(report_data, path)
    return path


def test_html_is_self_contained_with_every_section(html_file):
    text = html_file.read_text()
    for heading in ("Customer segments", "Customer value", "Holdout backtest", "Cross-sell", "Methodology"):
        assert heading in text
    assert text.count("<svg") == 5  # segments, CLV distribution, P(alive) heat map, backtest, cross-sell heat map
    assert not re.search(r"""(src|href)=["']https?://""", text)  # nothing fetched from the network
    assert "<script" not in text and "@media print" in text


def test_html_is_byte_identical_run_to_run(report_data, html_file, tmp_path):
    again = tmp_path / "again.html"
    write_report(report_data, again)
    assert again.read_bytes() == html_file.read_bytes()


def test_workbook_has_the_tables_as_sheets(report_data, tmp_path):
    path = tmp_path / "report.xlsx"
    write_report(report_data, path)
    with zipfile.ZipFile(path) as z:
        sheets = re.findall(r'<sheet name="([^"]+)"', z.read("xl/workbook.xml").decode())
        assert sheets == ["summary", "segments", "customer scores", "cross-sell ranking", "rules"]
        assert "numFmt" in z.read("xl/styles.xml").decode()


def test_markdown_has_the_tables(report_data, tmp_path):
    path = tmp_path / "report.md"
    write_report(report_data, path)
    text = path.read_text()
    assert text.startswith("# Test report")
    assert "| segment | n_customers |" in text and "## Methodology" in text


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def test_html_renders_in_a_real_browser(html_file, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: install Debian's chromium package (.ci/run does)")
        pytest.skip("no chromium on this machine (apt-get install chromium); CI installs it and runs this test")
    profile = tmp_path / "profile"
    dom = subprocess.run([browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom", html_file.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Customer segments" in dom.stdout and "<svg" in dom.stdout
    assert "Uncaught" not in dom.stderr
    shot = tmp_path / "report.png"
    run = subprocess.run([browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,3000", f"--screenshot={shot}",
                          html_file.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a rendered page with charts, not a blank one

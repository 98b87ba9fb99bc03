"""Reports: self-contained HTML that a real browser renders, the workbook's sheets, Markdown, determinism."""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import shutil
import subprocess
import zipfile

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clv.load import load_transactions
from clv.sample import bundled_sample_path
from present.report import write_report
from segments.pipeline import build_report

BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


# Data text planted in the bundled sample: every report below is built from it, so each
# format is checked against it with no extra pipeline run.
HOSTILE_PRODUCT = '<script>alert("p")</script> KT-01 $\\frac$ | [/b]'  # top of the ranking; with a digit, so a product
HOSTILE_CATEGORY = "<img src=x onerror=alert(1)> **Kitchen** | `x`"
HOSTILE_CUSTOMERS = {"000010": '=HYPERLINK("http://evil.example","click")', "000011": "<script>alert('c')</script>",
                     "000012": "@SUM(1+1)"}
HOSTILE_TITLE = "Test report <script>alert('t')</script>"


@pytest.fixture(scope="module")
def report_data(tmp_path_factory):
    log = pl.read_parquet(bundled_sample_path()).with_columns(
        pl.col("product_id").replace({"KT-01": HOSTILE_PRODUCT}),
        pl.col("category").replace({"Kitchen": HOSTILE_CATEGORY}),
        pl.col("customer_id").replace(HOSTILE_CUSTOMERS),
    )
    path = tmp_path_factory.mktemp("hostile") / "transactions.parquet"
    log.write_parquet(path)
    tx = load_transactions(path)
    return build_report(tx, title=HOSTILE_TITLE, calibration_end=dt.date(2024, 6, 30), clvx_version="test")


@pytest.fixture(scope="module")
def html_file(report_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(report_data, path)
    return path


def test_html_is_self_contained_with_every_section(html_file):
    text = html_file.read_text()
    for heading in ("Customer segments", "Customer value", "Holdout backtest", "Intervals and tracking on the holdout",
                    "Cross-sell", "Methodology"):
        assert heading in text
    # segments, CLV distribution, P(alive) heat map, backtest, tracking, cross-sell heat map
    assert text.count("<svg") == 6
    assert not re.search(r"""(src|href)=["']https?://""", text)  # nothing fetched from the network
    assert "<script" not in text and "@media print" in text


def test_html_is_byte_identical_run_to_run(report_data, html_file, tmp_path):
    again = tmp_path / "again.html"
    write_report(report_data, again)
    assert again.read_bytes() == html_file.read_bytes()


@pytest.fixture(scope="module")
def workbook(report_data, tmp_path_factory) -> dict[str, str]:
    """The report's xlsx, unzipped: part name -> XML text."""
    path = tmp_path_factory.mktemp("xlsx") / "report.xlsx"
    write_report(report_data, path)
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name).decode() for name in z.namelist() if name.endswith((".xml", ".rels"))}


def _sheets(workbook: dict[str, str]) -> list[str]:
    return re.findall(r'<sheet name="([^"]+)"', workbook["xl/workbook.xml"])


def test_workbook_has_the_tables_as_sheets(workbook):
    assert _sheets(workbook) == ["summary", "segments", "customer scores", "cross-sell ranking", "rules", "bundles",
                                 "cross-sell backtest", "cross-sell calibration", "segment calibration",
                                 "interval coverage", "tracking", "calibration deciles"]
    assert "numFmt" in workbook["xl/styles.xml"]


def test_workbook_writes_text_as_text_never_as_formulas(workbook):
    assert not [name for name, xml in workbook.items() if "<f>" in xml or "<f " in xml]
    strings = html.unescape(workbook["xl/sharedStrings.xml"])
    for text in (*HOSTILE_CUSTOMERS.values(), HOSTILE_PRODUCT):
        assert f">{text}<" in strings  # stored as a plain shared string


def _cell(sheet_xml: str, ref: str) -> str:
    return re.search(rf'<c r="{ref}"[^>]*?(?:/>|>.*?</c>)', sheet_xml).group()


def _formats(workbook: dict[str, str]) -> list[str]:
    """Number format code of each cell style index."""
    styles = workbook["xl/styles.xml"]
    codes = {"0": "General", **dict(re.findall(r'<numFmt numFmtId="(\d+)" formatCode="([^"]+)"', styles))}
    xfs = re.search(r"<cellXfs[^>]*>(.*?)</cellXfs>", styles, re.S).group(1)
    return [html.unescape(codes.get(i, i)) for i in re.findall(r'<xf numFmtId="(\d+)"', xfs)]


def _column_format(workbook: dict[str, str], sheet: int, header: str) -> str:
    """The number format of the first data cell under ``header`` in sheet number ``sheet`` (1-based)."""
    xml = workbook[f"xl/worksheets/sheet{sheet}.xml"]
    table_part = re.search(r'Target="\.\./tables/(table\d+\.xml)"', workbook[f"xl/worksheets/_rels/sheet{sheet}.xml.rels"]).group(1)
    table = workbook[f"xl/tables/{table_part}"]
    names = re.findall(r'<tableColumn id="\d+" name="([^"]+)"', table)
    col = chr(ord("A") + names.index(header))
    style = re.search(r's="(\d+)"', _cell(xml, f"{col}2"))
    return _formats(workbook)[int(style.group(1)) if style else 0]


def test_workbook_numbers_are_numbers_with_formats_under_human_headers(workbook):
    summary = workbook["xl/worksheets/sheet1.xml"]
    customers = _cell(summary, "B2")
    assert 't="s"' not in customers and "<v>5000</v>" in customers  # a number, not the text '5,000'
    assert _formats(workbook)[int(re.search(r's="(\d+)"', customers).group(1))] == "#,##0"
    assert _column_format(workbook, 2, "% of customers") == "0.0%"
    assert _column_format(workbook, 2, "Median days since last purchase") == "#,##0"
    assert _column_format(workbook, 3, "Days since last purchase") == "#,##0"
    assert _column_format(workbook, 3, "P(alive)") == "0.000"
    assert _column_format(workbook, 3, "CLV, 12 months") == "#,##0.00"
    assert _column_format(workbook, 4, "% of segment own it") == "0.0%"
    assert _column_format(workbook, 5, "Support") == "0.00%"
    headers = " ".join(re.findall(r'<tableColumn id="\d+" name="([^"]+)"', " ".join(x for n, x in workbook.items() if "tables/" in n)))
    assert "Customer ID" in headers and "_" not in headers


def test_every_table_sheet_has_an_autofilter_and_a_frozen_header(workbook):
    tables = [x for n, x in workbook.items() if n.startswith("xl/tables/")]
    assert len(tables) == len(_sheets(workbook)) - 1 and all("<autoFilter" in t for t in tables)  # every sheet but the summary
    for i in range(1, len(_sheets(workbook)) + 1):
        assert 'ySplit="1"' in workbook[f"xl/worksheets/sheet{i}.xml"] and 'state="frozen"' in workbook[f"xl/worksheets/sheet{i}.xml"]


def _column_widths(workbook: dict[str, str], sheet: int) -> dict[str, float]:
    """Each table column's width in sheet number ``sheet`` (1-based), by header, in Excel's character units."""
    xml = workbook[f"xl/worksheets/sheet{sheet}.xml"]
    table_part = re.search(r'Target="\.\./tables/(table\d+\.xml)"', workbook[f"xl/worksheets/_rels/sheet{sheet}.xml.rels"]).group(1)
    names = re.findall(r'<tableColumn id="\d+" name="([^"]+)"', workbook[f"xl/tables/{table_part}"])
    widths = {}
    for first, last, width in re.findall(r'<col min="(\d+)" max="(\d+)" width="([^"]+)"', xml):
        for col in range(int(first), int(last) + 1):
            widths[html.unescape(names[col - 1])] = float(width)
    return widths


def test_workbook_columns_are_as_wide_as_their_text(workbook):
    """The widths autofit would give: the planted product name (41 characters) widens its column past the short ranks'."""
    from xlsxwriter.utility import xl_pixel_width

    ranking = _column_widths(workbook, _sheets(workbook).index("cross-sell ranking") + 1)
    assert ranking["Product"] > ranking["Rank"] + 20
    assert ranking["Product"] * 7 >= xl_pixel_width(HOSTILE_PRODUCT)  # Excel's width unit is a digit, 7 pixels
    for i, sheet in enumerate(_sheets(workbook)[1:], start=2):
        assert _column_widths(workbook, i), f"sheet '{sheet}' has no column widths"


def _workbook_widths(frame: pl.DataFrame, autofit: bool, monkeypatch) -> list[tuple[str, str, str]]:
    """(first, last, width) of each <col> of a one-table workbook, our widths or xlsxwriter's autofit of the same cells."""
    import io

    import xlsxwriter

    from present.report import XLSX_OPTIONS, _xlsx_table

    buffer = io.BytesIO()
    with monkeypatch.context() as m:
        if autofit:
            m.setattr(xlsxwriter.worksheet.Worksheet, "set_column_pixels", lambda *a, **k: 0)
        wb = xlsxwriter.Workbook(buffer, {**XLSX_OPTIONS, "in_memory": True})
        _xlsx_table(wb, "rules", frame, {"bold": True})
        if autofit:
            wb.worksheets()[0].autofit()
        wb.close()
    with zipfile.ZipFile(buffer) as z:
        return re.findall(r'<col min="(\d+)" max="(\d+)" width="([^"]+)"', z.read("xl/worksheets/sheet1.xml").decode())


_finite_or_not = st.one_of(st.none(), st.floats(), st.floats(min_value=-1e-3, max_value=1e-3), st.floats(min_value=1e14, max_value=1e18))
_tables = st.integers(min_value=0, max_value=12).flatmap(lambda n: st.fixed_dictionaries({
    "lift": st.lists(_finite_or_not, min_size=n, max_size=n),
    "co_owners": st.lists(st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)), min_size=n, max_size=n),
    "antecedent": st.lists(st.one_of(st.none(), st.text(max_size=60)), min_size=n, max_size=n),
    "flag": st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n),
}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=_tables, max_rows=st.sampled_from([3, 100]))
@example(table={"lift": [1e-05, 0.30000000000000004, 1e16, -0.0, float("nan")], "co_owners": [1, -5, None, 7, 2**62],
                "antecedent": ["W" * 300, "a\nbb\nccc", "", "é😀", None], "flag": [True, False, None, True, True]}, max_rows=3)
def test_column_widths_are_what_xlsxwriter_autofit_gives(table, max_rows, monkeypatch):
    """Widths computed with polars from the frame, the same as autofit's walk over the written cells (numbers, text with
    several lines or characters autofit does not list, blanks, headers, the note under a cut table), to the pixel."""
    import present.report

    frame = pl.DataFrame(table, schema={"lift": pl.Float64, "co_owners": pl.Int64, "antecedent": pl.String, "flag": pl.Boolean})
    monkeypatch.setattr(present.report, "MAX_SHEET_ROWS", max_rows)
    assert _workbook_widths(frame, False, monkeypatch) == _workbook_widths(frame, True, monkeypatch)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
@example([0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e-05, 1e16, 9999999999999998.0, 5e-324, 1.7976931348623157e308, 1e-100, 123.0])
def test_number_lengths_are_pythons(values):
    from present.report import python_repr_lengths

    assert python_repr_lengths(pl.Series(values, dtype=pl.Float64)).to_list() == [len(str(v)) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=20))
def test_text_widths_are_xlsxwriters(texts):
    from xlsxwriter.utility import xl_pixel_width

    from present.report import text_width_px

    assert text_width_px(pl.Series(texts)) == max(xl_pixel_width(line) for t in texts for line in t.split("\n"))


def test_planted_markup_is_inert_in_html_and_markdown(html_file, report_data, tmp_path):
    page = html_file.read_text()
    md_path = tmp_path / "report.md"
    write_report(report_data, md_path)
    md = md_path.read_text()
    for text in (page, md):
        assert "<script" not in text and "<img" not in text
    assert html.escape(HOSTILE_TITLE) in page and html.escape(HOSTILE_PRODUCT) in page and "&lt;img src=x onerror" in page
    assert md.startswith("# Test report &lt;script>alert('t')&lt;/script>\n")
    assert "&lt;script>alert(\"p\")&lt;/script> KT-01 $\\\\frac$ \\| \\[/b\\]" in md  # the pipe cannot end the cell


def test_markdown_has_the_tables(report_data, tmp_path):
    path = tmp_path / "report.md"
    write_report(report_data, path)
    text = path.read_text()
    assert text.startswith("# Test report")
    assert "| segment | n_customers |" in text and "## Methodology" in text
    # Column names as in the files the commands write: a value that depends on a horizon carries it.
    assert "| clv_12m |" in text and "| expected_buyers_90d | expected_revenue_90d |" in text
    assert "| clv |" not in text  # (the backtests' expected_buyers are over their holdout, named in their titles)


def test_workbook_headers_name_each_columns_horizon(workbook):
    strings = html.unescape(workbook["xl/sharedStrings.xml"])
    for header in ("CLV, 12 months", "Churn risk, next 90 days", "Expected buyers, next 90 days", "Expected revenue, next 90 days"):
        assert f">{header}<" in strings
    assert ">Churn risk<" not in strings and ">Expected buyers<" not in strings and ">Expected revenue<" not in strings


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


def test_markdown_and_html_carry_the_holdout_diagnostics(report_data, html_file, tmp_path):
    from present.report import markdown_report

    d = report_data.diagnostics
    assert d is not None and d.n_customers == report_data.backtest.n_customers
    text = markdown_report(report_data)
    for title in ("### Interval coverage", "### Randomised PIT", "### Holdout total", "### Tracking", "### Calibration by decile"):
        assert title in text
    assert f"{d.total.actual:,.0f}" in html_file.read_text()


def test_every_report_format_carries_the_cross_sell_backtest(report_data, html_file, workbook):
    """The cross-sell backtest (ranking beside baselines, calibration by decile, the segment ranking's
    expected against actual, and the warnings of missed expectations) is in the page, the Markdown and the workbook."""
    from present.report import markdown_report

    cb = report_data.cross_sell_backtest
    assert cb is not None and cb.calibration is not None and cb.segment_calibration is not None
    page, md = html.unescape(html_file.read_text()), markdown_report(report_data)
    every_offer = cb.calibration.filter(pl.col("decile") == "all")
    actual = f"{every_offer['actual_buyers'].item():,.0f}"
    expected_segments = f"{cb.segment_calibration['expected_buyers'].sum():,.1f}"
    assert "## Cross-sell holdout backtest" in md and "Does cross-sell hold?" in page
    page = re.sub(r"</t[dh]></tr>", " |", re.sub(r"<tr><t[dh][^>]*>", "| ", re.sub(r"</t[dh]><t[dh][^>]*>", " | ", page)))  # rows as Markdown's
    for text in (page, md):
        assert f"| hit_rate@5 | {cb.model.hit_rate[5]:.3f} |" in text
        assert f"| all | {every_offer['offers'].item():,} |" in text
        assert actual in text and expected_segments in text
        for warning in cb.warnings:
            assert warning in text.replace("\\", "")
    assert {"cross-sell backtest", "cross-sell calibration", "segment calibration"} <= set(_sheets(workbook))

"""Data text is untrusted in every medium; exported numbers are what spreadsheets and CRMs expect.

Tiny frames built here, no pipeline runs: CSV formula guard, number rounding by column
class, rich markup and terminal control bytes, output names, Markdown and chart labels.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from clv.errors import InputError
from present.output import (
    Emitter,
    Format,
    Reporter,
    column_kind,
    frame_bytes,
    frame_table,
    render_text,
    resolve_format,
    terminal_text,
)
from present.render import excluded_products, write_frame
from present.report import chart_segments, markdown_table, markdown_text, plain_labels

FORMULAS = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def _csv_rows(data: bytes) -> list[list[str]]:
    import csv

    return list(csv.reader(io.StringIO(data.decode(), newline="")))


# --------------------------------------------------------------------------- CSV formulas


def test_csv_text_cells_that_start_a_formula_get_a_quote_owasp_csv_injection():
    frame = pl.DataFrame({"customer_id": [*FORMULAS, "ok", "a=b"], "clv": [-5.2] * len(FORMULAS) + [3.0, 1.0]})
    rows = _csv_rows(frame_bytes(frame, Format.csv))[1:]
    assert [r[0] for r in rows] == ["'" + f for f in FORMULAS] + ["ok", "a=b"]
    assert {r[1] for r in rows[: len(FORMULAS)]} == {"-5.2"}  # numbers are never touched


def test_categorical_text_is_guarded_too():
    frame = pl.DataFrame({"category": ["=1+1", "ok"]}, schema={"category": pl.Categorical})
    assert frame_bytes(frame, Format.csv) == b"category\n'=1+1\nok\n"


def test_raw_csv_keeps_text_as_it_is_for_programs():
    frame = pl.DataFrame({"product_id": FORMULAS})
    assert [r[0] for r in _csv_rows(frame_bytes(frame, Format.csv, raw=True))[1:]] == FORMULAS


def test_exports_guard_formulas_in_csv_but_keep_the_data_in_json_and_parquet(tmp_path):
    frame = pl.DataFrame({"customer_id": ["=HYPERLINK(1)"], "product_id": ["@x"], "rank": [1]})
    write_frame(frame, tmp_path / "t.csv")
    write_frame(frame, tmp_path / "t.json")
    write_frame(frame, tmp_path / "t.parquet")
    write_frame(frame, tmp_path / "raw.csv", raw=True)
    assert (tmp_path / "t.csv").read_text() == "customer_id,product_id,rank\n'=HYPERLINK(1),'@x,1\n"
    assert (tmp_path / "raw.csv").read_text() == "customer_id,product_id,rank\n=HYPERLINK(1),@x,1\n"
    assert json.loads((tmp_path / "t.json").read_text())[0]["customer_id"] == "=HYPERLINK(1)"
    assert pl.read_parquet(tmp_path / "t.parquet")["customer_id"][0] == "=HYPERLINK(1)"


def test_emitter_guards_csv_on_stdout_unless_raw(capfdbinary):
    frame = pl.DataFrame({"customer_id": ["=1+1"]})
    Emitter(fmt=Format.csv).rows(frame)
    Emitter(fmt=Format.csv, raw_csv=True).rows(frame)
    assert capfdbinary.readouterr().out == b"customer_id\n'=1+1\ncustomer_id\n=1+1\n"


# --------------------------------------------------------------------------- numbers


def test_column_classes_of_every_exported_column():
    money = ["monetary_value", "clv", "expected_avg_value", "spend_per_purchase", "total_spend", "revenue", "avg_order_value",
             "expected_revenue"]
    counts = ["days_since_last_purchase", "n_customers", "n_orders", "rank", "owners", "white_space", "antecedent_owners",
              "consequent_owners", "co_owners", "same_order_owners", "bought_after"]
    shares = ["p_alive", "mean_p_alive", "score", "confidence", "customer_share", "revenue_share", "clv_share", "churn_risk",
              "penetration", "population_penetration"]
    measures = ["expected_purchases", "expected_purchases_90d", "median_days_since_last_purchase", "median_frequency", "index",
                "expected_buyers", "support", "lift", "leverage", "conviction", "median_days_after", "estimate"]
    assert {c: column_kind(c) for c in money + counts + shares + measures} == (
        dict.fromkeys(money, "money") | dict.fromkeys(counts, "count") | dict.fromkeys(shares, "share")
        | dict.fromkeys(measures, "measure")
    )


def test_csv_and_json_numbers_have_no_float_noise_parquet_keeps_full_precision(tmp_path):
    frame = pl.DataFrame({
        "customer_id": ["000001"],
        "frequency": [1],
        "days_since_last_purchase": [607.0],
        "monetary_value": [40.580000000000005],
        "p_alive": [0.03333877494150257],
        "expected_purchases": [0.03270263127816323],
        "clv": [1.3626174887604674],
        "lift": [float("inf")],
    })
    assert frame_bytes(frame, Format.csv).decode() == (
        "customer_id,frequency,days_since_last_purchase,monetary_value,p_alive,expected_purchases,clv,lift\n"
        "000001,1,607,40.58,0.0333388,0.0327026,1.36,inf\n"
    )
    assert json.loads(frame_bytes(frame, Format.json)) == [{
        "customer_id": "000001", "frequency": 1, "days_since_last_purchase": 607, "monetary_value": 40.58,
        "p_alive": 0.0333388, "expected_purchases": 0.0327026, "clv": 1.36, "lift": None,
    }]
    assert frame_bytes(frame, Format.csv) == frame_bytes(frame, Format.csv)
    back = pl.read_parquet(io.BytesIO(frame_bytes(frame, Format.parquet)))
    assert back["monetary_value"][0] == 40.580000000000005 and back["p_alive"][0] == 0.03333877494150257


# --------------------------------------------------------------------------- terminal


HOSTILE_TERMINAL = [
    "[/b]",
    "[link=http://evil.example]ok[/link]",
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07",
    "bell\x07 nul\x00 c1\x9b2J del\x7f",
    "abc\u202edcba",
    ":thumbs_up:",
]


def _rendered(frame: pl.DataFrame) -> str:
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system="truecolor", highlight=False)
    console.print(frame_table(frame))
    return console.file.getvalue()


def test_table_cells_are_text_not_rich_markup():
    out = _rendered(pl.DataFrame({"product_id": HOSTILE_TERMINAL[:2], "n": [1, 2]}))
    assert "[/b]" in out and "[link=http://evil.example]ok[/link]" in out
    assert "\x1b]8;" not in out  # no OSC 8 hyperlink: the id is not clickable


def test_control_bytes_in_data_are_shown_escaped_in_tables():
    out = _rendered(pl.DataFrame({"customer_id": HOSTILE_TERMINAL}))
    assert "\x1b[31m" not in out and "\x1b]" not in out and "\x07" not in out and "\x00" not in out and "\x9b" not in out
    for shown in (r"\x1b[31mred\x1b[0m", r"\x1b]8;;http://evil.example\x07click", r"nul\x00 c1\x9b2J del\x7f", r"abc\u202edcba",
                  ":thumbs_up:"):
        assert shown in out
    plain = render_text(frame_table(pl.DataFrame({"customer_id": HOSTILE_TERMINAL})))
    assert "\x1b" not in plain and r"\x1b[31mred" in plain


def test_terminal_text_keeps_ordinary_text():
    assert terminal_text("Café Ünïcode 日本 👍🏽 a-b") == "Café Ünïcode 日本 👍🏽 a-b"
    assert terminal_text("a\tb\nc") == r"a\tb\nc"


def test_excluded_product_ids_reach_stderr_escaped():
    console = Console(file=io.StringIO(), force_terminal=True, width=300, highlight=False)  # as Reporter builds it
    excluded = pl.DataFrame({"product_id": ["\x1b]8;;http://x\x07POST"], "reason": ["postage"], "lines": [3]})
    excluded_products(excluded, Reporter(console=console))
    out = console.file.getvalue()
    assert "\x1b]8" not in out and r"\x1b]8;;http://x\x07POST" in out


# --------------------------------------------------------------------------- output names


@pytest.mark.parametrize("name", ["out", "out.tsv"])
def test_an_unknown_output_extension_is_refused_naming_every_supported_one(name):
    with pytest.raises(InputError) as err:
        resolve_format(None, Path(name))
    assert str(err.value) == (
        f"cannot tell the format of '{name}' from its extension; clvx writes .csv, .json, .parquet (or .pq), and .txt for "
        "the plain-text table: rename the file or pass --format table|csv|json|parquet"
    )


def test_output_name_and_format_must_agree():
    assert resolve_format(None, Path("x.TXT")) is Format.table
    assert resolve_format(Format.csv, Path("/dev/stdout")) is Format.csv
    with pytest.raises(InputError, match=r"^'x.csv' is named for csv but --format is json; name it x.json, or drop --format$"):
        resolve_format(Format.json, Path("x.csv"))
    like_a_report = r"is named like a spreadsheet or a report, which this command does not write \(clvx report writes .html, .xlsx and .md\)"
    with pytest.raises(InputError, match=rf"^'x.xlsx' {like_a_report}; it writes .csv, .json, .parquet \(or .pq\), and .txt .*: name it x.json$"):
        resolve_format(Format.json, Path("x.xlsx"))
    # Without --format the advice is a name, not a --format that would be refused in turn.
    with pytest.raises(InputError, match=rf"^'x.xls' {like_a_report}; .*: name it x.csv$") as refused:
        resolve_format(None, Path("x.xls"))
    assert "--format" not in str(refused.value)


def test_data_exports_refuse_a_text_table_name(tmp_path):
    with pytest.raises(InputError, match=r"^cannot tell the format of '.*t.txt' from its extension '.txt'; use .csv, .json or .parquet \(or .pq\)$"):
        write_frame(pl.DataFrame({"a": [1]}), tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()


# --------------------------------------------------------------------------- Markdown and charts


@pytest.mark.parametrize(("text", "md"), [
    ("<script>alert(1)</script>", "&lt;script>alert(1)&lt;/script>"),
    ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)>"),
    ("a|b", r"a\|b"),
    ("`rm -rf`", r"\`rm -rf\`"),
    ("[ok](http://evil.example)", r"\[ok\](http://evil.example)"),
    ("**b** _i_ customer_id", r"\*\*b\*\* \_i\_ customer_id"),
    ("# heading", r"\# heading"),
    ("- item", r"\- item"),
    ("> quote", r"\> quote"),
    ("1. item", r"1\. item"),
    ("line\nbreak\r\nhere", "line break here"),
    ("&lt;b&gt;", "&amp;lt;b&amp;gt;"),
    ("P >= 0.5 & spend <= 0", "P >= 0.5 & spend <= 0"),
    ("\x1b[31m", r"\\x1b\[31m"),
])
def test_markdown_text_escapes_markup_from_the_data(text, md):
    assert markdown_text(text) == md


def test_markdown_table_cells_cannot_break_the_table():
    frame = pl.DataFrame({"product_id": ["a|b<script>x", "`c`\nd"], "n": [1, -2]})
    assert markdown_table(frame) == "| product_id | n |\n|---|---:|\n| a\\|b&lt;script>x | 1 |\n| \\`c\\` d | -2 |"


def test_chart_labels_with_dollars_and_backslashes_are_drawn_as_written():
    profile = pl.DataFrame({"segment": ["$\\frac$ deal", "50% off $5 - $10", "<script>x</script>"],
                            "customer_share": [0.2, 0.3, 0.5], "clv_share": [0.5, 0.3, 0.2]})
    svg = chart_segments(profile)  # mathtext would raise ValueError on \frac
    assert "<!-- $\\frac$ deal -->" in svg and "<!-- 50% off $5 - $10 -->" in svg
    assert "<script" not in svg and "&lt;script&gt;" in svg
    assert plain_labels(["a$b$", 3]) == [r"a\$b\$", "3"]


@pytest.mark.parametrize("raw", [False, True])
def test_csv_written_in_blocks_is_byte_for_byte_the_one_piece_csv_oracle_frame_bytes(tmp_path: Path, monkeypatch, raw: bool) -> None:
    """Blocks of 2 rows (the header once): guarded formulas, rounded money and scores, NaN and nulls as in one piece."""
    from present import output

    frame = pl.DataFrame({"customer_id": ["=cmd", "+1", None, "ok", "@x"], "expected_revenue": [1.005, 2.0, float("nan"), None, 1e9 / 3],
                          "score": [0.123456789, -1.5, None, 3.0, 2.0], "rank": [1, 2, 3, 4, 5]})
    monkeypatch.setattr(output, "CSV_BLOCK_ROWS", 2)
    for rows in (frame, frame.head(0), frame.head(2)):
        path = tmp_path / "blocks.csv"
        write_frame(rows, path, raw=raw)
        assert path.read_bytes() == output.frame_bytes(rows, output.Format.csv, raw=raw)

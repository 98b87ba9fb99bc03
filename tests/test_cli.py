"""The command line through typer's CliRunner: exit codes, exact output, exact error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from cli import app

TINY = ["--customer-col", "customer", "--date-col", "when", "--amount-col", "amount"]
TINY_RFM_CSV = (
    "customer_id,frequency,recency,T,monetary_value\n"
    "00042,2,14,19,22.5\n"
    "123456789012345678901,0,0,0,0.0\n"
    "7,1,17,17,7.5\n"
)


def test_rfm_csv_is_exact_for_a_hand_computed_log(runner, tiny_csv):
    res = runner.invoke(app, ["rfm", str(tiny_csv), *TINY, "--no-scores", "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout == TINY_RFM_CSV
    assert "Excluded: 1 with no customer" in res.stderr
    assert "Kept: 1 returns netted" in res.stderr


def test_rfm_json_is_a_list_of_rows(runner, tiny_csv):
    res = runner.invoke(app, ["rfm", str(tiny_csv), *TINY, "--format", "json", "-q"])
    rows = json.loads(res.stdout)
    assert [r["customer_id"] for r in rows] == ["00042", "123456789012345678901", "7"]
    assert set(rows[0]) == {"customer_id", "frequency", "recency", "T", "monetary_value", "r_score", "f_score", "m_score", "rfm_segment"}
    assert res.stderr.count("Warning:") >= 1  # tiny data: some scores cannot occur


def test_output_file_format_from_extension(runner, tiny_csv, tmp_path):
    out = tmp_path / "rfm.parquet"
    res = runner.invoke(app, ["rfm", str(tiny_csv), *TINY, "-o", str(out), "-q"])
    assert res.exit_code == 0
    assert pl.read_parquet(out)["customer_id"].to_list() == ["00042", "123456789012345678901", "7"]


def test_failed_run_keeps_the_previous_output(runner, tiny_csv, tmp_path):
    out = tmp_path / "rfm.csv"
    out.write_text("previous good output\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("customer,when,amount\na,2024-01-01,oops\n")
    res = runner.invoke(app, ["rfm", str(bad), *TINY, "-o", str(out)])
    assert res.exit_code == 2
    assert out.read_text() == "previous good output\n"
    assert list(tmp_path.glob(".rfm.csv.*")) == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["rfm", "missing.csv"], "Error: file not found: missing.csv\n"),
        (["rfm", "{tiny}", "--customer-col", "cust"], "Error: {tiny}: no column 'cust' (given by --customer-col); did you mean 'customer'? Columns: customer, order, when, amount\n"),
        (["rfm", "{tiny}", *TINY, "--as-of", "2020-01-01"], "Error: --as-of 2020-01-01 is before the first transaction (2024-01-01)\n"),
        (["rfm", "{tiny}", *TINY, "-o", "{tmp}/x.xlsx"], "Error: cannot tell the format of '{tmp}/x.xlsx' from its extension; use .csv, .json, .parquet or .txt, or pass --format\n"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_2(runner, tiny_csv, tmp_path, args, line):
    fill = {"tiny": str(tiny_csv), "tmp": str(tmp_path)}
    res = runner.invoke(app, [a.format(**fill) for a in args])
    assert res.exit_code == 2
    assert res.stderr.endswith(line.format(**fill))
    assert "Traceback" not in res.stderr


def test_debug_shows_the_traceback(runner):
    res = runner.invoke(app, ["rfm", "missing.csv", "--debug"])
    assert res.exit_code != 0
    assert type(res.exception).__name__ == "InputError"


def test_version_and_help_list_every_command(runner):
    assert runner.invoke(app, ["--version"]).stdout.startswith("clvx ")
    help_text = runner.invoke(app, ["--help"]).stdout
    for name in ("rfm", "sample"):
        assert name in help_text


def test_default_run_uses_the_bundled_sample(runner):
    res = runner.invoke(app, ["rfm", "--format", "csv", "-q"])
    assert res.exit_code == 0
    assert res.stdout.count("\n") == 5_000 + 1  # every sample customer, plus the header


def test_installed_script_usage_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "rfm", "--nope"], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 2
    assert proc.stderr == "Error: No such option: --nope (see 'clvx rfm --help')\n" or proc.stderr.startswith("Error: No such option: --nope")
    assert proc.stderr.count("\n") == 1

"""The command line through typer's CliRunner: exit codes, exact output, exact error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from cli import app
from tests.conftest import ONLINE_RETAIL, RETAIL_FLAGS, requires_retail

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
    assert list(tmp_path.glob(".clvx-*")) == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["rfm", "missing.csv"], "Error: file not found: missing.csv\n"),
        (["rfm", "{tiny}", "--customer-col", "cust"], "Error: {tiny}: no column 'cust' (given by --customer-col); did you mean 'customer'? Columns: customer, order, when, amount\n"),
        (["rfm", "{tiny}", *TINY, "--as-of", "2020-01-01"], "Error: --as-of 2020-01-01 is before the first transaction (2024-01-01)\n"),
        (["rfm", "{tiny}", *TINY, "-o", "{tmp}/x.xlsx"], "Error: '{tmp}/x.xlsx' is named like a spreadsheet or a report, which this command does not write (clvx report writes .html, .xlsx and .md); it writes .csv, .json, .parquet (or .pq), and .txt for the plain-text table: name it x.csv\n"),
        (["rfm", "{tiny}", *TINY, "-o", "{tmp}/x.dat"], "Error: cannot tell the format of '{tmp}/x.dat' from its extension; clvx writes .csv, .json, .parquet (or .pq), and .txt for the plain-text table: rename the file or pass --format table|csv|json|parquet\n"),
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
    # The command names listed in the help's command table, not words of the description.
    listed = [line.split()[1] for line in help_text.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    commands = ["rfm", "fit", "predict", "validate", "segment", "cross-sell", "report", "sample"]
    assert [c for c in listed if c in commands] == commands


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_start_up_imports_nothing_heavy(flag):
    """Start-up time is what `clvx --help` imports: no data or model library, no rich help renderer."""
    code = (
        "import sys, cli\n"
        f"sys.argv = ['clvx', '{flag}']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('polars', 'numpy', 'scipy', 'sklearn', 'pandas', 'lifetimes', 'matplotlib', 'typer.rich_utils', 'markdown_it')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "[]"
    assert "segment" in proc.stdout if flag == "--help" else proc.stdout.startswith("clvx ")


def test_the_application_and_presentation_layers_load_without_scipy_stats():
    """scipy.stats takes most of a second of CPU to import; the normal CDF and quantile come from scipy.special."""
    code = "import sys, clvx, present.render\nprint('scipy.stats' in sys.modules)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_default_run_uses_the_bundled_sample(runner):
    res = runner.invoke(app, ["rfm", "--format", "csv", "-q"])
    assert res.exit_code == 0
    assert res.stdout.count("\n") == 5_000 + 1  # every sample customer, plus the header


def test_installed_script_usage_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "rfm", "--nope"], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 2
    assert proc.stderr == "Error: No such option: --nope (see 'clvx rfm --help')\n" or proc.stderr.startswith("Error: No such option: --nope")
    assert proc.stderr.count("\n") == 1


# --------------------------------------------------------------------------- models


def test_fit_json_has_both_models(runner):
    res = runner.invoke(app, ["fit", "--format", "json", "-q"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["period"] == "day"
    assert {"r", "alpha", "a", "b", "log_likelihood", "n_customers", "converged"} <= set(doc["bgnbd"])
    assert {"p", "q", "v", "log_likelihood", "n_customers"} <= set(doc["gamma_gamma"])


def test_fit_on_a_summary_file_reproduces_the_paper(runner, tmp_path):
    from tests.conftest import lifetimes_dataset

    summary = tmp_path / "cdnow_summary.csv"
    pl.read_csv(lifetimes_dataset("cdnow_customers_summary_with_transactions.csv")).select(
        pl.col("ID").alias("customer_id"), pl.col("x").alias("frequency"), pl.col("t_x").alias("recency"), "T",
        pl.col("zbar").alias("monetary_value"),
    ).write_csv(summary)
    res = runner.invoke(app, ["fit", str(summary), "--period", "week", "--format", "json", "-q"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert round(doc["bgnbd"]["r"], 3) == 0.243 and round(doc["bgnbd"]["log_likelihood"], 2) == -9582.43
    assert round(doc["gamma_gamma"]["p"], 2) == 6.25


def test_summary_without_spend_is_refused_for_clv(runner):
    from tests.conftest import lifetimes_dataset

    path = lifetimes_dataset("cdnow_customers_summary.csv")
    res = runner.invoke(app, ["predict", str(path), "--period", "week"])
    assert res.exit_code == 2
    assert res.stderr.endswith(f"Error: {path} has no monetary_value column; spend models and CLV need it (add it, or pass the transaction log)\n")


def test_predict_with_a_saved_model_equals_fitting(runner, tmp_path):
    model = tmp_path / "model.json"
    fitted = runner.invoke(app, ["predict", "--format", "csv", "-q"])
    assert runner.invoke(app, ["fit", "--save", str(model), "-q", "-f", "json"]).exit_code == 0
    scored = runner.invoke(app, ["predict", "--saved-model", str(model), "--format", "csv", "-q"])
    assert scored.exit_code == 0
    assert scored.stdout == fitted.stdout
    header = fitted.stdout.splitlines()[0]
    assert header == "customer_id,frequency,recency,T,monetary_value,p_alive,churn_risk_12m,expected_purchases_12m,expected_avg_value,clv_12m,purchase_model"


def test_predict_output_is_byte_identical_run_to_run(runner, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        assert runner.invoke(app, ["predict", "-o", str(out), "-q"]).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_validate_json_reports_model_and_baselines(runner):
    res = runner.invoke(app, ["validate", "--calibration-end", "2024-06-30", "--format", "json", "-q"])
    assert res.exit_code == 0, res.stderr
    clv = json.loads(res.stdout)["clv"]
    for key in ("n_customers", "actual_total", "predicted_total", "bias", "mae", "rmse", "msle", "pearson_r"):
        assert key in clv
    assert set(clv["baselines"]) == {"zero", "calibration_rate"}
    assert [row["frequency_cal"] for row in clv["by_frequency"]][-1] == "7+"


def test_degenerate_log_is_a_runtime_error_with_one_line(runner, tmp_path):
    log = tmp_path / "once.csv"
    log.write_text("customer_id,date,amount\n" + "".join(f"c{i},2024-01-0{1 + i % 5},10\n" for i in range(20)))
    res = runner.invoke(app, ["fit", str(log)])
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-1].startswith("Error: no customer made a repeat purchase")
    assert "Traceback" not in res.stderr


def test_bad_model_file_and_horizon(runner, tmp_path):
    bad = tmp_path / "model.json"
    bad.write_text("{not json")
    res = runner.invoke(app, ["predict", "--saved-model", str(bad)])
    assert res.exit_code == 2 and "is not valid JSON" in res.stderr
    res = runner.invoke(app, ["predict", "--horizon", "forever"])
    assert res.exit_code == 2 and res.stderr.endswith("Error: horizon 'forever' is not a duration such as 12m, 39w, 90d or 1y\n")


# --------------------------------------------------------------------------- segments

PROFILE_KEYS = {
    "segment", "n_customers", "customer_share", "revenue", "revenue_share", "clv_12m", "clv_share", "mean_p_alive",
    "churn_risk_90d", "median_days_since_last_purchase", "median_frequency", "avg_order_value", "expected_purchases_90d", "top_categories",
    "purchase_model",
}


def test_segment_default_run_prints_the_profile(runner):
    res = runner.invoke(app, ["segment", "--explain"])
    assert res.exit_code == 0, res.stderr
    assert "Customer segments" in res.stdout and "Choosing k" in res.stdout
    assert "using the bundled sample" in res.stderr


def test_segment_json_rows_and_assignments_file(runner, tmp_path):
    out = tmp_path / "assign.csv"
    res = runner.invoke(app, ["segment", "-f", "json", "-q", "--assignments", str(out)])
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert set(rows[0]) == PROFILE_KEYS
    assignments = pl.read_csv(out, schema_overrides={"customer_id": pl.String})
    assert assignments.height == 5_000 and assignments["customer_id"].is_unique().all()
    assert set(assignments["segment"]) == {r["segment"] for r in rows}
    assert {"customer_id", "segment", "days_since_last_purchase", "frequency", "spend_per_purchase", "p_alive", "clv_12m",
            "expected_purchases_12m", "expected_purchases_90d"} <= set(assignments.columns)
    assert {r["purchase_model"] for r in rows} == set(assignments["purchase_model"]) == {"bgnbd"}  # the model behind the numbers


def test_segment_bad_k(runner):
    res = runner.invoke(app, ["segment", "--k", "many"])
    assert res.exit_code == 2


@requires_retail
def test_segment_on_the_real_retail_log(runner):
    res = runner.invoke(app, ["segment", str(ONLINE_RETAIL), *RETAIL_FLAGS, "-f", "json", "-q"])
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert 3 <= len(rows) <= 8
    assert min(r["customer_share"] for r in rows) >= 0.02
    assert "almost no dropout" in res.stderr  # one year of this log shows little churn: the user is told


# --------------------------------------------------------------------------- cross-sell

RANKING_KEYS = {"segment", "rank", "product_id", "category", "owners", "penetration", "population_penetration", "index", "white_space", "expected_buyers_90d", "expected_revenue_90d",
                "companion", "timing"}


def test_cross_sell_ranking_targets_and_rules(runner, tmp_path):
    offers, rules = tmp_path / "offers.csv", tmp_path / "rules.parquet"
    res = runner.invoke(app, ["cross-sell", "-f", "json", "--top", "3", "--targets", str(offers), "--top-k", "4", "--rules", str(rules)])
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert set(rows[0]) == RANKING_KEYS
    assert max(r["rank"] for r in rows) == 3
    table = pl.read_csv(offers, schema_overrides={"customer_id": pl.String})
    assert table.columns == ["customer_id", "segment", "product_id", "rank", "score", "purchase_probability", "expected_revenue", "relation", "reason",
                             "because_of", "timing"]
    assert table.group_by("customer_id").len()["len"].max() == 4
    assert {"support", "confidence", "lift", "leverage", "conviction", "timing"} <= set(pl.read_parquet(rules).columns)


RULE_FLAGS = ["--min-support", "0.01", "--min-lift", "0", "--rules-per-product", "1000", "--exclude-products", "^P00[0-4]$"]


def test_rules_command_writes_the_cross_sell_rules_and_bundles_byte_for_byte(runner, tmp_path):
    # The oracle is cross-sell's own --rules and --bundles files for the same flags.
    res = runner.invoke(app, ["cross-sell", "-q", "--rules", str(tmp_path / "a.csv"), "--bundles", str(tmp_path / "a_b.csv"), *RULE_FLAGS])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(app, ["rules", "-o", str(tmp_path / "b.csv"), "--bundles", str(tmp_path / "b_b.csv"), *RULE_FLAGS])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "a.csv").read_bytes()
    assert (tmp_path / "b_b.csv").read_bytes() == (tmp_path / "a_b.csv").read_bytes()
    rules = pl.read_csv(tmp_path / "b.csv")
    assert rules.height > 0 and rules["support"].min() >= 0.01
    assert not rules["antecedent"].is_in([f"P00{d}" for d in range(5)]).any()
    assert f"Wrote {rules.height:,} association rules to {tmp_path / 'b.csv'}." in res.stderr
    assert "Fitting" not in res.stderr and "Clustering" not in res.stderr  # no models, no segments


def test_rules_command_says_how_many_rules_the_bounds_dropped(runner, tmp_path):
    res = runner.invoke(app, ["rules", "-o", str(tmp_path / "r.csv"), "--rules-per-product", "1"])
    assert res.exit_code == 0, res.stderr
    kept = pl.read_csv(tmp_path / "r.csv").height
    assert kept == pl.read_csv(tmp_path / "r.csv")["antecedent"].n_unique()  # one per product bought first
    line = next(x for x in res.stderr.splitlines() if x.startswith("Kept "))
    assert line.startswith(f"Kept {kept:,} of ") and "dropped: change --min-support, --min-lift or --rules-per-product" in line


def test_rules_command_without_a_product_column_is_one_error_line(runner, tiny_csv, tmp_path):
    res = runner.invoke(app, ["rules", "-q", str(tiny_csv), *TINY, "-o", str(tmp_path / "r.csv")])
    assert res.exit_code == 2
    assert res.stderr == "Error: this command needs a product column; name it with --product-col\n"
    assert not (tmp_path / "r.csv").exists()


def test_rules_command_with_a_bad_pattern_is_one_error_line(runner, tmp_path):
    res = runner.invoke(app, ["rules", "-q", "-o", str(tmp_path / "r.csv"), "--exclude-products", "("])
    assert res.exit_code == 2
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "r.csv").exists()


def test_cross_sell_needs_a_product_column(runner, tiny_csv):
    res = runner.invoke(app, ["cross-sell", str(tiny_csv), *TINY])
    assert res.exit_code == 2
    assert res.stderr.endswith("Error: this command needs a product column; name it with --product-col\n")


def test_cross_sell_bad_exclude_pattern(runner):
    res = runner.invoke(app, ["cross-sell", "--exclude-products", "(unclosed"])
    assert res.exit_code == 2 and "is not a valid regular expression" in res.stderr


def test_validate_has_a_cross_sell_section_with_baselines(runner):
    res = runner.invoke(app, ["validate", "--calibration-end", "2024-06-30", "-f", "json", "-q"])
    assert res.exit_code == 0, res.stderr
    cross = json.loads(res.stdout)["cross_sell"]
    assert set(cross["baselines"]) == {"random", "popularity", "segment_popularity"}
    assert set(cross["hit_rate"]) == {"1", "3", "5", "10"}
    assert cross["hit_rate"]["5"] > cross["baselines"]["popularity"]["hit_rate"]["5"]


# --------------------------------------------------------------------------- config and report


def test_config_file_sets_options_and_flags_override(runner, tmp_path, tiny_csv):
    cfg = tmp_path / "clvx.toml"
    cfg.write_text(f'input = "{tiny_csv}"\ncustomer-col = "customer"\ndate-col = "when"\nquiet = true\n\n[rfm]\nscores = false\nformat = "csv"\n')
    res = runner.invoke(app, ["rfm", "--config", str(cfg)])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == TINY_RFM_CSV and res.stderr == ""
    res = runner.invoke(app, ["rfm", "--config", str(cfg), "--format", "json"])
    assert json.loads(res.stdout)[0]["customer_id"] == "00042"


def test_pyproject_tool_clvx_table(runner, tmp_path, tiny_csv):
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text(f'[project]\nname = "x"\n\n[tool.clvx]\ninput = "{tiny_csv}"\ncustomer-col = "customer"\ndate-col = "when"\n')
    res = runner.invoke(app, ["rfm", "--config", str(cfg), "--no-scores", "-f", "csv", "-q"])
    assert res.stdout == TINY_RFM_CSV


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('custmer-col = "x"\n', "'custmer-col' is not a clvx option; did you mean 'customer-col'?"),
        ("[segmnt]\nk = 3\n", "[segmnt] is not a clvx command; did you mean [segment]?"),
        ('period = "fortnight"\n', "setting 'period' = 'fortnight' should be one of day, week, month"),
        ("period = \n", "is not valid TOML"),
    ],
)
def test_bad_config_gives_one_error_line(runner, tmp_path, text, error):
    cfg = tmp_path / "clvx.toml"
    cfg.write_text(text)
    res = runner.invoke(app, ["rfm", "--config", str(cfg)])
    assert res.exit_code == 2
    assert error in res.stderr and res.stderr.count("\n") == 1


def test_report_command_writes_every_format(runner, tmp_path):
    outs = [tmp_path / f"report.{ext}" for ext in ("html", "xlsx", "md")]
    res = runner.invoke(app, ["report", *[a for o in outs for a in ("-o", str(o))], "-q"])
    assert res.exit_code == 0, res.stderr
    assert all(o.stat().st_size > 1000 for o in outs)
    res = runner.invoke(app, ["report", "-o", str(tmp_path / "report.pdf")])
    assert res.exit_code == 2 and "use .html, .xlsx or .md" in res.stderr


@pytest.mark.parametrize(
    ("command", "text", "error"),
    [
        ("predict", "discount-rate = 1e9\n", "setting 'discount-rate' = 1000000000.0 should be a number from 0.0 to 1.0"),
        ("cross-sell", "top-k = 0\n", "setting 'top-k' = 0 should be a whole number from 1 to 100"),
        ("cross-sell", "max-offers = 0\n", "setting 'max-offers' = 0 should be a whole number from 1 to 100"),
        ("cross-sell", "top = 1000\n", "setting 'top' = 1000 should be a whole number from 1 to 100"),
        ("fit", "penalizer = -1\n", "setting 'penalizer' = -1 should be a number from 0.0 to 1,000.0"),
        ("segment", "seed = 1.5\n", "setting 'seed' = 1.5 should be a whole number from 0 to 4,294,967,295"),
        ("segment", "seed = true\n", "setting 'seed' = true should be a whole number from 0 to 4,294,967,295"),
        ("sample", "customers = 0\n", "setting 'customers' = 0 should be a whole number from 1 to 50,000,000"),
        ("rfm", "scores = 1\n", "setting 'scores' = 1 should be true or false"),
    ],
)
def test_settings_obey_the_rules_of_their_flags(runner, tmp_path, command, text, error):
    cfg = tmp_path / "clvx.toml"
    cfg.write_text(text)
    res = runner.invoke(app, [command, "--config", str(cfg)])
    assert res.exit_code == 2, res.output
    assert res.stderr == f"Error: {cfg}: {error}\n"


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_seed_range_is_checked_when_parsing(seed):
    proc = subprocess.run([sys.executable, "cli.py", "segment", "--seed", seed], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: Invalid value for '--seed'") and proc.stderr.count("\n") == 1


def test_validate_checks_the_calibration_end_against_the_log_first(runner):
    res = runner.invoke(app, ["validate", "--calibration-end", "2001-01-01"])
    assert res.exit_code == 2
    assert res.stderr.endswith("Error: --calibration-end 2001-01-01 is before the first transaction (2023-01-01); "
                               "choose a date inside the log\n")
    res = runner.invoke(app, ["validate", "--calibration-end", "2030-01-01", "-q"])
    assert res.exit_code == 2 and "leaves no holdout" in res.stderr


def test_reading_flags_reach_the_loader(runner, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("customer,when,amount\nJosé,2024-01-01,5\nJosè,2024-01-02,6\nNULL,2024-01-03,7\n".encode("latin-1"))
    res = runner.invoke(app, ["rfm", str(latin), *TINY, "--no-scores", "-f", "csv", "-q"])
    assert res.exit_code == 2 and "pass --encoding latin-1" in res.stderr
    res = runner.invoke(app, ["rfm", str(latin), *TINY, "--no-scores", "-f", "csv", "-q", "--encoding", "latin-1"])
    assert res.exit_code == 0, res.stderr
    assert sorted(line.split(",")[0] for line in res.stdout.splitlines()[1:]) == sorted(["José", "Josè"])  # two customers, not one
    res = runner.invoke(app, ["rfm", str(latin), *TINY, "--no-scores", "-f", "csv", "-q", "--encoding", "latin-1",
                              "--keep-placeholder-ids"])
    assert "NULL" in res.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "is nested too deeply"),
        ('{"format": "clvx-model", "period": ' + "9" * 5000 + "}", "holds an integer of more than 4,300 digits"),
    ],
)
def test_hostile_model_files_are_one_error_line(runner, tmp_path, text, message):
    model = tmp_path / "m.json"
    model.write_text(text)
    res = runner.invoke(app, ["predict", "--saved-model", str(model), "-q"])
    assert res.exit_code == 2 and message in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["rfm", "segment", "cross-sell", "report"])
def test_flags_show_no_value_placeholder_in_help(command):
    proc = subprocess.run([sys.executable, "cli.py", command, "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], env={**__import__("os").environ, "COLUMNS": "250"})
    assert proc.returncode == 0 and "--quiet" in proc.stdout
    assert "<bool>" not in proc.stdout
    assert "pyproject.toml with [tool.clvx]); flags override it" in proc.stdout  # not eaten as markup


def test_a_model_file_given_to_model_points_to_saved_model(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "predict", "--model", "m.json"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().endswith("--model names the purchase model now: give a saved model file with --saved-model")


def test_segment_refuses_a_summary_without_total_spend_before_choosing_a_model(runner, tmp_path, monkeypatch):
    import clvx

    summary = tmp_path / "rfm.csv"
    summary.write_text("customer_id,frequency,recency,T,monetary_value\na,2,30,60,10\nb,0,0,40,0\n")
    monkeypatch.setattr(clvx, "purchase_estimator", lambda *a, **k: pytest.fail("a model was fitted first"))
    res = runner.invoke(app, ["segment", str(summary), "--model", "auto", "-q"])
    assert res.exit_code == 2
    assert "segments need each customer's total_spend" in res.stderr

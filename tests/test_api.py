"""The Python API (clvx): the options reach the analysis, results are typed, the README's examples run."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import clvx
from clv.models import BGNBDParams, score_customers
from clv.rfm import collect, rfm_summary


def test_segment_uses_the_clv_horizon_and_discount_it_is_given():
    six_months = clvx.CLVOptions(horizon=clvx.Horizon.parse("6m"), discount_rate=0.2)
    # The named RFM segments: the CLV columns are the same as k-means', without the k search.
    result = clvx.segment(clvx.Source(), clv=six_months, segments=clvx.SegmentOptions(method="rfm"))
    run = result.run
    assert run.horizon.label == "6m" and run.horizon.words == "6 months" and run.discount_rate == 0.2
    tx = result.transactions
    summary = collect(rfm_summary(tx.frame, tx.as_of, run.period))
    expected = score_customers(summary, run.bgnbd, run.gamma_gamma, period_days=run.period.days,
                               horizon=six_months.horizon, annual_discount_rate=0.2)
    got = run.segmentation.assignments.select("customer_id", "clv").join(expected.select("customer_id", pl.col("clv").alias("want")), on="customer_id")
    assert got.height == summary.height
    np.testing.assert_allclose(got["clv"].to_numpy(), got["want"].to_numpy(), rtol=1e-12)


def test_results_carry_their_notices_and_a_listener_hears_them():
    heard = []

    class Recorder(clvx.Silent):
        def notice(self, notice):
            heard.append(notice)

    result = clvx.fit(clvx.Source(), listener=Recorder())
    assert heard[0].text.startswith("No INPUT given: using the bundled sample")
    assert "/" not in heard[0].text  # the same words wherever clvx is installed, as the README shows them
    assert set(result.notices) <= set(heard)
    assert isinstance(result.bgnbd, BGNBDParams) and result.period is clvx.Period.day


@pytest.mark.slow
def test_readme_python_examples_run_as_written():
    """The README's "From Python" section is a doctest: it cannot drift from the API."""
    import doctest
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python")[1:]]
    assert blocks, "the README has no Python example"
    parser = doctest.DocTestParser()
    test = parser.get_doctest("\n".join(blocks), {}, "README: From Python", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 5


def test_errors_name_options_as_flags_on_the_command_line_and_as_settings_in_python(runner, tmp_path):
    from cli import app

    log = tmp_path / "who.csv"
    log.write_text("who,date,amount\na,2024-01-01,1\n")
    with pytest.raises(clvx.InputError) as err:
        clvx.rfm(clvx.Source(input=log))
    assert str(err.value).endswith("no customer column found; name it with columns.customer. Columns: who, date, amount")
    res = runner.invoke(app, ["rfm", str(log)])
    assert res.exit_code == 2
    assert res.stderr.endswith("no customer column found; name it with --customer-col. Columns: who, date, amount\n")


def test_notes_about_the_log_are_notices_readable_from_python(tmp_path):
    log = tmp_path / "ambiguous.csv"
    log.write_text("customer_id,date,amount\n" + "".join(f"{c},0{m}/01/2024,5\n" for c in "AB" for m in range(1, 10)))
    result = clvx.rfm(clvx.Source(input=log))
    (note,) = [n for n in result.notices if "day/month" in n.text]
    assert note.level == "warning" and "(pass columns.date_format to choose)" in note.text and "\x1f" not in note.text


def test_a_segment_document_is_json_that_loads_back_without_standard_errors():
    """Segments fit without the Hessian: the document says null for its standard errors, valid JSON the reader accepts."""
    import json

    from clv.models import models_from_document

    result = clvx.segment(clvx.Source())
    text = json.dumps(result.document(), allow_nan=False)  # raises on a NaN
    doc = json.loads(text)
    assert doc["bgnbd"]["standard_errors"] == {"r": None, "alpha": None, "a": None, "b": None}
    _, purchases, _ = models_from_document(doc, "model.json")
    assert purchases.params == result.run.purchase_model.params

"""Holdout diagnostics on CDNOW and the bundled sample: interval coverage, PIT, the total, tracking, deciles."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

import clvx
from clv.diagnostics import decile_table, pit_table
from clv.rfm import Period, calibration_holdout, collect


@pytest.fixture(scope="module")
def cdnow_weekly(cdnow_csv):
    """Full CDNOW weekly, calibration to 1997-09-30 and holdout to 1998-06-30 (the issue's split), computed once."""
    source = clvx.Source(input=str(cdnow_csv), columns=clvx.ColumnMapping(amount="dollar_value"))
    return clvx.validate(source, calibration_end=dt.date(1997, 9, 30), model=clvx.ModelOptions(period=Period.week),
                         cross_sell=False)


@pytest.fixture(scope="module")
def sample_daily():
    return clvx.validate(clvx.Source(), calibration_end=dt.date(2024, 6, 30), cross_sell=False)


def test_cdnow_weekly_interval_coverage_is_within_two_points_of_implied(cdnow_weekly):
    d = cdnow_weekly.diagnostics
    assert d is not None and d.n_customers == 23_570 and d.draws_method == "covariance"
    gaps = d.coverage["gap"].to_numpy()
    assert np.all(np.abs(gaps) < 0.02), d.coverage
    assert d.pit_max_gap < 0.02


def test_cdnow_weekly_total_interval_misses_the_actual_18440_and_says_so(cdnow_weekly):
    d = cdnow_weekly.diagnostics
    assert d.total.actual == 18_440
    assert not d.total.contains and d.total.high < 18_440
    assert any("above the model's 90% interval" in n.text for n in cdnow_weekly.notices)


def test_sample_intervals_are_calibrated_where_the_truth_is_the_model(sample_daily):
    d = sample_daily.diagnostics
    assert np.all(np.abs(d.coverage["gap"].to_numpy()) < 0.02)
    assert d.pit_max_gap < 0.02


def test_tracking_ends_at_the_calibration_and_holdout_repeat_totals(cdnow_weekly, cdnow_csv):
    d = cdnow_weekly.diagnostics
    bt = cdnow_weekly.backtest
    tracking = d.tracking
    cal = tracking.filter(pl.col("phase") == "calibration")
    hold = tracking.filter(pl.col("phase") == "holdout")
    assert hold["actual"].sum() == bt.model.actual_total  # the same holdout counts as the backtest
    assert tracking["actual_cumulative"][-1] == cal["actual"].sum() + hold["actual"].sum()
    # The model line: a smooth forecast within 5% of the calibration cohort's repeat purchases at the calibration end.
    assert cal["expected_cumulative"][-1] == pytest.approx(cal["actual_cumulative"][-1], rel=0.05)
    assert (tracking["expected"] >= 0).all()


def test_deciles_hold_every_customer_once_ordered_by_forecast():
    predicted = np.linspace(0, 5, 1003)
    table = decile_table(predicted, predicted * 2)
    assert table["n_customers"].sum() == 1003 and table.height == 10
    assert (table["predicted_mean"].diff().drop_nulls() > 0).all()
    np.testing.assert_allclose(table["actual_mean"], table["predicted_mean"] * 2)


def test_pit_table_shares_sum_to_one_over_ten_bins():
    u = np.random.default_rng(0).random(5000)
    table = pit_table(u)
    assert table.height == 10 and table["share"].sum() == pytest.approx(1.0)


def test_validate_cli_shows_the_interval_and_tracking_tables(runner):
    from cli import app

    res = runner.invoke(app, ["validate", "--calibration-end", "2024-06-30", "--no-cross-sell", "-q"])
    assert res.exit_code == 0, res.output
    for title in ("Prediction intervals on the holdout", "Randomised PIT", "Holdout total", "Tracking: cumulative",
                  "Calibration by decile"):
        assert title in res.stdout
    res = runner.invoke(app, ["validate", "--calibration-end", "2024-06-30", "--no-cross-sell", "--no-intervals", "-q"])
    assert res.exit_code == 0 and "Randomised PIT" not in res.stdout


def test_holdout_counts_agree_with_the_split(cdnow_weekly, cdnow_csv):
    source = clvx.Source(input=str(cdnow_csv), columns=clvx.ColumnMapping(amount="dollar_value"))
    tx = clvx.load(source)
    split = collect(calibration_holdout(tx.frame, dt.date(1997, 9, 30), tx.as_of, Period.week))
    assert int(split["frequency_holdout"].sum()) == cdnow_weekly.diagnostics.total.actual

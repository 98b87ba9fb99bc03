"""Holdout backtest: metric definitions, and the model beating naive baselines on the sample."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from clv.backtest import forecast_metrics, holdout_backtest
from clv.load import load_transactions
from clv.rfm import Period
from clv.sample import bundled_sample_path


def test_forecast_metrics_match_their_definitions():
    actual = np.array([0.0, 0.0, 1.0, 3.0])
    predicted = np.array([0.5, 0.0, 1.0, 1.0])
    m = forecast_metrics(actual, predicted)
    assert m.actual_total == 4 and m.predicted_total == 2.5
    assert m.bias == pytest.approx(2.5 / 4 - 1)
    assert m.mae == pytest.approx((0.5 + 0 + 0 + 2) / 4)
    assert m.rmse == pytest.approx(math.sqrt((0.25 + 4) / 4))
    assert m.msle == pytest.approx(np.mean((np.log1p(predicted) - np.log1p(actual)) ** 2))
    assert m.pearson_r == pytest.approx(np.corrcoef(actual, predicted)[0, 1])
    assert math.isnan(forecast_metrics(actual, np.zeros(4)).pearson_r)


@pytest.fixture(scope="module")
def sample_backtest():
    tx = load_transactions(bundled_sample_path())
    return holdout_backtest(tx.frame, dt.date(2024, 6, 30), tx.as_of, Period.day)


def test_model_beats_naive_baselines_on_the_sample(sample_backtest):
    r = sample_backtest
    assert abs(r.model.bias) < 0.10
    for name, base in r.baselines.items():
        assert r.model.rmse < base.rmse, name
        assert r.model.msle < base.msle, name
    assert r.model.pearson_r > r.baselines["calibration_rate"].pearson_r
    assert abs(r.revenue.bias) < abs(r.revenue.baseline_bias)


def test_frequency_table_covers_every_customer(sample_backtest):
    table = sample_backtest.by_frequency
    assert table["frequency_cal"].to_list() == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert table["n_customers"].sum() == sample_backtest.n_customers
    weighted_actual = (table["n_customers"] * table["actual_mean"]).sum()
    assert weighted_actual == pytest.approx(sample_backtest.model.actual_total)


def test_frequency_table_has_every_compared_model_and_each_sums_to_its_own_forecast(sample_backtest):
    """Mean holdout purchases by calibration frequency for each model (FHL 2005's conditional-expectation check)."""
    table = sample_backtest.by_frequency
    compared = [name for name in sample_backtest.models if name != sample_backtest.purchase_model.MODEL]
    assert sorted(compared) == ["mbgnbd", "pareto"]
    for name in compared:
        weighted = (table["n_customers"] * table[f"predicted_mean_{name}"]).sum()
        assert weighted == pytest.approx(sample_backtest.models[name].predicted_total)
    assert (table["predicted_mean_mbgnbd"] - table["predicted_mean"]).abs().max() > 1e-3  # a different model, not a copy

"""BG/NBD and Gamma-Gamma: published CDNOW numbers, lifetimes as oracle, robustness."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from clv import _lifetimes, expectations, likelihood
from clv.errors import InputError, ModelError, NotFittedError
from clv.likelihood import Optimum
from clv.load import load_transactions
from clv.models import (
    BGNBD,
    GammaGamma,
    Horizon,
    cash_flow_days,
    compress,
    discounted_expected_purchases,
    expected_purchases,
    model_document,
    models_from_document,
    score_customers,
)
from clv.rfm import Period, collect, rfm_summary
from clv.sample import bundled_sample_path
from tests.conftest import lifetimes_dataset

ENGINES = ["lifetimes", "numpy"]


@pytest.fixture(scope="module")
def cdnow_summary() -> pl.DataFrame:
    return pl.read_csv(lifetimes_dataset("cdnow_customers_summary.csv")).rename({"ID": "customer_id"})


@pytest.fixture(scope="module")
def cdnow_spend() -> pl.DataFrame:
    return pl.read_csv(lifetimes_dataset("cdnow_customers_summary_with_transactions.csv")).rename(
        {"ID": "customer_id", "x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    )


@pytest.fixture(scope="module")
def sample_summary() -> pl.DataFrame:
    tx = load_transactions(bundled_sample_path())
    return collect(rfm_summary(tx.frame, tx.as_of, Period.day))


def arrays(frame: pl.DataFrame, *cols: str) -> list[np.ndarray]:
    return [frame[c].cast(pl.Float64).to_numpy() for c in cols]


@pytest.mark.parametrize("engine", ENGINES)
def test_bgnbd_matches_fader_hardie_lee_2005_cdnow(cdnow_summary, engine):
    bg = BGNBD(engine=engine).fit(cdnow_summary).params_
    assert bg.engine == engine
    assert (round(bg.r, 3), round(bg.alpha, 3), round(bg.a, 3), round(bg.b, 3)) == (0.243, 4.414, 0.793, 2.426)
    assert round(bg.log_likelihood, 2) == -9582.43
    e = expected_purchases(bg, 39.0, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert round(float(e[0]), 3) == 1.226


@pytest.mark.parametrize("engine", ENGINES)
def test_gamma_gamma_matches_fader_hardie_lee_2005_cdnow(cdnow_spend, engine):
    gg = GammaGamma(engine=engine).fit(cdnow_spend).params_
    assert gg.n_customers == 946
    assert (round(gg.p, 2), round(gg.q, 2)) == (6.25, 3.74)
    assert gg.v == pytest.approx(15.44, abs=0.01)


def test_log_likelihood_is_lifetimes_objective_on_original_scale(cdnow_summary):
    """lifetimes stores a mean on time rescaled by s; the total on the original scale is N * -mean + log(s) * sum(x)."""
    from lifetimes import BetaGeoFitter

    f = BetaGeoFitter().fit(cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    ours = BGNBD(engine="lifetimes").fit(cdnow_summary).params_
    converted = -f._negative_log_likelihood_ * cdnow_summary.height + np.log(f._scale) * cdnow_summary["frequency"].sum()
    assert ours.log_likelihood == pytest.approx(converted, rel=1e-9)


def test_compressed_fit_equals_uncompressed_lifetimes_fit(cdnow_summary, sample_summary):
    for summary in (cdnow_summary, sample_summary):
        x, tx, T = arrays(summary, "frequency", "recency", "T")
        raw = _lifetimes.fit_bgnbd(x, tx, T, np.ones_like(x))
        for engine in ENGINES:
            ours = BGNBD(engine=engine).fit(summary).params_
            assert ours.n_distinct < summary.height
            np.testing.assert_allclose(ours.params, raw.params, rtol=1e-6)
            np.testing.assert_allclose(ours.standard_errors, raw.standard_errors, rtol=1e-6)


def test_numpy_gamma_gamma_equals_lifetimes(sample_summary):
    a = GammaGamma(engine="lifetimes").fit(sample_summary).params_
    b = GammaGamma(engine="numpy").fit(sample_summary).params_
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6)
    np.testing.assert_allclose(a.standard_errors, b.standard_errors, rtol=1e-6)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-9)


@pytest.mark.parametrize("model", ["bgnbd", "gamma_gamma"])
def test_large_fits_start_from_a_sample_and_reach_the_same_optimum(sample_summary, monkeypatch, model):
    """Above WARM_START_CUSTOMERS the fit starts from a fit on a sample: same optimum, far fewer full evaluations."""
    keys = ["frequency", "recency", "T"] if model == "bgnbd" else ["frequency", "monetary_value"]
    data = sample_summary if model == "bgnbd" else sample_summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
    rows = compress(data, keys)
    cols = arrays(rows, *keys)
    weights = rows["weight"].to_numpy() * 100  # the same customers, a hundred times over
    assert weights.sum() >= likelihood.WARM_START_CUSTOMERS
    name = "bgnbd_objective" if model == "bgnbd" else "gamma_gamma_objective"
    original = getattr(likelihood, name)
    full_calls = []

    def counted(p, d, *args):
        if d.weights.sum() == weights.sum():
            full_calls.append(1)
        return original(p, d, *args)

    monkeypatch.setattr(likelihood, name, counted)
    fit = getattr(likelihood, f"fit_{model}")
    warm = fit(*cols, weights)
    n_warm = len(full_calls)
    full_calls.clear()
    point_only = fit(*cols, weights, standard_errors=False)  # no Hessian: two gradients per parameter fewer
    assert point_only.params == warm.params and np.isnan(point_only.standard_errors).all()
    assert len(full_calls) == n_warm - 2 * len(warm.params)
    monkeypatch.setattr(likelihood, "WARM_START_CUSTOMERS", float("inf"))
    full_calls.clear()
    cold = fit(*cols, weights)
    assert warm.converged and cold.converged
    np.testing.assert_allclose(warm.params, cold.params, rtol=1e-5)
    np.testing.assert_allclose(warm.standard_errors, cold.standard_errors, rtol=1e-4)
    assert n_warm <= len(full_calls) // 2  # both include the 2 x n_params gradients of the Hessian


def test_predictions_match_lifetimes(sample_summary):
    bg = BGNBD().fit(sample_summary).params_
    gg = GammaGamma().fit(sample_summary).params_
    x, tx, T, m = arrays(sample_summary, "frequency", "recency", "T", "monetary_value")
    for t in (1.0, 30.0, 365.25):
        np.testing.assert_allclose(expected_purchases(bg, t, x, tx, T), _lifetimes.bgnbd_expected_purchases(bg.params, t, x, tx, T), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(expectations.bgnbd_p_alive(bg.params, x, tx, T), _lifetimes.bgnbd_p_alive(bg.params, x, tx, T), rtol=1e-12)
    np.testing.assert_allclose(expectations.gamma_gamma_expected_average(gg.params, x, m), _lifetimes.gamma_gamma_expected_average(gg.params, x, m), rtol=1e-12)


def test_clv_equals_lifetimes_with_its_30_day_month(sample_summary):
    """With lifetimes' month (30 days) and its monthly rate, our CLV is lifetimes' customer_lifetime_value."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    bg = BGNBD().fit(sample_summary).params_
    gg = GammaGamma().fit(sample_summary).params_
    x, tx, T, m = arrays(sample_summary, "frequency", "recency", "T", "monetary_value")
    monthly = 0.01
    ours = expectations.gamma_gamma_expected_average(gg.params, x, m) * discounted_expected_purchases(
        bg, x, tx, T, horizon_days=12 * 30, annual_discount_rate=(1 + monthly) ** 12 - 1, period_days=1.0, days_per_month=30.0
    )
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series(bg.params, index=["r", "alpha", "a", "b"])
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # set by fit() in lifetimes
    ggf = GammaGammaFitter()
    ggf.params_ = pd.Series(gg.params, index=["p", "q", "v"])
    ref = ggf.customer_lifetime_value(bgf, pd.Series(x), pd.Series(tx), pd.Series(T), pd.Series(m), time=12, discount_rate=monthly, freq="D")
    np.testing.assert_allclose(ours, ref.to_numpy(), rtol=1e-9)


def test_sample_recovers_its_true_parameters(sample_summary):
    truth = json.loads((bundled_sample_path().parent / "truth.json").read_text())
    bg = BGNBD().fit(sample_summary).params_
    for name in ("r", "alpha", "a", "b"):
        assert getattr(bg, name) == pytest.approx(truth["bgnbd_per_day"][name], rel=0.15), name
    gg = GammaGamma().fit(sample_summary).params_
    t = truth["gamma_gamma"]
    assert gg.population_mean == pytest.approx(t["p"] * t["v"] / (t["q"] - 1), rel=0.05)


def test_score_customers_columns_and_values(sample_summary):
    bg = BGNBD().fit(sample_summary).params_
    gg = GammaGamma().fit(sample_summary).params_
    scored = score_customers(sample_summary, bg, gg, period_days=1.0, horizon=Horizon.parse("12m"))
    assert scored.height == sample_summary.height
    assert scored["customer_id"].equals(sample_summary["customer_id"])
    assert ((scored["p_alive"] > 0) & (scored["p_alive"] <= 1)).all()
    assert (scored.filter(pl.col("frequency") == 0)["p_alive"] == 1).all()
    assert (scored["clv"] >= 0).all() and (scored["expected_purchases"] >= 0).all()
    one_timers = scored.filter(pl.col("frequency") == 0)["expected_avg_value"]
    assert np.allclose(one_timers.to_numpy(), gg.population_mean)


def test_extreme_frequencies_give_finite_predictions(sample_summary):
    bg = BGNBD().fit(sample_summary).params_
    x = np.array([0.0, 500.0, 5000.0, 5000.0])
    tx = np.array([0.0, 700.0, 729.0, 100.0])
    T = np.array([730.0, 730.0, 730.0, 730.0])
    for t in (30.0, 365.0):
        e = expected_purchases(bg, t, x, tx, T)
        assert np.all(np.isfinite(e)) and np.all(e >= 0)
    assert expected_purchases(bg, 365.0, x, tx, T)[3] < 1e-6  # long silent after heavy buying: gone


def test_cash_flow_days_and_horizons():
    assert Horizon.parse("12m").days == pytest.approx(365.25)
    assert Horizon.parse("39w").days == 273 and Horizon.parse("90d").days == 90
    np.testing.assert_allclose(cash_flow_days(365.25), np.arange(1, 13) * 365.25 / 12)
    np.testing.assert_allclose(cash_flow_days(45.0), [365.25 / 12, 45.0])
    with pytest.raises(InputError, match="not a duration"):
        Horizon.parse("soon")


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({"frequency": [1], "recency": [3], "T": [5], "monetary_value": [1.0]}, "at least 10 customers"),
        ({"frequency": [0] * 20, "recency": [0] * 20, "T": [5] * 20, "monetary_value": [0.0] * 20}, "no customer made a repeat purchase"),
        ({"frequency": [0] * 20, "recency": [0] * 20, "T": [0] * 20, "monetary_value": [0.0] * 20}, "no customer made a repeat purchase"),
    ],
)
def test_degenerate_data_gives_a_clear_error(summary, message):
    with pytest.raises(ModelError, match=message):
        BGNBD().fit(pl.DataFrame(summary))


def test_gamma_gamma_needs_positive_repeat_spend():
    summary = pl.DataFrame({"frequency": [2] * 20, "recency": [5] * 20, "T": [9] * 20, "monetary_value": [0.0] * 20})
    with pytest.raises(ModelError, match="positive spend"):
        GammaGamma().fit(summary)


def test_failed_fit_retries_from_the_next_start_then_explains(sample_summary, monkeypatch):
    real = likelihood.fit_bgnbd
    calls = []

    def flaky(*args, **kwargs):
        calls.append(kwargs["initial_log_params"])
        if len(calls) == 1:
            return Optimum((np.nan,) * 4, (np.nan,) * 4, False, "precision loss")
        return real(*args, **kwargs)

    monkeypatch.setattr(likelihood, "fit_bgnbd", flaky)
    bg = BGNBD(engine="numpy").fit(sample_summary).params_
    assert bg.n_starts == 2 and bg.converged

    failing = lambda *a, **k: Optimum((1.0,) * 4, (1.0,) * 4, False, "precision loss")  # noqa: E731
    monkeypatch.setattr(likelihood, "fit_bgnbd", failing)
    rescued = BGNBD(engine="numpy").fit(sample_summary).params_
    assert rescued.engine == "lifetimes" and rescued.converged  # the other engine before giving up

    monkeypatch.setattr(_lifetimes, "fit_bgnbd", failing)
    with pytest.raises(ModelError, match="did not converge from 5 starting points with either engine.*coarser period"):
        BGNBD(engine="numpy").fit(sample_summary)


def test_stuck_at_start_counts_as_failure(sample_summary, monkeypatch):
    start = np.exp(likelihood.LIFETIMES_DEFAULT_START)
    x, _, T = arrays(sample_summary, "frequency", "recency", "T")
    stuck = Optimum((start, start / (1.0 / T.max()), start, start), (0.1,) * 4, True, "ok")
    real = likelihood.fit_bgnbd
    monkeypatch.setattr(likelihood, "fit_bgnbd", lambda *a, **k: stuck if k["initial_log_params"] is None else real(*a, **k))
    assert BGNBD(engine="numpy").fit(sample_summary).params_.n_starts == 2


def test_model_document_round_trip(sample_summary):
    bg = BGNBD().fit(sample_summary).params_
    gg = GammaGamma().fit(sample_summary).params_
    doc = json.loads(json.dumps(model_document(bg, gg, period="day", clvx_version="test")))
    period, bg2, gg2 = models_from_document(doc, "m.json")
    assert (period, bg2, gg2) == ("day", bg, gg)
    doc["bgnbd"]["r"] = -1
    with pytest.raises(InputError, match="field 'bgnbd.r' is -1, but it must be a positive number"):
        models_from_document(doc, "m.json")
    with pytest.raises(InputError, match="not a clvx model file"):
        models_from_document({"hello": 1}, "m.json")


def test_estimators_follow_the_sklearn_contract():
    est = BGNBD(penalizer=0.01)
    assert est.penalizer == 0.01 and not hasattr(est, "params_")
    with pytest.raises(InputError, match="engine 'spark'"):
        BGNBD(engine="spark").fit(pl.DataFrame({"frequency": list(range(12)), "recency": list(range(12)), "T": [20] * 12}))
    assert issubclass(NotFittedError, ModelError)
    with pytest.raises(NotFittedError, match="BGNBD model is not fitted yet"):
        est.params_
    with pytest.raises(NotFittedError, match="GammaGamma model is not fitted yet"):
        GammaGamma().params_


def test_estimators_have_keyword_settings_a_repr_a_summary_and_predictions(sample_summary):
    """scikit-learn's conventions (sklearn/base.py, utils/validation.py), lifetimes' summary table."""
    from clv.models import check_is_fitted

    with pytest.raises(TypeError):
        BGNBD(0.01)  # settings are keyword-only
    assert repr(BGNBD()) == "BGNBD()" and repr(BGNBD(penalizer=0.01, engine="numpy")) == "BGNBD(penalizer=0.01, engine='numpy')"
    assert BGNBD(tol=1e-6).get_params() == {"penalizer": 0.0, "tol": 1e-6, "engine": "auto", "standard_errors": True}
    est = BGNBD()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):
        est.p_alive(sample_summary)
    assert est.fit(sample_summary) is est and check_is_fitted(est) is est.params_
    table = est.summary()
    assert table["parameter"].to_list() == ["r", "alpha", "a", "b"]
    assert (table["lower_95"] < table["estimate"]).all() and (table["estimate"] < table["upper_95"]).all()
    assert (table["lower_95"] > 0).all()  # log-scale intervals never go below zero
    x, tx, T = arrays(sample_summary, "frequency", "recency", "T")
    np.testing.assert_array_equal(est.conditional_expected_purchases(sample_summary, 30.0), expected_purchases(est.params_, 30.0, x, tx, T))
    np.testing.assert_array_equal(est.p_alive(sample_summary), expectations.bgnbd_p_alive(est.params_.params, x, tx, T))
    gg = GammaGamma().fit(sample_summary)
    assert gg.summary()["parameter"].to_list() == ["p", "q", "v"]
    m = sample_summary["monetary_value"].to_numpy()
    np.testing.assert_allclose(gg.conditional_expected_average_value(sample_summary),
                               expectations.gamma_gamma_expected_average(gg.params_.params, x, np.maximum(m, 0)))

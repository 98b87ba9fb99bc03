"""What the models do at the edges: flat spend, improper maxima, corrupt saved models, absurd horizons, thin data."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from clv import _lifetimes, likelihood
from clv.errors import InputError, ModelError
from clv.likelihood import Optimum
from clv.load import load_transactions
from clv.models import (
    BGNBD,
    MAX_HORIZON_YEARS,
    MIN_RELIABLE_CUSTOMERS,
    MIN_RELIABLE_HISTORY_DAYS,
    BGNBDParams,
    GammaGamma,
    Horizon,
    cash_flow_days,
    data_warnings,
    expected_average_value,
    model_document,
    models_from_document,
    score_customers,
)
from clv.rfm import Period, collect, rfm_summary
from clv.sample import bundled_sample_path
from present.output import to_json
from tests.conftest import ONLINE_RETAIL, requires_retail


@pytest.fixture(scope="module")
def sample_summary() -> pl.DataFrame:
    tx = load_transactions(bundled_sample_path())
    return collect(rfm_summary(tx.frame, tx.as_of, Period.day))


@pytest.fixture(scope="module")
def fitted(sample_summary):
    return BGNBD().fit(sample_summary).params_, GammaGamma().fit(sample_summary).params_


def spend_summary(monetary_value: np.ndarray, frequency: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"frequency": frequency, "recency": frequency, "T": frequency + 5, "monetary_value": monetary_value})


# --------------------------------------------------------------------------- flat spend


@pytest.mark.parametrize("engine", ["lifetimes", "numpy"])
def test_uniform_prices_give_the_observed_mean_instead_of_failing(engine):
    summary = spend_summary(np.full(200, 9.99), np.arange(200) % 7 + 1)
    gg = GammaGamma(engine=engine).fit(summary).params_
    assert gg.spend_model == "observed mean" and gg.observed_mean == pytest.approx(9.99)
    assert gg.population_mean == pytest.approx(9.99) and not gg.converged and gg.n_starts == 0
    assert gg.note.startswith("spend per purchase barely varies (coefficient of variation 0.00% across 200 repeat customers, under 2%)")
    assert gg.note.endswith("expected spend is the observed mean, 9.99 per purchase, for every customer")
    x = summary["frequency"].cast(pl.Float64).to_numpy()
    np.testing.assert_allclose(expected_average_value(gg, x, summary["monetary_value"].to_numpy()), 9.99)


@pytest.mark.parametrize("engine", ["lifetimes", "numpy"])
def test_spend_with_no_customer_heterogeneity_falls_back_when_the_fit_fails(engine):
    """Every purchase 9.99 x 1-3 items: spend varies within customers only, so q runs to infinity."""
    rng = np.random.default_rng(2)
    freq = rng.integers(1, 10, 2000)
    spend = np.array([(9.99 * rng.integers(1, 4, f)).mean() for f in freq])
    gg = GammaGamma(engine=engine).fit(spend_summary(spend, freq)).params_
    assert gg.spend_model == "observed mean" and gg.observed_mean == pytest.approx(spend.mean())
    # Where BFGS gives up on the ridge q, v -> infinity depends on the CPU's floating point: it fails to converge, or
    # stops far out on the ridge; both are the same answer.
    assert gg.note.startswith(("Gamma-Gamma did not converge from 4 starting points", "Gamma-Gamma has no interior maximum (q runs to infinity"))
    assert "and spend per purchase varies little (coefficient of variation 22.9%, under 25%)" in gg.note


def test_varied_spend_that_cannot_be_fitted_still_fails(sample_summary, monkeypatch):
    failing = lambda *a, **k: Optimum((math.nan,) * 3, (math.nan,) * 3, False, "precision loss")  # noqa: E731
    monkeypatch.setattr(likelihood, "fit_gamma_gamma", failing)
    assert GammaGamma(engine="numpy").fit(sample_summary).params_.engine == "lifetimes"  # the other engine first
    monkeypatch.setattr(_lifetimes, "fit_gamma_gamma", failing)
    with pytest.raises(ModelError, match=r"Gamma-Gamma did not converge from 4 starting points with either engine \(precision loss\)"):
        GammaGamma(engine="numpy").fit(sample_summary)


def test_observed_mean_model_scores_and_round_trips_through_json(fitted, sample_summary):
    bg, _ = fitted
    flat = sample_summary.with_columns(pl.when(pl.col("frequency") > 0).then(20.0).otherwise(0.0).alias("monetary_value"))
    gg = GammaGamma().fit(flat).params_
    scored = score_customers(flat, bg, gg, period_days=1.0, horizon=Horizon.parse("12m"))
    assert (scored["expected_avg_value"] == 20.0).all() and scored["clv"].is_finite().all()
    text = to_json(model_document(bg, gg, period="day", clvx_version="test"))
    period, bg2, gg2 = models_from_document(json.loads(text), "m.json")
    assert period == "day" and bg2 == bg
    assert gg2.observed_mean == 20.0 and gg2.note == gg.note and math.isnan(gg2.p)
    assert to_json(gg2.to_dict()) == to_json(gg.to_dict())


# --------------------------------------------------------------------------- convergence, identification, intervals


def test_fit_at_an_improper_maximum_is_not_converged(sample_summary, monkeypatch):
    real = likelihood.fit_bgnbd

    def flat(*args, **kwargs):
        fit = real(*args, **kwargs)
        return Optimum(fit.params, (math.nan,) * 4, True, "ok", hessian_positive_definite=False)

    monkeypatch.setattr(likelihood, "fit_bgnbd", flat)
    monkeypatch.setattr(_lifetimes, "fit_bgnbd", flat)  # both engines see only the improper maximum
    bg = BGNBD(engine="numpy").fit(sample_summary).params_
    assert not bg.converged and bg.n_starts == 2  # a second start on the same flat ridge ends the search


def test_a_start_with_a_proper_maximum_is_preferred(sample_summary, monkeypatch):
    real = likelihood.fit_bgnbd
    calls = []

    def first_flat(*args, **kwargs):
        fit = real(*args, **kwargs)
        calls.append(1)
        return fit if len(calls) > 1 else Optimum(fit.params, fit.standard_errors, True, "ok", hessian_positive_definite=False)

    monkeypatch.setattr(likelihood, "fit_bgnbd", first_flat)
    bg = BGNBD(engine="numpy").fit(sample_summary).params_
    assert bg.converged and bg.n_starts == 2



def _stalling(real, move_b):
    """``fit_bgnbd`` whose every start stops with scipy's precision-loss message at the real optimum, b multiplied by ``move_b``."""
    calls = []

    def stalled(*args, **kwargs):
        fit = real(*args, **kwargs)
        calls.append(1)
        r, alpha, a, b = fit.params
        return Optimum((r, alpha, a, b * move_b), (math.nan,) * 4, False,
                       "Desired error not necessarily achieved due to precision loss.", hessian_positive_definite=False)

    return stalled


def _on_a_ridge(monkeypatch, log_likelihood):
    """Every start of both engines stalls at a different b (1.01, 1.02, ... times the optimum's), with the given log-likelihood of b."""
    real, spread = likelihood.fit_bgnbd, iter(1.0 + 0.01 * np.arange(1, 20))
    monkeypatch.setattr(likelihood, "fit_bgnbd", lambda *a, **k: _stalling(real, next(spread))(*a, **k))
    monkeypatch.setattr(_lifetimes, "fit_bgnbd", lambda *a, **k: _stalling(real, next(spread))(*a, **k))
    monkeypatch.setattr(BGNBD, "_log_likelihood", classmethod(lambda cls, params, *rest: log_likelihood(params[3])))


def test_starts_that_all_stall_at_one_log_likelihood_are_the_flat_ridge_answer(sample_summary, monkeypatch):
    """As on the UCI retail log to 2011-08-21 (scipy's BFGS; a -> 0 and b -> inf, no dropout): every start stops with
    precision loss at another point of the ridge, all at one log-likelihood; that supremum is the data's answer,
    reported as no proper maximum, rather than no fit at all."""
    optimum = BGNBD(engine="numpy").fit(sample_summary).params_
    _on_a_ridge(monkeypatch, lambda b: -1000.0)
    bg = BGNBD(engine="numpy").fit(sample_summary).params_
    assert not bg.converged and bg.n_starts == 2 * len(BGNBD.STARTS) and bg.engine == "numpy"
    assert bg.r == pytest.approx(optimum.r, rel=1e-6) and bg.b == pytest.approx(optimum.b * 1.01, rel=1e-6)  # the first of the best


def test_starts_that_stall_at_different_log_likelihoods_are_no_fit(sample_summary, monkeypatch):
    _on_a_ridge(monkeypatch, lambda b: -1000.0 - b)
    with pytest.raises(ModelError, match="did not converge"):
        BGNBD(engine="numpy").fit(sample_summary)

@pytest.mark.parametrize("engine", ["lifetimes", "numpy"])
def test_real_fits_are_proper_maxima(fitted, sample_summary, engine):
    bg = BGNBD(engine=engine).fit(sample_summary).params_
    gg = GammaGamma(engine=engine).fit(sample_summary).params_
    assert bg.converged and gg.converged
    assert all(np.isfinite(bg.standard_errors)) and all(np.isfinite(gg.standard_errors))


def test_a_flat_direction_has_no_positive_definite_hessian():
    flat_in_second = lambda p: (float(p[0] ** 2), np.array([2 * p[0], 0.0]))  # noqa: E731
    _, ok, _, ses, definite = likelihood._optimise(flat_in_second, np.array([1.0, 0.3]), 1.0, 1e-9)
    assert ok and definite is False and all(math.isnan(s) for s in ses)


def test_intervals_are_on_the_log_scale_and_wide_errors_are_flagged():
    bg = BGNBDParams(0.5, 10.0, 0.2, 3.0, log_likelihood=-1.0, n_customers=100, n_distinct=50, converged=True,
                     standard_errors=(0.05, 1.0, 0.4, math.nan))
    lo, hi = bg.intervals()["a"]
    assert 0 < lo < 0.2 < hi
    assert lo * hi == pytest.approx(0.2**2)  # symmetric on the log scale
    assert lo == pytest.approx(0.2 * math.exp(-1.959963984540054 * 2.0))
    assert bg.poorly_identified == ("a",)
    assert all(math.isnan(v) for v in bg.intervals()["b"])
    assert bg.to_dict()["poorly_identified"] == ["a"]


# --------------------------------------------------------------------------- saved models


def _doc(fitted) -> dict:
    bg, gg = fitted
    return json.loads(to_json(model_document(bg, gg, period="day", clvx_version="test")))


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("bgnbd", "r", True, "field 'bgnbd.r' is true, but it must be a number"),
        ("bgnbd", "r", 10**400, "field 'bgnbd.r' is an integer of about 401 digits, but it must be a number"),
        ("bgnbd", "alpha", _nested(100_000), "field 'bgnbd.alpha' is a list, but it must be a number"),
        ("bgnbd", "a", 1e308, "field 'bgnbd.a' is 1e\\+308, but it must be a positive number up to 1e\\+10"),
        ("bgnbd", "b", 0, "field 'bgnbd.b' is 0, but it must be a positive number"),
        ("bgnbd", "b", -2.5, "field 'bgnbd.b' is -2.5, but it must be a positive number"),
        ("gamma_gamma", "p", float("nan"), "field 'gamma_gamma.p' is nan, but it must be a positive number"),
        ("gamma_gamma", "v", float("inf"), "field 'gamma_gamma.v' is inf, but it must be a positive number"),
        ("gamma_gamma", "q", 0.5, "field 'gamma_gamma.q' is 0.5, but it must be above 1"),
        ("bgnbd", "n_customers", 1.5, "field 'bgnbd.n_customers' is 1.5, but it must be a whole number"),
        ("bgnbd", "converged", 1, "field 'bgnbd.converged' is 1, but it must be true or false"),
        ("bgnbd", "engine", "spark", "field 'bgnbd.engine' is 'spark', but it must be one of lifetimes, numpy"),
        ("gamma_gamma", "standard_errors", [1, 2, 3], "field 'gamma_gamma.standard_errors' is a list, but it must be an object"),
        (None, "period", "fortnight", "field 'period' is 'fortnight', but it must be one of day, week, month"),
        (None, "bgnbd", "r=1", "field 'bgnbd' is 'r=1', but it must be an object"),
        (None, "format_version", True, "field 'format_version' is true, but it must be a whole number from 1 to 3"),
    ],
)
def test_each_corrupt_field_is_one_clear_error(fitted, section, key, value, message):
    doc = _doc(fitted)
    (doc[section] if section else doc)[key] = value
    with pytest.raises(InputError, match=f"^m.json: {message}.*; fit and save the model again with clvx fit --save$"):
        models_from_document(doc, "m.json")


def test_a_missing_field_and_a_newer_format_say_what_to_do(fitted):
    doc = _doc(fitted)
    del doc["gamma_gamma"]["q"]
    with pytest.raises(InputError, match="^m.json: field 'gamma_gamma.q' is missing; fit and save the model again"):
        models_from_document(doc, "m.json")
    doc = _doc(fitted)
    doc["format_version"] = 4
    with pytest.raises(InputError, match=r"^m.json was saved by a newer clvx \(format_version 4; this one reads up to 3\); upgrade clvx, or fit"):
        models_from_document(doc, "m.json")


def test_version_1_files_still_load(fitted):
    doc = _doc(fitted)
    doc["format_version"] = 1
    for section in ("bgnbd", "gamma_gamma"):
        doc[section].pop("poorly_identified")
    doc["gamma_gamma"].pop("observed_mean")
    doc["gamma_gamma"].pop("note")
    _, bg, gg = models_from_document(doc, "m.json")
    assert bg == fitted[0] and gg == fitted[1]


# --------------------------------------------------------------------------- horizons and settings


@pytest.mark.parametrize("text", ["99999999y", "101y", "1201m", "36526d"])
def test_horizons_beyond_a_century_are_refused(text):
    with pytest.raises(InputError, match=f"^horizon '{text}' is longer than 100 years; give one from 1 day to 100 years"):
        Horizon.parse(text)


def test_horizon_range_ends_and_schedule_size():
    assert Horizon.parse(f"{MAX_HORIZON_YEARS}y").days == pytest.approx(36525)
    assert len(cash_flow_days(Horizon.parse("100y").days)) == 1200
    with pytest.raises(InputError, match="shorter than 1 day"):
        Horizon.parse("0.5d")
    with pytest.raises(InputError, match=r"^horizon '9{20}\.\.\.' is not a duration"):
        Horizon.parse("9" * 5000 + "y")
    with pytest.raises(InputError, match="longer than 100 years"):
        cash_flow_days(1e15)


def test_score_and_fit_settings_are_bounded(fitted, sample_summary):
    bg, gg = fitted
    with pytest.raises(InputError, match="longer than 100 years"):
        score_customers(sample_summary, bg, gg, period_days=1.0, horizon=Horizon(days=1e12, label="huge"))
    with pytest.raises(InputError, match="annual discount rate -2 must be between 0 and 1"):
        score_customers(sample_summary, bg, gg, period_days=1.0, horizon=Horizon.parse("12m"), annual_discount_rate=-2)
    with pytest.raises(InputError, match="penalizer = -1 must be between 0 and 1000"):
        BGNBD(penalizer=-1).fit(sample_summary)
    with pytest.raises(InputError, match="tol = 0 must be between 0 and 1"):
        GammaGamma(tol=0).fit(sample_summary)


# --------------------------------------------------------------------------- minimum data


def test_thin_data_gets_typed_warnings_with_reasons():
    small = pl.DataFrame({"frequency": [1] * 120, "recency": [3] * 120, "T": [9] * 120})
    warnings = data_warnings(small, history_days=90)
    assert [w.code for w in warnings] == ["few_customers", "short_history"]
    assert warnings[0].value == 120 and warnings[0].threshold == MIN_RELIABLE_CUSTOMERS
    assert warnings[0].message.startswith("only 120 customers (under 500): the model's parameters are loosely determined")
    assert warnings[1].message.startswith("only 90 days of history (under 180): too few customers have had time to leave")
    enough = pl.DataFrame({"frequency": [1] * MIN_RELIABLE_CUSTOMERS})
    assert data_warnings(enough, history_days=MIN_RELIABLE_HISTORY_DAYS) == ()


def test_an_improper_maximum_on_a_small_log_takes_the_other_engines_proper_one(sample_summary, monkeypatch):
    """The numpy engine made to stop where the Hessian is not positive definite: on a log of at most
    ``IMPROPER_REFIT_MAX_ROWS`` distinct rows lifetimes' fitters are tried and their proper maximum is the answer;
    on a larger one the converged numpy fit stands, reported as no proper maximum."""
    real = likelihood.fit_bgnbd

    def improper(*args, **kwargs):
        fit = real(*args, **kwargs)
        return Optimum(fit.params, (math.nan,) * 4, True, "ok", hessian_positive_definite=False)

    monkeypatch.setattr(likelihood, "fit_bgnbd", improper)
    fitted = BGNBD(engine="numpy").fit(sample_summary).params_
    assert (fitted.engine, fitted.converged) == ("lifetimes", True)
    assert fitted.params == BGNBD(engine="lifetimes").fit(sample_summary).params_.params
    monkeypatch.setattr(BGNBD, "IMPROPER_REFIT_MAX_ROWS", 0)
    kept = BGNBD(engine="numpy").fit(sample_summary).params_
    assert (kept.engine, kept.converged) == ("numpy", False)


@requires_retail
def test_the_flat_ridge_of_a_small_log_tries_both_engines_uci_retail_ridge():
    """The UCI retail log split at 2011-09-01 has BG/NBD's flat ridge (almost nobody leaves: a -> 0, b -> inf): the
    numpy engine stops where the Hessian is not positive definite. lifetimes' fitters are tried too; whether they
    stop at a proper maximum depends on the scipy release (yes with some, on the same ridge with 1.17), so the
    answer is theirs when they do and the numpy fit, reported as no proper maximum, when they do not. Without
    standard errors no Hessian is asked for and the numpy fit stands (no lifetimes import for segments)."""
    import datetime as dt

    from clv.load import ColumnMapping
    from clv.rfm import calibration_holdout

    mapping = ColumnMapping(customer="customer_id", date="invoice_date", price="price", quantity="quantity", order="invoice")
    tx = load_transactions(ONLINE_RETAIL, mapping)
    cal = collect(calibration_holdout(tx.frame, dt.date(2011, 9, 1), tx.as_of))
    summary = cal.select("customer_id", *(pl.col(f"{c}_cal").alias(c) for c in ("frequency", "recency", "T")))
    numpy_only = likelihood.fit_bgnbd(*(summary[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T")),
                                      np.ones(summary.height), penalizer=0.0, tol=1e-7)
    assert numpy_only.hessian_positive_definite is False  # the case under test: the numpy engine's own stopping point
    fitted = BGNBD().fit(summary).params_
    reference = BGNBD(engine="lifetimes").fit(summary).params_
    if reference.converged:
        assert (fitted.engine, fitted.converged, fitted.params) == ("lifetimes", True, reference.params)
    else:
        assert (fitted.engine, fitted.converged, reference.engine) == ("numpy", False, "lifetimes")
        assert fitted.log_likelihood == pytest.approx(reference.log_likelihood, abs=1e-6)  # one ridge, one supremum
    assert BGNBD(standard_errors=False).fit(summary).params_.engine == "numpy"

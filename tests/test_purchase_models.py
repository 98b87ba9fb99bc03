"""MBG/NBD and Pareto/NBD: published CDNOW numbers, lifetimes as oracle, churn from the closed forms."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from clv import _lifetimes, expectations, likelihood
from clv.errors import NotFittedError
from clv.models import (
    BGNBD,
    MBGNBD,
    BGNBDParams,
    ParetoNBD,
    ParetoNBDParams,
    churn_risk,
    model_document,
    models_from_document,
)
from tests.conftest import lifetimes_dataset

ENGINES = ["lifetimes", "numpy"]


@pytest.fixture(scope="module")
def cdnow_summary() -> pl.DataFrame:
    return pl.read_csv(lifetimes_dataset("cdnow_customers_summary.csv")).rename({"ID": "customer_id"})


@pytest.fixture(scope="module")
def pareto_fits(cdnow_summary):
    return {engine: ParetoNBD(engine=engine).fit(cdnow_summary) for engine in ENGINES}


@pytest.fixture(scope="module")
def mbgnbd_fits(cdnow_summary):
    return {engine: MBGNBD(engine=engine).fit(cdnow_summary) for engine in ENGINES}


def columns(frame: pl.DataFrame, *names: str) -> list[np.ndarray]:
    return [frame[n].cast(pl.Float64).to_numpy() for n in names]


@pytest.mark.parametrize("engine", ENGINES)
def test_pareto_nbd_matches_fader_hardie_lee_2005_cdnow(pareto_fits, engine):
    p = pareto_fits[engine].params_
    assert isinstance(p, ParetoNBDParams) and p.converged and p.engine == engine
    assert (round(p.r, 3), round(p.alpha, 2), round(p.s, 3)) == (0.553, 10.58, 0.606)
    assert 11.5 < p.beta < 11.85  # weakly identified: the likelihood is flat along beta
    assert p.log_likelihood == pytest.approx(-9594.976, abs=0.005)  # CLVTools -9594.976, the paper -9,594.98


@pytest.mark.parametrize("engine", ENGINES)
def test_mbgnbd_matches_lifetimes_and_an_independent_implementation_cdnow(mbgnbd_fits, engine):
    p = mbgnbd_fits[engine].params_
    assert p.converged and p.engine == engine
    assert (round(p.r, 4), round(p.alpha, 3), round(p.a, 4), round(p.b, 3)) == (0.5248, 6.183, 0.8914, 1.614)
    assert round(p.log_likelihood, 2) == -9582.13 or round(p.log_likelihood, 2) == -9582.14


PARETO_POINTS = [(0.553, 10.58, 0.606, 11.67), (0.5, 0.3, 5.0, 0.6), (3.0, 60.0, 0.1, 1500.0), (0.2, 0.04, 0.3, 0.02)]


def _rows(frame: pl.DataFrame) -> likelihood.RowData:
    x, tx, T = columns(frame, "frequency", "recency", "T")
    return likelihood.RowData.build(x, tx, T, np.ones_like(x), scale=1.0 / float(T.max()))


@pytest.mark.parametrize("params", PARETO_POINTS)
def test_pareto_nbd_piecewise_integral_equals_the_2f1_closed_form_of_fader_hardie_note_009(cdnow_summary, params):
    """The fast objective integrates A_0 piece by piece; the closed form (eq. 18-20) is its oracle,
    and central differences of the closed form check the analytic gradient."""
    d = _rows(cdnow_summary)
    r, alpha, s, beta = params
    log_params = np.log([r, alpha * d.scale, s, beta * d.scale])
    value, grad = likelihood.pareto_grid_objective(log_params, d)
    closed = likelihood._pareto_value(log_params, d, 0.0)
    step = 1e-6
    numeric = [(likelihood._pareto_value(log_params + step * e, d, 0.0) - likelihood._pareto_value(log_params - step * e, d, 0.0)) / (2 * step)
               for e in np.eye(4)]
    assert value == pytest.approx(closed, rel=1e-12)
    np.testing.assert_allclose(grad, numeric, atol=1e-7)


def test_pareto_nbd_piecewise_integral_holds_for_heavy_buyers_whose_terms_underflow():
    """x = 400 bought over a long history: each piece underflows a float, the sums in logs must not."""
    x = np.array([0.0, 1.0, 400.0, 400.0, 3.0])
    tx = np.array([0.0, 2.0, 300.0, 710.0, 700.0])
    T = np.array([730.0, 730.0, 730.0, 730.0, 700.0])
    d = likelihood.RowData.build(x, tx, T, np.ones_like(x), scale=1 / 730)
    log_params = np.log([0.55, 10.0 / 730, 0.6, 12.0 / 730])
    value, grad = likelihood.pareto_grid_objective(log_params, d)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(likelihood._pareto_value(log_params, d, 0.0), rel=1e-10)  # the 2F1 closed form
    # the same rows one at a time: the grid of one row is its own [t_x, T]
    singles = [likelihood.pareto_grid_objective(log_params, likelihood.RowData.build(x[i:i + 1], tx[i:i + 1], T[i:i + 1], np.ones(1), scale=1 / 730))[0]
               for i in range(len(x))]
    assert value == pytest.approx(np.mean(singles), rel=1e-12)


def test_pareto_nbd_fit_falls_back_to_the_closed_form_on_a_fine_time_grid(cdnow_summary, monkeypatch):
    x, tx, T = columns(cdnow_summary, "frequency", "recency", "T")
    fast = likelihood.fit_pareto(x, tx, T, np.ones_like(x))
    monkeypatch.setattr(likelihood, "PARETO_MAX_CELLS", 0)
    slow = likelihood.fit_pareto(x, tx, T, np.ones_like(x))
    assert fast.converged and slow.converged
    np.testing.assert_allclose(fast.params[:3], slow.params[:3], rtol=1e-5)  # beta is weakly identified (see above)


def test_pareto_nbd_conditional_expectation_and_p_alive_match_btyd_walkthrough():
    params = (0.55315, 10.57633, 0.60625, 11.67150)  # the CDNOW fit (CLVTools)
    x, tx, T = np.array([26.0]), np.array([30.86]), np.array([31.0])
    expected = expectations.pareto_unconditional_part(params, 52.0, x, T) * expectations.pareto_p_alive(params, x, tx, T)
    assert expected[0] == pytest.approx(25.45647, abs=1e-3)
    assert expectations.pareto_p_alive(params, x, tx, T)[0] == pytest.approx(0.997874, abs=1e-4)


@pytest.mark.parametrize("params", [(0.553, 10.58, 0.606, 11.67), (0.8, 20.0, 1.4, 3.0), (0.3, 2.0, 1.2, 30.0)])
def test_pareto_nbd_predictions_match_lifetimes_oracle(cdnow_summary, params):
    """Both branches of A_0 (alpha >= beta and alpha < beta), against lifetimes on CDNOW."""
    x, tx, T = columns(cdnow_summary, "frequency", "recency", "T")
    model = ParetoNBDParams(*params, log_likelihood=0.0, n_customers=1, n_distinct=1, converged=True, standard_errors=(0.0,) * 4)
    np.testing.assert_allclose(model.p_alive(x, tx, T), _lifetimes.p_alive("pareto", params, x, tx, T), rtol=1e-9)
    from clv.models import expected_purchases

    np.testing.assert_allclose(expected_purchases(model, 39.0, x, tx, T),
                               _lifetimes.expected_purchases("pareto", params, 39.0, x, tx, T), rtol=1e-8)
    ll = likelihood.pareto_log_likelihood(params, x, tx, T)
    from lifetimes import ParetoNBDFitter

    assert ll == pytest.approx(float(np.sum(ParetoNBDFitter._conditional_log_likelihood(params, x, tx, T))), rel=1e-10)


def test_pareto_nbd_expectation_is_continuous_at_s_equal_1():
    """lifetimes divides 0 by 0 at s = 1 (NaN); the closed form's limit is log((beta+T+t)/(beta+T))."""
    x, T = np.array([0.0, 5.0]), np.array([30.0, 40.0])
    at = expectations.pareto_unconditional_part((0.3, 2.0, 1.0, 30.0), 39.0, x, T)
    near = [expectations.pareto_unconditional_part((0.3, 2.0, 1.0 + d, 30.0), 39.0, x, T) for d in (-1e-6, 1e-6)]
    np.testing.assert_allclose(at, (near[0] + near[1]) / 2, rtol=1e-6)
    assert np.all(np.isfinite(at))


def test_mbgnbd_predictions_match_lifetimes_oracle(cdnow_summary, mbgnbd_fits):
    x, tx, T = columns(cdnow_summary, "frequency", "recency", "T")
    est = mbgnbd_fits["numpy"]
    p = est.params_.params
    np.testing.assert_allclose(est.p_alive(cdnow_summary), _lifetimes.p_alive("mbgnbd", p, x, tx, T), rtol=1e-10)
    np.testing.assert_allclose(est.conditional_expected_purchases(cdnow_summary, 52.0),
                               _lifetimes.expected_purchases("mbgnbd", p, 52.0, x, tx, T), rtol=1e-9)


def test_pareto_nbd_churn_matches_lifetimes_probability_of_no_purchase(cdnow_summary):
    """P(X(t) = 0 | history), our closed form against lifetimes' sum-of-terms expression."""
    rows = cdnow_summary.sample(200, seed=1)
    x, tx, T = columns(rows, "frequency", "recency", "T")
    for params in ((0.553, 10.58, 0.606, 11.67), (0.8, 20.0, 1.4, 3.0)):
        model = ParetoNBDParams(*params, log_likelihood=0.0, n_customers=1, n_distinct=1, converged=True, standard_errors=(0.0,) * 4)
        np.testing.assert_allclose(churn_risk(model, 52.0, x, tx, T), _lifetimes.pareto_no_purchase(params, 52.0, x, tx, T), rtol=1e-8)


def test_bgnbd_churn_matches_simulation_of_the_model():
    """P(no purchase in t) by simulating BG/NBD customers' futures given one history (Fader, Hardie & Lee 2005)."""
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    x, tx, T, t = 3.0, 20.0, 39.0, 26.0
    model = BGNBDParams(r, alpha, a, b, log_likelihood=0.0, n_customers=1, n_distinct=1, converged=True, standard_errors=(0.0,) * 4)
    alive = model.p_alive(np.array([x]), np.array([tx]), np.array([T]))[0]
    rng = np.random.default_rng(7)
    n = 400_000
    lam = rng.gamma(r + x, 1.0 / (alpha + T), n)
    is_alive = rng.random(n) < alive
    buys = is_alive & (rng.random(n) > np.exp(-lam * t))  # a purchase happens before any dropout can
    closed = churn_risk(model, t, np.array([x]), np.array([tx]), np.array([T]))[0]
    assert closed == pytest.approx(1 - buys.mean(), abs=3e-3)


def test_one_time_buyers_long_lapsed_get_high_churn_under_every_model(cdnow_summary, pareto_fits, mbgnbd_fits):
    """A CDNOW customer with no repeat purchase in 78 weeks: BG/NBD's P(alive) is 1, yet each model's churn is high."""
    lapsed = pl.DataFrame({"frequency": [0], "recency": [0.0], "T": [78.0]})
    bg = BGNBD().fit(cdnow_summary)
    assert bg.p_alive(lapsed)[0] == 1.0
    for est in (bg, pareto_fits["numpy"], mbgnbd_fits["numpy"]):
        assert est.churn_risk(lapsed, 13.0)[0] > 0.85, est


def test_new_estimators_follow_the_estimator_contract():
    est = ParetoNBD(penalizer=0.01)
    assert repr(est) == "ParetoNBD(penalizer=0.01)" and est.get_params()["penalizer"] == 0.01
    with pytest.raises(NotFittedError, match="ParetoNBD model is not fitted yet"):
        est.p_alive(pl.DataFrame({"frequency": [1], "recency": [1.0], "T": [2.0]}))
    with pytest.raises(TypeError):
        MBGNBD(0.1)  # type: ignore[misc]  # keyword-only


def test_pareto_summary_intervals_are_on_the_log_scale(pareto_fits):
    table = pareto_fits["numpy"].summary()
    assert table["parameter"].to_list() == ["r", "alpha", "s", "beta"]
    assert (table["lower_95"] > 0).all() and (table["standard_error"] > 0).all()


def test_saved_model_records_the_model_and_old_files_read_as_bgnbd(pareto_fits, cdnow_summary):
    from clv.models import GammaGamma

    spend = pl.read_csv(lifetimes_dataset("cdnow_customers_summary_with_transactions.csv")).rename(
        {"x": "frequency", "zbar": "monetary_value", "t_x": "recency"})
    gg = GammaGamma().fit(spend).params_
    doc = model_document(pareto_fits["lifetimes"].params_, gg, period="week", clvx_version="x")
    assert doc["model"] == "pareto" and "pareto" in doc
    period, purchases, _ = models_from_document(doc, "m.json")
    assert period == "week" and purchases == pareto_fits["lifetimes"].params_
    bg = BGNBD().fit(cdnow_summary).params_
    old = model_document(bg, gg, period="week", clvx_version="x")
    del old["model"]
    old["format_version"] = 2
    assert models_from_document(old, "old.json")[1] == bg


def test_auto_rule_prefers_mae_within_the_bias_slack_and_breaks_ties_toward_bgnbd():
    from clv.backtest import ModelScore, pick

    def score(model, mae, bias):
        return ModelScore(model, -1.0, mae, bias, True)

    # Pareto/NBD has the lowest MAE but a bias 12 points worse than the best: MBG/NBD wins.
    assert pick((score("bgnbd", 0.80, 0.02), score("mbgnbd", 0.75, 0.05), score("pareto", 0.70, 0.14))) == "mbgnbd"
    # All three collapse to the same no-dropout model (the retail log): BG/NBD.
    assert pick((score("pareto", 0.6748, 0.0281), score("mbgnbd", 0.67481, 0.0281), score("bgnbd", 0.67482, 0.0281))) == "bgnbd"


def test_model_is_chosen_on_the_command_line_and_in_the_settings_file(runner, tmp_path):
    import json

    from cli import app

    res = runner.invoke(app, ["fit", "--model", "mbgnbd", "-q", "-f", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"] == "mbgnbd" and doc["mbgnbd"]["converged"]
    config = tmp_path / "clvx.toml"
    config.write_text('model = "pareto"\n')
    saved = tmp_path / "m.json"
    res = runner.invoke(app, ["fit", "--config", str(config), "--save", str(saved), "-q", "-f", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(saved.read_text())["model"] == "pareto"
    scored = runner.invoke(app, ["predict", "--saved-model", str(saved), "-q", "-f", "csv"])
    assert scored.exit_code == 0 and scored.stdout.splitlines()[0].split(",")[5:7] == ["p_alive", "churn_risk_12m"]

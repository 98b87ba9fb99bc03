"""Prediction intervals: the predictive distribution of each model against its closed-form mean,
lifetimes' conditional expectations, brute-force simulation, and coverage on data simulated from
the model itself; the command line's --interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from clv import expectations
from clv import intervals as iv
from clv.errors import InputError
from clv.models import BGNBD

CDNOW_BGNBD = (0.243, 4.414, 0.793, 2.426)  # Fader, Hardie & Lee 2005, weeks
CDNOW_MBGNBD = (0.5248, 6.1831, 0.8914, 1.6140)
CDNOW_PARETO = (0.55315, 10.57633, 0.60625, 11.67150)  # CLVTools on the CDNOW 2,357-customer summary
X = np.array([0, 1, 2, 5, 26, 10, 60], float)
TX = np.array([0, 10, 20, 30, 30.86, 5, 38], float)
T = np.array([38, 38, 38, 38, 31, 38, 38], float)
POINT = lambda params: iv.ParameterDraws(np.array([params], float), "none")  # noqa: E731


def _mean(model: str, params, t: float) -> tuple[np.ndarray, iv.Predictive]:
    pred = iv.predictive(iv.MODELS.get(model) or _spec(model), POINT(params), X, TX, T, t)
    return pred.moments()[0][0], pred


def _lifetimes(model: str, params):
    from lifetimes import ModifiedBetaGeoFitter, ParetoNBDFitter

    fitter, names = {"mbgnbd": (ModifiedBetaGeoFitter, "r alpha a b"), "pareto": (ParetoNBDFitter, "r alpha s beta")}[model]
    f = fitter()
    f.params_ = pd.Series(dict(zip(names.split(), params, strict=True)))
    return f


def _spec(model: str) -> iv.PredictiveModel:
    """The two models the intervals know before their fitters land, with lifetimes' P(alive) as the oracle."""
    f = _lifetimes(model, CDNOW_MBGNBD if model == "mbgnbd" else CDNOW_PARETO)
    survival = iv.mbgnbd_alive_survival if model == "mbgnbd" else iv.pareto_alive_survival
    return iv.PredictiveModel(model, survival, lambda p, x, tx, T_: np.asarray(f.conditional_probability_alive(x, tx, T_)),
                              lambda *a: 0.0, None, lambda p, t: np.zeros_like(t))


def test_bgnbd_predictive_mean_is_fader_hardie_lee_2005_eq10():
    t = 39.0
    mean, _ = _mean("bgnbd", CDNOW_BGNBD, t)
    expected = expectations.bgnbd_unconditional_part(CDNOW_BGNBD, t, X, T) * expectations.bgnbd_p_alive(CDNOW_BGNBD, X, TX, T)
    np.testing.assert_allclose(mean, expected, rtol=2e-5)


@pytest.mark.parametrize("model", ["mbgnbd", "pareto"])
def test_mbgnbd_and_pareto_predictive_means_are_lifetimes_conditional_expectations(model):
    params = CDNOW_MBGNBD if model == "mbgnbd" else CDNOW_PARETO
    mean, _ = _mean(model, params, 52.0)
    oracle = np.asarray(_lifetimes(model, params).conditional_expected_number_of_purchases_up_to_time(52, X, TX, T))
    np.testing.assert_allclose(mean, oracle, rtol=2e-5)


def test_pareto_predictive_mean_matches_btyd_walkthrough_x26():
    # BTYD walkthrough on CDNOW: x = 26, t_x = 30.86, T = 31, t = 52 weeks: E = 25.45647, P(alive) = 0.997874.
    table = iv.pareto_alive_survival(CDNOW_PARETO, np.array([26.0]), np.array([31.0]), 52.0, 400)
    assert table.sum() * 0.997874 == pytest.approx(25.45647, abs=2e-3)


def _random_pareto_rows(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parameter draws around the CDNOW fit (log-normal, sd 0.5) and histories from none to heavy buyers, in weeks."""
    rng = np.random.default_rng(seed)
    values = np.exp(np.log(CDNOW_PARETO) + 0.5 * rng.standard_normal((5, 4)))
    x = np.concatenate([rng.integers(0, 40, n - 6), [0, 150, 400, 2000, 6000, 6000]]).astype(float)
    T_ = np.concatenate([rng.choice([5.0, 12.5, 38.0, 70.0], n - 6), [38.0, 1.0, 38.0, 2.0, 38.0, 400.0]])
    tx = np.minimum(T_, rng.uniform(0, 1, n) * T_)
    return values, x, tx, T_


def test_pareto_tables_for_all_draws_at_once_equal_the_per_node_quadrature_on_random_rows():
    """The matrix-product form of the quadrature against the node-by-node one, draw by draw, to 1e-10: on
    ordinary rows and on heavy buyers whose negative binomial leaves double range (the log recursion)."""
    values, x, _, T_ = _random_pareto_rows(3, 300)
    t = 52.0
    sizes = np.random.default_rng(4).choice([1, 2, 7, 30, 120], len(x))
    seen = np.zeros(len(x), bool)
    for rows, tab in iv.pareto_survival_blocks(values, x, T_, t, sizes):
        assert tab.shape == (len(rows), sizes[rows[0]], len(values)) and np.all(sizes[rows] == sizes[rows[0]])
        seen[rows] = True
        for d, v in enumerate(values):
            oracle = iv.pareto_alive_survival(tuple(v), x[rows], T_[rows], t, int(sizes[rows[0]]))
            np.testing.assert_allclose(tab[:, :, d], oracle, rtol=0, atol=1e-10)
    assert seen.all()


def test_pareto_predictive_over_all_draws_equals_the_draw_by_draw_predictive_with_the_2f1_p_alive():
    """The Pareto/NBD predictive distribution as the model computes it (tables for all draws at once, P(alive)
    by the piecewise A_0 integral on one grid) against draw-by-draw tables and note 009's 2F1 closed form."""
    from dataclasses import replace

    values, x, tx, T_ = _random_pareto_rows(5, 400)
    draws = iv.ParameterDraws(values, "covariance")
    fast = iv.predictive(iv.MODELS["pareto"], draws, x, tx, T_, 39.0, tail=0.005)
    oracle = replace(iv.MODELS["pareto"], survival_blocks=None, p_alive_draws=None, p_alive=expectations.pareto_p_alive)
    slow = iv.predictive(oracle, draws, x, tx, T_, 39.0, tail=0.005)
    np.testing.assert_array_equal(fast.lengths, slow.lengths)
    np.testing.assert_array_equal(fast.offsets, slow.offsets)
    np.testing.assert_allclose(fast.table, slow.table, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fast.p_alive, slow.p_alive, rtol=1e-10, atol=1e-12)
    for q in (0.05, 0.5, 0.95):
        np.testing.assert_array_equal(fast.quantile(q), slow.quantile(q))


@pytest.mark.parametrize("q", [0.05, 0.5, 0.95])
def test_quantiles_are_the_smallest_count_whose_distribution_function_reaches_q_by_a_scan_of_every_count(q):
    values, x, tx, T_ = _random_pareto_rows(6, 300)
    pred = iv.predictive(iv.MODELS["pareto"], iv.ParameterDraws(values, "covariance"), x, tx, T_, 39.0, tail=0.005)
    ks = np.arange(int(pred.lengths.max()) + 2)
    cdf_reached = np.stack([pred.survival(np.full(len(x), k + 1)) <= 1.0 - q + 1e-12 for k in ks], axis=1)
    quantile = pred.quantile(q)
    np.testing.assert_array_equal(quantile, cdf_reached.argmax(axis=1))
    assert (quantile == 0).any() and (quantile > 0).any()


def _simulate_future(model: str, params, x: float, T_: float, p_alive: float, t: float, n: int, rng) -> np.ndarray:
    """Brute force: alive with P(alive), lambda ~ Gamma(r + x, alpha + T), then each model's dropout."""
    r, alpha, c, d = params
    alive = rng.random(n) < p_alive
    lam = rng.gamma(r + x, 1.0 / (alpha + T_), n)
    if model == "pareto":
        mu = rng.gamma(c, 1.0 / (d + T_), n)
        count = rng.poisson(lam * np.minimum(t, rng.exponential(1.0 / mu)))
    else:
        p = rng.beta(c, d + x + (1.0 if model == "mbgnbd" else 0.0), n)
        count = np.minimum(rng.poisson(lam * t), rng.geometric(p))
    return np.where(alive, count, 0)


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_survival_matches_brute_force_simulation(model):
    params = {"bgnbd": CDNOW_BGNBD, "mbgnbd": CDNOW_MBGNBD, "pareto": CDNOW_PARETO}[model]
    spec = iv.MODELS.get(model) or _spec(model)
    rng = np.random.default_rng(7)
    n, t = 200_000, 39.0
    pred = iv.predictive(spec, POINT(params), X, TX, T, t)
    p_alive = pred.p_alive[0][pred.customer_row]
    ks = np.arange(0, 12)
    for i in (0, 3, 4):
        sim = _simulate_future(model, params, X[i], T[i], p_alive[i], t, n, rng)
        empirical = np.array([(sim >= k).mean() for k in ks])
        ours = np.array([pred.survival(np.full(len(X), k))[i] for k in ks])
        assert np.max(np.abs(empirical - ours)) < 4 * np.sqrt(0.25 / n), (model, i)


def _simulate_bgnbd_customers(params, n: int, T_: float, t: float, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histories (x, t_x) over (0, T] and the count in (T, T + t] of customers drawn from BG/NBD itself."""
    r, alpha, a, b = params
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    now = np.zeros(n)
    alive = np.ones(n, bool)
    x = np.zeros(n)
    tx = np.zeros(n)
    future = np.zeros(n)
    while alive.any():
        now = np.where(alive, now + rng.exponential(1.0 / lam), now)
        in_cal = alive & (now <= T_)
        in_hold = alive & (now > T_) & (now <= T_ + t)
        x += in_cal
        tx = np.where(in_cal, now, tx)
        future += in_hold
        alive &= (now <= T_ + t) & (rng.random(n) >= p)
    return x, tx, future


def test_coverage_on_data_simulated_from_bgnbd_is_the_implied_coverage_within_sampling_error():
    from clv.diagnostics import coverage_table, pit_table, randomised_pit

    params = (0.9, 20.0, 0.6, 3.4)
    rng = np.random.default_rng(11)
    n, T_, t = 20_000, 60.0, 40.0
    x, tx, future = _simulate_bgnbd_customers(params, n, T_, t, rng)
    pred = iv.predictive(iv.MODELS["bgnbd"], POINT(params), x, tx, np.full(n, T_), t)
    table = coverage_table(pred, future)
    se = np.sqrt(0.25 / n)
    assert np.all(np.abs(table["gap"].to_numpy()) < 4 * se), table
    assert np.all(table["implied"].to_numpy() >= table["level"].to_numpy())  # whole counts hold at least the level
    shares = pit_table(randomised_pit(pred, future)).get_column("share").to_numpy()
    assert np.max(np.abs(shares - 0.1)) < 4 * np.sqrt(0.09 / n)


def test_log_covariance_gives_the_fits_standard_errors_on_cdnow(cdnow_summary_frame):
    bg = BGNBD(engine="numpy").fit(cdnow_summary_frame).params_
    x, tx, T_ = (cdnow_summary_frame[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    cov = iv.log_covariance(iv.MODELS["bgnbd"], bg.params, x, tx, T_, np.ones(len(x)))
    assert cov is not None
    np.testing.assert_allclose(np.sqrt(np.diag(cov)) * np.asarray(bg.params), bg.standard_errors, rtol=1e-3)
    draws = iv.parameter_draws(iv.MODELS["bgnbd"], bg.params, x, tx, T_, np.ones(len(x)), seed=3)
    assert draws.method == "covariance" and draws.values.shape == (iv.DEFAULT_DRAWS, 4) and np.all(draws.values > 0)


def test_prediction_intervals_bracket_the_mean_and_scale_clv(cdnow_summary_frame):
    x, tx, T_ = (cdnow_summary_frame[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    expected = expectations.bgnbd_unconditional_part(CDNOW_BGNBD, 39.0, x, T_) * expectations.bgnbd_p_alive(CDNOW_BGNBD, x, tx, T_)
    clv = expected * 35.0
    ci = iv.prediction_intervals("bgnbd", CDNOW_BGNBD, x, tx, T_, t=39.0, level=0.8, expected_purchases=expected, clv=clv)
    assert np.all(ci.purchases_low <= ci.purchases_high)
    assert np.all(ci.implied >= 0.8 - 1e-9)
    assert np.mean((ci.purchases_low <= expected) & (expected <= ci.purchases_high + 1)) > 0.99
    np.testing.assert_allclose(ci.clv_high, ci.purchases_high * 35.0, rtol=1e-9)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 1.5, float("nan"), True])
def test_a_level_outside_zero_one_is_refused(level):
    with pytest.raises(InputError, match="between 0 and 1"):
        iv.check_level(level)


@pytest.fixture(scope="module")
def cdnow_summary_frame() -> pl.DataFrame:
    from tests.conftest import lifetimes_dataset

    return pl.read_csv(lifetimes_dataset("cdnow_customers_summary.csv")).rename({"ID": "customer_id"})


# --------------------------------------------------------------------------- command line


def test_cli_predict_interval_adds_the_horizon_named_columns(runner):
    from cli import app

    res = runner.invoke(app, ["predict", "--interval", "0.9", "--horizon", "6m", "-f", "csv", "-q"])
    assert res.exit_code == 0, res.output
    frame = pl.read_csv(res.stdout.encode())
    assert frame.columns[-5:] == ["purchases_low_6m", "purchases_high_6m", "clv_low_6m", "clv_high_6m", "purchase_model"]
    assert frame["purchase_model"].unique().to_list() == ["bgnbd"]
    assert (frame["purchases_low_6m"] <= frame["purchases_high_6m"]).all()
    # A skewed count's mean can exceed its 95% quantile (P(alive) near 0: interval 0-0, mean 0.03), never by a whole purchase.
    assert (frame["purchases_low_6m"] <= frame["expected_purchases_6m"]).all()
    assert (frame["expected_purchases_6m"] <= frame["purchases_high_6m"] + 1).all()
    assert (frame["clv_low_6m"] <= frame["clv_6m"] + 0.01).all()


def test_cli_predict_without_interval_has_no_interval_columns(runner):
    from cli import app

    res = runner.invoke(app, ["predict", "-f", "csv", "-q"])
    assert res.exit_code == 0 and "purchases_low" not in res.stdout.splitlines()[0]


def test_cli_bad_interval_level_is_one_error_line(runner):
    from cli import app

    res = runner.invoke(app, ["predict", "--interval", "1.5", "-q"])
    assert res.exit_code == 2
    assert res.stderr == "Error: --interval 1.5 must be a probability between 0 and 1 (exclusive), such as 0.9\n"


def test_interval_from_a_settings_file(runner, tmp_path):
    from cli import app

    config = tmp_path / "clvx.toml"
    config.write_text("[predict]\ninterval = 0.5\n")
    res = runner.invoke(app, ["predict", "--config", str(config), "-f", "csv", "-q"])
    assert res.exit_code == 0, res.output
    assert "purchases_high_12m" in res.stdout.splitlines()[0]
    config.write_text("[predict]\ninterval = 2\n")
    res = runner.invoke(app, ["predict", "--config", str(config), "-q"])
    assert res.exit_code == 2 and "--interval 2" in res.stderr


def test_a_fit_without_a_proper_maximum_gets_bootstrap_refits(cdnow_summary_frame):
    from dataclasses import replace

    bg = BGNBD(engine="numpy").fit(cdnow_summary_frame).params_
    rows = cdnow_summary_frame.group_by("frequency", "recency", "T").len()
    x, tx, T_, w = (rows[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T", "len"))
    flat = replace(iv.MODELS["bgnbd"], information=lambda *a: -np.eye(4))  # as if the Hessian were not negative definite
    draws = iv.parameter_draws(flat, bg.params, x, tx, T_, w, seed=5)
    assert draws.method == "bootstrap" and draws.n_draws >= iv.BOOTSTRAP_REFITS // 2
    spread = draws.values.std(axis=0) / np.asarray(bg.standard_errors)
    assert np.all((spread > 0.4) & (spread < 2.5)), spread  # the refits scatter as the standard errors say


@pytest.mark.parametrize("model", ["bgnbd", "pareto"])
def test_a_saved_model_carries_its_covariance_so_its_intervals_equal_a_fresh_fits(runner, tmp_path, model):
    """The saved model's intervals use the covariance of the customers it was fitted on, not of the scored ones."""
    import json

    from cli import app

    saved = tmp_path / "model.json"
    assert runner.invoke(app, ["fit", "--model", model, "--save", str(saved), "-q", "-f", "json"]).exit_code == 0
    cov = np.array(json.loads(saved.read_text())[model]["log_covariance"])
    assert cov.shape == (4, 4) and np.all(np.linalg.eigvalsh(cov) > 0)
    fresh = runner.invoke(app, ["predict", "--model", model, "--interval", "0.8", "-f", "csv"])
    again = runner.invoke(app, ["predict", "--saved-model", str(saved), "--interval", "0.8", "-f", "csv"])
    assert fresh.exit_code == again.exit_code == 0, again.output
    assert again.stdout == fresh.stdout
    assert "covariance (log scale), saved with the model" in again.stderr and "scored customers" not in again.stderr
    # Scoring other customers (the first 200) keeps the fit's uncertainty: same draws, same intervals for them.
    head = tmp_path / "head.csv"
    full = pl.read_csv(fresh.stdout.encode(), schema_overrides={"customer_id": pl.String})
    summary = runner.invoke(app, ["rfm", "-f", "csv", "-q"])
    pl.read_csv(summary.stdout.encode(), schema_overrides={"customer_id": pl.String}).head(200).write_csv(head)
    part = runner.invoke(app, ["predict", str(head), "--saved-model", str(saved), "--interval", "0.8", "-f", "csv", "-q"])
    assert part.exit_code == 0, part.output
    part_frame = pl.read_csv(part.stdout.encode(), schema_overrides={"customer_id": pl.String})
    expected = full.filter(pl.col("customer_id").is_in(part_frame["customer_id"].to_list())).sort("customer_id")
    assert part_frame.sort("customer_id").select("purchases_low_12m", "purchases_high_12m").equals(
        expected.select("purchases_low_12m", "purchases_high_12m"))


def test_a_saved_covariance_that_is_not_positive_definite_is_refused(runner, tmp_path):
    import json

    from cli import app

    saved = tmp_path / "model.json"
    assert runner.invoke(app, ["fit", "--save", str(saved), "-q", "-f", "json"]).exit_code == 0
    doc = json.loads(saved.read_text())
    doc["bgnbd"]["log_covariance"][0][0] = -1.0
    saved.write_text(json.dumps(doc))
    res = runner.invoke(app, ["predict", "--saved-model", str(saved), "--interval", "0.8"])
    assert res.exit_code == 2
    assert "field 'bgnbd.log_covariance' is a list, but it must be 4 lists of 4 finite numbers" in res.stderr

"""score_customers' columns pinned to lifetimes in every period; penalized fits; summary rules; clvx sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from clv import _lifetimes, expectations
from clv.errors import InputError
from clv.load import load_summary, load_transactions
from clv.models import BGNBD, DAYS_PER_MONTH, GammaGamma, Horizon, cash_flow_days, score_customers
from clv.rfm import Period, collect, rfm_summary
from clv.sample import bundled_sample_path


@pytest.fixture(scope="module")
def sample_tx():
    return load_transactions(bundled_sample_path())


@pytest.fixture(scope="module", params=list(Period), ids=lambda p: p.value)
def fitted(request, sample_tx):
    """The bundled sample summarised, fitted and scored in one period (day, week, month)."""
    period = request.param
    summary = collect(rfm_summary(sample_tx.frame, sample_tx.as_of, period))
    bg = BGNBD().fit(summary).params_
    gg = GammaGamma().fit(summary).params_
    horizon = Horizon.parse("12m")
    scored = score_customers(summary, bg, gg, period_days=period.days, horizon=horizon, annual_discount_rate=0.10)
    return period, summary, bg, gg, horizon, scored


def lifetimes_bgnbd(params):
    from lifetimes import BetaGeoFitter

    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series(params, index=["r", "alpha", "a", "b"])
    return bgf


def test_expected_purchases_column_is_lifetimes_conditional_expectation(fitted):
    period, summary, bg, _, horizon, scored = fitted
    x, tx, T = (summary[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    ref = _lifetimes.bgnbd_expected_purchases(bg.params, horizon.days / period.days, x, tx, T)
    np.testing.assert_allclose(scored["expected_purchases"].to_numpy(), ref, rtol=1e-9, atol=1e-12)


def test_clv_column_is_lifetimes_discounted_cash_flow_on_the_calendar_month(fitted):
    """CLV = E[M] x sum over month ends of lifetimes' E[X(t_m)] - E[X(t_{m-1})], discounted monthly.

    The month ends are calendar-exact (365.25 / 12 days) in the fit's period, so the same
    customers scored by day, week or month get the same cash-flow schedule in days.
    """
    period, summary, bg, gg, horizon, scored = fitted
    x, tx, T, m = (summary[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))
    bgf = lifetimes_bgnbd(bg.params)
    spend = _lifetimes.gamma_gamma_expected_average(gg.params, x, np.maximum(m, 0))
    d_month = 1.10 ** (1 / 12) - 1
    ref = np.zeros_like(x)
    previous = np.zeros_like(x)
    for t_days in cash_flow_days(horizon.days):
        cumulative = bgf.conditional_expected_number_of_purchases_up_to_time(t_days / period.days, x, tx, T)
        ref += (cumulative - previous) / (1 + d_month) ** (t_days / DAYS_PER_MONTH)
        previous = cumulative
    np.testing.assert_allclose(scored["clv"].to_numpy(), spend * np.asarray(ref), rtol=1e-8, atol=1e-10)
    assert scored["clv"].sum() > 0


def test_penalized_fit_is_the_same_on_both_engines_and_shrinks_the_parameters(sample_tx):
    summary = collect(rfm_summary(sample_tx.frame, sample_tx.as_of, Period.week))
    bg = BGNBD().fit(summary).params_
    fits = {engine: BGNBD(penalizer=0.01, engine=engine).fit(summary).params_ for engine in ("lifetimes", "numpy")}
    np.testing.assert_allclose(fits["numpy"].params, fits["lifetimes"].params, rtol=2e-4)
    # lifetimes' penalty is penalizer x sum(params^2): it pulls the parameters towards zero.
    assert sum(p**2 for p in fits["numpy"].params) < sum(p**2 for p in bg.params)
    assert fits["numpy"].penalizer == 0.01
    gg = {engine: GammaGamma(penalizer=0.001, engine=engine).fit(summary).params_ for engine in ("lifetimes", "numpy")}
    np.testing.assert_allclose(gg["numpy"].params, gg["lifetimes"].params, rtol=2e-4)


def test_likelihood_helpers_agree_with_lifetimes_p_alive(fitted):
    _, summary, bg, _, _, scored = fitted
    x, tx, T = (summary[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    np.testing.assert_allclose(scored["p_alive"].to_numpy(), _lifetimes.bgnbd_p_alive(bg.params, x, tx, T), rtol=1e-12)
    np.testing.assert_allclose(expectations.bgnbd_p_alive(bg.params, x, tx, T), scored["p_alive"].to_numpy())


# --------------------------------------------------------------------------- summary files

GOOD = "customer_id,frequency,recency,T,monetary_value\na,2,10,20,5.0\nb,0,0,15,0\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("a,2,10,20", "a,-1,10,20"), "column 'frequency' has 1 value that is not a whole number >= 0 (first at row 1"),
        (GOOD.replace("a,2,10,20", "a,2.5,10,20"), "column 'frequency' has 1 value that is not a whole number >= 0"),
        (GOOD.replace("a,2,10,20", "a,2,-3,20"), "column 'recency' has 1 negative value"),
        (GOOD.replace("a,2,10,20", "a,2,30,20"), "column 'T' has 1 value below recency"),
        (GOOD.replace("b,0,0,15", "b,0,4,15"), "column 'recency' has 1 non-zero value where frequency is 0 (first at row 2"),
        (GOOD.replace("b,0,0,15", "a,0,0,15"), "column 'customer_id' has 2 repeated customer ids"),
        (GOOD.replace("a,2,10,20,5.0", "a,2,10,x,5.0"), "column 'T' has 1 empty or non-numeric value (first at row 1: 'x')"),
        (GOOD.replace("customer_id,", "cust,"), "no customer id column found; name it with columns.customer"),
    ],
)
def test_load_summary_rules(tmp_path, text, message):
    path = tmp_path / "summary.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_summary(path)
    assert message in str(err.value)


def test_load_summary_without_spend(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("customer_id,frequency,recency,T\na,2,10,20\n")
    with pytest.raises(InputError, match="has no monetary_value column"):
        load_summary(path)
    assert load_summary(path, need_spend=False)["monetary_value"].to_list() == [0.0]


# --------------------------------------------------------------------------- clvx sample


def test_sample_command_is_deterministic_and_writes_its_truth(runner, tmp_path):
    from cli import app

    out = [tmp_path / f"s{i}.csv" for i in (1, 2)]
    for path in out:
        res = runner.invoke(app, ["sample", "--customers", "300", "--seed", "3", "-o", str(path), "--truth", str(tmp_path / "truth"), "-q"])
        assert res.exit_code == 0, res.output
    assert out[0].read_bytes() == out[1].read_bytes()
    log = pl.read_csv(out[0], schema_overrides={"customer_id": pl.String})
    assert log["customer_id"].drop_nulls().n_unique() == 300  # and a few lines with no customer, as real logs have
    assert {"customer_id", "date", "order_id", "product_id"} <= set(log.columns)
    truth = pl.read_csv(tmp_path / "truth" / "customers.csv")
    assert truth.height == 300 and (tmp_path / "truth" / "truth.json").stat().st_size > 100
    other = runner.invoke(app, ["sample", "--customers", "300", "--seed", "4", "-q"])
    assert other.exit_code == 0 and other.stdout.encode() != out[0].read_bytes()

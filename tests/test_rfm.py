"""RFM: parity with lifetimes (the oracle), properties, scores and segments."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

from clv.errors import InputError
from clv.load import ColumnMapping, load_transactions
from clv.rfm import MAX_AMOUNT, RFM_SEGMENTS, SEGMENT_GRID, Period, calibration_holdout, collect, exact_sum, rfm_summary, score_rfm

FREQ = {Period.day: "D", Period.week: "W"}


def to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: frame[c].to_list() for c in frame.columns})


def lifetimes_summary(tx: pl.DataFrame, period: Period, **kw) -> pd.DataFrame:
    return summary_data_from_transaction_data(
        to_pandas(tx), "customer_id", "date", monetary_value_col="amount", freq=FREQ[period], **kw
    )


@pytest.fixture(scope="module")
def cdnow(cdnow_csv):
    return load_transactions(cdnow_csv, ColumnMapping(amount="dollar_value"))


@pytest.mark.parametrize("period", [Period.day, Period.week])
def test_rfm_matches_lifetimes_summary_on_cdnow_master(cdnow, period):
    ours = rfm_summary(cdnow.frame, cdnow.as_of, period).collect()
    ref = lifetimes_summary(cdnow.frame.collect(), period)
    assert ours.height == len(ref) == 23_570
    ref = ref.loc[ours["customer_id"].to_list()]
    assert np.array_equal(ours["frequency"].to_numpy(), ref["frequency"].to_numpy())
    np.testing.assert_allclose(ours["recency"].to_numpy(), ref["recency"].to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["T"].to_numpy(), ref["T"].to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["monetary_value"].to_numpy(), ref["monetary_value"].to_numpy(), rtol=0, atol=1e-6)


def test_calibration_holdout_matches_lifetimes_on_cdnow_master(cdnow):
    end = dt.date(1997, 9, 30)
    ours = calibration_holdout(cdnow.frame, end, cdnow.as_of, Period.week).collect()
    ref = calibration_and_holdout_data(
        to_pandas(cdnow.frame.collect()), "customer_id", "date", calibration_period_end=str(end),
        observation_period_end=str(cdnow.as_of), freq="W", monetary_value_col="amount",
    ).loc[ours["customer_id"].to_list()]
    for col in ("frequency_cal", "recency_cal", "T_cal", "frequency_holdout", "duration_holdout"):
        np.testing.assert_allclose(ours[col].to_numpy(), ref[col].to_numpy(), rtol=0, atol=1e-9, err_msg=col)
    np.testing.assert_allclose(ours["monetary_value_cal"].to_numpy(), ref["monetary_value_cal"].to_numpy(), atol=1e-6)


def test_holdout_monetary_value_is_mean_of_period_sums():
    tx = pl.LazyFrame(
        {
            "customer_id": ["a", "a", "a", "a"],
            "date": [dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 1), dt.datetime(2024, 2, 1), dt.datetime(2024, 2, 3)],
            "amount": [10.0, 4.0, 6.0, 30.0],
        }
    )
    out = calibration_holdout(tx, dt.date(2024, 1, 15), dt.date(2024, 2, 10)).collect().row(0, named=True)
    assert out["frequency_holdout"] == 2
    assert out["monetary_value_holdout"] == pytest.approx(20.0)  # (4 + 6) and 30, not (4 + 6 + 30) / 3
    assert out["duration_holdout"] == 26


def test_month_period_counts_calendar_months():
    tx = pl.LazyFrame(
        {
            "customer_id": ["a", "a", "a"],
            "date": [dt.datetime(2024, 1, 31), dt.datetime(2024, 2, 1), dt.datetime(2024, 4, 30)],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    row = rfm_summary(tx, dt.date(2024, 6, 15), Period.month).collect().row(0, named=True)
    assert (row["frequency"], row["recency"], row["T"]) == (2, 3, 5)


# --------------------------------------------------------------------------- properties

transactions_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "00d", "e"]),
        st.integers(min_value=0, max_value=120),
        st.integers(min_value=0, max_value=23),
        st.floats(min_value=0.01, max_value=500, allow_nan=False).map(lambda x: round(x, 2)),
    ),
    min_size=1,
    max_size=60,
)


def frame_of(rows) -> pl.DataFrame:
    base = dt.datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "date": [base + dt.timedelta(days=r[1], hours=r[2]) for r in rows],
            "amount": [r[3] for r in rows],
        },
        schema={"customer_id": pl.String, "date": pl.Datetime("us"), "amount": pl.Float64},
    )


@settings(max_examples=60, deadline=None)
@given(transactions_strategy, st.sampled_from([Period.day, Period.week]), st.randoms(use_true_random=False))
def test_rfm_properties_and_lifetimes_oracle(rows, period, rnd):
    tx = frame_of(rows)
    as_of = tx["date"].max().date()
    out = rfm_summary(tx.lazy(), as_of, period).collect()
    assert out["customer_id"].is_unique().all()
    assert set(out["customer_id"]) == set(tx["customer_id"])
    assert (out["frequency"] >= 0).all()
    assert (out["recency"] <= out["T"]).all()
    assert (out.filter(pl.col("frequency") == 0)["monetary_value"] == 0).all()

    shuffled = tx.sample(fraction=1.0, shuffle=True, seed=rnd.randint(0, 10_000))
    again = rfm_summary(shuffled.lazy(), as_of, period).collect()
    assert again.select("customer_id", "frequency", "recency", "T").equals(out.select("customer_id", "frequency", "recency", "T"))
    np.testing.assert_allclose(again["monetary_value"].to_numpy(), out["monetary_value"].to_numpy(), rtol=1e-12)

    streamed = rfm_summary(tx.lazy(), as_of, period).collect(engine="streaming")
    assert streamed.select("customer_id", "frequency", "recency", "T").equals(out.select("customer_id", "frequency", "recency", "T"))

    ref = lifetimes_summary(tx, period).loc[out["customer_id"].to_list()]
    assert np.array_equal(out["frequency"].to_numpy(), ref["frequency"].to_numpy())
    np.testing.assert_allclose(out["recency"].to_numpy(), ref["recency"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(out["T"].to_numpy(), ref["T"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(out["monetary_value"].to_numpy(), ref["monetary_value"].to_numpy(), atol=1e-6)


orders_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "00c"]),
        st.integers(min_value=0, max_value=20),
        st.sampled_from(["1", "01", "2", "A-7", "", None]),  # text that differs only by a zero, empty, missing
        st.sampled_from([-5.0, 0.0, 3.5, 12.0]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(orders_strategy, st.sampled_from([Period.day, Period.week]))
# Ids of one customer and day that a text-blind key would merge: "1" / "2" / "01", empty / missing; a return-only order.
@example([("a", 0, "1", 3.5), ("a", 0, "2", 3.5), ("a", 0, "01", 3.5), ("a", 0, "", 3.5), ("a", 0, None, 3.5), ("a", 0, "A-7", -5.0)],
         Period.day)
def test_n_orders_matches_pandas_distinct_order_ids_with_a_sale(rows, period):
    """Orders are grouped on a hash of their id: the count is still each customer's distinct ids with a positive line."""
    base = dt.datetime(2024, 1, 1)
    tx = pl.DataFrame(
        {"customer_id": [r[0] for r in rows], "date": [base + dt.timedelta(days=r[1]) for r in rows],
         "order_id": [r[2] for r in rows], "amount": [r[3] for r in rows]},
        schema={"customer_id": pl.String, "date": pl.Datetime("us"), "order_id": pl.String, "amount": pl.Float64},
    )
    out = rfm_summary(tx.lazy(), tx["date"].max().date(), period, count_orders=True).collect(engine="streaming")
    lines = tx.to_pandas()
    lines["period"] = lines["date"].dt.to_period("W" if period is Period.week else "D")
    lines["order"] = lines["order_id"].fillna("<missing>")  # a missing id is one order of its own, as in a group-by
    sales = lines.groupby(["customer_id", "period", "order"])["amount"].apply(lambda a: bool((a > 0).any()))
    expected = sales.groupby(level="customer_id").sum()
    assert dict(zip(out["customer_id"], out["n_orders"], strict=True)) == {c: int(n) for c, n in expected.items()}


# --------------------------------------------------------------------------- money


def one_customer(amounts: list[float]) -> pl.DataFrame:
    """One customer buying ``amounts[k]`` on day k."""
    return frame_of([("c", k, 0, a) for k, a in enumerate(amounts)])


@pytest.mark.parametrize("amount", [5e12, 1e13, 1e15, 123_456_789.123456])
def test_large_amounts_sum_exactly_instead_of_wrapping(amount):
    tx = one_customer([amount] * 5)
    out = collect(rfm_summary(tx.lazy(), tx["date"].max().date()))
    assert out["monetary_value"][0] == amount
    assert out["total_spend"][0] == 5 * amount


def test_amounts_below_a_micro_unit_are_kept():
    tx = one_customer([0.0000004, 0.0000004, -0.0000001])
    out = collect(rfm_summary(tx.lazy(), tx["date"].max().date()))
    assert out["total_spend"][0] == pytest.approx(0.0000007, rel=1e-12)
    assert out["monetary_value"][0] == pytest.approx(0.00000015, rel=1e-12)


def test_exact_sum_is_the_decimal_sum_whatever_the_order():
    values = [0.1, 0.2, 0.3, -0.6, 1e15, -1e15, 0.000000001]
    frames = [pl.DataFrame({"a": order}) for order in (values, values[::-1], sorted(values))]
    sums = {collect(f.lazy().select(exact_sum(pl.col("a")))).item() for f in frames}
    assert sums == {0.000000001}


def test_amount_beyond_the_exact_limit_is_one_clear_input_error():
    tx = one_customer([1.0, MAX_AMOUNT * 10])
    with pytest.raises(InputError, match=r"an amount is beyond \+/-1e\+18, the largest clvx sums exactly; check the amount column"):
        collect(rfm_summary(tx.lazy(), tx["date"].max().date()))


# --------------------------------------------------------------------------- scores


def test_segment_grid_names_eleven_segments_and_covers_every_cell():
    assert len(RFM_SEGMENTS) == 11
    assert all(len(row) == 5 for row in SEGMENT_GRID) and len(SEGMENT_GRID) == 5
    assert SEGMENT_GRID[0][4] == "Champions" and SEGMENT_GRID[4][0] == "Lost"


def summary_of(freq, gap, spend) -> pl.DataFrame:
    n = len(freq)
    return pl.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "frequency": freq,
            "recency": [100 - g for g in gap],
            "T": [100] * n,
            "monetary_value": spend,
            "total_spend": [s * (f + 1) for s, f in zip(spend, freq, strict=True)],
        }
    )


def test_equal_values_share_a_score_whatever_the_row_order():
    freq = [0, 0, 0, 0, 0, 0, 1, 2, 3, 9]
    s = summary_of(freq, gap=list(range(10)), spend=[10.0] * 10)
    scored, bins = score_rfm(s)
    assert scored.filter(pl.col("frequency") == 0)["f_score"].n_unique() == 1
    reversed_scored, _ = score_rfm(s.reverse())
    assert scored.sort("customer_id")["f_score"].equals(reversed_scored.sort("customer_id")["f_score"])
    # 60% one-time buyers: edges (0, 0, 0.4, 1.4) leave scores 2 and 3 unused
    assert bins.unreachable_scores["f_score"] == (2, 3)
    assert scored["m_score"].n_unique() == 1


def test_champions_are_recent_frequent_and_valuable():
    s = summary_of(freq=list(range(10)), gap=list(range(9, -1, -1)), spend=[float(x) for x in range(10)])
    scored, _ = score_rfm(s)
    best = scored.sort("frequency").tail(2)
    assert best["rfm_segment"].to_list() == ["Champions", "Champions"]
    worst = scored.sort("frequency").head(2)
    assert worst["rfm_segment"].to_list() == ["Lost", "Lost"]

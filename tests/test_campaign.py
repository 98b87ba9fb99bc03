"""Offers people can use: timing, bundles, bounded rules, names, opt-outs, the control group and its measurement."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from clv.errors import InputError
from clv.load import load_transactions
from clv.sample import bundled_sample_path
from segments.associations import RuleBounds, association_rules, build_ownership, find_bundles, pair_counts
from segments.campaign import CONTROL, NOT_SIGNIFICANT, TREATMENT, hold_out_control, measure_campaign
from segments.pipeline import crosssell_bundles, crosssell_rules, crosssell_targets, run_baskets, run_crosssell
from tests.conftest import ONLINE_RETAIL, RETAIL_FLAGS, requires_retail

# --------------------------------------------------------------------------- timing


def _lines(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    """(customer, product, order, day of January 2024) purchase lines."""
    return pl.DataFrame(
        {"customer_id": [r[0] for r in rows], "product_id": [r[1] for r in rows], "order_id": [r[2] for r in rows],
         "date": [dt.datetime(2024, 1, r[3]) for r in rows]}
    )


def test_checkout_counts_co_owners_not_orders_by_definition():
    # One customer bought x and y together in five orders: five orders with both, one co-owner.
    # Three others bought y 10, 20 and 30 days after x. Orders with both (5) exceed co-owners (4)
    # and would call it a bundle; per co-owner it is 1 of 4, so a follow-up of 20 days.
    rows = [("a", p, f"a{k}", 1 + k) for k in range(5) for p in ("x", "y")]
    rows += [(c, "x", f"{c}1", 1) for c in "bcd"] + [(c, "y", f"{c}2", 1 + gap) for c, gap in zip("bcd", (10, 20, 30), strict=True)]
    own = build_ownership(_lines(rows))
    rules = association_rules(own, pair_counts(own, min_count=1))
    xy = rules.filter((pl.col("antecedent") == "x") & (pl.col("consequent") == "y")).row(0, named=True)
    assert (xy["co_owners"], xy["same_order_owners"], xy["bought_after"]) == (4, 1, 3)
    assert xy["median_days_after"] == pytest.approx(20)
    assert xy["timing"] == "follow-up, 20 days after buying x"
    # The other direction: nobody bought x after y, so no follow-up is promised.
    yx = rules.filter((pl.col("antecedent") == "y") & (pl.col("consequent") == "x")).row(0, named=True)
    assert yx["timing"] == "usually bought before y, not after"


@pytest.fixture(scope="module")
def sample_tx():
    return load_transactions(bundled_sample_path())


@pytest.fixture(scope="module")
def sample_run(sample_tx):
    return run_crosssell(sample_tx, method="rfm")


def test_same_order_owners_never_exceed_co_owners_on_the_sample(sample_run):
    rules = crosssell_rules(sample_run, RuleBounds(min_support=0.0, min_lift=0.0, per_product=1000)).rules
    assert rules.height == sample_run.model.pairs.height
    assert (rules["same_order_owners"] <= rules["co_owners"]).all()
    assert (rules["bought_after"] <= rules["co_owners"]).all()


def test_rules_are_bounded_by_support_lift_and_count_per_product(sample_run):
    bounds = RuleBounds(min_support=0.01, min_lift=1.5, per_product=3)
    kept = crosssell_rules(sample_run, bounds)
    rules = kept.rules
    assert 0 < rules.height < kept.n_candidates and kept.n_dropped == kept.n_candidates - rules.height
    assert (rules["support"] >= 0.01).all() and (rules["lift"] >= 1.5).all()
    assert rules.group_by("antecedent").len()["len"].max() <= 3
    # The kept ones are the most confident of each antecedent among those passing support and lift.
    everything = crosssell_rules(sample_run, RuleBounds(min_support=0.01, min_lift=1.5, per_product=1000)).rules
    best = everything.sort(["antecedent", "confidence"], descending=[False, True]).group_by("antecedent", maintain_order=True).head(3)
    assert sorted(best["confidence"].to_list()) == pytest.approx(sorted(rules["confidence"].to_list()))


def test_targets_carry_segment_timing_and_names(tmp_path):
    rows = [(f"c{k}", p, f"o{k}", 1) for k in range(30) for p in ("A1", "B1")]  # A1 and B1 go together
    rows += [(f"c{k}", "C1", f"p{k}", 5) for k in range(30, 40)]
    rows += [("c40", "A1", "q1", 3)]
    rows += [(f"c{k}", "Z9", f"z{k}", 10 + k % 15) for k in range(41)]  # a repeat purchase each, for the purchase model
    frame = _lines(rows).with_columns(
        pl.col("product_id").replace_strict({"A1": "RED MUG", "B1": "RED SAUCER", "C1": "TEAPOT", "Z9": "NAPKINS"}).alias("description"),
        pl.lit(9.5).alias("amount"),
    )
    path = tmp_path / "log.csv"
    frame.write_csv(path)
    from clv.load import ColumnMapping

    tx = load_transactions(path, ColumnMapping(amount="amount", order="order_id", product="product_id", description="description"))
    run = run_crosssell(tx, method="rfm")
    offers = crosssell_targets(run, top_k=1)
    c40 = offers.filter(pl.col("customer_id") == "c40").row(0, named=True)
    assert (c40["product_id"], c40["description"], c40["because_of"], c40["because_of_description"]) == ("B1", "RED SAUCER", "A1", "RED MUG")
    assert c40["timing"] == "at checkout" and c40["segment"] is not None


# --------------------------------------------------------------------------- bundles


def test_bundle_metrics_match_their_definitions_on_hand_checked_orders():
    # 10 orders over products a, b, c, d; a+b+c together in orders 0-2, a+b in 3, a alone in 4-5, d elsewhere.
    orders = [["a", "b", "c"]] * 3 + [["a", "b"]] + [["a"]] * 2 + [["d"]] * 3 + [["c", "d"]]
    products = pl.Series(["a", "b", "c", "d"])
    index = {p: j for j, p in enumerate(products)}
    rows = [o for o, items in enumerate(orders) for _ in items]
    cols = [index[p] for items in orders for p in items]
    revenue = sparse.csr_matrix((np.full(len(rows), 2.0), (rows, cols)), shape=(len(orders), 4))
    found = find_bundles(revenue, products, min_support=0.2, top=10)
    abc = found.bundles.filter(pl.col("size") == 3).row(0, named=True)
    assert (abc["product_1"], abc["product_2"], abc["product_3"], abc["orders"]) == ("a", "b", "c", 3)
    assert abc["support"] == pytest.approx(3 / 10)
    assert abc["lift"] == pytest.approx((3 / 10) / ((6 / 10) * (4 / 10) * (4 / 10)))
    assert abc["attach_rate"] == pytest.approx(3 / 6)  # of the 6 orders with a (the most ordered), 3 hold the set
    assert abc["revenue"] == pytest.approx(3 * 3 * 2.0)
    ab = found.bundles.filter((pl.col("size") == 2) & (pl.col("product_1") == "a") & (pl.col("product_2") == "b")).row(0, named=True)
    assert (ab["orders"], ab["revenue"]) == (4, pytest.approx(4 * 2 * 2.0))
    assert found.n_orders == 10
    # c+d (1 order) is below the 20% support; a set with lift <= 1 is no bundle.
    assert found.bundles.filter(pl.col("product_2") == "d").height == 0
    assert (found.bundles["lift"] > 1).all()


def test_bundles_need_orders_and_a_sane_support(sample_run, sample_tx):
    with pytest.raises(InputError, match="bundle_min_support='1.5' must be a share of orders"):
        find_bundles(sparse.csr_matrix((2, 2)), pl.Series(["a", "b"]), min_support=1.5)
    found = crosssell_bundles(sample_run, min_support=0.001, top=5)
    assert 0 < found.bundles.height <= 5 and found.n_candidates >= found.bundles.height


# --------------------------------------------------------------------------- control group


def _offers(n: int, segments: tuple[str, ...] = ("A", "B", "C")) -> pl.DataFrame:
    ids = [f"{k:05d}" for k in range(n)]
    return pl.DataFrame({"customer_id": np.repeat(ids, 2), "segment": np.repeat([segments[k % len(segments)] for k in range(n)], 2),
                         "product_id": ["P", "Q"] * n})


def test_control_is_a_seeded_stratified_share_of_customers():
    offers = _offers(3_000)
    a = hold_out_control(offers, 0.1, seed=7)
    assert a.columns == ["customer_id", "segment", "group", "product_id"]
    assert a.equals(hold_out_control(offers.reverse(), 0.1, seed=7).sort("customer_id", "product_id"))
    per = a.unique("customer_id").group_by("segment").agg((pl.col("group") == CONTROL).sum())
    assert per["group"].to_list() == [100, 100, 100]  # 10% of each 1,000-customer segment, exactly
    assert a.group_by("customer_id").agg(pl.col("group").n_unique())["group"].max() == 1  # a customer is in one group
    assert not a.equals(hold_out_control(offers, 0.1, seed=8))


def test_control_share_is_checked():
    with pytest.raises(InputError, match=r"^control='0.95' must be a share above 0 and at most 0.9"):
        hold_out_control(_offers(10), 0.95)


# --------------------------------------------------------------------------- measurement


def _campaign(seed: int, effect: float, n: int = 3_000) -> tuple[pl.DataFrame, pl.DataFrame, float]:
    """Targets with a 20% control group and a window's purchases; treated customers buy the offer with ``effect`` more chance.

    Everyone spends on other things at random (30% buy, 60 on average); the offer P costs 40.
    The true incremental revenue is ``effect x 40 x n_treatment``.
    """
    rng = np.random.default_rng(seed)
    offers = hold_out_control(_offers(n).filter(pl.col("product_id") == "P"), 0.2, seed=seed)
    treated = (offers["group"] == TREATMENT).to_numpy()
    base = rng.random(n) < 0.3
    buys_p = rng.random(n) < 0.05 + effect * treated
    lines = pl.concat([
        pl.DataFrame({"customer_id": offers["customer_id"].filter(pl.Series(base)), "product_id": "OTHER",
                      "amount": rng.exponential(60.0, int(base.sum()))}),
        pl.DataFrame({"customer_id": offers["customer_id"].filter(pl.Series(buys_p)), "product_id": "P", "amount": 40.0}),
    ])
    return offers, lines, effect * 40.0 * int(treated.sum())


def test_measure_recovers_a_planted_uplift_in_most_seeds_synthetic_campaign():
    covered, significant = 0, 0
    for seed in range(10):
        offers, lines, truth = _campaign(seed, effect=0.15, n=6_000)
        overall = measure_campaign(offers, lines, n_bootstrap=500, seed=seed).table.row(0, named=True)
        covered += overall["incremental_revenue_lower_95"] <= truth <= overall["incremental_revenue_upper_95"]
        significant += overall["verdict"] == "uplift"
    assert covered >= 8 and significant >= 8


def test_measure_without_an_effect_covers_zero_synthetic_campaign():
    covers = 0
    for seed in range(10):
        offers, lines, _ = _campaign(seed, effect=0.0)
        overall = measure_campaign(offers, lines, n_bootstrap=500, seed=seed).table.row(0, named=True)
        covers += overall["incremental_revenue_lower_95"] <= 0 <= overall["incremental_revenue_upper_95"]
    assert covers >= 8
    offers, lines, _ = _campaign(3, effect=0.0)
    assert measure_campaign(offers, lines, n_bootstrap=500, seed=3).table.row(0, named=True)["verdict"] == NOT_SIGNIFICANT


def test_measure_rates_and_roi_by_their_definitions():
    offers = pl.DataFrame({"customer_id": ["t1", "t2", "t3", "t4", "c1", "c2"], "product_id": "P", "segment": "S",
                           "group": [TREATMENT] * 4 + [CONTROL] * 2})
    lines = pl.DataFrame({"customer_id": ["t1", "t2", "c1", "t3"], "product_id": ["P", "P", "P", "Q"], "amount": [30.0, 30.0, 30.0, 8.0]})
    m = measure_campaign(offers, lines, cost_per_contact=2.0, margin=0.5, n_bootstrap=200)
    overall = m.table.row(0, named=True)
    assert (overall["n_treatment"], overall["n_control"]) == (4, 2)
    assert overall["conversion_treatment"] == 0.5 and overall["conversion_control"] == 0.5
    assert overall["revenue_per_customer_treatment"] == pytest.approx(68 / 4)
    assert overall["incremental_revenue"] == pytest.approx((68 / 4 - 30 / 2) * 4)
    assert overall["roi"] == pytest.approx((8.0 * 0.5 - 8.0) / 8.0)
    assert m.table["level"].to_list() == ["overall", "segment", "product"]
    product = m.table.row(2, named=True)
    assert product["incremental_revenue"] == pytest.approx((60 / 4 - 30 / 2) * 4)


def test_measure_refuses_targets_without_a_control_group():
    offers = pl.DataFrame({"customer_id": ["a"], "product_id": ["P"], "group": [TREATMENT]})
    with pytest.raises(InputError, match="the targets have no control group"):
        measure_campaign(offers, pl.DataFrame({"customer_id": ["a"], "product_id": ["P"], "amount": [1.0]}))


# --------------------------------------------------------------------------- command line


def test_cli_control_measure_and_opt_outs_on_the_sample(runner, tmp_path):
    from cli import app

    targets, rules, opt_outs = tmp_path / "t.csv", tmp_path / "r.csv", tmp_path / "optout.csv"
    opt_outs.write_text("customer_id\n000001\n000002\nnot-a-customer\n")
    result = runner.invoke(app, ["cross-sell", "--method", "rfm", "--as-of", "2024-06-30", "--targets", str(targets), "--control", "0.2",
                                 "--rules", str(rules), "--exclude-customers", str(opt_outs)])
    assert result.exit_code == 0, result.output
    assert "Opt-outs: 2 customers of --exclude-customers (3 ids) left out of the offers (10 rows)." in result.output
    assert "Control group:" in result.output and "association rules (support >= 0.50%, lift >= 1.5" in result.output
    offers = pl.read_csv(targets, infer_schema=False)
    assert not offers["customer_id"].is_in(["000001", "000002"]).any()
    assert set(offers["group"]) == {TREATMENT, CONTROL}
    assert 0.19 < (offers.unique("customer_id")["group"] == CONTROL).mean() < 0.21
    result = runner.invoke(app, ["measure", str(targets), "--start", "2024-07-01", "--cost-per-contact", "0.5", "--margin", "0.3", "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rows"][0]["level"] == "overall" and doc["n_control"] > 0 and doc["cost_per_contact"] == 0.5
    # No planted effect in the sample: overall the campaign shows nothing.
    assert doc["rows"][0]["verdict"] == NOT_SIGNIFICANT


def test_cli_measure_needs_a_start(runner, tmp_path):
    from cli import app

    path = tmp_path / "t.csv"
    path.write_text("customer_id,product_id,group\n1,P,treatment\n")
    result = runner.invoke(app, ["measure", str(path)])
    assert result.exit_code == 2 and "measure needs --start YYYY-MM-DD" in result.output


def test_one_report_format_failing_still_writes_the_others(runner, tmp_path, monkeypatch):
    import present.report
    from cli import app

    def broken(data, path):
        raise ValueError("more rows than a sheet holds")

    monkeypatch.setattr(present.report, "xlsx_report", broken)
    html, xlsx, md = tmp_path / "r.html", tmp_path / "r.xlsx", tmp_path / "r.md"
    result = runner.invoke(app, ["report", "--method", "rfm", "-o", str(html), "-o", str(xlsx), "-o", str(md)])
    assert result.exit_code == 1
    assert html.is_file() and md.is_file() and not xlsx.exists()
    assert f"could not write the report {xlsx} (ValueError: more rows than a sheet holds); written: {html}, {md}" in " ".join(result.output.split())


# --------------------------------------------------------------------------- the retail log


@requires_retail
@pytest.mark.slow
def test_retail_rules_are_bounded_and_the_report_writes_all_three_files(runner, tmp_path):
    from cli import app

    rules = tmp_path / "rules.csv"
    result = runner.invoke(app, ["cross-sell", str(ONLINE_RETAIL), *RETAIL_FLAGS, "--method", "rfm",
                                 "--rules", str(rules), "--bundles", str(tmp_path / "bundles.csv")])
    assert result.exit_code == 0, result.output
    kept = pl.read_csv(rules, infer_schema=False)
    assert 1_000 < kept.height < 100_000 and rules.stat().st_size < 20e6  # unbounded: 5.9 million rules, 896 MB
    assert "antecedent_description" in kept.columns
    assert "association rules" in result.output and "dropped" in result.output
    outputs = [tmp_path / f"r.{ext}" for ext in ("html", "xlsx", "md")]
    result = runner.invoke(app, ["report", str(ONLINE_RETAIL), *RETAIL_FLAGS, "--method", "rfm", *[a for p in outputs for a in ("-o", str(p))]])
    assert result.exit_code == 0, result.output
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in outputs)


def test_timing_on_a_sample_of_customers_is_close_to_timing_on_all(sample_run):
    from segments.associations import pair_timing, scaled_timing

    own = sample_run.model.own
    pairs = sample_run.model.pairs.filter(pl.col("co_owners") >= 200).select("i", "j", "co_owners")
    full = scaled_timing(pairs.join(pair_timing(own, pairs), on=["i", "j"]))
    sampled = scaled_timing(pairs.join(pair_timing(own, pairs, max_customers=2_500), on=["i", "j"]))  # every 2nd customer
    both = full.join(sampled, on=["i", "j", "co_owners"], suffix="_s")
    assert both.height == pairs.height > 50
    for count in ("bought_after", "same_order_owners"):
        assert ((both[count] - both[f"{count}_s"]).abs() / both["co_owners"]).max() < 0.15
    after = both.filter(pl.col("bought_after") >= 200)  # about 100 timed co-owners each
    assert ((after["median_days_after_s"] / after["median_days_after"] - 1).abs() < 0.25).mean() > 0.9


def test_report_measures_a_campaign_and_lists_no_opted_out_customer(tmp_path):
    import clvx
    from present.report import campaign_rows, customer_scores, markdown_report

    targets = tmp_path / "t.csv"
    offers = pl.DataFrame({"customer_id": [f"{k:06d}" for k in range(1, 401)], "product_id": "KT-01"})
    hold_out_control(offers, 0.25, seed=1).write_csv(targets)
    opt_outs = tmp_path / "optout.csv"
    opt_outs.write_text("customer_id\n000001\n000003\n")
    campaign = clvx.CampaignOptions(targets=targets, start=dt.date(2024, 7, 1), cost_per_contact=1.0, margin=0.4)
    result = clvx.report(clvx.Source(), segments=clvx.SegmentOptions(method="rfm"), campaign=campaign, exclude_customers=opt_outs)
    listed = customer_scores(result.data)["customer_id"]
    assert listed.len() == result.data.customers.height - 2 and not listed.is_in(["000001", "000003"]).any()
    rows = campaign_rows(result.data)
    assert rows["level"].to_list()[:1] == ["overall"] and rows.row(0, named=True)["n_control"] == 100
    assert "## Campaign: did the offers work?" in markdown_report(result.data)
    assert any("Opt-outs: 2 customers" in n.text for n in result.notices)


def test_measure_is_the_same_for_any_order_of_the_rows():
    rng = np.random.default_rng(4)
    n = 20_000
    offers = hold_out_control(_offers(n), 0.2, seed=4)
    buyers = offers["customer_id"].unique().sort().sample(fraction=0.4, seed=2)
    lines = pl.DataFrame({"customer_id": buyers, "product_id": rng.choice(["P", "Q", "OTHER"], buyers.len()),
                          "amount": rng.exponential(50.0, buyers.len())})
    first = measure_campaign(offers, lines, n_bootstrap=100, seed=1).table
    for shuffle in range(3):
        again = measure_campaign(offers.sample(fraction=1.0, shuffle=True, seed=shuffle),
                                 lines.sample(fraction=1.0, shuffle=True, seed=shuffle), n_bootstrap=100, seed=1).table
        assert first.equals(again)


def test_rules_from_the_support_bounded_pairs_equal_those_from_all_pairs():
    """The rules command builds only the pairs its support can keep; rules and the candidate count are those of all pairs."""
    tx = load_transactions(bundled_sample_path())
    bounds = RuleBounds(min_support=0.05, min_lift=0.0, per_product=1000)
    lean = run_baskets(tx, min_support=bounds.min_support)
    full = run_baskets(tx)
    assert lean.min_co_owners > 2 and 0 < lean.pairs.height < full.pairs.height and lean.n_candidates == full.pairs.height
    got, expected = crosssell_rules(lean, bounds), crosssell_rules(full, bounds)
    assert got.rules.equals(expected.rules) and got.rules.height > 10 and got.n_candidates == expected.n_candidates
    with pytest.raises(ValueError, match="needs run_baskets"):
        crosssell_rules(lean, RuleBounds(min_support=0.01))

"""Cross-sell: planted complements found, substitutes and owned products never offered, rules by definition."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from clv.load import load_transactions
from clv.sample import bundled_sample_dir, bundled_sample_path
from segments.associations import Ownership, association_rules, build_ownership, non_product_ids, pair_counts
from segments.crosssell import EVAL_KS, ranking_metrics
from segments.pipeline import crosssell_backtest, crosssell_rules, crosssell_targets, holdout_spend, run_crosssell
from tests.conftest import ONLINE_RETAIL, requires_retail

TRUTH = json.loads((bundled_sample_dir() / "truth.json").read_text())


@pytest.fixture(scope="module")
def sample_tx():
    return load_transactions(bundled_sample_path())


@pytest.fixture(scope="module")
def sample_run(sample_tx):
    return run_crosssell(sample_tx)


@pytest.fixture(scope="module")
def owned(sample_tx):
    return sample_tx.frame.filter(pl.col("amount") > 0).select("customer_id", "product_id").unique().collect()


def test_planted_complement_is_the_top_offer_for_owners_of_its_base(sample_run, owned):
    first = crosssell_targets(sample_run, top_k=1)
    for pair in TRUTH["complements"]:
        base = set(owned.filter(pl.col("product_id") == pair["base"])["customer_id"])
        comp = set(owned.filter(pl.col("product_id") == pair["complement"])["customer_id"])
        candidates = first.filter(pl.col("customer_id").is_in(sorted(base - comp)))
        assert candidates.height > 20, pair
        assert (candidates["product_id"] == pair["complement"]).mean() >= 0.9, pair


def test_owned_products_and_substitutes_are_never_offered(sample_run, owned):
    offers = crosssell_targets(sample_run, top_k=10)
    assert offers.join(owned, on=["customer_id", "product_id"], how="semi").height == 0
    base_of = {p: cat for cat, products in TRUTH["substitutes"].items() for p in products}
    owners_of_base = owned.filter(pl.col("product_id").is_in(list(base_of))).with_columns(pl.col("product_id").replace_strict(base_of).alias("category"))
    offered_base = offers.filter(pl.col("product_id").is_in(list(base_of))).with_columns(pl.col("product_id").replace_strict(base_of).alias("category"))
    assert offered_base.join(owners_of_base, on=["customer_id", "category"], how="semi").height == 0
    allowed = crosssell_targets(sample_run, top_k=10, allow_substitutes=True)
    assert allowed.join(owned, on=["customer_id", "product_id"], how="semi").height == 0


def test_planted_substitutes_are_detected_and_every_detected_pair_is_rarely_co_owned(sample_run, owned):
    subs = sample_run.model.substitutes.tocoo()
    products = sample_run.model.own.products
    found = {(products[int(i)], products[int(j)]) for i, j in zip(subs.row, subs.col, strict=True)}
    planted = {(a, b) for group in TRUTH["substitutes"].values() for a in group for b in group if a != b}
    assert planted <= found
    n = owned["customer_id"].n_unique()
    owners = dict(owned.group_by("product_id").len().iter_rows())
    by_customer = owned.group_by("customer_id").agg(pl.col("product_id"))
    for a, b in found:  # pods of different machines also qualify: nobody owns two kinds of machine
        both = by_customer.filter(pl.col("product_id").list.contains(a) & pl.col("product_id").list.contains(b)).height
        assert both < 0.5 * owners[a] * owners[b] / n


def test_targets_have_reasons_ranks_and_respect_max_offers(sample_run):
    offers = crosssell_targets(sample_run, top_k=5, max_offers=3)
    assert offers.columns == ["customer_id", "segment", "product_id", "rank", "score", "purchase_probability", "expected_revenue", "relation", "reason",
                             "because_of", "timing"]
    assert offers.group_by("customer_id").len()["len"].max() == 3
    assert offers["reason"].str.contains(r"^(bought .+; \d+% of its buyers also buy .+|popular in segment .+: \d+% own it)$").all()
    by_customer = offers.group_by("customer_id").agg(pl.col("score").sort_by("rank"))
    assert all(list(s) == sorted(s, reverse=True) for s in by_customer["score"])


def test_rule_metrics_match_their_definitions_on_a_hand_checked_basket():
    lines = pl.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "c", "d", "d"],
            "product_id": ["x", "y", "x", "y", "x", "y", "z"],
            "order_id": ["1", "1", "2", "3", "4", "5", "5"],
            "date": [dt.datetime(2024, 1, d) for d in (1, 1, 1, 9, 1, 1, 1)],
        }
    )
    own = build_ownership(lines)
    rules = association_rules(own, pair_counts(own, min_count=1))
    xy = rules.filter((pl.col("antecedent") == "x") & (pl.col("consequent") == "y")).row(0, named=True)
    # 4 customers; x owned by a, b, c; y by a, b, d; both by a, b.
    assert (xy["antecedent_owners"], xy["consequent_owners"], xy["co_owners"], xy["same_order_owners"]) == (3, 3, 2, 1)
    assert xy["support"] == pytest.approx(2 / 4)
    assert xy["confidence"] == pytest.approx(2 / 3)
    assert xy["lift"] == pytest.approx((2 / 3) / (3 / 4))
    assert xy["leverage"] == pytest.approx(2 / 4 - (3 / 4) * (3 / 4))
    assert xy["conviction"] == pytest.approx((1 - 3 / 4) / (1 - 2 / 3))
    assert xy["timing"] == "at checkout"  # 1 of 2 co-owners bought both in one order
    assert xy["bought_after"] == 1 and xy["median_days_after"] == pytest.approx(8)  # b bought y 8 days after x
    yz = rules.filter((pl.col("antecedent") == "z") & (pl.col("consequent") == "y")).row(0, named=True)
    assert yz["confidence"] == 1.0 and yz["conviction"] == float("inf")


def test_non_product_lines_are_detected():
    ordinary = [f"21{i:03d}" for i in range(40)]
    lines = pl.DataFrame(
        {
            "product_id": ["85123A", "85168B", "23444", "POST", "M", "DOT", "PADS", "X99", "CHEAP1", *ordinary],
            "amount": [15.3, 8.5, 30.0, 18.0, 40.0, 11.0, 0.001, 3.0, 0.0, *[5.0] * len(ordinary)],
            "description": ["WHITE HANGING HEART", "BLACK BAROQUE CARRIAGE CLOCK", "Next Day Carriage", "POSTAGE", "Manual",
                            "DOTCOM POSTAGE", "PADS TO MATCH ALL CUSHIONS", "SPECIAL", "FREEBIE", *["THING"] * len(ordinary)],
        }
    )
    out = dict(non_product_ids(lines, exclude="^X99$").iter_rows())
    assert out == {
        "23444": "service or fee line",
        "POST": "service or fee line",
        "M": "service or fee line",
        "DOT": "service or fee line",
        "PADS": "service code (no digits, unlike most ids)",
        "X99": "matches --exclude-products",
        "CHEAP1": "zero, tiny or negative prices",
    }


def test_baseline_metrics_on_known_lists():
    truth = sparse.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=float))
    revenue = truth.multiply(10.0).tocsr()
    recs = np.array([[1, 0, 2, 3, 0, 0, 0, 0, 0, 0], [2, 3, 0, 1, 1, 1, 1, 1, 1, 1]])
    m = ranking_metrics(recs, truth, revenue, n_products=4)
    assert m.hit_rate[1] == 0.5 and m.hit_rate[3] == 1.0
    assert m.precision[1] == 0.5 and m.recall[1] == pytest.approx((1 / 2 + 0) / 2)
    assert m.revenue_captured[3] == pytest.approx(20 / 30)
    assert set(EVAL_KS) == {1, 3, 5, 10}


def test_sample_backtest_beats_every_baseline(sample_tx):
    bt = crosssell_backtest(sample_tx, dt.date(2024, 6, 30))
    for name, base in bt.baselines.items():
        for k in EVAL_KS:
            assert bt.model.hit_rate[k] >= base.hit_rate[k], (name, k)
    assert bt.model.hit_rate[5] >= 1.2 * bt.baselines["popularity"].hit_rate[5]
    total = bt.calibration.filter(pl.col("decile") == "all").row(0, named=True)
    assert total["expected_buyers"] == pytest.approx(total["actual_buyers"], rel=0.2)
    assert total["expected_revenue"] == pytest.approx(total["actual_revenue"], rel=0.2)
    seg = bt.segment_calibration.select(pl.col("expected_buyers", "actual_buyers").sum()).row(0)
    assert seg[0] == pytest.approx(seg[1], rel=0.2)


@pytest.mark.slow
def test_pair_counting_stays_sparse_on_a_large_basket_set():
    """300k customers x 20k products, ~8 products each: a dense co-occurrence table would need 3.2 GB."""
    rng = np.random.default_rng(0)
    n_customers, n_products, per = 300_000, 20_000, 8
    rows = np.repeat(np.arange(n_customers), per)
    popularity = 1.0 / np.arange(1, n_products + 1)
    cols = rng.choice(n_products, size=rows.size, p=popularity / popularity.sum())
    X = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_customers, n_products))
    X.data[:] = 1.0
    X.eliminate_zeros()
    days = X.copy()
    days.data = rng.uniform(1, 365, size=days.nnz)
    own = Ownership(X, days, pl.Series(np.arange(n_customers).astype(str)), pl.Series(np.arange(n_products).astype(str)), None)
    tracemalloc.start()
    pairs = pair_counts(own, min_count=2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert pairs.height > 10_000
    assert peak < 1.5e9


def test_rules_from_the_sample_mark_complements_as_follow_ups(sample_run):
    rules = crosssell_rules(sample_run).rules
    planted = rules.join(pl.DataFrame([{"antecedent": c["base"], "consequent": c["complement"]} for c in TRUTH["complements"]]), on=["antecedent", "consequent"], how="semi")
    assert planted.height == len(TRUTH["complements"])
    assert planted["timing"].str.contains(r"^follow-up, \d+ days after buying ").all() and (planted["median_days_after"] > 0).all()
    assert (planted["lift"] > 5).all()


@requires_retail
@pytest.mark.slow
def test_retail_targets_beat_popularity_by_a_third():
    from clv.load import ColumnMapping

    tx = load_transactions(ONLINE_RETAIL, ColumnMapping(customer="customer_id", date="invoice_date", price="price", quantity="quantity", order="invoice", product="stock_code"))
    bt = crosssell_backtest(tx, dt.date(2011, 9, 1))
    assert bt.model.hit_rate[5] >= 1.3 * bt.baselines["popularity"].hit_rate[5]
    assert bt.model.hit_rate[5] > bt.baselines["segment_popularity"].hit_rate[5]



def test_holdout_spend_is_exact_whatever_the_row_order():
    """0.1 + 0.2 + 0.3 is 0.6000000000000001 in one float order and 0.6 in another: money must not care."""
    customers, products = pl.Series(["a", "b"]), pl.Series(["p", "q"])
    lines = pl.DataFrame({"customer_id": ["a"] * 3 + ["b"], "product_id": ["p"] * 3 + ["q"], "amount": [0.1, 0.2, 0.3, 5.0]})
    for order in (lines, lines.reverse()):
        spend = holdout_spend(order.lazy(), customers, products).sort("_u")
        assert spend["amount"].to_list() == [0.6, 5.0]
        assert spend.select("_u", "_j").rows() == [(0, 0), (1, 1)]


def test_a_segment_table_estimated_from_a_sample_says_so_in_every_medium(sample_tx, sample_run, monkeypatch):
    """Beyond TABLE_CELLS the table's sums come from a sample of each segment: the run keeps its size and the terminal
    caption, the HTML and the Markdown report say it; owners stay whole counts over everyone."""
    from present.render import ranking_sample_note
    from present.report import html_report, markdown_report
    from segments import crosssell
    from segments.pipeline import build_report

    assert sample_run.ranking_customers is None and ranking_sample_note(sample_run) == ""
    model = sample_run.model
    monkeypatch.setattr(crosssell, "TABLE_CELLS", model.own.X.shape[1] * len(model.segments) * 200)  # 200 per segment
    data = build_report(sample_tx, title="t")
    run = data.cross_sell
    assert run.ranking_customers == int(np.minimum(np.bincount(run.model.segment_of), 200).sum()) < len(run.model.own.customers)
    note = ranking_sample_note(run)
    assert f"estimated from {run.ranking_customers:,} of the {len(run.model.own.customers):,} customers" in note
    products = run.model.own.products.to_list()
    for row in run.ranking.iter_rows(named=True):
        in_segment = run.model.segment_of == run.model.segments.index(row["segment"])
        assert row["owners"] == int(run.model.own.X[in_segment][:, products.index(row["product_id"])].sum())
    assert f"estimated from {run.ranking_customers:,} of the" in markdown_report(data)
    assert f"estimated from {run.ranking_customers:,} of the" in html_report(data)

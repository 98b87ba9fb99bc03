"""The cross-sell item model (a sparse EASE), variants, offer relations and calibrated probabilities."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from segments.associations import build_ownership
from segments.crosssell import Calibration, build_model, customer_targets, explain_targets, fit_calibration, item_weights, offer_relations
from segments.variants import COLLECTED_LIFT, MIN_COLLECTED_CO_OWNERS, split_variants, variant_pairs


def ease_steck_2019(X: np.ndarray, lam: float) -> np.ndarray:
    """EASE's closed form (Steck 2019, eq. 8): B = I - P diagMat(1 / diag(P)), P = (X'X + lambda I)^-1."""
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def test_sparse_ease_equals_steck_2019_closed_form_when_every_product_is_a_neighbour():
    rng = np.random.default_rng(3)
    X = (rng.random((80, 12)) < 0.3).astype(float)
    W = item_weights(sparse.csr_matrix(X), neighbours=11, ridge=5.0).toarray()
    np.testing.assert_allclose(W, ease_steck_2019(X, 5.0), atol=1e-10)


def test_sparse_ease_keeps_only_the_nearest_neighbours_of_each_product():
    rng = np.random.default_rng(4)
    X = sparse.csr_matrix((rng.random((200, 30)) < 0.2).astype(float))
    W = item_weights(X, neighbours=5, ridge=10.0)
    assert (np.diff(W.tocsc().indptr) <= 5).all()  # at most 5 inputs per product
    assert W.diagonal().sum() == 0.0


CATALOGUE = pl.DataFrame({
    "product_id": ["20725", "20727", "21868", "22072", "22073", "85099B", "85099F", "22222"],
    "description": ["LUNCH BAG RED RETROSPOT", "LUNCH BAG BLACK SKULL", "REGENCY TEAPOT ROSES", "REGENCY TEA COSY",
                    "TEA COSY BLUE STRIPE", "JUMBO BAG RED RETROSPOT", "JUMBO BAG STRAWBERRY", "CAKE CASES"],
})


def variant_set(products: pl.DataFrame) -> set[tuple[str, str]]:
    V = variant_pairs(products, products["product_id"]).tocoo()
    ids = products["product_id"]
    return {(ids[int(i)], ids[int(j)]) for i, j in zip(V.row, V.col, strict=True)}


def test_variants_from_a_hand_made_catalogue():
    found = variant_set(CATALOGUE)
    assert ("20725", "20727") in found and ("20727", "20725") in found  # lunch bag: red retrospot vs black skull
    assert ("85099B", "85099F") in found  # jumbo bag in two patterns
    assert ("22072", "22073") in found  # two tea cosies
    assert not {p for p in found if {"21868", "22072"} <= set(p)}  # a teapot and its cosy are not variants
    assert ("20725", "85099B") not in found  # a lunch bag and a jumbo bag are different products
    assert not {p for p in found if "22222" in p}


def test_variants_need_the_same_category_when_there_is_one():
    with_category = CATALOGUE.with_columns(pl.Series("category", ["bags", "lunch", "tea", "tea", "tea", "bags", "bags", "baking"]))
    found = variant_set(with_category)
    assert ("20725", "20727") not in found and ("85099B", "85099F") in found


def ownership_matrix(columns: list[list[int]], n_customers: int) -> sparse.csr_matrix:
    """Customers x products ones: ``columns[j]`` lists the owners of product j."""
    rows = [u for col in columns for u in col]
    cols = [j for j, col in enumerate(columns) for _ in col]
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_customers, len(columns)))


def test_split_variants_known_answers_on_a_tiny_log():
    """40 shops. Lunch bags 0/1: the same 10 shops own both (lift 4): collected. Jars 2/3: 10 shops each,
    none owns both: competing. Mugs 4/5: 3 shops own both (lift 4.4, too few to tell): competing."""
    X = ownership_matrix([list(range(10)), list(range(10)), list(range(10, 20)), list(range(20, 30)),
                          [30, 31, 32, 33, 34, 35], [30, 31, 32, 36, 37, 38]], 40)
    pairs = [(0, 1), (2, 3), (4, 5)]
    V = sparse.csr_matrix((np.ones(6, dtype=bool), ([i for i, _ in pairs] + [j for _, j in pairs], [j for _, j in pairs] + [i for i, _ in pairs])),
                          shape=(6, 6))
    competing, collected = split_variants(V, X)
    assert {tuple(p) for p in np.argwhere(collected.toarray())} == {(0, 1), (1, 0)}
    assert {tuple(p) for p in np.argwhere(competing.toarray())} == {(2, 3), (3, 2), (4, 5), (5, 4)}
    assert MIN_COLLECTED_CO_OWNERS > 3 and COLLECTED_LIFT <= 4  # the thresholds the answers above rely on


def test_split_variants_counts_co_owners_the_same_in_blocks(monkeypatch):
    import segments.variants as variants

    """Against a dense oracle of the rule: co-owners from X'X, lift = co-owners x n / (owners_i x owners_j)."""
    rng = np.random.default_rng(5)
    dense = (rng.random((300, 40)) < 0.15).astype(float)
    dense[:, 20:30] = np.maximum(dense[:, :10], rng.random((300, 10)) < 0.03)  # products 20-29 mostly bought with 0-9
    X = sparse.csr_matrix(dense)
    upper = np.triu(rng.random((40, 40)) < 0.3, k=1)
    upper[np.arange(10), np.arange(20, 30)] = True
    V = sparse.csr_matrix(upper | upper.T)
    G = dense.T @ dense
    owners = dense.sum(axis=0)
    oracle = upper & (G >= MIN_COLLECTED_CO_OWNERS) & (G * 300 / np.outer(owners, owners) >= COLLECTED_LIFT)
    oracle = oracle | oracle.T
    whole = split_variants(V, X)
    monkeypatch.setattr(variants, "PAIR_BLOCK", 7)
    blocked = split_variants(V, X)
    for a, b in zip(whole, blocked, strict=True):
        assert (a != b).nnz == 0
    np.testing.assert_array_equal(whole[1].toarray(), oracle)
    np.testing.assert_array_equal(whole[0].toarray(), (upper | upper.T) & ~oracle)
    assert oracle.sum() >= 20


def collector_model():
    """Twenty shops, all with the red lunch bag (20725) and the black skull one (20727), a set they collect;
    ten own the red jumbo bag (85099B), ten the strawberry one (85099F), none both: they chose one.
    Sixty more shops own only a teapot; three of them also own one or both bags (lift of the
    two bags 21 x 80 / 22^2 = 3.5)."""
    rows = []
    for c in range(20):
        rows += [(f"c{c:02d}", "20725", 1), (f"c{c:02d}", "20727", 5), (f"c{c:02d}", "85099B" if c < 10 else "85099F", 2)]
    for c in range(20, 80):
        rows.append((f"c{c:02d}", "21868", 1))
    rows += [("c20", "20725", 3), ("c20", "20727", 3), ("c21", "20727", 4), ("c22", "20725", 4)]
    lines = pl.DataFrame(rows, schema=["customer_id", "product_id", "day"], orient="row").with_columns(
        (pl.lit(dt.datetime(2024, 1, 1)) + pl.duration(days=pl.col("day"))).alias("date"))
    own = build_ownership(lines)
    customers = pl.DataFrame({"customer_id": own.customers, "segment": ["all"] * len(own.customers), "p_active": [0.5] * len(own.customers)})
    typical = pl.DataFrame({"product_id": own.products, "value": [10.0] * len(own.products)})
    return build_model(own, customers, typical, products=CATALOGUE)


def test_a_variant_its_owners_also_buy_is_offered_by_default_and_labelled_so():
    model = collector_model()
    idx = {p: i for i, p in enumerate(model.own.products.to_list())}
    cust = {c: i for i, c in enumerate(model.own.customers.to_list())}
    offers = offer_relations(model, explain_targets(model, customer_targets(model, top_k=4)))
    # c21 owns the teapot and the black bag: the red one (its owners' other colour) is offered, labelled as such.
    red_for_c21 = offers.filter((pl.col("_u") == cust["c21"]) & (pl.col("_j") == idx["20725"]))
    assert red_for_c21["relation"].to_list() == ["variant, often bought together"]
    # Owners of one jumbo bag chose it: the other pattern is never offered to them by default...
    jumbo = offers.filter(pl.col("_u") < cust["c20"])
    assert not jumbo.filter(pl.col("_j").is_in([idx["85099B"], idx["85099F"]])).height
    # ...and only when asked, labelled a variant.
    allowed = offer_relations(model, explain_targets(model, customer_targets(model, top_k=4, allow_variants=True)))
    other = allowed.filter((pl.col("_u") == cust["c00"]) & (pl.col("_j") == idx["85099F"]))
    assert other["relation"].to_list() == ["variant"]


def tiny_model(*, allow: bool = False):
    """Twelve shops: all own the red lunch bag; eight also bought the black one, which the item model would offer.

    Everyone owns the red bag, so owning it says nothing about the black one (lift 1): a
    competing variant, offered only when asked.
    """
    rows = []
    for c in range(12):
        rows.append((f"c{c:02d}", "20725", f"o{c}a", 1))
        if c < 8:
            rows.append((f"c{c:02d}", "20727", f"o{c}b", 20))  # later: a variant
            rows.append((f"c{c:02d}", "21868", f"o{c}a", 1))  # teapot in the same order as the red bag
            rows.append((f"c{c:02d}", "22072", f"o{c}c", 30))  # cosy, always after the teapot
    lines = pl.DataFrame(rows, schema=["customer_id", "product_id", "order_id", "day"], orient="row").with_columns(
        (pl.lit(dt.datetime(2024, 1, 1)) + pl.duration(days=pl.col("day"))).alias("date"))
    own = build_ownership(lines)
    customers = pl.DataFrame({"customer_id": own.customers, "segment": ["all"] * len(own.customers), "p_active": [0.5] * len(own.customers)})
    typical = pl.DataFrame({"product_id": own.products, "value": [10.0] * len(own.products)})
    return build_model(own, customers, typical, products=CATALOGUE)


def test_a_variant_of_an_owned_product_is_offered_only_when_allowed():
    model = tiny_model()
    black = int(np.flatnonzero(model.own.products.to_numpy() == "20727")[0])
    late = customer_targets(model, top_k=3).filter(pl.col("_u") >= 8)  # own the red bag only
    assert late.height and black not in late["_j"].to_list()
    allowed = customer_targets(model, top_k=3, allow_variants=True).filter(pl.col("_u") >= 8)
    labelled = offer_relations(model, explain_targets(model, allowed))
    assert labelled.filter(pl.col("product_id") == "20727")["relation"].to_list() == ["variant"] * 4


def test_offer_relations_tell_accessories_and_set_members_from_complements():
    model = tiny_model()
    own = model.own
    idx = {p: i for i, p in enumerate(own.products.to_list())}
    cust = {c: i for i, c in enumerate(own.customers.to_list())}
    targets = pl.DataFrame({"_u": [cust["c09"], cust["c09"]], "_j": [idx["22072"], idx["21868"]], "rank": [1, 2],
                            "score": [0.5, 0.4], "customer_id": ["c09", "c09"], "product_id": ["22072", "21868"]})
    # c09 owns only the red bag: explain cites it for both.
    explained = explain_targets(model, targets).with_columns(pl.lit(idx["21868"]).alias("_i"))
    relation = offer_relations(model, explained.head(1))["relation"].item()
    assert relation == "accessory"  # every cosy buyer owns the teapot and bought the cosy later
    bag_to_teapot = explain_targets(model, targets).with_columns(pl.lit(idx["20725"]).alias("_i")).tail(1)
    assert offer_relations(model, bag_to_teapot)["relation"].item() == "bundle"  # bought in the red bag's order


def blank_model(n: int, p: int):
    """A model of ``n`` customers (one segment, P(active) 1) and ``p`` products nobody owns: for planting scores in its place."""
    own = build_ownership(pl.DataFrame({"customer_id": [f"c{u:04d}" for u in range(n)], "product_id": ["p00"] * n,
                                        "date": [dt.datetime(2024, 1, 1)] * n}))
    own = type(own)(sparse.csr_matrix((n, p)), sparse.csr_matrix((n, p)), own.customers, pl.Series([f"p{j:02d}" for j in range(p)]), None)
    customers = pl.DataFrame({"customer_id": own.customers, "segment": ["all"] * n, "p_active": [1.0] * n})
    return build_model(own, customers, pl.DataFrame({"product_id": own.products, "value": [2.0] * p}))


def test_calibration_is_isotonic_in_the_score_and_matches_observed_rates(monkeypatch):
    """Planted: a pair with score s is bought with probability s / 2; the fitted curve recovers it within noise."""
    rng = np.random.default_rng(7)
    n, p = 4_000, 40
    model = blank_model(n, p)
    scores = rng.random((n, p))  # planted in place of the item model's
    truth = sparse.csr_matrix((rng.random((n, p)) < scores / 2).astype(float))
    spend = truth.multiply(3.0).tocsr()
    import segments.crosssell as cs

    monkeypatch.setattr(cs, "offer_scores", lambda m, rows, **_: scores[rows])
    cal = fit_calibration(model, truth, spend, np.arange(n), 30)
    assert isinstance(cal, Calibration)
    assert np.all(np.diff(cal.probability) >= 0)
    grid = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(cal(grid), grid / 2, atol=0.05)
    assert cal.value_ratio == pytest.approx(1.5)  # new buyers spent 3 against a median line of 2


def test_customers_back_after_an_absence_get_the_first_purchase_rate_planted_for_their_decile(monkeypatch):
    """Planted: customers away 100 days buy a pair of score s with probability 0.8 s, those away 5 days with 0.2 s.

    One curve in the score alone says 0.5 s to both; the ratio per decile of days absent
    recovers each group's rate, and the offers keep their order within each customer.
    """
    from dataclasses import replace

    import segments.crosssell as cs

    rng = np.random.default_rng(11)
    n, p = 4_000, 40
    away = np.arange(n) % 2 == 0
    model = replace(blank_model(n, p), absence=np.where(away, 100.0, 5.0))
    scores = rng.random((n, p))
    rate = np.where(away[:, None], 0.8, 0.2) * scores
    truth = sparse.csr_matrix((rng.random((n, p)) < rate).astype(float))
    monkeypatch.setattr(cs, "offer_scores", lambda m, rows, **_: scores[rows])
    cal = fit_calibration(model, truth, truth.multiply(3.0).tocsr(), np.arange(n), 30)
    np.testing.assert_allclose(cal(np.array([0.2, 0.5, 0.8])), [0.1, 0.25, 0.4], atol=0.05)  # the pooled curve
    np.testing.assert_allclose(cal.absence_ratio(np.array([100.0, 5.0])), [1.6, 0.4], rtol=0.1)
    probability = cs.offer_probability(replace(model, calibration=cal), np.arange(n), scores)
    np.testing.assert_allclose(probability[away].sum() / rate[away].sum(), 1.0, rtol=0.05)
    np.testing.assert_allclose(probability[~away].sum() / rate[~away].sum(), 1.0, rtol=0.05)
    same_order = np.argsort(-probability, axis=1, kind="stable") == np.argsort(-cal(scores), axis=1, kind="stable")
    assert same_order.all()
    assert cal.absence_ratio(None) == 1.0


def test_days_absent_counts_from_each_customers_last_first_purchase_to_the_logs_last():
    """Hand-made: first purchases on days 0 and 10 (a), 3 (b), 30 (c): absences 20, 27 and 0 days."""
    from segments.crosssell import days_absent

    day = lambda d: dt.datetime(2024, 1, 1) + dt.timedelta(days=d)  # noqa: E731
    own = build_ownership(pl.DataFrame({"customer_id": ["a", "a", "b", "c"], "product_id": ["x", "y", "x", "z"],
                                        "date": [day(0), day(10), day(3), day(30)]}))
    np.testing.assert_allclose(days_absent(own), [20.0, 27.0, 0.0])


def test_the_item_model_and_the_offers_report_their_progress_in_shares_that_sum_to_one(monkeypatch):
    import segments.crosssell as crosssell

    rng = np.random.default_rng(5)
    X = sparse.csr_matrix((rng.random((300, 40)) < 0.2).astype(float))
    monkeypatch.setattr(crosssell, "SOLVE_BATCH", 7)  # several batches
    shares: list[float] = []
    item_weights(X, neighbours=5, ridge=10.0, advance=shares.append)
    assert len(shares) > 1 and sum(shares) == pytest.approx(1.0)
    model = tiny_model()
    monkeypatch.setattr(crosssell, "CHUNK_CELLS", 8)  # two customers per block
    shares = []
    customer_targets(model, top_k=2, advance=shares.append)
    assert len(shares) == 6 and sum(shares) == pytest.approx(1.0)


def test_calibration_warnings_name_each_sum_that_misses_by_more_than_a_fifth():
    from segments.crosssell import calibration_warnings

    offers = pl.DataFrame({"decile": ["10", "all"], "expected_buyers": [50.0, 100.0], "actual_buyers": [60.0, 110.0],
                           "expected_revenue": [500.0, 650.0], "actual_revenue": [900.0, 1000.0]})
    ranking = pl.DataFrame({"expected_buyers": [10.0, 10.0], "actual_buyers": [9.0, 12.0],
                            "expected_revenue": [100.0, 100.0], "actual_revenue": [90.0, 120.0]})
    notes = calibration_warnings(offers, ranking, 92)
    assert len(notes) == 1  # buyers 0.91x and the ranking (20 / 21, 200 / 210) hold; offers' revenue 0.65x does not
    assert "top offers: expected revenue 650 against 1,000 actual (0.65x)" in notes[0] and "buyers" not in notes[0].split("on this")[0]
    assert "92 days" in notes[0]
    assert calibration_warnings(offers.with_columns(pl.col("expected_revenue") * 1.5), ranking, 92) == ()


def _purchases(rows: list[tuple[str, str, int, float]]) -> pl.DataFrame:
    """A purchases aggregate (customer, product, orders, revenue; one line per order) and its inner split equal to it."""
    frame = pl.DataFrame(rows, schema=["customer_id", "product_id", "n_orders", "revenue"], orient="row")
    return frame.with_columns(pl.col("n_orders").alias("n_lines"), pl.col("n_orders").alias("inner_orders"),
                              pl.col("n_orders").alias("inner_lines"), pl.col("revenue").alias("inner_revenue"))


def test_typical_values_shrink_a_single_bulk_order_toward_the_catalogue_on_a_log_scale():
    from segments.crosssell import TYPICAL_PSEUDO_OWNERS, typical_order_values

    # Three products bought by 20 shops at 10 an order; one bought once, in bulk, for 10,000.
    purchases = _purchases([(f"c{u}", p, 1, 10.0) for p in "abc" for u in range(20)] + [("bulk", "jar", 1, 10_000.0)])
    for prefix in ("", "inner_"):
        values = dict(typical_order_values(purchases, prefix).iter_rows())
        assert values["a"] == pytest.approx(10.0)  # the catalogue's median itself: nothing to shrink
        expected = np.exp((np.log(10_000.0) + TYPICAL_PSEUDO_OWNERS * np.log(10.0)) / (1 + TYPICAL_PSEUDO_OWNERS))
        assert values["jar"] == pytest.approx(expected) and values["jar"] < 40


def test_customer_scale_is_spend_over_the_typical_values_of_the_same_orders():
    from segments.crosssell import SCALE_PSEUDO_LINES, customer_spend_scale

    typical = pl.DataFrame({"product_id": ["a", "b"], "value": [10.0, 20.0]})
    purchases = _purchases([("shop", "a", 1, 5.0), ("shop", "b", 1, 10.0), ("carton", "a", 2, 200.0)])
    scale = dict(customer_spend_scale(purchases, typical).iter_rows())
    shrink = 2 / (2 + SCALE_PSEUDO_LINES)  # two orders each against the pseudo-orders at the typical value
    assert scale == {"shop": pytest.approx(0.5**shrink), "carton": pytest.approx(10.0**shrink)}
    assert dict(customer_spend_scale(purchases, typical, "inner_").iter_rows()) == scale
    one_bulk_order = _purchases([("bulk", "a", 1, 50_000.0)])
    assert customer_spend_scale(one_bulk_order, typical)["scale"].item() == pytest.approx(5_000 ** (1 / (1 + SCALE_PSEUDO_LINES)))


def test_spend_per_new_buyer_uses_the_ratio_of_its_decile_of_prediction():
    """Planted regression to the mean: buyers predicted to spend little spend twice that, the big ones half."""
    from segments.crosssell import value_deciles

    predicted = np.r_[np.full(100, 1.0), np.full(100, 100.0)]
    paid = np.r_[np.full(100, 2.0), np.full(100, 50.0)]
    edges, ratios = value_deciles(predicted, paid, float(paid.sum() / predicted.sum()))
    cal = Calibration(np.zeros(2), np.zeros(1), float(paid.sum() / predicted.sum()), 30, 1, 200, value_edges=edges, value_ratios=ratios)
    np.testing.assert_allclose(cal.spend(np.array([1.0, 100.0])), [2.0, 50.0])
    assert value_deciles(predicted[:50], paid[:50], 1.0) == (None, None)  # too few purchases per decile: one ratio


def test_segment_expected_revenue_sums_each_non_owners_probability_times_their_own_spend():
    """Oracle: the segment table's revenue is the per-customer sum, so a wholesaler's line size counts once, for them."""
    from segments.crosssell import expected_by_segment, model_scores, value_per_buyer

    model = collector_model()
    n, p = model.own.X.shape
    scale = np.where(np.arange(n) % 7 == 0, 10.0, 0.5)  # a few wholesalers among shops
    model = type(model)(**{**model.__dict__, "customer_scale": scale})
    buyers, revenue = expected_by_segment(model)
    probability, _ = model_scores(model, slice(0, n))
    u, j = np.meshgrid(np.arange(n), np.arange(p), indexing="ij")
    np.testing.assert_allclose(revenue[0], (probability * value_per_buyer(model, u, j)).sum(axis=0))
    np.testing.assert_allclose(buyers[0], probability.sum(axis=0))
    assert np.allclose(value_per_buyer(model, np.array([0, 1]), np.array([0, 0])), [100.0, 5.0])  # typical 10 x scale, no calibration


def test_offers_calibrate_only_their_scores_to_the_probabilities_of_every_score_oracle_model_scores():
    """Offers' probabilities (only the kept scores calibrated) are, bit for bit, the full matrix's at the same cells."""
    from segments.crosssell import model_scores

    base = collector_model()
    edges = np.r_[-np.inf, np.linspace(0.0, 0.6, 9), np.inf]
    calibration = Calibration(edges, np.linspace(0.05, 0.9, len(edges) - 1), 1.0, 30, 10, 50)
    model = type(base)(**{**base.__dict__, "calibration": calibration,
                          "p_active": np.linspace(0.2, 0.9, base.own.X.shape[0])})
    targets = customer_targets(model, top_k=3)
    probability, _ = model_scores(model, slice(0, model.own.X.shape[0]))
    expected = probability[targets["_u"].to_numpy(), targets["_j"].to_numpy()]
    assert targets["purchase_probability"].to_numpy().tolist() == expected.tolist()
    assert len(set(expected.tolist())) > 3  # the curve and P(active) both vary across the offers


def test_rank_bands_follow_the_customers_own_list_and_ties_share_the_better_band():
    from segments.crosssell import SPEND_RANK_EDGES, rank_bands

    assert SPEND_RANK_EDGES == (5, 20, 100)
    score = np.r_[np.arange(150, 0, -1.0), -np.inf][None, :].repeat(2, axis=0)  # ranks 1..150 and a product not allowed
    score[1, 5] = score[1, 4]  # the 6th ties with the 5th
    band = rank_bands(score)
    assert band[0, :5].tolist() == [0] * 5 and band[0, 5:20].tolist() == [1] * 15 and band[0, 20:100].tolist() == [2] * 80
    assert band[0, 100:].tolist() == [3] * 51  # below the top 100, and the -inf
    assert band[1, 5] == 0 and band[1, 6] == 1
    shuffled = np.random.default_rng(0).permutation(score.shape[1])
    assert (rank_bands(score[:, shuffled]) == band[:, shuffled]).all()  # a product's band follows its score, not its column


def test_spend_rank_ratios_recover_a_planted_premium_of_top_offers_and_keep_the_total():
    """Planted: buyers of a customer's top-5 products spend twice the prediction, the rest exactly it (heavy tail aside)."""
    from segments.crosssell import MIN_VALUE_BIN_PURCHASES, rank_ratios_of

    band = np.r_[np.zeros(100, dtype=np.int64), np.full(900, 3)]
    predicted = np.ones(1000)
    paid = np.where(band == 0, 2.0, 1.0)
    ratios = rank_ratios_of(band, predicted, paid)
    assert ratios is not None
    assert ratios[0] / ratios[3] == pytest.approx(2.0)
    assert ratios[1] == ratios[2] == pytest.approx(ratios[3] * np.exp(np.mean(np.log(paid))))  # no purchases there: 1 before the scaling
    assert (predicted * ratios[band]).sum() == pytest.approx(paid.sum())  # the inner split's total still holds
    paid_tail = paid.copy()
    paid_tail[0] = 1_000.0  # one huge order among the top 5 moves their factor by a geometric share, not its revenue share
    assert rank_ratios_of(band, predicted, paid_tail)[0] / rank_ratios_of(band, predicted, paid_tail)[3] < 2.3
    assert rank_ratios_of(band[:MIN_VALUE_BIN_PURCHASES - 1], predicted[:MIN_VALUE_BIN_PURCHASES - 1], paid[:MIN_VALUE_BIN_PURCHASES - 1]) is None


def test_offers_and_segment_table_spend_use_the_same_rank_band_of_each_customers_list():
    """Oracle: an offer's expected revenue is its probability x value_per_buyer at the band rank_bands gives the full row."""
    from segments.crosssell import expected_by_segment, model_scores, rank_bands, value_per_buyer

    n, p = 4, 40
    trend = np.linspace(1.0, 0.1, p)
    trend[5] = trend[4]  # the 6th product ties with the 5th: both in the top band
    trend[21] = trend[19]  # the 22nd ties with the 20th
    edges = np.r_[-np.inf, np.linspace(0.0, 1.0, 9), np.inf]
    calibration = Calibration(edges, np.linspace(0.05, 0.9, len(edges) - 1), 1.0, 30, 10, 50, rank_ratios=np.array([3.0, 2.0, 1.0, 0.5]))
    model = type(blank := blank_model(n, p))(**{**blank.__dict__, "trend": trend, "calibration": calibration, "p_active": np.linspace(0.2, 0.9, n)})
    probability, score = model_scores(model, slice(0, n))
    u, j = np.meshgrid(np.arange(n), np.arange(p), indexing="ij")
    band = rank_bands(score)
    assert band[0, :6].tolist() == [0] * 6 and band[0, 6:20].tolist() == [1] * 14 and band[0, 21] == 1 and band[0, 20] == 2
    revenue = probability * value_per_buyer(model, u, j, band)
    targets = customer_targets(model, top_k=30)  # offers below the top 5 and the top 20 too
    tu, tj = targets["_u"].to_numpy(), targets["_j"].to_numpy()
    np.testing.assert_allclose(targets["expected_revenue"].to_numpy(), revenue[tu, tj])
    np.testing.assert_allclose(expected_by_segment(model)[1][0], revenue.sum(axis=0))
    plain = targets["purchase_probability"].to_numpy() * value_per_buyer(model, tu, tj)
    assert sorted(set(np.round(targets["expected_revenue"].to_numpy() / plain, 9).tolist())) == [1.0, 2.0, 3.0]


def random_model(sizes: tuple[int, ...], p: int, seed: int = 0):
    """Customers in segments of ``sizes`` owning random products (each segment its own tastes), P(active) varying: for sums."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    segment = np.repeat(np.arange(len(sizes)), sizes)
    taste = rng.dirichlet(np.full(p, 0.5), size=len(sizes))
    X = np.zeros((n, p))
    for u in range(n):
        X[u, rng.choice(p, size=rng.integers(1, 6), replace=False, p=taste[segment[u]])] = 1.0
    X = sparse.csr_matrix(X)
    T = X.multiply(rng.integers(1, 300, size=X.shape)).tocsr()
    own = build_ownership(pl.DataFrame({"customer_id": ["c0"], "product_id": ["p0"], "date": [dt.datetime(2024, 1, 1)]}))
    own = type(own)(X, T, pl.Series([f"c{u:04d}" for u in range(n)]), pl.Series([f"p{j:03d}" for j in range(p)]), None)
    customers = pl.DataFrame({"customer_id": own.customers, "segment": [f"s{s}" for s in segment], "p_active": rng.uniform(0.1, 0.9, n)})
    return build_model(own, customers, pl.DataFrame({"product_id": own.products, "value": rng.uniform(1.0, 30.0, p)}))


def test_segment_table_from_a_sample_of_each_segment_estimates_everyones_sums_horvitz_thompson(monkeypatch):
    """Oracle: the table over every customer. Drawn from each segment and weighted up to its size, the sums estimate it."""
    from segments import crosssell

    model = random_model((600, 300, 80), 40)
    full_buyers, full_revenue = crosssell.expected_by_segment(model)
    assert crosssell.table_sample(model) is None  # 980 x 40 cells: everyone
    monkeypatch.setattr(crosssell, "TABLE_CELLS", 40 * 3 * 100)  # 100 customers per segment
    rows, weights = crosssell.table_sample(model)
    assert np.all(np.diff(rows) > 0) and len(rows) == 280
    np.testing.assert_allclose(np.bincount(model.segment_of[rows], weights=weights), [600, 300, 80])  # each segment's size
    again = crosssell.table_sample(model)
    assert np.array_equal(again[0], rows) and np.array_equal(again[1], weights)  # seeded
    buyers, revenue = crosssell.expected_by_segment(model)
    for full, estimate in ((full_buyers, buyers), (full_revenue, revenue)):
        np.testing.assert_allclose(estimate.sum(axis=1), full.sum(axis=1), rtol=0.1)  # per segment, over its products
        assert np.corrcoef(estimate.ravel(), full.ravel())[0, 1] > 0.95  # product by product too
    np.testing.assert_allclose(buyers[2], full_buyers[2])  # the smallest segment is drawn whole, weight 1


def test_fits_sample_fewer_customers_only_in_a_catalogue_of_tens_of_thousands_of_products():
    from segments.crosssell import CALIBRATION_CUSTOMERS, MIN_SAMPLE_CUSTOMERS, calibration_customers

    assert calibration_customers(48) == calibration_customers(4_000) == CALIBRATION_CUSTOMERS  # the retail log's fits as they were
    assert calibration_customers(50_000) == 4_000
    assert calibration_customers(2_000_000) == MIN_SAMPLE_CUSTOMERS

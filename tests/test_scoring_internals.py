"""The vectorised internals of cross-sell scoring against brute-force oracles: top-k ties, reasons' cited product, timing joins."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import sparse

from clv import threads
from segments import associations
from segments.associations import build_ownership, pair_counts, pair_timing
from segments.crosssell import _strongest_inputs, _top_k


@pytest.mark.parametrize("wide_row", [1_024, 4])
def test_top_k_breaks_ties_by_product_order_oracle_sorted(monkeypatch, wide_row):
    """Every row's k best equal a full sort by (score descending, product index), however ties and -inf fall: by a
    partition, and (wide rows, 4 products on) by the bar of k groups' maxima."""
    from segments import crosssell

    monkeypatch.setattr(crosssell, "WIDE_ROW", wide_row)
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 4, size=(6, 15)).astype(float)
        scores[rng.random(scores.shape) < rng.choice([0.0, 0.3, 0.9])] = -np.inf
        k = int(rng.integers(1, 16))
        idx, vals = _top_k(scores.copy(), k)
        for r in range(scores.shape[0]):
            expected = sorted(range(scores.shape[1]), key=lambda j: (-scores[r, j], j))[:k]
            assert idx[r].tolist() == expected
            assert vals[r].tolist() == scores[r, expected].tolist()


@pytest.mark.parametrize("entries", [4_000_000, 7])
@pytest.mark.parametrize("table_cells", [4_000_000, 0])
def test_strongest_inputs_oracle_brute_force(monkeypatch, entries, table_cells):
    """The cited product of an offer: the owned product with the largest positive weight toward it, the smallest index on ties."""
    from segments import associations, crosssell

    monkeypatch.setattr(crosssell, "EXPLAIN_ENTRIES", entries)  # 7: the offers in many small runs
    monkeypatch.setattr(associations, "LOOKUP_TABLE_CELLS", table_cells)  # 0: the weights looked up by a search, as in a wide catalogue
    rng = np.random.default_rng(1)
    X = sparse.csr_matrix((rng.random((30, 12)) < 0.35).astype(float))
    W = rng.choice([-0.5, 0.0, 0.25, 0.5], size=(12, 12))
    u = rng.integers(0, 30, size=200)
    j = rng.integers(0, 12, size=200)
    best_i, best_w = _strongest_inputs(X, sparse.csr_matrix(W), u, j)
    for k in range(len(u)):
        owned = X[u[k]].indices
        positive = [(W[i, j[k]], i) for i in sorted(owned) if W[i, j[k]] > 0]
        if positive:
            w = max(p[0] for p in positive)
            assert (best_i[k], best_w[k]) == (min(i for v, i in positive if v == w), w)
        else:
            assert (best_i[k], best_w[k]) == (-1, 0.0)


def test_item_weights_per_product_gram_blocks_equal_one_gram_matrix_oracle(monkeypatch):
    """Above UNION_MAX products each regression takes its own Gram block: the same weights, bit for bit, as from one matrix."""
    from segments import crosssell

    rng = np.random.default_rng(4)
    X = sparse.csr_matrix((rng.random((300, 60)) < 0.15).astype(float))
    whole = crosssell.item_weights_for(X, (25.0, 400.0), neighbours=20)
    monkeypatch.setattr(crosssell, "UNION_MAX", 10)
    blocks = crosssell.item_weights_for(X, (25.0, 400.0), neighbours=20)
    for a, b in zip(whole, blocks, strict=True):
        assert (a != b).nnz == 0 and a.nnz > 0


def test_scoring_only_model_scores_as_the_full_model_oracle_full_build():
    """The inner split's model counts no pairs; every score and probability is the full model's, bit for bit."""
    import datetime as dt

    from segments.crosssell import build_model, item_weights, model_scores

    rng = np.random.default_rng(5)
    rows = [{"customer_id": f"c{u:03d}", "product_id": f"p{int(j):02d}", "date": dt.datetime(2024, 1, 1) + dt.timedelta(days=int(d)),
             "amount": 1.0} for u in range(80) for j, d in zip(rng.integers(0, 12, 5), rng.integers(0, 100, 5), strict=True)]
    own = build_ownership(pl.DataFrame(rows))
    customers = pl.DataFrame({"customer_id": own.customers, "segment": [f"s{u % 3}" for u in range(len(own.customers))],
                              "p_active": np.linspace(0.2, 0.9, len(own.customers))})
    typical = pl.DataFrame({"product_id": own.products, "value": np.arange(1.0, len(own.products) + 1)})
    W = item_weights(own.X, neighbours=5)
    full = build_model(own, customers, typical, weights=W)
    scoring = build_model(own, customers, typical, weights=W, scoring_only=True)
    assert scoring.pairs.height == 0 and scoring.pairs.columns == full.pairs.columns and full.pairs.height > 0
    rows_ = np.arange(len(own.customers))
    for got, expected in zip(model_scores(scoring, rows_), model_scores(full, rows_), strict=True):
        assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match="scoring-only"):
        build_model(own, customers, typical, weights=W, scoring_only=True, categories=pl.DataFrame({"product_id": own.products,
                                                                                                   "category": ["x"] * len(own.products)}))


def pair_timing_brute_force(own, ij, stride):
    """Per pair, loops over the timed customers (every stride-th row) and over the orders: the definitions, one at a time."""
    T = own.first_day.toarray()
    B = own.baskets.toarray() if own.baskets is not None else None
    out = {}
    for i, j in ij:
        gaps = [T[u, j] - T[u, i] for u in range(0, T.shape[0], stride) if T[u, i] > 0 and T[u, j] > 0]
        if not gaps:
            continue
        later = [g for g in gaps if g > 0]
        same = None
        if B is not None:
            same = len({int(own.basket_customer[o]) for o in range(B.shape[0])
                        if B[o, i] > 0 and B[o, j] > 0 and own.basket_customer[o] % stride == 0})
        out[(i, j)] = (len(gaps), same, len(later), sum(g < 0 for g in gaps), float(np.median(later)) if later else None)
    return out


@pytest.mark.parametrize(("max_customers", "with_orders"), [(100_000, True), (7, True), (100_000, False)])
def test_pair_timing_oracle_brute_force(monkeypatch, max_customers, with_orders):
    """Timing of every pair (co-owners timed, same-order owners, bought after / before, median gap) equals loops over customers.

    Small blocks and a searched (not tabled) pair index take the other code paths; an order of an
    unknown customer counts as one more owner, as before.
    """
    import datetime as dt

    monkeypatch.setattr(associations, "TIMING_ROWS_PER_BLOCK", 50)
    monkeypatch.setattr(associations, "PAIR_TABLE_CELLS", 10 if max_customers == 7 else 16_000_000)
    rng = np.random.default_rng(2)
    rows = [{"customer_id": f"c{u:02d}", "product_id": f"p{int(j):02d}", "order_id": f"o{u}-{int(o)}",
             "date": dt.datetime(2024, 1, 1) + dt.timedelta(days=int(d), hours=int(h)), "amount": 1.0}
            for u in range(60) for j, o, d, h in zip(rng.integers(0, 15, 8), rng.integers(0, 3, 8), rng.integers(0, 200, 8),
                                                     rng.integers(0, 24, 8), strict=True)]
    lines = pl.DataFrame(rows)
    if not with_orders:
        lines = lines.drop("order_id")
    own = build_ownership(lines)
    if with_orders:  # one order of no known customer
        own = type(own)(**{**own.__dict__, "basket_customer": np.where(np.arange(len(own.basket_customer)) == 3, -1, own.basket_customer)})
    ij = pair_counts(own).select("i", "j")
    with threads.use(2):  # blocks on two threads, folded in order: the same frame as on one
        timing = pair_timing(own, ij, max_customers=max_customers)
    with threads.use(1):
        assert pair_timing(own, ij, max_customers=max_customers).equals(timing)
    stride = -(-own.X.shape[0] // max_customers)
    expected = pair_timing_brute_force(own, ij.rows(), stride)
    got = {(r["i"], r["j"]): (r["timed_owners"], r["same_order_owners"], r["bought_after"], r["bought_before"], r["median_days_after"])
           for r in timing.iter_rows(named=True)}
    assert got.keys() == expected.keys() and len(got) > 20
    for key, value in expected.items():
        assert got[key][:4] == value[:4]
        assert got[key][4] == pytest.approx(value[4], rel=1e-12) if value[4] is not None else got[key][4] is None



lines_strategy = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 5), st.integers(0, 5), st.integers(0, 40)),  # customer, order, product, day
    min_size=1, max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(lines_strategy, st.sampled_from([0, 1, 2, 64]), st.sampled_from([100_000, 3]), st.booleans(),
       st.sampled_from(["all", "forward", "few antecedents"]))
@example([(0, 0, 0, 0), (1, 0, 0, 0), (1, 0, 1, 0), (2, 1, 0, 0), (2, 1, 1, 0)], 64, 100_000, True, "all")  # c1's line in c0's order
def test_pair_timing_order_masks_and_fallback_oracle_brute_force(lines, mask_orders, max_customers, shared, wanted):
    """Same-order owners from order masks equal loops over orders, whichever customers the masks leave to the basket count:
    more orders than a mask holds (``MASK_ORDERS`` 0, 1, 2), an order id two customers share (it is the first one's), sampled customers; and the
    other timing columns too, whether each customer's products are crossed two by two (pairs wanted both ways) or
    antecedents with consequents (one way, few antecedents)."""
    import datetime as dt

    frame = pl.DataFrame(
        [{"customer_id": f"c{u}", "product_id": f"p{j}", "order_id": f"shared{u // 2}" if shared and o == 0 else f"o{u}-{o}",
          "date": dt.datetime(2024, 1, 1) + dt.timedelta(days=d), "amount": 1.0} for u, o, j, d in lines],
        schema={"customer_id": pl.String, "product_id": pl.String, "order_id": pl.String, "date": pl.Datetime("us"), "amount": pl.Float64},
    )
    own = build_ownership(frame)
    ij = pair_counts(own, 1).select("i", "j")
    if wanted == "forward":
        ij = ij.filter(pl.col("i") < pl.col("j"))
    elif wanted == "few antecedents":
        ij = ij.filter(pl.col("i") <= pl.col("i").min())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(associations, "MASK_ORDERS", mask_orders)
        patch.setattr(associations, "TIMING_ROWS_PER_BLOCK", 7)
        timing = pair_timing(own, ij, max_customers=max_customers)
    stride = -(-own.X.shape[0] // max_customers)
    expected = pair_timing_brute_force(own, ij.rows(), stride)
    got = {(r["i"], r["j"]): (r["timed_owners"], r["same_order_owners"], r["bought_after"], r["bought_before"], r["median_days_after"])
           for r in timing.iter_rows(named=True)}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key][:4] == value[:4]
        assert got[key][4] == pytest.approx(value[4], rel=1e-12) if value[4] is not None else got[key][4] is None

def test_wide_catalogue_neighbours_and_weights_oracle_brute_force(monkeypatch):
    """Above SPARSE_ABOVE products: each product's inputs are its nearest by cosine among those sharing two or more owners
    (ties: product order), and its weights solve the normal equations restricted to them (Steck 2019, eq. 8 per product)."""
    from segments import crosssell

    monkeypatch.setattr(crosssell, "SPARSE_ABOVE", 10)
    monkeypatch.setattr(crosssell, "UNION_MAX", 10)
    monkeypatch.setattr(crosssell, "SOLVE_BATCH", 16)  # several batches of different sizes
    rng = np.random.default_rng(5)
    dense = (rng.random((120, 70)) < rng.uniform(0.01, 0.25, size=70)).astype(float)
    X = sparse.csr_matrix(dense)
    k, ridge = 12, 25.0
    (W,) = crosssell.item_weights_for(X, (ridge,), neighbours=k)
    W = W.toarray()
    G = dense.T @ dense
    n = np.sqrt(np.maximum(np.diag(G), 1.0))
    fewer = 0
    for j in range(G.shape[0]):
        candidates = [i for i in range(G.shape[0]) if i != j and G[i, j] >= 2]
        inputs = sorted(candidates, key=lambda i: (-(G[i, j] / (n[j] * n[i])), i))[:k]
        fewer += len(inputs) < k
        expected = np.zeros(G.shape[0])
        if inputs:
            expected[inputs] = np.linalg.solve(G[np.ix_(inputs, inputs)] + ridge * np.eye(len(inputs)), G[inputs, j])
        np.testing.assert_allclose(W[:, j], expected, rtol=1e-9, atol=1e-12)
        assert set(np.flatnonzero(W[:, j])) <= set(inputs)
    assert 0 < fewer < G.shape[0]  # some products have fewer inputs than k: the padded systems are exercised


def test_wide_catalogue_purchases_leave_out_single_buyer_products_oracle_counts(monkeypatch):
    """Above WIDE_CATALOGUE products the purchases keep exactly the products with two or more buyers; below, all of them."""
    from segments import crosssell

    purchases = pl.DataFrame({"customer_id": ["a", "b", "a", "c", "b", "c"], "product_id": ["p1", "p1", "p2", "p3", "p3", "p4"]})
    assert crosssell.without_single_buyer_purchases(purchases).equals(purchases)
    monkeypatch.setattr(crosssell, "WIDE_CATALOGUE", 3)
    kept = crosssell.without_single_buyer_purchases(purchases)
    assert sorted(set(kept["product_id"])) == ["p1", "p3"] and kept.height == 4


def test_customer_order_sizes_are_the_same_bits_on_every_call_and_in_any_row_order():
    """The order-size scale sums per customer in fixed point, so neither the engine's threads nor the rows' order
    change a bit (a float sum behind a lazy join gave three different results in three calls on this frame)."""
    from segments.crosssell import customer_spend_scale, typical_order_values

    rng = np.random.default_rng(0)
    n = 300_000
    lines = rng.integers(1, 4, n)
    purchases = pl.DataFrame({
        "customer_id": [f"c{i}" for i in rng.integers(0, 20_000, n)], "product_id": [f"p{i}" for i in rng.integers(0, 3_000, n)],
        "n_orders": np.minimum(lines, rng.integers(1, 3, n)), "n_lines": lines, "revenue": np.round(rng.lognormal(2, 1.5, n), 2),
    }).unique(["customer_id", "product_id"], keep="first", maintain_order=True)
    typical = typical_order_values(purchases)
    first = customer_spend_scale(purchases, typical)["scale"].to_numpy()
    for _ in range(2):
        assert customer_spend_scale(purchases, typical)["scale"].to_numpy().tobytes() == first.tobytes()
    shuffled = purchases.sample(fraction=1.0, shuffle=True, seed=1)
    assert customer_spend_scale(shuffled, typical)["scale"].to_numpy().tobytes() == first.tobytes()


def test_order_sizes_of_a_log_of_large_amounts_do_not_pass_the_exact_sums_limit():
    """Every line is ten times under the largest amount clvx sums, but a customer's orders x a product's typical value
    (20 x 6.8e16) is above it: that product is made of whole numbers, not read as an amount, so it cannot fail."""
    from segments.crosssell import customer_spend_scale, typical_order_values

    rows = [{"customer_id": f"w{i:03}", "product_id": "p", "n_orders": 1, "n_lines": 1, "revenue": 1e17} for i in range(100)]
    rows.append({"customer_id": "b", "product_id": "p", "n_orders": 20, "n_lines": 20, "revenue": 20.0})
    purchases = pl.DataFrame(rows)
    scale = dict(customer_spend_scale(purchases, typical_order_values(purchases)).iter_rows())
    assert len(scale) == 101 and 0 < scale["b"] < 1e-6 < scale["w000"]

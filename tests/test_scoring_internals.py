"""The vectorised internals of cross-sell scoring against brute-force oracles: top-k ties, reasons' cited product, timing joins."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from segments import associations
from segments.associations import build_ownership, pair_counts, pair_timing
from segments.crosssell import _strongest_inputs, _top_k


def test_top_k_breaks_ties_by_product_order_oracle_sorted():
    """Every row's k best equal a full sort by (score descending, product index), however ties and -inf fall."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 4, size=(6, 15)).astype(float)
        scores[rng.random(scores.shape) < 0.3] = -np.inf
        k = int(rng.integers(1, 16))
        idx, vals = _top_k(scores.copy(), k)
        for r in range(scores.shape[0]):
            expected = sorted(range(scores.shape[1]), key=lambda j: (-scores[r, j], j))[:k]
            assert idx[r].tolist() == expected
            assert vals[r].tolist() == scores[r, expected].tolist()


@pytest.mark.parametrize("entries", [4_000_000, 7])
def test_strongest_inputs_oracle_brute_force(monkeypatch, entries):
    """The cited product of an offer: the owned product with the largest positive weight toward it, the smallest index on ties."""
    from segments import crosssell

    monkeypatch.setattr(crosssell, "EXPLAIN_ENTRIES", entries)  # 7: the offers in many small runs
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


@pytest.mark.parametrize("by_key", [False, True])
def test_pair_timing_same_counts_either_join_oracle_each_other(monkeypatch, by_key):
    """Joining by pair or by customer (the cost-based choice forced each way) gives the same timing for every pair."""
    rng = np.random.default_rng(2)
    import datetime as dt

    rows = [{"customer_id": f"c{u}", "product_id": f"p{int(j)}", "order_id": f"o{u}-{int(o)}",
             "date": dt.datetime(2024, 1, 1) + dt.timedelta(days=int(d)), "amount": 1.0}
            for u in range(60) for j, o, d in zip(rng.integers(0, 15, 8), rng.integers(0, 3, 8), rng.integers(0, 200, 8), strict=True)]
    own = build_ownership(pl.DataFrame(rows))
    pairs = pair_counts(own).select("i", "j")
    reference = pair_timing(own, pairs).sort("i", "j")
    original = associations._join_costs

    def forced(entries, ij, n):
        by_pair, by_customer = original(entries, ij, n)
        return (by_pair * 0 + 1, by_customer * 0 + 2) if not by_key else (by_pair * 0 + 2, by_customer * 0 + 1)

    monkeypatch.setattr(associations, "_join_costs", forced)
    assert pair_timing(own, pairs).sort("i", "j").equals(reference)
    assert reference.height == pairs.height


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

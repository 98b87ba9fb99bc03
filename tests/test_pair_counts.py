"""Pair counting in a wide catalogue (many more products than customers): exact, against a brute-force count."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from clv.errors import InputError
from segments import associations
from segments.associations import build_ownership, pair_counts


def _wide_lines(n_customers: int = 40, n_products: int = 5_000, per_customer: int = 40, seed: int = 0) -> pl.DataFrame:
    """Purchase lines where most products are bought by one customer and a few popular ones by many.

    Orders hold up to three lines, so same-order counts are tested too.
    """
    rng = np.random.default_rng(seed)
    n_popular = 20
    rows = []
    for u in range(n_customers):
        popular = rng.integers(0, n_popular, size=per_customer // 2)
        tail = rng.integers(n_popular, n_products, size=per_customer - per_customer // 2)
        products = rng.permutation(np.concatenate([popular, tail]))
        for line, j in enumerate(products):
            rows.append({"customer_id": f"c{u:03d}", "product_id": f"p{j:05d}", "order_id": f"o{u:03d}-{line // 3}",
                         "date": dt.datetime(2024, 1, 1) + dt.timedelta(days=int(rng.integers(0, 300))), "amount": 1.0})
    return pl.DataFrame(rows)


def _brute_force(lines: pl.DataFrame, min_count: int) -> pl.DataFrame:
    """Every ordered pair of distinct products, counted customer by customer and order by order."""
    products = sorted(set(lines["product_id"]))
    index = {p: k for k, p in enumerate(products)}
    day0 = lines["date"].min()
    first = {}  # (customer, product) -> first purchase day (+1, as the ownership stores it)
    for c, p, d in lines.select("customer_id", "product_id", "date").iter_rows():
        day = (d - day0).total_seconds() / 86_400 + 1
        first[c, p] = min(first.get((c, p), day), day)
    owned: dict[str, set[str]] = {}
    for c, p in first:
        owned.setdefault(c, set()).add(p)
    baskets: dict[str, set[str]] = {}
    for o, p in lines.select("order_id", "product_id").iter_rows():
        baskets.setdefault(o, set()).add(p)
    counts: dict[tuple[str, str], list[float]] = {}
    for c, items in owned.items():
        for a in items:
            for b in items:
                if a != b:
                    entry = counts.setdefault((a, b), [0, 0, 0.0, 0.0])
                    entry[0] += 1
                    entry[2] += first[c, a]
                    entry[3] += first[c, b]
    for items in baskets.values():
        for a in items:
            for b in items:
                if a != b:
                    counts[a, b][1] += 1
    rows = [{"i": index[a], "j": index[b], "co_owners": float(n), "same_order": float(s), "days_sum_i": di, "days_sum_j": dj}
            for (a, b), (n, s, di, dj) in counts.items() if n >= min_count]
    return pl.DataFrame(rows).sort("i", "j")


@pytest.fixture(scope="module")
def wide() -> pl.DataFrame:
    return _wide_lines()


@pytest.mark.parametrize("min_count", [1, 2, 3])
def test_wide_catalogue_pairs_equal_a_brute_force_count(wide: pl.DataFrame, min_count: int) -> None:
    own = build_ownership(wide)
    assert len(own.products) > 10 * len(own.customers)  # wide: far more products than customers
    got = pair_counts(own, min_count=min_count)
    expected = _brute_force(wide, min_count)
    assert got.height == expected.height > 0
    assert got.select("i", "j", "co_owners", "same_order").equals(expected.select("i", "j", "co_owners", "same_order"))
    assert np.allclose(got["days_sum_i"], expected["days_sum_i"]) and np.allclose(got["days_sum_j"], expected["days_sum_j"])


def test_blocks_of_any_size_give_the_same_pairs(wide: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    own = build_ownership(wide)
    whole = pair_counts(own, min_count=2)
    monkeypatch.setattr(associations, "BLOCK_NONZEROS", 50)  # many small blocks, some columns above the budget alone
    assert len(associations._blocks(np.full(100, 30.0))) == 100
    assert pair_counts(own, min_count=2).equals(whole)


def test_blocks_cover_every_column_once_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(associations, "BLOCK_NONZEROS", 10)
    bounds = np.array([3.0, 4.0, 2.0, 12.0, 0.0, 0.0, 9.0, 1.0])
    blocks = associations._blocks(bounds)
    assert blocks == [(0, 3), (3, 4), (4, 8)]
    assert all(bounds[a:b].sum() <= 10 or b - a == 1 for a, b in blocks)


def test_no_product_with_enough_owners_gives_no_pairs() -> None:
    lines = pl.DataFrame({"customer_id": ["a", "b"], "product_id": ["p1", "p2"], "date": [dt.datetime(2024, 1, 1)] * 2, "amount": [1.0, 1.0]})
    pairs = pair_counts(build_ownership(lines), min_count=2)
    assert pairs.height == 0
    assert pairs.columns == ["i", "j", "co_owners", "same_order", "days_sum_i", "days_sum_j"]


def test_an_order_id_shared_by_two_customers_is_counted_not_a_crash() -> None:
    """Messy logs reuse invoice numbers across customers: a basket pair need not be co-owned by one customer."""
    day = dt.datetime(2024, 1, 1)
    lines = pl.DataFrame({
        "customer_id": ["a", "a", "b", "b", "c"], "product_id": ["p1", "p2", "p1", "p2", "p3"],
        "order_id": ["o1", "o1", "o2", "o3", "o1"], "date": [day] * 5, "amount": [1.0] * 5,
    })
    pairs = pair_counts(build_ownership(lines), min_count=1)
    assert pairs.select("i", "j", "co_owners", "same_order").rows() == [(0, 1, 2.0, 1.0), (1, 0, 2.0, 1.0)]


def test_wide_catalogue_without_single_buyers_keeps_every_pair_oracle_full_count(monkeypatch):
    """Leaving out single-buyer products (wide catalogues only) drops no pair: the counts match those of the whole catalogue."""
    from segments import crosssell

    lines = _wide_lines()
    own = build_ownership(lines)
    assert crosssell.without_single_buyers(own) is own  # 5,000 products: not wide, unchanged
    monkeypatch.setattr(crosssell, "WIDE_CATALOGUE", 100)
    trimmed = crosssell.without_single_buyers(own)
    single = own.owners < 2
    assert single.sum() > 500 and trimmed.X.shape == (own.X.shape[0], int((~single).sum()))
    assert trimmed.products.to_list() == own.products.filter(pl.Series(~single)).to_list()
    assert (trimmed.owners >= 2).all() and trimmed.X.nnz == own.X.nnz - int(single.sum())

    def named(o, pairs):
        return pairs.with_columns(o.products.gather(pairs["i"]).alias("i"), o.products.gather(pairs["j"]).alias("j")).sort("i", "j")

    assert named(trimmed, pair_counts(trimmed)).equals(named(own, pair_counts(own)))


def test_counts_only_pairs_have_the_same_co_owners_oracle_full_counts():
    """Without the day sums and same-order counts, the pairs and their co-owners are those of the full counts."""
    rng = np.random.default_rng(8)
    lines = pl.DataFrame([{"customer_id": f"c{u}", "product_id": f"p{int(j)}", "order_id": f"o{u}-{int(o)}",
                           "date": dt.datetime(2024, 1, 1) + dt.timedelta(days=int(d)), "amount": 1.0}
                          for u in range(80) for j, o, d in zip(rng.integers(0, 20, 6), rng.integers(0, 2, 6), rng.integers(0, 90, 6), strict=True)])
    own = build_ownership(lines)
    full = pair_counts(own, min_count=3)
    lean = pair_counts(own, min_count=3, counts_only=True)
    assert lean.select("i", "j", "co_owners").equals(full.select("i", "j", "co_owners")) and full.height > 50
    assert lean.select(pl.col("same_order", "days_sum_i", "days_sum_j").null_count()).row(0) == (lean.height,) * 3


@pytest.mark.parametrize("min_count", [1, 2, 3])
def test_counted_pairs_are_the_rows_pair_counts_builds_brute_force(wide: pl.DataFrame, min_count: int, monkeypatch) -> None:
    own = build_ownership(wide)
    expected = _brute_force(wide, min_count).height
    assert associations.co_owner_pairs(own, min_count, min_count)[1] == pair_counts(own, min_count).height == expected > 0
    monkeypatch.setattr(associations, "BLOCK_NONZEROS", 50)  # many blocks: each column counted once
    assert associations.co_owner_pairs(own, min_count, min_count)[1] == expected


@pytest.mark.parametrize(("min_count", "min_counted"), [(2, 2), (3, 2), (5, 2), (4, 3), (1, 1)])
def test_co_owner_pairs_are_pair_counts_and_the_counted_pairs_in_one_pass_oracle_separate_passes(
        wide: pl.DataFrame, min_count: int, min_counted: int, monkeypatch) -> None:
    """The kept pairs equal pair_counts' (counts only), row for row, and the count equals the brute force's, in one or many blocks."""
    own = build_ownership(wide)
    expected = pair_counts(own, min_count, counts_only=True)
    for block in (associations.BLOCK_NONZEROS, 50):
        monkeypatch.setattr(associations, "BLOCK_NONZEROS", block)
        pairs, n = associations.co_owner_pairs(own, min_count, min_counted)
        assert pairs.equals(expected) and expected.height > 0
        assert n == _brute_force(wide, min_counted).height
    with pytest.raises(InputError, match="at least 3"):
        associations.co_owner_pairs(own, 2, 3)


@pytest.mark.parametrize(("n_customers", "min_support", "least"), [(4339, 0.01, 44), (100, 0.03, 3), (100, 0.0, 2), (100, 0.005, 2),
                                                                    (3, 1 / 3, 2), (1000, 0.007, 7)])
def test_fewest_co_owners_of_a_rule_match_the_support_filter(n_customers: int, min_support: float, least: int) -> None:
    assert associations.rule_min_co_owners(n_customers, min_support) == least
    # the strong_pairs filter itself: least passes (unless below two co-owners), least - 1 does not
    assert least >= min_support * n_customers or least == associations.MIN_PAIR_COUNT
    assert not (least - 1 >= min_support * n_customers) or least == associations.MIN_PAIR_COUNT


def _narrow_lines(n_customers: int = 300, n_products: int = 8, seed: int = 3) -> pl.DataFrame:
    """Many customers, few products (the shape of most shops' logs), orders of one to three lines at one moment each."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_customers):
        for o in range(int(rng.integers(1, 4))):
            moment = dt.datetime(2024, 1, 1) + dt.timedelta(days=int(rng.integers(0, 300)), minutes=int(rng.integers(0, 600)))
            for j in rng.choice(n_products, size=int(rng.integers(1, 4)), replace=False):
                rows.append({"customer_id": f"c{u:03d}", "product_id": f"p{int(j)}", "order_id": f"o{u:03d}-{o}", "date": moment, "amount": 1.0})
    rows.append({"customer_id": "c999", "product_id": "p_rare", "order_id": "o999", "date": dt.datetime(2024, 2, 1), "amount": 1.0})
    return pl.DataFrame(rows)


@pytest.mark.parametrize("min_count", [1, 2, 3])
@pytest.mark.parametrize("with_orders", [True, False])
def test_few_products_counted_from_dense_blocks_are_the_sparse_counts_to_the_bit_brute_force(
        min_count: int, with_orders: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A narrow catalogue takes the dense path; it returns the sparse path's frame bit for bit, and the brute force's counts."""
    lines = _narrow_lines()
    own = build_ownership(lines if with_orders else lines.drop("order_id"))
    assert associations._dense_pair_counts(own, min_count) is not None  # the path under test is the one taken
    dense = pair_counts(own, min_count=min_count)
    monkeypatch.setattr(associations, "DENSE_GRAM_PRODUCTS", 0)  # the column blocks of sparse products
    assert associations._dense_pair_counts(own, min_count) is None
    assert dense.equals(pair_counts(own, min_count=min_count)) and dense.height > 20
    expected = _brute_force(lines, min_count)
    assert dense.select("i", "j", "co_owners").equals(expected.select("i", "j", "co_owners"))
    if with_orders:
        assert dense["same_order"].to_list() == expected["same_order"].to_list()
    else:
        assert dense["same_order"].null_count() == dense.height
    assert np.allclose(dense["days_sum_i"], expected["days_sum_i"]) and np.allclose(dense["days_sum_j"], expected["days_sum_j"])


def test_day_sums_on_the_dense_path_follow_who_bought_first_and_tie_for_one_moment() -> None:
    """p2 always comes a day and a half after p1: its day sum is larger by that per co-owner; p3 and p4 are bought
    at one moment, so their sums tie exactly (what "bought after" reads), not up to a rounding."""
    day = dt.datetime(2024, 1, 1)
    rows = []
    for u in range(200):
        start = day + dt.timedelta(seconds=u * 86_400 / 7 + 0.1)
        rows += [{"customer_id": f"c{u}", "product_id": p, "order_id": f"o{u}-{k}", "date": start + dt.timedelta(hours=36 * k), "amount": 1.0}
                 for k, p in enumerate(("p1", "p2"))]
        rows += [{"customer_id": f"c{u}", "product_id": p, "order_id": f"o{u}-2", "date": start + dt.timedelta(days=3), "amount": 1.0}
                 for p in ("p3", "p4")]
    own = build_ownership(pl.DataFrame(rows))
    pairs = associations._dense_pair_counts(own, 2)
    assert pairs is not None
    named = {(own.products[i], own.products[j]): (si, sj) for i, j, si, sj in pairs.select("i", "j", "days_sum_i", "days_sum_j").iter_rows()}
    assert named["p1", "p2"][1] - named["p1", "p2"][0] == pytest.approx(200 * 1.5)
    assert named["p2", "p1"][0] - named["p2", "p1"][1] == pytest.approx(200 * 1.5)
    assert named["p3", "p4"][0] == named["p3", "p4"][1] and named["p4", "p3"][0] == named["p4", "p3"][1]


def test_gram_of_dense_blocks_is_the_sparse_product_for_counts_above_one() -> None:
    """Whole numbers other than ones take float64 blocks: entries here reach 2^30, where float32 would round."""
    rng = np.random.default_rng(0)
    m = associations.sparse.random(5_000, 12, density=0.3, format="csr", random_state=1)
    m.data = rng.integers(1, 2**13, m.nnz).astype(np.float64)
    exact = (m.T @ m).toarray()
    assert associations._dense_is_cheaper(m) and exact.max() > 2**24
    assert np.array_equal(associations._gram(m), exact)

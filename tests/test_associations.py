"""Exclude patterns and empty product data: one clear error before any work, never a crash later."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import polars as pl
import pytest

from clv.errors import InputError
from segments.associations import build_ownership, non_product_ids, validate_pattern


def test_look_around_is_refused_with_a_form_that_works():
    with pytest.raises(InputError) as err:
        validate_pattern("^(?!85)")
    assert str(err.value) == (
        "exclude_products='^(?!85)' is not a valid regular expression here (look-around, including look-ahead and "
        "look-behind, is not supported); list what to leave out instead of what to keep, e.g. '^(POST|DOT|M)$' or "
        "'GIFT|VOUCHER'; the built-in rules already drop postage, fees and codes without digits"
    )


@pytest.mark.parametrize(("pattern", "problem"), [(r"(a)\1", "backreferences are not supported"), ("(unclosed", "unclosed group")])
def test_other_unsupported_syntax_names_the_problem(pattern, problem):
    with pytest.raises(InputError, match=f"is not a valid regular expression here \\({problem}\\)"):
        validate_pattern(pattern)


@pytest.mark.parametrize("pattern", [".*", "x?", "^"])
def test_a_pattern_matching_everything_is_refused(pattern):
    with pytest.raises(InputError, match=r"matches every product \(it matches even empty text\), which would leave nothing to cross-sell"):
        validate_pattern(pattern)


def test_usable_patterns_pass():
    for pattern in (None, "POST", "^(POST|DOT)$", "(?i)gift"):
        validate_pattern(pattern)


def lines(products: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"customer_id": [f"c{k}" for k in range(len(products))], "product_id": products, "amount": [5.0] * len(products),
         "date": [dt.datetime(2024, 1, 1 + k) for k in range(len(products))]},
        schema={"customer_id": pl.String, "product_id": pl.String, "amount": pl.Float64, "date": pl.Datetime("us")},
    )


def test_excluding_every_product_is_one_clear_error():
    with pytest.raises(InputError, match="^" + re.escape("exclude_products='\\\\d' and the built-in rules leave out all 3 products, so there is nothing to cross-sell")):
        non_product_ids(lines(["A1", "B2", "C3", None]), exclude=r"\d")


def test_a_product_column_empty_on_every_row_is_a_clear_error():
    empty = lines([None, None, None]).filter(pl.col("product_id").is_not_null())
    with pytest.raises(InputError, match="^no purchase line has a product id, so there is nothing to cross-sell; check that the product column is filled in"):
        build_ownership(empty)


def test_size_settings_are_bounded_before_any_work():
    from segments.associations import pair_counts
    from segments.crosssell import customer_targets, segment_ranking

    with pytest.raises(InputError, match="top_k = 0 must be a whole number from 1 to 100"):
        customer_targets(None, top_k=0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="top = 1000000000 must be a whole number from 1 to 100"):
        segment_ranking(None, top=10**9)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="min_count = 0 must be a whole number of co-owners"):
        pair_counts(None, min_count=0)  # type: ignore[arg-type]


def _orders(order_ids: list[str | None]) -> pl.DataFrame:
    """Two customers each buying P1 and P2 on two lines, with the given order ids (one per line)."""
    return pl.DataFrame(
        {"customer_id": ["a", "a", "b", "b"], "product_id": ["P1", "P2", "P1", "P2"],
         "date": [dt.datetime(2024, 1, 1)] * 4, "amount": [1.0] * 4, "order_id": order_ids},
        schema={"customer_id": pl.String, "product_id": pl.String, "date": pl.Datetime("us"),
                "amount": pl.Float64, "order_id": pl.String},
    )


def test_lines_without_an_order_id_are_in_no_basket():
    from segments.associations import pair_counts

    own = build_ownership(_orders(["o1", "o1", None, None]))
    assert own.baskets is not None and own.baskets.shape == (1, 2)
    pairs = pair_counts(own, min_count=1).sort("i", "j")
    assert pairs["co_owners"].to_list() == [2, 2]
    assert pairs["same_order"].to_list() == [1, 1]  # customer a's order; b's lines have no order id


def test_an_order_column_empty_on_every_row_means_no_baskets():
    from segments.associations import pair_counts

    own = build_ownership(_orders([None, None, None, None]))
    assert own.baskets is None
    assert pair_counts(own, min_count=1)["same_order"].is_nan().all()


@pytest.mark.parametrize("shuffled", [False, True], ids=["sorted orders", "unsorted orders"])
def test_orders_are_the_baskets_with_an_owned_product_each_with_its_first_customer(shuffled):
    """An order none of whose products is in the ownership (all left out, as a wide catalogue's single-buyer products
    are) is no basket; the others are numbered in order, each with the smallest customer number among its rows
    (-1 when a row's customer is not among the customers, whatever the others)."""
    from segments.associations import ownership_of

    first = pl.DataFrame({"customer_id": ["a", "b", "b", "b"], "product_id": ["p1", "p1", "p2", "p3"],
                          "first_purchase_at": [dt.datetime(2024, 1, 1)] * 4})
    orders = pl.DataFrame({
        "order_id": ["o1", "o1", "o1", "o2", "o3", "o4", "o4", "o5"],
        "product_id": ["p1", "p2", "p3", "p9", "p2", "p1", "p2", "p1"],  # o2: only p9, which nobody in the ownership owns
        "customer_id": ["b", "a", "b", "a", "b", "zz", "a", "b"],  # o1: the smallest is neither first nor last; o4: zz is no customer
    })
    if shuffled:
        orders = orders.sample(fraction=1.0, shuffle=True, seed=5)
    own = ownership_of(first, pl.Series("customer_id", ["a", "b"]), orders=orders)
    assert own.basket_customer is not None
    assert own.basket_customer.tolist() == [0, 1, -1, 1]  # o1, o3, o4, o5
    assert own.baskets is not None and own.baskets.shape == (4, 3)
    assert own.baskets.toarray().tolist() == [[1, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]]


def _same_ownership(a, b) -> bool:
    def canon(m):
        m = m.tocsr().copy()
        m.sort_indices()
        return m
    parts = [(a.X, b.X), (a.first_day, b.first_day)] + ([(a.baskets, b.baskets)] if a.baskets is not None else [])
    return (all(canon(x).shape == canon(y).shape and (canon(x) != canon(y)).nnz == 0 for x, y in parts)
            and a.customers.equals(b.customers) and a.products.equals(b.products)
            and ((a.basket_customer is None and b.basket_customer is None) or (a.basket_customer == b.basket_customer).all()))


def test_ownership_of_first_purchases_sorted_or_not_is_that_of_the_lines():
    """Rows numbered by runs of sorted ids (the checked aggregates) or by joins (any order) give one ownership."""
    import numpy as np

    from segments.associations import ownership_of

    rng = np.random.default_rng(3)
    n = 400
    lines = pl.DataFrame({
        "customer_id": [f"c{int(u):02d}" for u in rng.integers(0, 30, n)], "product_id": [f"p{int(j)}" for j in rng.integers(0, 12, n)],
        "order_id": [f"o{int(o):03d}" for o in rng.integers(0, 90, n)], "amount": [1.0] * n,
        "date": [dt.datetime(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 200, n)],
    })
    customers = pl.Series("customer_id", [f"c{u:02d}" for u in range(32)])  # two customers with no purchase
    expected = build_ownership(lines, customers)
    first = lines.group_by("customer_id", "product_id").agg(pl.col("date").min().alias("first_purchase_at"))
    orders = lines.group_by("order_id", "product_id").agg(pl.col("customer_id").min())
    for frame, baskets in ((first.sort("customer_id", "product_id"), orders.sort("order_id", "product_id")),
                           (first.sample(fraction=1.0, shuffle=True, seed=1), orders.sample(fraction=1.0, shuffle=True, seed=2))):
        got = ownership_of(frame, customers, orders=baskets)
        assert _same_ownership(got, expected) and got.baskets is not None and got.X.shape == (32, 12)
    # a customer missing from the list is left out, as by the join
    partial = ownership_of(first.sort("customer_id"), customers.filter(customers != "c05"))
    assert partial.X.shape[0] == 31 and partial.X.nnz == expected.X.nnz - expected.X[5].nnz


def test_substitutes_are_every_same_category_pair_rarely_co_owned_oracle_all_pairs():
    """Oracle: every pair of one category, its expected co-owners under independence and its count, by brute force."""
    from scipy import sparse

    from segments.associations import SUBSTITUTE_LIFT, SUBSTITUTE_MIN_EXPECTED, Ownership, pair_counts, substitute_pairs

    rng = np.random.default_rng(3)
    n, p = 400, 60
    X = sparse.csr_matrix((rng.random((n, p)) < rng.uniform(0.01, 0.5, p)).astype(np.float64))
    own = Ownership(X, X.copy(), pl.Series([f"c{u:03d}" for u in range(n)]), pl.Series([f"p{j:02d}" for j in range(p)]), None)
    category = pl.DataFrame({"product_id": own.products, "category": [["a", "b", "c", None][j % 4] for j in range(p)]})
    found = substitute_pairs(own, pair_counts(own), category)
    dense, owners, cats = X.toarray(), X.toarray().sum(axis=0), category["category"].to_list()
    expected = {(a, b) for a in range(p) for b in range(p) if a != b and cats[a] is not None and cats[a] == cats[b]
                and owners[a] * owners[b] / n >= SUBSTITUTE_MIN_EXPECTED
                and (dense[:, a] * dense[:, b]).sum() < SUBSTITUTE_LIFT * owners[a] * owners[b] / n}
    assert expected  # the check has pairs to find
    assert set(zip(*found.nonzero(), strict=True)) == expected

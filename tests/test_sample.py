"""The synthetic sample: deterministic, and its planted structure is really there."""

from __future__ import annotations

import json

import polars as pl
import pytest

from clv.sample import COMPLEMENTS, SampleSpec, bundled_sample_dir, generate


@pytest.fixture(scope="module")
def sample():
    return generate(SampleSpec(n_customers=3_000, seed=11))


def test_same_seed_same_log_other_seed_other_log(sample):
    assert generate(SampleSpec(n_customers=3_000, seed=11)).transactions.equals(sample.transactions)
    assert not generate(SampleSpec(n_customers=3_000, seed=12)).transactions.equals(sample.transactions)


def test_bundled_sample_is_what_the_generator_makes():
    folder = bundled_sample_dir()
    shipped = pl.read_parquet(folder / "transactions.parquet")
    truth = json.loads((folder / "truth.json").read_text())
    regenerated = generate(SampleSpec(n_customers=truth["n_customers"], seed=truth["seed"]))
    assert shipped.equals(regenerated.transactions)
    assert truth == json.loads(json.dumps(regenerated.truth))


def test_order_totals_follow_the_spend_model_and_columns_are_as_documented(sample):
    tx = sample.transactions
    assert tx.columns == ["customer_id", "order_id", "date", "product_id", "category", "quantity", "price"]
    assert (tx["price"] >= 0).all() and (tx["quantity"] >= 1).all()
    assert 0.01 < tx["customer_id"].null_count() / tx.height < 0.04  # a few guest checkouts


def test_complements_are_bought_only_after_their_base_and_substitutes_never_together(sample):
    tx = sample.transactions.filter(pl.col("customer_id").is_not_null())
    first = tx.group_by("customer_id", "product_id").agg(pl.col("date").min())
    pairs = pl.DataFrame({"base": list(COMPLEMENTS), "complement": list(COMPLEMENTS.values())})
    joined = (
        first.join(pairs, left_on="product_id", right_on="complement")
        .join(first, left_on=["customer_id", "base"], right_on=["customer_id", "product_id"], how="left", suffix="_base")
    )
    assert joined["date_base"].null_count() == 0, "every complement buyer owns its base"
    assert (joined["date"] > joined["date_base"]).all()
    owned_bases = tx.filter(pl.col("category").is_in(["Coffee Machines", "Bikes", "Printers"])).group_by("customer_id", "category").agg(pl.col("product_id").n_unique())
    assert owned_bases["product_id"].max() == 1


def test_customer_truth_matches_the_log(sample):
    counts = sample.transactions.filter(pl.col("customer_id").is_not_null()).group_by("customer_id").agg(pl.col("order_id").n_unique().alias("orders"))
    truth = sample.customers.join(counts, on="customer_id")
    assert truth.height == 3_000
    assert (truth["orders"] == truth["n_orders"]).all()

"""Segments: planted structure recovered, truthful names, shares, determinism, k selection."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from clv.errors import InputError, ModelError
from clv.load import load_transactions
from clv.rfm import Period
from clv.sample import bundled_sample_dir, bundled_sample_path
from segments.cluster import (
    MIN_SEGMENT_SHARE,
    SELECTION_SAMPLE,
    SilhouetteSample,
    adjusted_rand_index,
    feature_matrix,
    fit_kmeans,
    name_segments,
    select_k,
)
from segments.pipeline import run_segmentation


@pytest.fixture(scope="module")
def sample_run():
    return run_segmentation(load_transactions(bundled_sample_path()), period=Period.day, seed=42)


def test_high_value_customers_land_in_the_top_segment(sample_run):
    """The sample's top decile by true value (rate x mean spend, alive at the end) sits mostly in segment 1."""
    truth = pl.read_csv(bundled_sample_dir() / "customers.csv", schema_overrides={"customer_id": pl.String})
    truth = truth.with_columns((pl.col("lambda_per_day") * pl.col("mean_order_value") * pl.col("alive_at_end")).alias("value"))
    top = truth.filter(pl.col("value") >= pl.col("value").quantile(0.9))
    seg = sample_run.segmentation
    best = seg.profile["segment"][0]
    landed = top.join(seg.assignments.select("customer_id", "segment"), on="customer_id")
    share_in_best = (landed["segment"] == best).mean()
    assert share_in_best > 0.8
    assert share_in_best > 2 * seg.profile["customer_share"][0]


def test_names_describe_the_centres(sample_run):
    seg = sample_run.segmentation
    a = seg.assignments
    stats = a.group_by("segment").agg(
        pl.col("days_since_last_purchase").median(), pl.col("frequency").mean(), pl.col("clv").mean(), pl.col("spend_per_purchase").median()
    )
    if "Champions" in stats["segment"].to_list():
        champ = stats.filter(pl.col("segment") == "Champions").row(0, named=True)
        others = stats.filter(pl.col("segment") != "Champions")
        assert champ["days_since_last_purchase"] <= others["days_since_last_purchase"].min()
        assert champ["frequency"] >= others["frequency"].max()
        assert champ["clv"] >= others["clv"].max()
    assert a["segment"].n_unique() == seg.profile.height == seg.k


def test_profile_shares_sum_to_one_and_match_assignments(sample_run):
    seg = sample_run.segmentation
    p = seg.profile
    for col in ("customer_share", "revenue_share", "clv_share"):
        assert p[col].sum() == pytest.approx(1.0)
    assert p["clv_share"].to_list() == sorted(p["clv_share"].to_list(), reverse=True)
    counts = seg.assignments.group_by("segment").len()
    joined = p.join(counts, on="segment")
    assert (joined["n_customers"] == joined["len"]).all()
    assert p["n_customers"].sum() == seg.assignments.height == 5_000
    clv_by_segment = seg.assignments.group_by("segment").agg(pl.col("clv").sum().alias("x")).join(p, on="segment")
    np.testing.assert_allclose(clv_by_segment["x"].to_numpy(), clv_by_segment["clv"].to_numpy())


@pytest.mark.slow
def test_same_seed_same_segments(sample_run):
    a = sample_run.segmentation
    b = run_segmentation(load_transactions(bundled_sample_path()), period=Period.day, seed=42).segmentation
    assert a.assignments.equals(b.assignments) and a.profile.equals(b.profile)


def test_k_selection_rejects_tiny_segments():
    rng = np.random.default_rng(0)
    blobs = [rng.normal(loc, 0.3, size=(n, 2)) for loc, n in (((0, 0), 1500), ((5, 5), 1500), ((0, 5), 1500), ((30, 30), 10))]
    X = np.vstack(blobs)
    k, candidates, _ = select_k(X, seed=1)
    chosen = next(c for c in candidates if c.k == k)
    assert chosen.min_share >= MIN_SEGMENT_SHARE
    assert any(not c.accepted and "of customers" in c.reason for c in candidates)


def test_refined_sample_solution_is_as_good_as_restarts_on_everyone():
    """The final fit starts from the selection sample's centres: its inertia on all customers matches full restarts."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(3)
    centres = rng.normal(0, 4, size=(5, 5))
    X = np.vstack([rng.normal(c, 1.0 + i * 0.3, size=(6_000 + 2_000 * i, 5)) for i, c in enumerate(centres)])
    assert len(X) > SELECTION_SAMPLE
    k, _, sample_centres = select_k(X, seed=1)
    labels, n_fit = fit_kmeans(X, k, seed=1, centres=sample_centres)
    assert n_fit == len(X)
    ours = sum(((X[labels == j] - X[labels == j].mean(axis=0)) ** 2).sum() for j in range(k))
    full = KMeans(n_clusters=k, n_init=10, random_state=0).fit(X).inertia_
    assert ours <= full * 1.01


def test_silhouettes_and_stability_are_scikit_learns_to_the_bit(sample_run):
    """The criteria choosing k: scikit-learn's silhouette_score on the same fixed-seed sample, and its adjusted_rand_score."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    rng = np.random.default_rng(5)
    X = np.vstack([feature_matrix(sample_run.segmentation.assignments), rng.normal(0, 1, size=(300, 5))])
    for size in (2_000, len(X) + 10):  # a sample, and every point (in permuted order)
        sample = SilhouetteSample(X, size, seed=7)
        for k in (2, 3, 6):
            labels = KMeans(n_clusters=k, n_init=1, random_state=0).fit(X).labels_
            assert sample.score(labels) == silhouette_score(X, labels, sample_size=size, random_state=7)
    singletons = np.r_[np.zeros(len(X) - 2, int), 1, 2]  # clusters of one point score 0, as in scikit-learn
    assert SilhouetteSample(X, len(X), seed=0).score(singletons) == silhouette_score(X, singletons, sample_size=len(X), random_state=0)
    for a, b in ((rng.integers(0, 4, 5_000), rng.integers(0, 6, 5_000)), (np.r_[np.zeros(50, int), np.ones(50, int)], np.r_[np.ones(50, int) * 7, np.zeros(50, int)]),
                 (np.arange(10), np.zeros(10, int)), (rng.integers(0, 3, 200) * 5, rng.integers(0, 3, 200))):
        assert adjusted_rand_index(a, b) == adjusted_rand_score(a, b)


def test_collisions_get_qualifiers_and_names_stay_unique():
    centres = pl.DataFrame(
        {
            "r_score": [3.6, 3.5, 1.2],
            "fm_score": [4.6, 4.4, 1.1],
            "days_since_last_purchase": [60.0, 62.0, 400.0],
            "frequency": [8.0, 7.5, 0.0],
            "spend_per_purchase": [120.0, 30.0, 20.0],
            "p_alive": [0.8, 0.8, 0.2],
            "clv": [900.0, 300.0, 5.0],
        }
    )
    names = name_segments(centres)
    assert names == ["Loyal - high spend", "Loyal - low spend", "Lost"]


def test_rfm_method_and_forced_k(sample_run):
    tx = load_transactions(bundled_sample_path())
    rfm = run_segmentation(tx, method="rfm").segmentation
    assert set(rfm.profile["segment"]) <= set(rfm.assignments["rfm_segment"])
    forced = run_segmentation(tx, k=5).segmentation
    assert forced.k == 5 and forced.profile.height == 5 and forced.candidates == ()
    with pytest.raises(InputError, match="out of range"):
        run_segmentation(tx, k=10_000)


def test_outliers_do_not_get_a_segment_of_their_own(sample_run):
    features = sample_run.segmentation.assignments
    spiked = features.with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(pl.col("spend_per_purchase") * 1e6).otherwise(pl.col("spend_per_purchase"))
    )
    X = feature_matrix(spiked)
    assert np.abs(X).max() < 10  # winsorised: no point sits far from everyone else


def test_too_few_customers_for_clustering(sample_run):
    """Clustering's own gate, reached with features the models could score (not BG/NBD's error)."""
    from segments.cluster import MIN_CUSTOMERS, segment_customers

    features = sample_run.segmentation.assignments.head(MIN_CUSTOMERS - 1)
    with pytest.raises(ModelError, match=f"clustering needs at least {MIN_CUSTOMERS} customers; got {MIN_CUSTOMERS - 1}"):
        segment_customers(features, method="kmeans")


def test_days_since_last_purchase_is_its_own_name_and_recency_keeps_lifetimes_meaning(sample_run):
    """recency is the first-to-last purchase span (lifetimes); the time since the last purchase has its own name."""
    seg = sample_run.segmentation
    a = seg.assignments
    assert not {"recency_days", "median_recency_days"} & (set(a.columns) | set(seg.profile.columns))
    assert (a["days_since_last_purchase"] == (a["T"] - a["recency"]).cast(pl.Float64)).all()  # period = day
    assert "median_days_since_last_purchase" in seg.profile.columns

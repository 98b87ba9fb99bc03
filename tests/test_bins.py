"""EdgeBins against numpy's searchsorted: the same bins at and beside every edge, with ties and infinite edges."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segments.bins import EdgeBins


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40), st.integers(0, 3), st.integers(0, 2), st.integers(0, 1))
def test_edge_bins_equal_searchsorted_right_oracle_numpy(seed, n_edges, decimals, below, above):
    rng = np.random.default_rng(seed)
    finite = np.round(rng.normal(0, 1, n_edges), decimals)  # rounding plants tied edges
    edges = np.sort(np.r_[np.full(below, -np.inf), finite, np.full(above, np.inf)])
    values = np.r_[finite, np.nextafter(finite, np.inf), np.nextafter(finite, -np.inf), rng.normal(0, 2, 200), -np.inf, np.inf, 1e300, -1e300]
    np.testing.assert_array_equal(EdgeBins(edges)(values), np.searchsorted(edges, values, side="right") - 1)


def test_edge_bins_keep_the_shape_of_a_block_of_scores():
    edges = np.r_[-np.inf, np.linspace(0, 1, 201), np.inf]
    scores = np.random.default_rng(1).random((30, 70)) ** 8  # crowded near 0, as offer scores are
    np.testing.assert_array_equal(EdgeBins(edges)(scores), np.searchsorted(edges, scores, side="right") - 1)

"""N-hot label reduction (report 3.3.3, Fig. 18)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fer_bench.data import reduce_to_nhot


def test_report_fig18_example():
    image_a = [0.4, 0, 0, 0.3, 0.2, 0.1, 0, 0]        # X = 4: anger and disgust go
    image_b = [0.6, 0, 0, 0.4, 0, 0, 0, 0]            # X = 2: unchanged
    out = reduce_to_nhot(np.array([image_a, image_b], dtype=np.float32), 2, seed=0)
    np.testing.assert_allclose(out[0], [4 / 7, 0, 0, 3 / 7, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[1], np.array(image_b, dtype=np.float32))
    assert out.dtype == np.float32


# Distributions as cleaning makes them: 1..10 votes over 8 emotions, so ties are common.
vote_rows = arrays(np.int64, (8,), elements=st.integers(0, 4)).filter(lambda r: r.sum() > 0)
distributions = st.lists(vote_rows, min_size=1, max_size=30).map(
    lambda rows: (np.array(rows) / np.array(rows).sum(axis=1, keepdims=True)).astype(np.float32)
)


@settings(max_examples=150, deadline=None)
@given(dist=distributions, n=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_reduction_properties(dist, n, seed):
    out = reduce_to_nhot(dist, n, seed)
    complexity = (dist > 0).sum(axis=1)
    assert ((out > 0).sum(axis=1) <= n).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    kept = out > 0
    for row in range(len(dist)):
        if kept[row].all():
            continue
        # Every kept value is >= every dropped value (the N largest survive).
        assert dist[row][kept[row]].min() >= dist[row][~kept[row]].max()
        if complexity[row] > n:
            assert kept[row].sum() == n
            # Kept shares keep their proportions.
            scale = dist[row][kept[row]].sum()
            np.testing.assert_allclose(out[row][kept[row]] * scale, dist[row][kept[row]], rtol=1e-5)
    small = complexity <= n
    np.testing.assert_array_equal(out[small], dist[small])
    np.testing.assert_array_equal(reduce_to_nhot(dist, n, seed), out)   # same seed, same output


@given(dist=distributions, seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_eight_hot_is_identity(dist, seed):
    out = reduce_to_nhot(dist, 8, seed)
    np.testing.assert_array_equal(out, dist)
    assert out is not dist


def test_ties_broken_randomly_over_seeds():
    # sadness and anger tie for second place; 2-hot must keep exactly one of them.
    dist = np.array([[0.5, 0, 0, 0.2, 0.2, 0.1, 0, 0]], dtype=np.float32)
    kept_sadness = [reduce_to_nhot(dist, 2, seed)[0, 3] > 0 for seed in range(200)]
    assert 60 < sum(kept_sadness) < 140          # both outcomes, about evenly
    # Rows draw independent tie-breaks: 100 identical rows do not all pick the same one.
    many = reduce_to_nhot(np.repeat(dist, 100, axis=0), 2, seed=0)
    assert 0 < (many[:, 3] > 0).sum() < 100
    np.testing.assert_allclose(many[:, 0], 0.5 / 0.7, rtol=1e-6)


def test_invalid_inputs():
    dist = np.full((2, 8), 1 / 8, dtype=np.float32)
    for bad_n in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="n must be"):
            reduce_to_nhot(dist, bad_n, seed=0)
    with pytest.raises(ValueError, match="shape"):
        reduce_to_nhot(dist[:, :7], 2, seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        reduce_to_nhot(-dist, 2, seed=0)

"""Splits (report 3.3.2): ordinary, complex, official; deterministic per seed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fer_bench.data import SPLIT_NAMES, clean, make_split, make_synthetic
from fer_bench.data.schema import CleanDataset


def _check_partition(split, m: int) -> None:
    for part in (split.train, split.val, split.test):
        assert part.dtype == np.int64
        assert (np.diff(part) > 0).all()            # sorted, no repeats
    covered = np.concatenate([split.train, split.val, split.test])
    assert len(covered) == m
    np.testing.assert_array_equal(np.sort(covered), np.arange(m))   # disjoint + covering


@pytest.fixture(scope="module")
def real_splits(ferplus_clean):
    return {name: make_split(ferplus_clean, name, seed=0) for name in SPLIT_NAMES}


def test_ordinary_real(ferplus_clean, real_splits):
    split = real_splits["ordinary"]
    m = len(ferplus_clean)
    assert len(split.test) == round(0.1 * m) == 3539
    assert len(split.val) == round(0.1 * (m - 3539))
    _check_partition(split, m)
    # A uniform draw: the test set's complex share is near the data set's (12.6%).
    assert abs((ferplus_clean.complexity[split.test] > 3).mean() - 0.126) < 0.03


def test_complex_real(ferplus_clean, real_splits):
    split = real_splits["complex"]
    m = len(ferplus_clean)
    assert len(split.test) == 3539
    assert (ferplus_clean.complexity[split.test] > 3).all()
    assert len(split.val) == round(0.1 * (m - 3539))
    _check_partition(split, m)
    leftover_complex = (ferplus_clean.complexity[np.concatenate([split.train, split.val])] > 3).sum()
    assert leftover_complex == 4454 - 3539


def test_official_real(ferplus_clean, real_splits):
    split = real_splits["official"]
    assert (len(split.train), len(split.val), len(split.test)) == (28314, 3541, 3534)
    assert (ferplus_clean.usage[split.test] == 2).all()
    _check_partition(split, len(ferplus_clean))


def test_deterministic_per_seed(ferplus_clean, real_splits):
    for name in ("ordinary", "complex"):
        again = make_split(ferplus_clean, name, seed=0)
        first = real_splits[name]
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(again, part), getattr(first, part))
        assert again.fingerprint == first.fingerprint
        other = make_split(ferplus_clean, name, seed=1)
        assert not np.array_equal(other.test, first.test)
        assert other.fingerprint != first.fingerprint
    fingerprints = {s.fingerprint for s in real_splits.values()}
    assert len(fingerprints) == 3 and all(len(f) == 16 for f in fingerprints)


def test_documented_algorithm_on_synthetic():
    """The indices follow the module docstring exactly (another implementation can match)."""
    data = clean(make_synthetic(n=400, seed=2))
    m = len(data)
    split = make_split(data, "ordinary", seed=7, val_fraction=0.2)
    expected_test = np.sort(np.random.default_rng(7).permutation(m)[: round(0.1 * m)])
    np.testing.assert_array_equal(split.test, expected_test)
    rest = np.setdiff1d(np.arange(m), expected_test)
    expected_val = np.sort(np.random.default_rng([7, 1]).permutation(rest)[: round(0.2 * len(rest))])
    np.testing.assert_array_equal(split.val, expected_val)


def _tiny_clean(complexity: list[int]) -> CleanDataset:
    m = len(complexity)
    dist = np.zeros((m, 8), dtype=np.float32)
    for i, x in enumerate(complexity):
        dist[i, :x] = 1.0 / x
    return CleanDataset(
        images=np.zeros((m, 48, 48), np.uint8), dist=dist,
        complexity=np.array(complexity, np.int8), usage=np.zeros(m, np.int8),
        names=np.array([f"img{i}.png" for i in range(m)], dtype=object),
        fingerprint="x", label="synthetic", raw_report=make_synthetic(1).report,
    )


def test_complex_warns_and_takes_all_when_too_few():
    data = _tiny_clean([1] * 95 + [4, 5, 2, 3, 6])    # 3 complex images, 10 wanted
    with pytest.warns(UserWarning, match="only 3 images"):
        split = make_split(data, "complex", seed=0)
    np.testing.assert_array_equal(split.test, [95, 96, 99])
    _check_partition(split, len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_split(_tiny_clean([4] * 20 + [1] * 80), "complex", seed=0)  # enough: no warning


def test_bad_arguments():
    data = _tiny_clean([1] * 20)
    with pytest.raises(ValueError, match="complex, official, official-majority, ordinary"):
        make_split(data, "random", seed=0)
    with pytest.raises(ValueError, match="seed"):
        make_split(data, "ordinary", seed=-1)
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(data, "ordinary", seed=0, val_fraction=1.0)


def test_empty_validation_slice_is_an_error(ferplus_clean):
    from fer_bench.errors import DataError

    with pytest.raises(DataError, match="validation slice is empty"):
        make_split(ferplus_clean, "ordinary", 0, val_fraction=0.0)

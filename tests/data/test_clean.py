"""Cleaning (report 3.3.1, Fig. 16) and subsetting."""

from __future__ import annotations

import numpy as np
import pytest

from fer_bench.data import clean, make_synthetic, subset
from fer_bench.data.schema import LoadReport, RawDataset
from fer_bench.errors import DataError


def _raw(votes: list[list[int]], source_format: str = "folder") -> RawDataset:
    n = len(votes)
    return RawDataset(
        images=np.arange(n * 48 * 48, dtype=np.int64).reshape(n, 48, 48).astype(np.uint8),
        votes=np.array(votes, dtype=np.int32),
        usage=np.array([i % 3 for i in range(n)], dtype=np.int8),
        names=np.array([f"fer{i:07d}.png" for i in range(n)], dtype=object),
        fingerprint="test",
        report=LoadReport(source_format=source_format, label_snapshot="fer2013new", path="test.csv"),
    )


# Report Fig. 16, columns neutral..contempt, unknown, NF.
IMAGE_A = [0, 0, 0, 6, 0, 0, 0, 0, 2, 2]
IMAGE_B = [6, 0, 0, 2, 0, 0, 0, 0, 2, 0]
IMAGE_C = [4, 0, 0, 4, 2, 0, 0, 0, 0, 0]


def test_report_fig16_examples():
    data = clean(_raw([IMAGE_A, IMAGE_B, IMAGE_C]))
    assert list(data.names) == ["fer0000001.png", "fer0000002.png"]  # A dropped
    np.testing.assert_allclose(data.dist[0], [0.75, 0, 0, 0.25, 0, 0, 0, 0])
    np.testing.assert_allclose(data.dist[1], [0.4, 0, 0, 0.4, 0.2, 0, 0, 0])
    assert data.dist.dtype == np.float32 and data.complexity.dtype == np.int8
    assert data.complexity.tolist() == [2, 3]
    assert data.usage.tolist() == [1, 2]
    assert data.label == "ferplus" and len(data.fingerprint) == 16


def test_boundary_and_no_emotion_rows():
    votes = [
        [5, 0, 0, 0, 0, 0, 0, 0, 3, 0],   # unknown + NF = 3: kept
        [5, 0, 0, 0, 0, 0, 0, 0, 1, 3],   # 4: dropped
        [0, 0, 0, 0, 0, 0, 0, 0, 1, 1],   # no emotion vote: dropped
        [1, 1, 1, 1, 1, 1, 1, 1, 0, 0],   # X = 8
    ]
    data = clean(_raw(votes))
    assert list(data.names) == ["fer0000000.png", "fer0000003.png"]
    np.testing.assert_array_equal(data.images[1], _raw(votes).images[3])
    assert data.complexity.tolist() == [1, 8]
    np.testing.assert_allclose(data.dist.sum(axis=1), 1.0, rtol=1e-6)


def test_fingerprint_depends_on_names_and_votes_only():
    base = clean(_raw([IMAGE_B, IMAGE_C]))
    other_format = clean(_raw([IMAGE_B, IMAGE_C], source_format="kaggle"))
    assert other_format.fingerprint == base.fingerprint
    changed = clean(_raw([IMAGE_B, [4, 0, 0, 4, 1, 0, 0, 0, 1, 0]]))
    assert changed.fingerprint != base.fingerprint
    assert clean(_raw([IMAGE_C, IMAGE_B])).fingerprint != base.fingerprint


def test_bad_votes_raise_data_error_naming_the_image():
    with pytest.raises(DataError, match="fer0000001.png"):
        clean(_raw([IMAGE_B, [1, -1, 0, 0, 0, 0, 0, 0, 0, 0]]))
    raw = _raw([IMAGE_B])
    raw.votes = raw.votes[:, :8]
    with pytest.raises(DataError, match="shape"):
        clean(raw)


def test_synthetic_label():
    assert clean(make_synthetic(n=50, seed=0)).label == "synthetic"


def test_subset_is_seeded_sorted_and_refingerprinted():
    data = clean(make_synthetic(n=300, seed=0))
    small = subset(data, 100, seed=3)
    assert len(small) == 100
    positions = np.searchsorted(data.names, small.names)
    assert (np.diff(positions) > 0).all()           # canonical order kept
    np.testing.assert_array_equal(small.dist, data.dist[positions])
    np.testing.assert_array_equal(small.images, data.images[positions])
    assert small.fingerprint != data.fingerprint
    again = subset(data, 100, seed=3)
    assert again.fingerprint == small.fingerprint
    assert list(again.names) == list(small.names)
    assert subset(data, 100, seed=4).fingerprint != small.fingerprint
    assert subset(data, len(data) + 5) is data


def test_real_data_counts(ferplus_clean):
    data = ferplus_clean
    assert len(data) == 35389
    assert np.bincount(data.usage, minlength=3).tolist() == [28314, 3541, 3534]
    histogram = np.bincount(data.complexity, minlength=9).tolist()
    assert histogram == [0, 9298, 13298, 8339, 3458, 874, 118, 4, 0]
    np.testing.assert_allclose(data.dist.sum(axis=1), 1.0, rtol=1e-5)
    assert data.label == "ferplus"
    assert data.images.shape == (35389, 48, 48)

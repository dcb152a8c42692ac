"""The embedded synthetic data set: deterministic, realistic complexity, learnable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fer_bench.data import SPLIT_NAMES, clean, make_split, make_synthetic
from fer_bench.data.schema import IMAGE_SIZE, USAGES, VOTE_COLUMNS
from fer_bench.training.metrics import tie_aware_accuracy


@pytest.fixture(scope="module")
def synthetic_raw():
    return make_synthetic(n=6000, seed=0)


def test_shapes_names_and_report(synthetic_raw):
    raw = synthetic_raw
    assert raw.images.shape == (6000, IMAGE_SIZE, IMAGE_SIZE) and raw.images.dtype == np.uint8
    assert raw.votes.shape == (6000, len(VOTE_COLUMNS)) and raw.votes.dtype == np.int32
    assert (raw.votes.sum(axis=1) == 10).all()
    assert raw.names[0] == "syn0000000.png" and raw.names[5999] == "syn0005999.png"
    assert raw.is_synthetic and raw.report.label_snapshot == "synthetic"
    shares = np.bincount(raw.usage, minlength=len(USAGES)) / len(raw)
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.02)
    # Faces, not flat noise: the image set has real contrast.
    assert raw.images.std() > 30


def test_deterministic_per_seed(synthetic_raw):
    again = make_synthetic(n=6000, seed=0)
    np.testing.assert_array_equal(again.images, synthetic_raw.images)
    np.testing.assert_array_equal(again.votes, synthetic_raw.votes)
    assert again.fingerprint == synthetic_raw.fingerprint
    other = make_synthetic(n=200, seed=1)
    assert not np.array_equal(other.votes, synthetic_raw.votes[:200])
    assert other.fingerprint != make_synthetic(n=200, seed=0).fingerprint
    assert make_synthetic(n=201, seed=1).fingerprint != other.fingerprint


def test_complexity_spans_levels_and_cleaning_drops_some(synthetic_raw):
    data = clean(synthetic_raw)
    assert data.label == "synthetic"
    assert 0.9 * len(synthetic_raw) < len(data) < len(synthetic_raw)
    levels = np.bincount(data.complexity, minlength=9)
    assert (levels[1:7] > 0).all(), levels
    assert (data.complexity > 3).mean() >= 0.10


def test_flows_through_every_split(synthetic_raw):
    data = clean(synthetic_raw)
    for name in SPLIT_NAMES:
        split = make_split(data, name, seed=0)
        covered = np.concatenate([split.train, split.val, split.test])
        assert len(covered) == len(data) == len(np.unique(covered))
    assert (data.complexity[make_split(data, "complex", seed=0).test] > 3).all()


def _tiny_cnn() -> nn.Module:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                             nn.ReLU(), nn.MaxPool2d(2))

    # Half resolution first: the faces' features survive it and the test runs 4x faster.
    return nn.Sequential(nn.AvgPool2d(2), block(1, 16), block(16, 32), block(32, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 8))


def test_learnable_by_a_tiny_cnn(synthetic_raw):
    """A few-layer CNN, 3 epochs on ~3000 images, beats the majority class by a wide margin."""
    data = clean(synthetic_raw)
    split = make_split(data, "ordinary", seed=0)
    train = split.train[:3000]
    torch.manual_seed(0)
    x = torch.from_numpy(data.images).float().div(255.0).unsqueeze(1)
    y = torch.from_numpy(data.dist)
    model = _tiny_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=4e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        model.train()
        for batch in torch.randperm(len(train), generator=generator).split(64):
            idx = torch.from_numpy(train)[batch]
            loss = torch.sum(-y[idx] * torch.log_softmax(model(x[idx]), dim=1), dim=1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        scores = model(x[split.test])
    accuracy = tie_aware_accuracy(scores, data.dist[split.test])
    majority = int(np.bincount(data.dist[train].argmax(axis=1)).argmax())
    constant = np.zeros((len(split.test), 8))
    constant[:, majority] = 1.0
    baseline = tie_aware_accuracy(constant, data.dist[split.test])
    print(f"tiny CNN tie-aware accuracy {accuracy:.3f} vs majority baseline {baseline:.3f}")
    assert accuracy > baseline + 0.15

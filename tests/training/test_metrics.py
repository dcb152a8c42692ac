"""Tie-aware accuracy and the other metrics (report 3.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_bench.training.metrics import (
    accuracy_by_complexity,
    mean_kl_divergence,
    per_class_accuracy,
    tie_aware_accuracy,
    tie_aware_correct,
)


def one_hot_scores(classes: list[int]) -> np.ndarray:
    scores = np.zeros((len(classes), 8))
    scores[np.arange(len(classes)), classes] = 1.0
    return scores


# Row 0: neutral and sadness tie at the top; row 1: happiness; row 2: 3-way tie.
DIST = np.array([
    [0.4, 0, 0, 0.4, 0.2, 0, 0, 0],
    [0.1, 0.9, 0, 0, 0, 0, 0, 0],
    [0.3, 0.3, 0.3, 0.1, 0, 0, 0, 0],
], dtype=np.float32)


def test_tie_at_the_top_counts_for_each_tied_emotion():
    assert tie_aware_correct(one_hot_scores([0, 1, 2]), DIST).tolist() == [True, True, True]
    assert tie_aware_correct(one_hot_scores([3, 1, 1]), DIST).tolist() == [True, True, True]
    assert tie_aware_correct(one_hot_scores([4, 0, 3]), DIST).tolist() == [False, False, False]
    assert tie_aware_accuracy(one_hot_scores([4, 1, 3]), DIST) == pytest.approx(1 / 3)


def test_accepts_torch_tensors_and_logits():
    logits = torch.tensor([[2.0, -1, 0, 1.9, 0, 0, 0, 0], [0, 5.0, 0, 0, 0, 0, 0, 0],
                           [0, 0, 0, 0, 0, 0, 0, 3.0]])
    assert tie_aware_accuracy(logits, torch.from_numpy(DIST)) == pytest.approx(2 / 3)
    assert tie_aware_accuracy(logits.to(torch.bfloat16), DIST) == pytest.approx(2 / 3)


def test_per_class_counts_tied_rows_for_each_top_emotion():
    result = per_class_accuracy(one_hot_scores([3, 5, 2]), DIST)
    assert result["neutral"] == pytest.approx(1.0)        # rows 0 and 2, both correct
    assert result["sadness"] == 1.0                       # row 0
    assert result["happiness"] == pytest.approx(0.5)      # rows 1 (wrong) and 2 (right)
    assert result["surprise"] == 1.0                      # row 2
    assert result["anger"] is None and result["contempt"] is None


def test_accuracy_by_complexity():
    complexity = np.array([3, 2, 4])
    accuracy, counts = accuracy_by_complexity(one_hot_scores([0, 4, 1]), DIST, complexity)
    assert list(counts) == [str(x) for x in range(1, 9)]
    assert counts == {"1": 0, "2": 1, "3": 1, "4": 1, "5": 0, "6": 0, "7": 0, "8": 0}
    assert accuracy["3"] == 1.0 and accuracy["2"] == 0.0 and accuracy["4"] == 1.0
    assert accuracy["1"] is None
    same, _ = accuracy_by_complexity(one_hot_scores([0, 4, 1]), DIST)   # X from dist
    assert same == accuracy


def test_kl_divergence():
    assert mean_kl_divergence(DIST, DIST) == pytest.approx(0.0, abs=1e-6)
    uniform = np.full((3, 8), 1 / 8)
    expected = np.mean([sum(p * np.log(p * 8) for p in row if p > 0) for row in DIST])
    assert mean_kl_divergence(uniform, DIST) == pytest.approx(expected, rel=1e-6)
    # A zero predicted share where the truth is positive stays finite (eps clipping).
    assert np.isfinite(mean_kl_divergence(one_hot_scores([1, 1, 1]), DIST))
    assert mean_kl_divergence(one_hot_scores([1, 1, 1]), DIST) > 5


def test_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        tie_aware_accuracy(np.zeros((3, 7)), DIST)
    with pytest.raises(ValueError, match="differ"):
        tie_aware_accuracy(np.zeros((2, 8)), DIST)
    with pytest.raises(ValueError, match="rows"):
        accuracy_by_complexity(one_hot_scores([0, 1, 2]), DIST, [1, 2])

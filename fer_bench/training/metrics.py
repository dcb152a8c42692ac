"""Evaluation metrics (SPEC "Accuracy", report 3.4), pure numpy.

Every function takes numpy arrays or torch tensors (moved to the CPU and converted).
``scores`` are model outputs [M, 8] (logits or probabilities; only their argmax matters);
``dist`` are the true cleaned distributions [M, 8] in ``EMOTIONS`` order.

Tie-aware correctness: the prediction ``argmax(scores)`` is correct when the true share
of the predicted emotion equals the row's maximum share (within ``TIE_TOLERANCE``), i.e.
a tie at the top counts for each tied emotion.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_bench.data.schema import EMOTIONS

#: Two shares closer than this count as equal (shares are counts / 10, so far apart).
TIE_TOLERANCE = 1e-6
#: Predicted probabilities are clipped to [KL_EPS, 1] before the logarithm.
KL_EPS = 1e-7
_N_EMOTIONS = len(EMOTIONS)


def _as_numpy(values: Any, name: str) -> np.ndarray:
    """numpy float64 view of an array-like or a (possibly CUDA / bf16) torch tensor."""
    if hasattr(values, "detach"):  # torch tensor, duck-typed so torch is not imported here
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != _N_EMOTIONS or array.shape[0] == 0:
        raise ValueError(f"{name} must have shape [M, {_N_EMOTIONS}] with M >= 1, got {array.shape}")
    return array


def _scores_and_dist(scores: Any, dist: Any) -> tuple[np.ndarray, np.ndarray]:
    scores_np, dist_np = _as_numpy(scores, "scores"), _as_numpy(dist, "dist")
    if scores_np.shape != dist_np.shape:
        raise ValueError(f"scores {scores_np.shape} and dist {dist_np.shape} differ in shape")
    return scores_np, dist_np


def _top_mask(dist: np.ndarray) -> np.ndarray:
    """bool [M, 8]: the emotions holding the row's maximum share."""
    return dist >= dist.max(axis=1, keepdims=True) - TIE_TOLERANCE


def tie_aware_correct(scores: Any, dist: Any) -> np.ndarray:
    """bool [M]: is ``argmax(scores[i])`` among the top-share emotions of ``dist[i]``."""
    scores_np, dist_np = _scores_and_dist(scores, dist)
    predicted = scores_np.argmax(axis=1)
    return _top_mask(dist_np)[np.arange(len(predicted)), predicted]


def top1_correct(scores: Any, dist: Any) -> np.ndarray:
    """bool [M]: is ``argmax(scores[i])`` the image's single label, the first emotion in
    ``EMOTIONS`` order with the largest share (how a single-label benchmark scores it;
    the literature's top-1). Never above ``tie_aware_correct``."""
    scores_np, dist_np = _scores_and_dist(scores, dist)
    return scores_np.argmax(axis=1) == dist_np.argmax(axis=1)


def top1_accuracy(scores: Any, dist: Any) -> float:
    """Fraction in [0, 1] of rows whose prediction is the first top-share emotion."""
    return float(top1_correct(scores, dist).mean())


def tie_aware_accuracy(scores: Any, dist: Any) -> float:
    """Fraction in [0, 1] of rows whose prediction is tie-aware correct."""
    return float(tie_aware_correct(scores, dist).mean())


def per_class_accuracy(scores: Any, dist: Any) -> dict[str, float | None]:
    """Accuracy per true top emotion: {emotion: fraction in [0, 1], or None if no images}.

    A row belongs to every emotion that holds its maximum share (a tied row counts once
    for each tied emotion) and is correct there when it is tie-aware correct, i.e. when
    the prediction is any of its tied top emotions.
    """
    correct = tie_aware_correct(scores, dist)
    top = _top_mask(_as_numpy(dist, "dist"))
    result: dict[str, float | None] = {}
    for k, emotion in enumerate(EMOTIONS):
        members = top[:, k]
        result[emotion] = float(correct[members].mean()) if members.any() else None
    return result


def accuracy_by_complexity(
    scores: Any, dist: Any, complexity: Any = None
) -> tuple[dict[str, float | None], dict[str, int]]:
    """Tie-aware accuracy and image count per complexity level X, keys "1".."8".

    ``complexity`` int [M] (None: computed as the number of positive shares of ``dist``).
    Levels without images get accuracy None and count 0.
    """
    correct = tie_aware_correct(scores, dist)
    if complexity is None:
        complexity = (_as_numpy(dist, "dist") > 0).sum(axis=1)
    elif hasattr(complexity, "detach"):
        complexity = complexity.detach().cpu().numpy()
    levels = np.asarray(complexity).astype(np.int64).reshape(-1)
    if levels.shape[0] != correct.shape[0]:
        raise ValueError(f"complexity has {levels.shape[0]} rows, scores {correct.shape[0]}")
    accuracy: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for level in range(1, _N_EMOTIONS + 1):
        members = levels == level
        counts[str(level)] = int(members.sum())
        accuracy[str(level)] = float(correct[members].mean()) if members.any() else None
    return accuracy, counts


def mean_kl_divergence(probs: Any, dist: Any) -> float:
    """Mean over rows of KL(dist || probs) in nats.

    ``probs`` are predicted distributions [M, 8] (softmax outputs), clipped to
    [KL_EPS, 1]; ``dist`` the true ones. Terms with a zero true share contribute 0.
    """
    predicted, true = _scores_and_dist(probs, dist)
    predicted = np.clip(predicted, KL_EPS, 1.0)
    positive = true > 0
    terms = np.zeros_like(true)
    terms[positive] = true[positive] * (np.log(true[positive]) - np.log(predicted[positive]))
    return float(terms.sum(axis=1).mean())


def truth_recovery(probs: Any, true_dist: Any) -> tuple[float, float]:
    """How well predictions recover the hidden distributions the votes were drawn from
    (synthetic data, ``fer_bench.data.schema.GroundTruth``).

    ``probs`` predicted distributions [M, 8] (softmax outputs); ``true_dist`` the hidden
    ones [M, 8] (rows sum to 1). Returns (mean KL(true || predicted) in nats, as
    ``mean_kl_divergence``; accuracy in [0, 1] against the true top emotion, i.e. the
    argmax of ``true_dist``, first in ``EMOTIONS`` order on an exact tie).
    """
    return mean_kl_divergence(probs, true_dist), top1_accuracy(probs, true_dist)

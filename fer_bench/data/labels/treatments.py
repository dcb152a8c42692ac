"""Label treatments: how a cell's training targets are made from the cleaned votes.

The label treatment is the ``variant`` axis of a cell (``fer_bench.identity.cell.Cell.variant``).
Built in: ``nhot-1`` .. ``nhot-8`` (SPEC "N-hot label reduction", ``data/nhot.py``) and
Microsoft's FERPlus label modes ``ms-majority``, ``ms-probability``, ``ms-crossentropy``,
``ms-multitarget`` (``data/literature.py``, registered when ``fer_bench.data`` is imported).
Further treatments register in ``LABELS``, in-process or through entry-point group
``fer_bench.labels`` with a ``LabelTreatment`` target. Validation and test targets are
never treated: they are the split's (the full cleaned distributions, unless the split
kind scores against other targets, e.g. ``official-majority``'s majority labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fer_bench.data.labels.nhot import reduce_to_nhot
from fer_bench.data.schema import EMOTIONS, CleanDataset
from fer_bench.registry import Registry, instances_of


@dataclass(frozen=True)
class LabelTreatment:
    """``targets(data, train, seed) -> (kept, targets)``: ``train`` int64 [T] indices into
    ``data``; ``kept`` int64 [K] the training images used (a subset of ``train``, in its
    order; a treatment may discard images); ``targets`` float32 [K, 8], rows summing to 1.
    ``cleaning``: the cleaning rule (``fer_bench.data.clean.CLEANING_RULES``) the data
    must have been cleaned by (Microsoft's modes need "ferplus-ms")."""

    name: str
    targets: Callable[[CleanDataset, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
    description: str = ""
    cleaning: str = "study"


LABELS: Registry[LabelTreatment] = Registry("label treatment", "fer_bench.labels",
                                            instances_of(LabelTreatment, "label treatment"),
                                            option="--fer-variant / --fer-nhot")


def nhot_variant(n: int) -> str:
    """The variant name of N-hot training, e.g. ``nhot-3``."""
    return f"nhot-{int(n)}"


def _nhot(n: int) -> Callable[[CleanDataset, np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    def targets(data: CleanDataset, train: np.ndarray, seed: int):
        return train, reduce_to_nhot(data.dist[train], n, seed).astype(np.float32)
    return targets


for _n in range(1, len(EMOTIONS) + 1):
    LABELS.register(nhot_variant(_n), LabelTreatment(
        nhot_variant(_n), _nhot(_n),
        f"keep the top {_n} vote shares (ties at random, seeded), renormalised"
        + (" (the cleaned distribution)" if _n == len(EMOTIONS) else "")), builtin=True)


def training_targets(data: CleanDataset, variant: str, train: np.ndarray,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept training indices int64 [K], targets float32 [K, 8]) of label treatment ``variant``."""
    kept, targets = LABELS.get(variant).targets(data, train, seed)
    return np.asarray(kept, dtype=np.int64), np.asarray(targets, dtype=np.float32)

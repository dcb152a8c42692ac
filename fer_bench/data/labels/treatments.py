"""Label treatments: how a cell's training targets are made from the cleaned votes.

The label treatment is the ``variant`` axis of a cell (``fer_bench.identity.cell.Cell.variant``).
Built in: ``nhot-1`` .. ``nhot-8`` (SPEC "N-hot label reduction", ``labels/nhot.py``) and
Microsoft's FERPlus label modes ``ms-majority``, ``ms-probability``, ``ms-crossentropy``,
``ms-multitarget`` (``labels/ferplus_ms.py``, a built-in module of ``LABELS``: imported on
the registry's first lookup or listing). Further treatments register in ``LABELS``,
in-process or through entry-point group ``fer_bench.labels`` with a ``LabelTreatment``
target. A treatment's N of N-hot is a typed field (``LabelTreatment.nhot``), never read
back from its name. Validation and test targets are
never treated: they are the split's (the full cleaned distributions, unless the split
kind scores against other targets, e.g. ``official-majority``'s majority labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fer_bench.data.labels.nhot import reduce_to_nhot
from fer_bench.data.schema import EMOTIONS, CleanDataset
from fer_bench.errors import FerBenchError
from fer_bench.registry import Registry, instances_of


@dataclass(frozen=True)
class LabelTreatment:
    """``targets(data, train, seed) -> (kept, targets)``: ``train`` int64 [T] indices into
    ``data``; ``kept`` int64 [K] the training images used (a subset of ``train``, in its
    order; a treatment may discard images); ``targets`` float32 [K, 8], rows summing to 1.
    ``cleaning``: the cleaning rule (``fer_bench.data.clean.CLEANING_RULES``) the data
    must have been cleaned by (Microsoft's modes need "ferplus-ms").
    ``nhot``: N when the treatment is N-hot training (keep the top N vote shares), else None;
    the leaderboard's N-hot columns and a cell's ``nhot`` read it."""

    name: str
    targets: Callable[[CleanDataset, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
    description: str = ""
    cleaning: str = "study"
    nhot: int | None = None

    @property
    def token(self) -> str:
        """The treatment's text in a cell's readable id: ``n3`` for ``nhot-3``, else the name
        (only the canonical ``nhot_variant(N)`` name is shortened, so no other treatment
        can take an N-hot cell's id)."""
        if self.nhot is not None and self.name == nhot_variant(self.nhot):
            return f"n{self.nhot}"
        return self.name


LABELS: Registry[LabelTreatment] = Registry(
    "label treatment", "fer_bench.labels", instances_of(LabelTreatment, "label treatment"),
    option="--fer-variant / --fer-nhot", builtins=("fer_bench.data.labels.ferplus_ms",))


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
        + (" (the cleaned distribution)" if _n == len(EMOTIONS) else ""), nhot=_n), builtin=True)


def _registered(variant: str) -> LabelTreatment | None:
    """The treatment registered as ``variant``; None when it is not registered here (e.g. a
    stored record of a plug-in not installed) or its plug-in fails to load."""
    if variant not in LABELS:
        return None
    try:
        return LABELS.get(variant)
    except FerBenchError:
        return None


def nhot_of(variant: str) -> int | None:
    """N of label treatment ``variant`` when it is N-hot training (``LabelTreatment.nhot``),
    else None (other treatments, names not registered here)."""
    treatment = _registered(variant)
    return treatment.nhot if treatment is not None else None


def variant_token(variant: str) -> str:
    """The readable-id text of ``variant`` (``LabelTreatment.token``; unregistered: as is)."""
    treatment = _registered(variant)
    return treatment.token if treatment is not None else variant


def training_targets(data: CleanDataset, variant: str, train: np.ndarray,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept training indices int64 [K], targets float32 [K, 8]) of label treatment ``variant``."""
    kept, targets = LABELS.get(variant).targets(data, train, seed)
    return np.asarray(kept, dtype=np.int64), np.asarray(targets, dtype=np.float32)

"""Task data: the tensors one cell trains and tests on, built from its identity.

``build_task_data(clean, cell)`` draws the cell's split (split registry), makes its training
targets (label-treatment registry: N-hot, Microsoft's FERPlus modes) and moves uint8 images
and float targets to the device once, so the runner never copies images between host and
device in training.

A cell with an ``alignment`` (``fer_bench.data.align.axis``) takes its images from the
aligner's output attached to the data (``clean.alignment``) when it trains on aligned
images, the per-image inclination of its training images as ``train_meta["inclination"]``
(what the adaptive augmentation sets read) and the "aligned" flags of its test images.

``cleaning_rule(variant, split)`` is the cleaning rule a cell's data must have: its label
treatment and its split kind each declare one (``cleaning``); they must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from fer_bench.data.align.axis import alignment_for_cell
from fer_bench.data.labels.treatments import LABELS, training_targets
from fer_bench.data.schema import CleanDataset
from fer_bench.data.splits import SPLITS, make_split
from fer_bench.errors import ConfigError
from fer_bench.identity.cell import Cell


@dataclass
class TaskData:
    """The tensors of one cell, on one device.

    train_images uint8 [T, 48, 48]; train_targets float32 [T, 8] (treated training targets,
    rows sum to 1); val_images uint8 [V, 48, 48], val_dist float32 [V, 8]; test_images
    uint8 [M, 48, 48], test_dist float32 [M, 8] (what predictions are scored against:
    the full cleaned distributions, never reduced, unless the split kind has
    ``eval_targets``); test_complexity int64 [M] (1..8). ``test_full_dist`` float32
    [M, 8] (host): the full cleaned distributions when ``test_dist`` holds other targets
    (``official-majority``: one-hot majority labels), so the tie-aware accuracy of the
    same predictions is recorded beside (``CellRecord.acc_tie_aware``); else None.
    ``train_meta``: per-training-image tensors for augmentation sets that read them
    (``AugmentationSet.needs``): ``inclination`` float32 [T] (degrees, as trained; NaN
    without landmarks) when the cell has an aligner; else empty. ``test_aligned`` bool [M]
    (host): the aligner found usable landmarks in the test image (None without aligner).
    ``test_truth`` float32 [M, 8] (host): the hidden distributions the test images' votes
    were drawn from, and ``taggers`` the simulated taggers per image, when the data has a
    ``GroundTruth`` (synthetic data); else None.
    """

    cell: Cell
    train_images: torch.Tensor
    train_targets: torch.Tensor
    val_images: torch.Tensor
    val_dist: torch.Tensor
    test_images: torch.Tensor
    test_dist: torch.Tensor
    test_complexity: torch.Tensor
    dataset_label: str
    dataset_fingerprint: str
    split_fingerprint: str
    n_train: int
    n_val: int
    n_test: int
    test_full_dist: np.ndarray | None = None
    train_meta: dict[str, torch.Tensor] = field(default_factory=dict)
    test_aligned: np.ndarray | None = None
    test_truth: np.ndarray | None = None
    taggers: int | None = None

    @property
    def device(self) -> torch.device:
        return self.train_images.device


def cleaning_rule(variant: str, split: str) -> str:
    """The cleaning rule (``fer_bench.data.clean.CLEANING_RULES``) a cell with label
    treatment ``variant`` on split ``split`` needs. ``ConfigError`` naming both when they
    declare different rules (e.g. ``ms-majority`` on ``ordinary``)."""
    treatment, kind = LABELS.get(variant), SPLITS.get(split)
    if treatment.cleaning != kind.cleaning:
        hint = ""
        if treatment.cleaning == "ferplus-ms":
            hint = "; Microsoft's label modes (ms-*) run on split official-majority"
        elif kind.cleaning == "ferplus-ms":
            hint = "; split official-majority takes the label modes ms-majority, " \
                   "ms-probability, ms-crossentropy, ms-multitarget"
        raise ConfigError(f"label treatment {variant!r} needs data cleaned by rule "
                          f"{treatment.cleaning!r}, split {split!r} by rule {kind.cleaning!r}: "
                          f"they cannot make one cell{hint}")
    return kind.cleaning


def build_task_data(clean: CleanDataset, cell: Cell, *,
                    device: str | torch.device = "cpu") -> TaskData:
    """Split ``clean`` for ``cell``, treat the training targets, move all to ``device``.

    The split and the label treatment both use ``cell.seed`` (independent random streams);
    the validation share is ``cell.recipe.val_fraction``. ``ConfigError`` when ``clean``
    was cleaned by another rule than the cell's variant and split need.
    """
    rule = cleaning_rule(cell.variant, cell.split)
    if clean.cleaning != rule:
        raise ConfigError(f"cell {cell.id} needs data cleaned by rule {rule!r}; the data given "
                          f"was cleaned by {clean.cleaning!r} (clean(raw, rule={rule!r}))")
    kind = SPLITS.get(cell.split)
    alignment, aligned_images = alignment_for_cell(clean, cell.alignment)
    source = alignment.images if aligned_images else clean.images
    split = make_split(clean, cell.split, cell.seed, cell.recipe.val_fraction)
    train, train_targets = training_targets(clean, cell.variant, split.train, cell.seed)

    def scored(indices: np.ndarray) -> np.ndarray:
        return clean.dist[indices] if kind.eval_targets is None else kind.eval_targets(clean, indices)

    def images(indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(source[indices], dtype=np.uint8)).to(device)

    def floats(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)

    return TaskData(
        cell=cell,
        train_images=images(train),
        train_targets=floats(train_targets),
        val_images=images(split.val),
        val_dist=floats(scored(split.val)),
        test_images=images(split.test),
        test_dist=floats(scored(split.test)),
        test_complexity=torch.from_numpy(clean.complexity[split.test].astype(np.int64)).to(device),
        dataset_label=clean.label,
        dataset_fingerprint=clean.fingerprint,
        split_fingerprint=split.fingerprint,
        n_train=len(train),
        n_val=len(split.val),
        n_test=len(split.test),
        test_full_dist=(None if kind.eval_targets is None
                        else np.ascontiguousarray(clean.dist[split.test], dtype=np.float32)),
        train_meta=({} if alignment is None else
                    {"inclination": floats(alignment.inclination_as_trained(aligned_images)[train])}),
        test_aligned=None if alignment is None else alignment.aligned[split.test].copy(),
        test_truth=(None if clean.truth is None
                    else np.ascontiguousarray(clean.truth.dist[split.test], dtype=np.float32)),
        taggers=None if clean.truth is None else clean.truth.taggers,
    )

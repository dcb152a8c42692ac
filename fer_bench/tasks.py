"""Task data: the tensors one cell trains and tests on, built from its identity.

``build_task_data(clean, cell)`` draws the cell's split (split registry), makes its training
targets (label-treatment registry: N-hot today) and moves uint8 images and float targets to
the device once, so the runner never copies images between host and device in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fer_bench.cell import Cell
from fer_bench.data.schema import CleanDataset
from fer_bench.data.splits import make_split
from fer_bench.data.variants import training_targets


@dataclass
class TaskData:
    """The tensors of one cell, on one device.

    train_images uint8 [T, 48, 48]; train_targets float32 [T, 8] (treated training targets,
    rows sum to 1); val_images uint8 [V, 48, 48], val_dist float32 [V, 8]; test_images
    uint8 [M, 48, 48], test_dist float32 [M, 8] (full cleaned distributions, never
    reduced); test_complexity int64 [M] (1..8).
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

    @property
    def device(self) -> torch.device:
        return self.train_images.device


def build_task_data(clean: CleanDataset, cell: Cell, *,
                    device: str | torch.device = "cpu") -> TaskData:
    """Split ``clean`` for ``cell``, treat the training targets, move all to ``device``.

    The split and the label treatment both use ``cell.seed`` (independent random streams);
    the validation share is ``cell.recipe.val_fraction``.
    """
    split = make_split(clean, cell.split, cell.seed, cell.recipe.val_fraction)
    train, train_targets = training_targets(clean, cell.variant, split.train, cell.seed)

    def images(indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(clean.images[indices], dtype=np.uint8)).to(device)

    def floats(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)

    return TaskData(
        cell=cell,
        train_images=images(train),
        train_targets=floats(train_targets),
        val_images=images(split.val),
        val_dist=floats(clean.dist[split.val]),
        test_images=images(split.test),
        test_dist=floats(clean.dist[split.test]),
        test_complexity=torch.from_numpy(clean.complexity[split.test].astype(np.int64)).to(device),
        dataset_label=clean.label,
        dataset_fingerprint=clean.fingerprint,
        split_fingerprint=split.fingerprint,
        n_train=len(train),
        n_val=len(split.val),
        n_test=len(split.test),
    )

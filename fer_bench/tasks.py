"""Task = N-hot variant x test split x seed: what one grid cell trains and tests on.

``Task`` is the small, hashable description (what a fixture hands out);
``build_task_data`` turns it into ``TaskData``: tensors already on the target device, so
the runner never copies images between host and device during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fer_bench.data.nhot import reduce_to_nhot
from fer_bench.data.schema import EMOTIONS, CleanDataset
from fer_bench.data.splits import SPLIT_NAMES, make_split


@dataclass(frozen=True)
class Task:
    """One N-hot variant (1..8) on one test split, with the seed of split and N-hot ties."""

    nhot: int
    split: str
    seed: int

    def __post_init__(self) -> None:
        if not 1 <= int(self.nhot) <= len(EMOTIONS):
            raise ValueError(f"nhot must be in 1..{len(EMOTIONS)}, got {self.nhot!r}")
        if self.split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, got {self.split!r}")

    @property
    def id(self) -> str:
        """Readable id, e.g. ``n3-complex-s0``."""
        return f"n{self.nhot}-{self.split}-s{self.seed}"


@dataclass
class TaskData:
    """The tensors of one task, on one device.

    train_images uint8 [T, 48, 48]; train_targets float32 [T, 8] (N-hot training targets,
    rows sum to 1); val_images uint8 [V, 48, 48], val_dist float32 [V, 8]; test_images
    uint8 [M, 48, 48], test_dist float32 [M, 8] (full cleaned distributions, never
    reduced); test_complexity int64 [M] (1..8).
    """

    task: Task
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


def build_task_data(
    clean: CleanDataset, task: Task, *, val_fraction: float = 0.1, device: str | torch.device = "cpu"
) -> TaskData:
    """Split ``clean`` for ``task``, reduce the training targets to N-hot, move all to ``device``.

    The split and the N-hot tie-breaking both use ``task.seed``; validation and test keep
    the full cleaned distributions.
    """
    split = make_split(clean, task.split, task.seed, val_fraction)
    train_targets = reduce_to_nhot(clean.dist[split.train], task.nhot, task.seed)

    def images(indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(clean.images[indices], dtype=np.uint8)).to(device)

    def floats(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)

    return TaskData(
        task=task,
        train_images=images(split.train),
        train_targets=floats(train_targets),
        val_images=images(split.val),
        val_dist=floats(clean.dist[split.val]),
        test_images=images(split.test),
        test_dist=floats(clean.dist[split.test]),
        test_complexity=torch.from_numpy(clean.complexity[split.test].astype(np.int64)).to(device),
        dataset_label=clean.label,
        dataset_fingerprint=clean.fingerprint,
        split_fingerprint=split.fingerprint,
        n_train=len(split.train),
        n_val=len(split.val),
        n_test=len(split.test),
    )

"""Guard of ``PROTOCOL_VERSION``: the protocol's outputs on the synthetic set, as one digest.

Splits, label treatments (N-hot), metrics, augmentation outputs and the runner's random
streams (shuffle order, PLD draws) are hashed. When this test fails, a change altered what
a cell computes: stored results are no longer comparable. Bump ``PROTOCOL_VERSION`` in
``fer_bench/cell.py`` and record the new digest below under the new version (never edit the
digest of an existing version).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from fer_bench import metrics
from fer_bench.cell import PROTOCOL_VERSION
from fer_bench.data.clean import clean
from fer_bench.data.splits import SPLITS, make_split
from fer_bench.data.synthetic import make_synthetic
from fer_bench.data.variants import LABELS, training_targets
from fer_bench.training.augment import AUGMENTATIONS, expand_static
from fer_bench.training.losses import draw_one_hot
from fer_bench.training.runner import training_generators

#: PROTOCOL_VERSION -> digest of ``protocol_outputs()``.
GOLDEN = {
    2: "f7eb2b75368a01edee4b07415d76efea7022867722926aebcca703e88a853402",
}


def protocol_outputs() -> str:
    """sha256 over every protocol output on a fixed synthetic set (see the module docstring)."""
    digest = hashlib.sha256()

    def add(array) -> None:
        data = np.ascontiguousarray(np.asarray(array))
        if data.dtype.kind == "f":
            data = np.round(data.astype(np.float64), 6)
        digest.update(str(data.dtype).encode() + str(data.shape).encode() + data.tobytes())

    data = clean(make_synthetic(600, seed=0))
    add(data.dist)
    for name in sorted(SPLITS.names()):
        for seed in (0, 1):
            split = make_split(data, name, seed)
            for part in (split.train, split.val, split.test):
                add(part)
            for variant in sorted(LABELS.names()):
                kept, targets = training_targets(data, variant, split.train, seed)
                add(kept)
                add(targets)
    scores = np.random.default_rng(0).random((len(data), 8))
    add(metrics.tie_aware_correct(scores, data.dist))
    add([metrics.tie_aware_accuracy(scores, data.dist), metrics.mean_kl_divergence(scores, data.dist)])
    images = torch.from_numpy(data.images[:16].copy())
    targets = torch.from_numpy(data.dist[:16].astype(np.float32))
    for name in sorted(AUGMENTATIONS.names()):
        out_images, out_targets = expand_static(images, targets, name, seed=0)
        add(out_images.numpy())
        add(out_targets.numpy())
    shuffle, label_draws = training_generators(0, "cpu")
    add(torch.randperm(len(data), generator=shuffle).numpy())
    add(draw_one_hot(torch.from_numpy(data.dist.astype(np.float32)), label_draws).numpy())
    return digest.hexdigest()


def test_protocol_outputs_match_the_protocol_version():
    got = protocol_outputs()
    expected = GOLDEN.get(PROTOCOL_VERSION)
    assert expected is not None, (
        f"PROTOCOL_VERSION {PROTOCOL_VERSION} has no golden digest: add {PROTOCOL_VERSION}: {got!r}")
    assert got == expected, (
        "the protocol's outputs (splits, label targets, metrics, augmentation or the runner's "
        "random streams) changed: bump PROTOCOL_VERSION in fer_bench/cell.py and add its digest "
        f"{got!r} to GOLDEN in tests/test_protocol_golden.py")


def test_the_guard_notices_a_changed_label_stream(monkeypatch):
    """The kind of change d36edc4 made without a bump: another N-hot tie-breaking stream."""
    import fer_bench.data.nhot as nhot

    monkeypatch.setattr(nhot, "NHOT_STREAM", nhot.NHOT_STREAM + 10)
    assert protocol_outputs() != GOLDEN[PROTOCOL_VERSION]

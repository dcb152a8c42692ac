"""Guard of ``PROTOCOL_VERSION``: the protocol's outputs on the synthetic set, as one digest.

Splits, label treatments (N-hot), metrics, augmentation outputs and the runner's random
streams (shuffle order, PLD draws) are hashed. When this test fails, a change altered what
a cell computes: stored results are no longer comparable. Bump ``PROTOCOL_VERSION`` in
``fer_bench/identity/cell.py`` and record the new digest below under the new version (never edit the
digest of an existing version).
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
import torch

from fer_bench.data.clean import clean
from fer_bench.data.labels.treatments import training_targets
from fer_bench.data.splits import make_split
from fer_bench.data.synthetic import make_synthetic
from fer_bench.identity.cell import PROTOCOL_VERSION
from fer_bench.training import metrics
from fer_bench.training.augment.sets import AUGMENTATIONS
from fer_bench.training.losses import draw_one_hot
from fer_bench.training.runner import training_generators
from tests.helpers.cells import add_array_to_digest

#: What the digest covers. A new split kind, label treatment or augmentation set adds its
#: name here (and a new digest under the current or a bumped version): registering one never
#: changes the outputs of the others.
GUARDED_SPLITS = ("ordinary", "complex", "official")
GUARDED_VARIANTS = tuple(f"nhot-{n}" for n in range(1, 9))
GUARDED_AUGMENTATIONS = ("none", "flip", "flip_rot10", "flip_rot20", "flip_rot30", "flip_rot40",
                         "flip_rr", "rand_flip", "rand_flip_shift2", "rand_flip_shift4")
#: PROTOCOL_VERSION -> digest of ``protocol_outputs()``.
GOLDEN = {
    2: "f55d3a5562956282add82c4f3a2da307242196e266f4f04910b9ac9dadb80f43",
}


def protocol_outputs() -> str:
    """sha256 over every protocol output on a fixed synthetic set (see the module docstring)."""
    digest = hashlib.sha256()

    add = partial(add_array_to_digest, digest)

    data = clean(make_synthetic(600, seed=0))
    add(data.dist)
    for name in GUARDED_SPLITS:
        for seed in (0, 1):
            split = make_split(data, name, seed)
            for part in (split.train, split.val, split.test):
                add(part)
            for variant in GUARDED_VARIANTS:
                kept, targets = training_targets(data, variant, split.train, seed)
                add(kept)
                add(targets)
    scores = np.random.default_rng(0).random((len(data), 8))
    add(metrics.tie_aware_correct(scores, data.dist))
    add([metrics.tie_aware_accuracy(scores, data.dist), metrics.mean_kl_divergence(scores, data.dist)])
    images = torch.from_numpy(data.images[:16].copy())
    targets = torch.from_numpy(data.dist[:16].astype(np.float32))
    for name in GUARDED_AUGMENTATIONS:
        augmentation = AUGMENTATIONS.get(name)
        out_images, out_targets = augmentation.expand(images, targets, 0)
        add(out_images.numpy())
        add(out_targets.numpy())
        if augmentation.online is not None:
            add(augmentation.online(images, torch.Generator().manual_seed(0)).numpy())
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
        "random streams) changed: bump PROTOCOL_VERSION in fer_bench/identity/cell.py and add its digest "
        f"{got!r} to GOLDEN in tests/identity/test_protocol_golden.py")


def test_the_guard_notices_a_changed_label_stream(monkeypatch):
    """The kind of change d36edc4 made without a bump: another N-hot tie-breaking stream."""
    import fer_bench.data.labels.nhot as nhot

    monkeypatch.setattr(nhot, "NHOT_STREAM", nhot.NHOT_STREAM + 10)
    assert protocol_outputs() != GOLDEN[PROTOCOL_VERSION]

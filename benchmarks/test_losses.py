"""Ten loss functions (report 4.3.3), on Base and on the augmented set.

MSE on the softmax output was best (85.00% on Base, 86.17% on Base + Flip + Rotate +-20 for
VGG16), probabilistic label drawing (PLD) close behind. Every loss registered in
``fer_bench.training.losses`` (the study's ten here) is one row per augmentation set; a
third-party loss joins with ``--fer-loss name`` once its ``fer_bench.losses`` entry point is
installed::

    pytest benchmarks/test_losses.py --fer-data ../shared/data/ferplus
"""

from __future__ import annotations

import pytest

from fer_bench.training.losses import STUDY_LOSSES

pytestmark = [
    pytest.mark.fer_experiment("losses", title="Loss functions (report 4.3.3): Base and Base+Flip+Rotate±20"),
    pytest.mark.fer_axes(loss=list(STUDY_LOSSES), augmentation=["none", "flip_rot20"], nhot=[8],
                         split=["ordinary"]),
]


def test_loss(fer_cell, benchmark):
    """Train with one loss on one augmentation set (8-hot, ordinary)."""
    record = fer_cell.run(benchmark)
    assert record.status == "ok" and record.config["loss"] == fer_cell.cell.recipe.loss

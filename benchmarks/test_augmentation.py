"""Augmentation sets and rotation angles (report 4.3.1, Table 2).

Static sets that append transformed copies with the same target: none (Base), Base + Flip,
Base + Flip + Rotate +-theta for theta in 10/20/30/40 degrees, and Base + Flip + random
angles in [10, 30] ("RR"). The study found Base + Flip + Rotate +-20 best. The leaderboard
section shows, per row, the report's Table 2 statistics (highest test accuracy over epochs,
75th percentile of per-epoch test accuracy, epochs above 85%) beside the honest accuracy::

    pytest benchmarks/test_augmentation.py --fer-data ../shared/data/ferplus
"""

from __future__ import annotations

import pytest

SETS = ["none", "flip", "flip_rot10", "flip_rot20", "flip_rot30", "flip_rot40", "flip_rr"]

pytestmark = [
    pytest.mark.fer_experiment("augmentation",
                               title="Augmentation sets and rotation angles (report 4.3.1)"),
    pytest.mark.fer_axes(augmentation=SETS, nhot=[8], split=["ordinary"]),
]


def test_augmentation_set(fer_cell, benchmark):
    """Train on one augmentation set (8-hot, ordinary); the set multiplies the images."""
    record = fer_cell.run(benchmark)
    assert record.status == "ok"
    assert record.config["augmentation"] == fer_cell.cell.recipe.augmentation
    assert len(record.test_acc) == record.epochs

"""Pre-training (report 4.3.4): training from scratch vs ImageNet initialisation.

The study found ImageNet weights worth about +2 points on VGG16. No published weights are
reachable from machines without a network: ImageNet cells then skip with the reason, and
a local weights file runs instead, identified by its sha256 in the cell (``init=file-...``)::

    pytest benchmarks/test_pretraining.py --fer-init scratch,file:/path/to/vgg16.safetensors

(``--fer-init`` replaces this module's default of scratch + imagenet.)
"""

from __future__ import annotations

import pytest

pytestmark = [
    pytest.mark.fer_experiment("pretraining", title="Pre-training (report 4.3.4): scratch vs ImageNet"),
    pytest.mark.fer_axes(init=["scratch", "imagenet"], nhot=[8], split=["ordinary"]),
]


def test_initialisation(fer_cell, benchmark):
    """Train one model from one initialisation (8-hot, ordinary)."""
    record = fer_cell.run(benchmark)
    assert record.status == "ok" and record.cell.recipe.init == fer_cell.cell.recipe.init
    if record.cell.recipe.init.startswith("file:"):
        assert record.init_file                    # the path beside the sha256 identity

"""Model selection (report 4.2): every chosen model, 8-hot labels, ordinary split.

The study trained candidate architectures on 8-hot targets and kept the best ordinary-test
models (VGG16, then the FER-specific RAN, DAN, MTEN). Here every model of ``--fer-models``
(default: the study's four when registered, else the classical four) is one row::

    pytest benchmarks/test_models.py --fer-data ../shared/data/ferplus --benchmark-json models.json
"""

from __future__ import annotations

import pytest

pytestmark = [
    pytest.mark.fer_experiment("models", title="Model selection (report 4.2): 8-hot, ordinary"),
    pytest.mark.fer_axes(nhot=[8], split=["ordinary"]),
]


def test_model_selection(fer_cell, benchmark):
    """Train one model on 8-hot targets and test it on the ordinary split."""
    record = fer_cell.run(benchmark)
    assert record.status == "ok" and record.nhot == 8 and record.split == "ordinary"
    assert len(record.epoch_times_s) == record.epochs == fer_cell.config.epochs

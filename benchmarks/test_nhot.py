"""The study's N-hot grid: every model x N-hot training variant (1..8) x test split.

Report section 4.4 ("Test Result of N-hot Label Training"): each model is trained on the
1-hot .. 8-hot label versions of the training set; multi-label training beats 1-hot by
about 2-4 points, with most of the gain from N=1 to 3. Section 4.5 ("Test Result of
Complex Tests"): the same models tested on the complex split (test images with more than
three voted emotions) lose about 20 points; VGG16 trained on 1-hot labels drops to ~55%.

Run the whole grid (smoke profile: a 4000-image subset, 2 epochs, small_cnn)::

    pytest benchmarks/test_nhot.py --fer-data ../shared/data/ferplus --fer-profile smoke \\
        --benchmark-json results.json

Each cell's epoch times are the benchmark rounds; its ``CellRecord`` is in ``extra_info``.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.fer_experiment(
    "nhot", title="N-hot label training (report 4.4) and complex tests (4.5)")


def test_nhot_grid(fer_cell, benchmark):
    """Train one cell (model x N-hot x split x seed) and record accuracy and epoch times."""
    record = fer_cell.run(benchmark)
    assert record.status == "ok"
    assert len(record.epoch_times_s) == record.epochs == fer_cell.config.epochs
    assert 0.0 <= record.acc_honest <= record.acc_optimistic <= 1.0

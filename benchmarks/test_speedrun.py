"""Time to accuracy (issue 14, the speedrun track): 8-hot, ordinary split.

For each model (default ``small_cnn`` and the fast CPU recipe ``fast_resnet``, each with its
own recipe; ``--fer-models`` overrides) one cell trains with validation and test evaluated
after every epoch. The leaderboard's "speedrun" section then gives, per rung of the ladder
(validation accuracy 60/70/75/80/85%), the wall seconds of training and the training FLOPs
(``torch.utils.flop_counter``, forward + backward, x images trained per epoch x epochs) at
the first epoch that reaches it, with the test accuracy there
(``fer_bench/leaderboard/speedrun.py``); the time is the device's, the FLOPs are not::

    pytest benchmarks/test_speedrun.py --fer-data ../shared/data/ferplus --benchmark-json speedrun.json
    fer-bench leaderboard speedrun.json --out leaderboard/

Like airbench's CIFAR-10 speedruns, it states what reaching an accuracy costs, in seconds
on a named device and in FLOPs that carry over to any other.
"""

from __future__ import annotations

import pytest

pytestmark = [
    pytest.mark.fer_experiment("speedrun", title="Time to accuracy: seconds and training FLOPs "
                                                 "to each validation rung (8-hot, ordinary)"),
    pytest.mark.fer_axes(models=["small_cnn", "fast_resnet"], nhot=[8], split=["ordinary"]),
]


def _count_flops_if_missing(fer_cell, record, benchmark) -> None:
    """A record stored before FLOPs were counted gets them now (the count is a property of
    the model and recipe, not of the run), in the record and in the benchmark JSON."""
    if record.train_flops_per_image is not None:
        return
    from fer_bench.models import build_model
    from fer_bench.training.flops import cell_flops

    model = build_model(fer_cell.spec, num_classes=8, in_chans=1)
    record.train_flops_per_image, record.eval_flops_per_image = cell_flops(
        model, fer_cell.config, amp=record.cell.precision == "bf16")
    if "fer_bench" in benchmark.extra_info:
        benchmark.extra_info["fer_bench"].update(
            train_flops_per_image=record.train_flops_per_image,
            eval_flops_per_image=record.eval_flops_per_image)


def test_speedrun(fer_cell, benchmark, record_property):
    """Train one cell; record its seconds and PFLOPs to each rung of the ladder."""
    from fer_bench.leaderboard.speedrun import rung_column, rung_text, time_to_accuracy

    record = fer_cell.run(benchmark)
    assert record.status == "ok" and record.nhot == 8 and record.split == "ordinary"
    assert len(record.val_acc) == len(record.epoch_times_s) == fer_cell.config.epochs
    _count_flops_if_missing(fer_cell, record, benchmark)
    assert record.train_flops_per_image and record.train_flops_per_image > 0
    rungs = time_to_accuracy(record)
    for rung in rungs:
        record_property(rung_column(rung.target), rung_text(rung))
    reached = [r for r in rungs if r.reached]
    assert all(a.epoch <= b.epoch for a, b in zip(reached, reached[1:], strict=False))   # a ladder

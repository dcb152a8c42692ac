"""The record's chance level and the model's extra loss term (issue 22 part 3):
``CellRecord.majority_acc`` (``training.evaluate.majority_accuracy``) and
``CellRecord.train_extra_loss`` (``training.loop.train_epoch``), and both across a resume
from an epoch checkpoint (``training.checkpoint``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore
from fer_bench.training.checkpoint import EXTRA_LOSS_LIST
from fer_bench.training.checkpoint_file import read_info, verified_payload, write_checkpoint
from fer_bench.training.evaluate import majority_accuracy
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from fer_bench.training.tasks import build_task_data
from tests.helpers.cells import TINY_BATCH, make_cell, tiny_spec

EPOCHS = 2
#: Measured, not computed: they differ between runs.
MEASURED = {"epoch_times_s", "setup_s", "flops_s", "eval_s", "store_s", "wall_s",
            "compile_seconds", "train_images_per_s", "eval_images_per_s", "peak_memory_bytes",
            "started_at", "finished_at", "checkpoint_write_s", "checkpoint_bytes",
            "resumed_from_epoch"}
LOGGER = "fer_bench.training.checkpoint"


def comparable(record) -> dict:
    return {k: v for k, v in record.to_dict().items() if k not in MEASURED}


def row(*shares: float) -> list[float]:
    """One distribution over the 8 emotions: ``shares`` first, zeros after."""
    return [*shares, *[0.0] * (8 - len(shares))]


# ----------------------------------------------------------------------------- majority_acc
def test_majority_is_the_most_frequent_top_training_emotion_scored_tie_aware():
    # training tops: neutral, happy (tied row 0 counts for both), happy, happy, neutral
    train = torch.tensor([row(0.5, 0.5), row(0.0, 1.0), row(0.0, 0.6, 0.4), row(1.0), row(0.7, 0.3)])
    # always "happy": row 0 yes, row 1 yes (tied top), row 2 no, row 3 no
    test = torch.tensor([row(0.0, 1.0), row(0.5, 0.5), row(1.0), row(0.0, 0.3, 0.3, 0.4)])
    assert majority_accuracy(train, test) == 0.5
    # equal frequencies go to the first emotion: neutral 1, happy 1 -> neutral
    assert majority_accuracy(train[[1, 3]], test) == 0.5       # neutral: rows 1 and 2
    assert majority_accuracy(train[[3]], test[[0]]) == 0.0


# ----------------------------------------------------------------------------- extra loss
class CountingExtra:
    """An extra term without gradient: call i (0-based, counted over the run's training
    batches) adds i, but every third call (i % 3 == 2) adds nothing (returns None)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model, outputs, logits, targets):
        i, self.calls = self.calls, self.calls + 1
        return None if i % 3 == 2 else torch.tensor(float(i))


def logit_l2(model, outputs, logits, targets):
    """A real extra term with gradient: 0.01 x mean squared logit."""
    return 0.01 * logits.float().pow(2).mean()


@pytest.fixture(scope="module")
def data():
    return clean(make_synthetic(600, seed=2))


def _run(spec, data, **recipe):
    config = resolve_config(spec, epochs=EPOCHS, **recipe)
    task = build_task_data(data, make_cell(spec, data, nhot=8, config=config))
    return run_cell(spec, task, device="cpu"), task


def test_extra_loss_means_and_majority_are_recorded_and_change_nothing_else(data):
    """A constant-per-batch extra term has no gradient, so the cell trains exactly as
    without it: the same accuracies, its loss higher by the term's epoch mean, which is
    (hand-computed from the call numbers) what ``train_extra_loss`` holds."""
    plain, task = _run(tiny_spec("sanity_plain"), data)
    counting = CountingExtra()
    extra, _ = _run(tiny_spec("sanity_counting", extra_loss=counting), data)
    assert plain.status == extra.status == "ok"
    assert plain.train_extra_loss == [] and len(extra.train_extra_loss) == EPOCHS

    n_batches = task.n_train // TINY_BATCH
    assert counting.calls == EPOCHS * n_batches
    for epoch in range(EPOCHS):
        added = [0 if i % 3 == 2 else i for i in range(epoch * n_batches, (epoch + 1) * n_batches)]
        assert extra.train_extra_loss[epoch] == pytest.approx(sum(added) / n_batches, rel=1e-6)
        assert extra.train_loss[epoch] == pytest.approx(
            plain.train_loss[epoch] + extra.train_extra_loss[epoch], rel=1e-5)
    assert extra.test_acc == plain.test_acc and extra.val_acc == plain.val_acc
    assert extra.test_predictions == plain.test_predictions

    # the chance level, from the training targets by hand: most frequent top emotion
    train, test = task.train_targets.numpy(), task.test_dist.numpy()
    counts = (train >= train.max(axis=1, keepdims=True) - 1e-6).sum(axis=0)
    majority = int(np.argmax(counts))
    expected = float((test[:, majority] >= test.max(axis=1) - 1e-6).mean())
    assert plain.majority_acc == extra.majority_acc == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected < 1.0


# ----------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def resumable(data):
    spec = tiny_spec("sanity_l2", extra_loss=logit_l2)
    config = resolve_config(spec, epochs=EPOCHS, ema=0.5, schedule="cosine", warmup=0.2)
    return spec, make_cell(spec, data, nhot=8, config=config)


@pytest.fixture(scope="module")
def uninterrupted(data, resumable, tmp_path_factory):
    spec, cell = resumable
    record, _ = get_or_run_cell(ResultStore(tmp_path_factory.mktemp("base"), checkpoints=False),
                                spec, data, cell, device="cpu")
    assert record.status == "ok" and len(record.train_extra_loss) == EPOCHS
    assert all(v > 0 for v in record.train_extra_loss) and record.majority_acc is not None
    return record


def _interrupted_after_epoch_1(store: ResultStore, data, resumable):
    spec, cell = resumable

    def stop(report):
        if report.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_or_run_cell(store, spec, data, cell, device="cpu", on_epoch=stop)
    return store.checkpoint_path(cell)


def _resume(store: ResultStore, data, resumable, caplog):
    spec, cell = resumable
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        record, from_store = get_or_run_cell(store, spec, data, cell, device="cpu")
    assert not from_store
    return record, [r.getMessage() for r in caplog.records
                    if r.name == LOGGER and r.levelno >= logging.WARNING]


def test_a_resumed_cell_records_the_uninterrupted_extra_losses(data, resumable, uninterrupted,
                                                               tmp_path, caplog):
    store = ResultStore(tmp_path)
    path = _interrupted_after_epoch_1(store, data, resumable)
    info = read_info(path)
    with verified_payload(info) as handle:
        payload = torch.load(handle, map_location="cpu", weights_only=True)
    assert payload["record"][EXTRA_LOSS_LIST] == uninterrupted.train_extra_loss[:1]
    record, warnings = _resume(store, data, resumable, caplog)
    assert warnings == [] and record.resumed_from_epoch == 1
    assert comparable(record) == comparable(uninterrupted)
    assert record.train_extra_loss == uninterrupted.train_extra_loss
    assert record.majority_acc == uninterrupted.majority_acc


def test_a_checkpoint_from_before_the_extra_loss_list_restarts_a_model_with_one(
        data, resumable, uninterrupted, tmp_path, caplog):
    """Written by an older fer_bench: its per-epoch extra losses are lost, so it is not
    trusted for a model with an extra term (one warning) and the cell runs from epoch 1."""
    store = ResultStore(tmp_path)
    path = _interrupted_after_epoch_1(store, data, resumable)
    info = read_info(path)
    with verified_payload(info) as handle:
        payload = torch.load(handle, map_location="cpu", weights_only=True)
    del payload["record"][EXTRA_LOSS_LIST]
    meta = {"cell_id": info.cell_id, "cell_digest": info.cell_digest, "protocol": info.protocol,
            "epoch": info.epoch, "epochs": info.epochs}
    write_checkpoint(path, lambda sink: torch.save(payload, sink), meta)
    record, warnings = _resume(store, data, resumable, caplog)
    assert len(warnings) == 1 and f"written before {EXTRA_LOSS_LIST} was recorded" in warnings[0]
    assert record.resumed_from_epoch is None and comparable(record) == comparable(uninterrupted)

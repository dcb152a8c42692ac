"""The training runner (fer_bench.training.runner): records, reproducibility, failures."""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pytest
import torch

from fer_bench.data.clean import subset
from fer_bench.data.schema import EMOTIONS
from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import CellRecord
from fer_bench.models import ModelSpec
from fer_bench.training import metrics
from fer_bench.training.loop import EpochReport
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from fer_bench.training.tasks import build_task_data
from tests.helpers.cells import TINY_BATCH, TinyNet, make_cell, rebind, tiny_spec


@pytest.fixture(scope="module")
def small_clean(ferplus_clean):
    """1,200 real cleaned FERPlus images (seeded subset)."""
    return subset(ferplus_clean, 1200, seed=0)


@pytest.fixture(scope="module")
def task_data(small_clean):
    return build_task_data(small_clean, make_cell(tiny_spec(), small_clean, nhot=3))


@pytest.fixture(scope="module")
def two_epoch_record(task_data):
    reports: list[EpochReport] = []
    config = resolve_config(tiny_spec(), epochs=2)
    record = run_cell(tiny_spec(), rebind(task_data, tiny_spec(), config), device="cpu", on_epoch=reports.append,
                      profile="unit")
    return record, reports, config


def test_task_data_shapes_and_nhot_targets(task_data, small_clean):
    assert task_data.train_images.dtype == torch.uint8 and task_data.train_images.shape[1:] == (48, 48)
    assert task_data.train_targets.dtype == torch.float32
    assert task_data.n_train + task_data.n_val + task_data.n_test == len(small_clean)
    assert int((task_data.train_targets > 0).sum(dim=1).max()) <= 3      # 3-hot
    assert torch.allclose(task_data.train_targets.sum(dim=1), torch.ones(task_data.n_train))
    assert int((task_data.test_dist > 0).sum(dim=1).max()) > 3           # test keeps full dists
    assert task_data.test_complexity.dtype == torch.int64
    assert task_data.cell.id == "tiny-n3-ordinary-s0"


def test_record_holds_every_field(two_epoch_record, task_data):
    record, reports, config = two_epoch_record
    assert record.status == "ok" and record.error is None
    assert (record.model, record.nhot, record.split, record.seed, record.epochs) == ("tiny", 3, "ordinary", 0, 2)
    for name in ("val_acc", "test_acc", "train_loss", "epoch_times_s"):
        values = getattr(record, name)
        assert len(values) == 2 and all(isinstance(v, float) and np.isfinite(v) for v in values), name
    assert all(t > 0 for t in record.epoch_times_s)
    assert record.best_val_epoch == int(np.argmax(record.val_acc)) + 1
    assert record.acc_honest == record.test_acc[record.best_val_epoch - 1]
    assert record.acc_optimistic == max(record.test_acc)
    assert record.best_test_epoch == record.test_acc.index(max(record.test_acc)) + 1
    assert 0.0 <= record.acc_honest <= record.acc_optimistic <= 1.0
    assert set(record.per_class_acc) == set(EMOTIONS)
    assert set(record.acc_by_complexity) == {str(x) for x in range(1, 9)}
    assert sum(record.count_by_complexity.values()) == record.n_test == task_data.n_test
    assert record.kl_mean is not None and record.kl_mean > 0
    assert record.train_images_per_s > 0 and record.eval_images_per_s > 0
    assert record.peak_memory_bytes > 0 and record.memory_kind == "host_rss_cell_delta"
    assert record.params == sum(p.numel() for p in TinyNet().parameters())
    assert record.device == "cpu" and record.device_name
    assert (record.n_train, record.n_val) == (task_data.n_train, task_data.n_val)
    assert record.dataset_label == task_data.dataset_label
    assert record.dataset_fingerprint == task_data.dataset_fingerprint
    assert record.split_fingerprint == task_data.split_fingerprint
    assert record.config == config.to_dict() and record.cell == task_data.cell.with_axes(recipe=config)
    assert record.config["lr"] == 3e-3 and record.config["batch_size"] == TINY_BATCH
    assert record.profile == "unit"
    assert set(record.versions) - {"dlib"} == {"fer_bench", "torch", "timm", "numpy", "python"}
    assert datetime.fromisoformat(record.started_at) <= datetime.fromisoformat(record.finished_at)
    # survives the JSON round trip of the store
    assert CellRecord.from_dict(record.to_dict()) == record
    assert [r.epoch for r in reports] == [1, 2] and all(r.epochs == 2 for r in reports)
    assert [r.val_acc for r in reports] == record.val_acc
    assert [r.train_seconds for r in reports] == record.epoch_times_s


def test_predictions_agree_with_correctness(two_epoch_record, task_data):
    record, _, _ = two_epoch_record
    predictions = record.predictions()
    correct = record.correct()
    assert predictions.shape == (task_data.n_test,) and correct.shape == (task_data.n_test,)
    assert predictions.max() < 8
    one_hot = np.eye(8)[predictions]
    assert np.array_equal(metrics.tie_aware_correct(one_hot, task_data.test_dist.numpy()), correct)
    assert correct.mean() == pytest.approx(record.acc_honest)


def test_same_cell_twice_is_identical(two_epoch_record, task_data):
    first, _, config = two_epoch_record
    again = run_cell(tiny_spec(), rebind(task_data, tiny_spec(), config), device="cpu")
    assert again.val_acc == first.val_acc and again.test_acc == first.test_acc
    assert again.train_loss == first.train_loss
    assert again.test_predictions == first.test_predictions


def test_other_seed_trains_differently(small_clean, two_epoch_record):
    first, _, config = two_epoch_record
    other = run_cell(tiny_spec(), build_task_data(small_clean, make_cell(tiny_spec(), small_clean, seed=1, config=config)))
    assert other.split_fingerprint != first.split_fingerprint
    assert other.train_loss != first.train_loss


def test_pld_with_rotation_augmentation_trains_four_times_the_images(task_data):
    config = resolve_config(tiny_spec(), epochs=1, loss="pld", augmentation="flip_rot20")
    record = run_cell(tiny_spec(), rebind(task_data, tiny_spec(), config))
    assert record.status == "ok", record.error
    batches = (4 * task_data.n_train) // TINY_BATCH
    assert record.train_images_per_s * record.epoch_times_s[0] == pytest.approx(batches * TINY_BATCH)


def test_resolve_config_precedence():
    spec = tiny_spec(epochs=7, loss="cce", input_size=64)
    config = resolve_config(spec, epochs=3, augmentation=None)
    assert (config.epochs, config.lr, config.batch_size, config.loss, config.input_size) == (3, 3e-3, TINY_BATCH, "cce", 64)
    assert config.augmentation == "none" and TrainConfig().lr == 1e-4
    assert resolve_config(ModelSpec(name="plain", factory=TinyNet)) == TrainConfig()
    with pytest.raises(ValueError, match="unknown loss"):
        resolve_config(spec, loss="l2")
    with pytest.raises(ValueError, match="unknown augmentation"):
        resolve_config(spec, augmentation="mixup")


# ---- failure paths: a failed record, never an exception --------------------------------

class RaisingNet(TinyNet):
    def forward(self, x):
        raise RuntimeError("boom inside forward")


class WrongShapeNet(TinyNet):
    def forward(self, x):
        return super().forward(x)[:, :5]


class TurnsNaNNet(TinyNet):
    """Finite for the first 3 training batches, NaN from then on."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__(num_classes, in_chans)
        self.training_calls = 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.training_calls += 1
            if self.training_calls > 3:
                out = out * float("nan")
        return out


class OOMNet(TinyNet):
    def forward(self, x):
        if self.training:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(x)


@pytest.mark.parametrize("factory, name, expected", [
    (RaisingNet, "raiser", r"raiser.*boom inside forward"),
    (WrongShapeNet, "narrow", r"narrow.*shape \(2, 5\)"),
    (TurnsNaNNet, "nanny", r"NaN loss at epoch 1, batch 4 for model nanny"),
    (OOMNet, "hog", r"out of memory.*model hog with batch size 64"),
])
def test_model_failures_become_failed_records(task_data, factory, name, expected):
    config = resolve_config(tiny_spec(), epochs=2)
    record = run_cell(tiny_spec(name, factory), rebind(task_data, tiny_spec(name, factory), config))
    assert record.status == "failed"
    assert record.error is not None
    assert re.search(expected, record.error), record.error
    assert record.finished_at and record.peak_memory_bytes is not None
    assert record.val_acc == [] and record.acc_honest is None


def test_nan_in_second_epoch_keeps_the_first(task_data):
    batches_per_epoch = task_data.n_train // TINY_BATCH

    class LateNaN(TurnsNaNNet):
        def forward(self, x):
            out = TinyNet.forward(self, x)
            if self.training:
                self.training_calls += 1
                if self.training_calls > batches_per_epoch + 2:
                    out = out * float("nan")
            return out

    config = resolve_config(tiny_spec(), epochs=3)
    record = run_cell(tiny_spec("late", LateNaN), rebind(task_data, tiny_spec("late", LateNaN), config))
    assert record.status == "failed"
    assert record.error == "NaN loss at epoch 2, batch 3 for model late"
    assert len(record.val_acc) == 1 and record.best_val_epoch == 1
    assert record.acc_honest == record.test_acc[0] and record.test_predictions
    # and the runner goes on: the next cell trains normally
    assert run_cell(tiny_spec(), rebind(task_data, tiny_spec(), resolve_config(tiny_spec(), epochs=1))).status == "ok"


def test_validation_and_test_keep_full_distributions(task_data, small_clean):
    """N-hot reduces training targets only (SPEC "Data"); model selection and scoring use
    the cleaned distributions."""
    from fer_bench.data.splits import make_split

    split = make_split(small_clean, "ordinary", 0)
    assert torch.equal(task_data.val_dist, torch.from_numpy(small_clean.dist[split.val]))
    assert torch.equal(task_data.test_dist, torch.from_numpy(small_clean.dist[split.test]))


def test_counts_training_batches_and_pld_redraws_every_epoch(task_data, monkeypatch):
    """Every epoch trains (4 * n_train) // batch full batches of the augmented set, and PLD
    draws fresh one-hot targets once per epoch."""
    from fer_bench.training import runner

    class CountingNet(TinyNet):
        training_batches = 0

        def forward(self, x):
            if self.training:
                type(self).training_batches += x.shape[0] == TINY_BATCH
            return super().forward(x)

    draws = []
    real_draw = runner.draw_one_hot

    def spy(targets, generator):
        drawn = real_draw(targets, generator)
        draws.append(drawn.clone())
        return drawn

    monkeypatch.setattr(runner, "draw_one_hot", spy)
    config = resolve_config(tiny_spec(), epochs=2, loss="pld", augmentation="flip_rot20")
    record = run_cell(tiny_spec("counter", CountingNet), rebind(task_data, tiny_spec("counter", CountingNet), config))
    assert record.status == "ok", record.error
    assert CountingNet.training_batches == 2 * ((4 * task_data.n_train) // TINY_BATCH)
    assert len(draws) == 2 and not torch.equal(draws[0], draws[1])
    assert all(bool((d.sum(dim=1) == 1).all()) and set(d.unique().tolist()) == {0.0, 1.0} for d in draws)


def test_nan_only_in_evaluation_fails_the_cell(task_data):
    class EvalNaN(TinyNet):
        """Healthy for the pre-training output check, NaN in eval mode once trained."""

        has_trained = False

        def forward(self, x):
            out = super().forward(x)
            if self.training:
                self.has_trained = True
                return out
            return out * float("nan") if self.has_trained else out

    record = run_cell(tiny_spec("evalnan", EvalNaN), rebind(task_data, tiny_spec("evalnan", EvalNaN), resolve_config(tiny_spec(), epochs=1)))
    assert record.status == "failed"
    assert record.error == "non-finite outputs in evaluation after epoch 1 for model evalnan"


def test_record_is_plain_json(two_epoch_record):
    """Every value is a plain JSON type (xdist ships records between processes; a
    TorchVersion in ``versions`` once broke that)."""
    import json

    record = two_epoch_record[0].to_dict()
    assert json.loads(json.dumps(record)) == record
    assert all(type(v) is str for v in record["versions"].values())


def test_fast_recipe_features_train_and_are_part_of_the_identity(task_data):
    """SGD + one-cycle + EMA + label smoothing + online augmentation + flip TTA run, and
    each is an identity field (a different value is a different cell)."""
    spec = tiny_spec()
    config = resolve_config(spec, epochs=2, optimizer="sgd", lr=0.05, schedule="onecycle",
                            warmup=0.3, ema=0.9, label_smoothing=0.1, tta="flip",
                            augmentation="rand_flip_shift2", loss="cce")
    record = run_cell(spec, rebind(task_data, spec, config))
    assert record.status == "ok", record.error
    assert record.cell.recipe.optimizer == "sgd" and len(record.val_acc) == 2
    plain = rebind(task_data, spec, resolve_config(spec, epochs=2)).cell
    assert plain.digest() != record.cell.digest()
    with pytest.raises(ValueError, match="optimizer"):
        resolve_config(spec, optimizer="lbfgs")


def test_onecycle_schedule_rises_then_falls_to_zero():
    from fer_bench.training.recipe import lr_factor

    config = TrainConfig(schedule="onecycle", warmup=0.25)
    factors = [lr_factor(step, 100, config) for step in range(100)]
    assert factors[0] == pytest.approx(1 / 25) and max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 24 and factors[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[24:], factors[25:], strict=False))
    assert lr_factor(50, 100, TrainConfig()) == 1.0

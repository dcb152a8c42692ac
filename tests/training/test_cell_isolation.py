"""Cell failure isolation, per-cell memory and float32 evaluation logits (issue 13, 4-5).

* Any exception from model code while building, training or evaluating becomes a failed
  record naming the model, the epoch and the exception; finished epochs are kept; the grid
  goes on. ``KeyboardInterrupt`` stops the run, leaving finished cells stored.
* CPU peak memory is the cell's own (``host_rss_cell_delta``): a model that allocates much
  less than its predecessor in the same process reports much less.
* Evaluation never takes argmax on rounded low-precision logits.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import ConfigError
from fer_bench.models import ModelSpec
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore
from fer_bench.training import runner
from fer_bench.training.device import HOST_RSS_CELL_DELTA, CellMemory
from fer_bench.training.evaluate import break_low_precision_ties, fp32_logits
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from tests.helpers.cells import TINY_BATCH, TinyNet, make_cell, task_for, tiny_spec

MIB = 2**20


class NarrowTinyNet(TinyNet):
    """``TinyNet`` with 4 convolution channels."""

    width = 4


def spec(name: str, factory=NarrowTinyNet, **kwargs) -> ModelSpec:
    """``tiny_spec`` of ``factory`` (``NarrowTinyNet`` unless given)."""
    return tiny_spec(name, factory, **kwargs)


@pytest.fixture(scope="module")
def data():
    """600 synthetic faces, cleaned (about 480 training images: 7 batches an epoch)."""
    return clean(make_synthetic(600, seed=3))


def batches_per_epoch(data) -> int:
    return task_for(spec("tiny"), data).n_train // TINY_BATCH


def failing_in_epoch_2(n_batches: int):
    class FailsInEpoch2(NarrowTinyNet):
        training_calls = 0

        def forward(self, x):
            if self.training:
                self.training_calls += 1
                if self.training_calls > n_batches:     # the first batch of epoch 2
                    raise RuntimeError("simulated failure in epoch 2")
            return super().forward(x)

    return FailsInEpoch2


def test_runtime_error_in_epoch_2_is_a_failed_record_and_the_grid_goes_on(data, tmp_path):
    store = ResultStore(tmp_path / "results")
    broken = spec("fails2", failing_in_epoch_2(batches_per_epoch(data)))
    grid = [broken, spec("healthy")]
    records = []
    for model in grid:                       # what the plugin and the CLI do, cell by cell
        config = resolve_config(model, epochs=3)
        cell = make_cell(model, data, config=config)
        records.append(get_or_run_cell(store, model, data, cell, device="cpu")[0])

    failed, ok = records
    assert failed.status == "failed"
    assert re.fullmatch(r"model fails2 raised RuntimeError in epoch 2 \(training\) at "
                        r"test_cell_isolation\.py:\d+: simulated failure in epoch 2", failed.error), failed.error
    assert len(failed.val_acc) == len(failed.test_acc) == len(failed.epoch_times_s) == 1
    assert failed.best_val_epoch == 1 and failed.acc_honest == failed.test_acc[0]
    assert failed.test_predictions and failed.peak_memory_bytes is not None
    assert ok.status == "ok" and len(ok.val_acc) == 3          # the grid went on
    on_disk = sorted(p.parent.name for p in (tmp_path / "results").rglob("*.json"))
    assert on_disk == ["fails2", "healthy"]                    # the failed cell is stored too
    again = store.get(make_cell(broken, data, config=resolve_config(broken, epochs=3)))
    assert again is not None and again.status == "failed" and len(again.val_acc) == 1


def test_exception_in_evaluation_names_the_stage(data):
    class EvalBoom(NarrowTinyNet):
        trained = False

        def forward(self, x):
            if self.training:
                self.trained = True
            elif self.trained:
                raise ValueError("bad eval path")
            return super().forward(x)

    model = spec("evalboom", EvalBoom)
    record = run_cell(model, task_for(model, data, config=resolve_config(model, epochs=2)))
    assert record.status == "failed" and record.val_acc == []
    assert record.error.startswith("model evalboom raised ValueError in epoch 1 (evaluation) at ")
    assert record.error.endswith(": bad eval path")


def test_exception_while_building_names_the_stage(data, monkeypatch):
    def broken_check(spec, init):
        raise TypeError("init check exploded")

    monkeypatch.setattr(runner, "check_init", broken_check)
    model = spec("buildboom")
    record = run_cell(model, task_for(model, data, config=resolve_config(model, epochs=1)))
    assert record.status == "failed" and record.params is None
    assert record.error.startswith("model buildboom raised TypeError while building the model "
                                   "(before epoch 1) at ")


def test_keyboard_interrupt_stops_the_run_and_keeps_finished_cells(data, tmp_path):
    class Interrupted(NarrowTinyNet):
        def forward(self, x):
            if self.training:
                raise KeyboardInterrupt
            return super().forward(x)

    store = ResultStore(tmp_path / "results")
    first = spec("first")
    get_or_run_cell(store, first, data, make_cell(first, data, config=resolve_config(first, epochs=1)),
                    device="cpu")
    stopper = spec("stopper", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        get_or_run_cell(store, stopper, data,
                        make_cell(stopper, data, config=resolve_config(stopper, epochs=1)), device="cpu")
    assert sorted(p.parent.name for p in (tmp_path / "results").rglob("*.json")) == ["first"]


def test_bad_configuration_still_raises(data):
    model = spec("toobig", batch_size=100_000)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        run_cell(model, task_for(model, data, config=resolve_config(model, epochs=1)))


# ----------------------------------------------------------------------------- memory
HUNGRY_MIB = 192


class Hungry(NarrowTinyNet):
    """Touches a HUNGRY_MIB scratch buffer in every training step (freed after it)."""

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            scratch = torch.ones(HUNGRY_MIB * MIB // 4)
            out = out + scratch[-1] * 0
        return out


def test_cpu_memory_is_per_cell_not_the_process_high_water_mark(data):
    hungry, small = spec("hungry", Hungry), spec("small")
    first = run_cell(hungry, task_for(hungry, data, config=resolve_config(hungry, epochs=1)))
    second = run_cell(small, task_for(small, data, config=resolve_config(small, epochs=1)))
    assert first.status == second.status == "ok"
    assert first.memory_kind == second.memory_kind == HOST_RSS_CELL_DELTA
    print(f"hungry {first.peak_memory_bytes / MIB:.1f} MiB, small {second.peak_memory_bytes / MIB:.1f} MiB")
    assert first.peak_memory_bytes >= 0.9 * HUNGRY_MIB * MIB
    assert second.peak_memory_bytes < first.peak_memory_bytes / 4   # not the predecessor's peak


@pytest.mark.parametrize("use_high_water_mark", [True, False], ids=["vmhwm", "sampled"])
def test_cell_memory_measures_growth_over_the_cells_own_baseline(use_high_water_mark):
    ballast = torch.ones(96 * MIB // 4)          # resident before the cell: not counted
    meter = CellMemory(torch.device("cpu"), use_high_water_mark=use_high_water_mark).start()
    if meter.method == "process_peak":
        pytest.skip("no /proc on this platform")
    buffer = torch.ones(64 * MIB // 4)
    buffer.add_(1)
    import time

    time.sleep(0.05)                              # let the sampler see it
    del buffer
    peak, kind = meter.stop()
    del ballast
    assert kind == HOST_RSS_CELL_DELTA
    assert meter.method in ({"vmhwm", "sampled"} if use_high_water_mark else {"sampled"})
    assert 56 * MIB <= peak < 96 * MIB, peak / MIB


# ----------------------------------------------------------------------------- fp32 logits
def test_ties_made_by_rounding_are_recomputed_in_float32():
    rounded = torch.tensor([[2.0, 2.0, 1.0], [0.5, 3.0, 1.0], [4.0, 1.0, 4.0]])
    exact = torch.tensor([[1.99, 2.01, 1.0], [0.0, 0.0, 0.0], [4.02, 1.0, 4.01]])
    asked = []

    def recompute(rows):
        asked.append(rows.tolist())
        return exact[rows]

    fixed = break_low_precision_ties(rounded, recompute)
    assert asked == [[0, 2]]                                 # only the tied rows
    assert fixed.argmax(dim=1).tolist() == [1, 1, 0]
    assert torch.equal(fixed[1], rounded[1]) and fixed.dtype == torch.float32


def test_bf16_logits_are_upcast_and_tied_rows_recomputed_without_autocast():
    class Bf16Head(nn.Module):
        """Like a last layer under bf16 autocast the first time (class 1 wins by 1e-3, which
        bf16 rounds away), float32 when called again with autocast off."""

        def __init__(self):
            super().__init__()
            self.calls = []

        def forward(self, x):
            self.calls.append((len(x), torch.is_autocast_enabled(x.device.type)))
            exact = torch.stack([x[:, 0, 0, 0], x[:, 0, 0, 0] + 1e-3, torch.zeros(len(x))], dim=1)
            return exact.to(torch.bfloat16) if len(self.calls) == 1 else exact

    x = torch.full((4, 1, 2, 2), 3.0)
    x[0] = -1.0                                   # row 0: no tie (class 2 wins even in bf16)
    model = Bf16Head()
    logits = fp32_logits(model, x, amp=False)
    assert logits.dtype == torch.float32
    assert model.calls == [(4, False), (3, False)]           # rows 1..3 tied: recomputed
    assert logits.argmax(dim=1).tolist() == [2, 1, 1, 1]     # not the lower index 0

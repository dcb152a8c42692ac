"""``cudnn.benchmark`` is a cell's own (``training.device.cudnn_autotune``): on during a
CUDA cell, then back to what it was, also after a failed cell; untouched on a CPU."""

from __future__ import annotations

import pytest
import torch

from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.identity.record import Status
from fer_bench.training import runner
from fer_bench.training.device import cudnn_autotune
from fer_bench.training.resolve import resolve_config
from tests.helpers.cells import task_for, tiny_spec


@pytest.fixture
def autotune_off():
    """``cudnn.benchmark`` False for the test, the process's value restored after it."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    yield
    torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize("previous", [False, True])
def test_cuda_block_turns_it_on_and_restores_the_previous_value(previous):
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = previous
        with cudnn_autotune(torch.device("cuda", 0)):
            assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.benchmark is previous
        with pytest.raises(RuntimeError), cudnn_autotune(torch.device("cuda", 0)):
            raise RuntimeError("a cell's failure")
        assert torch.backends.cudnn.benchmark is previous
    finally:
        torch.backends.cudnn.benchmark = before


def test_cpu_block_leaves_it_alone(autotune_off):
    with cudnn_autotune(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is False


class _NoMemory:
    """``CellMemory`` stand-in for a CUDA device this machine may not have."""

    def __init__(self, device):
        pass

    def start(self):
        return self

    def stop(self):
        return 0, "cuda"


@pytest.mark.parametrize("fails", [False, True])
def test_a_cuda_cell_autotunes_only_while_it_runs(fails, autotune_off, monkeypatch):
    """``run_cell`` of a CUDA cell, its device work replaced (no GPU needed): the cell's
    work sees cuDNN autotuning on, the process sees it off again afterwards."""
    seen = []

    def work(spec, data, device, record, *args):
        seen.append(torch.backends.cudnn.benchmark)
        if fails:
            raise RuntimeError("model code failed")

    monkeypatch.setattr(runner, "_train_and_evaluate", work)
    monkeypatch.setattr(runner, "_on_device", lambda data, device: data)
    monkeypatch.setattr(runner, "CellMemory", _NoMemory)
    monkeypatch.setattr(runner, "device_name", lambda device: "test GPU")
    spec = tiny_spec("cuda_tiny")
    clean_data = clean(make_synthetic(200, seed=1))
    task = task_for(spec, clean_data, config=resolve_config(spec, epochs=1), device="cuda")
    record = runner.run_cell(spec, task, device="cuda:0")
    assert seen == [True]
    assert torch.backends.cudnn.benchmark is False
    assert record.status is (Status.FAILED if fails else Status.OK)

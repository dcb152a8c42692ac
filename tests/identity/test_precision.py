"""CPU bf16 (issue 21 part 1): what ``--fer-precision`` resolves to, and a bf16 CPU cell.

A bf16 cell trains under CPU autocast (matmuls and convolutions in bf16, weights in fp32),
records "bf16" in its identity (a cell of its own beside the fp32 one), evaluates on
float32 logits and repeats bit for bit on the same machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_bench.data.clean import subset
from fer_bench.errors import ConfigError
from fer_bench.identity.cell import effective_precision
from fer_bench.training.device import cpu_has_bf16
from fer_bench.training.evaluate import fp32_logits
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from fer_bench.training.tasks import build_task_data
from tests.helpers.cells import TinyNet, make_cell, tiny_spec


@pytest.mark.parametrize("device_type, requested, model_default, has_bf16, expected", [
    ("cuda", "auto", "fp32", False, "bf16"),
    ("cuda", "fp32", "bf16", True, "fp32"),
    ("cpu", "auto", "bf16", True, "bf16"),
    ("cpu", "auto", "fp32", True, "fp32"),
    ("cpu", "auto", "bf16", False, "fp32"),   # emulated bf16 would be slower: auto says fp32
    ("cpu", "fp32", "bf16", True, "fp32"),
    ("cpu", "bf16", "fp32", True, "bf16"),
    ("mps", "bf16", "bf16", True, "fp32"),
])
def test_effective_precision(device_type, requested, model_default, has_bf16, expected):
    assert effective_precision(device_type, requested, model_cpu_precision=model_default,
                               cpu_has_bf16=has_bf16) == expected


def test_bf16_asked_for_on_a_cpu_without_bf16_units_or_unknown_is_one_error():
    with pytest.raises(ConfigError, match="no native bf16 units"):
        effective_precision("cpu", "bf16", cpu_has_bf16=False)
    with pytest.raises(ConfigError, match="--fer-precision: unknown precision 'fp16'"):
        effective_precision("cpu", "fp16")


def test_fp32_and_bf16_are_two_cells(ferplus_clean):
    small = subset(ferplus_clean, 300, seed=0)
    spec = tiny_spec()
    fp32 = make_cell(spec, small)
    assert fp32.precision == "fp32"   # TinyNet's cpu_precision is the default, fp32
    if cpu_has_bf16():
        bf16 = make_cell(spec, small).with_axes(precision="bf16")
        assert bf16.digest() != fp32.digest() and bf16.id == fp32.id


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 units (AVX-512 BF16 / AMX)")
def test_a_bf16_cpu_cell_trains_evaluates_in_fp32_and_repeats(ferplus_clean):
    small = subset(ferplus_clean, 1200, seed=0)
    spec = tiny_spec()
    config = resolve_config(spec, epochs=2)
    from fer_bench.training.resolve import resolve_cell

    cell = resolve_cell(spec, variant="nhot-3", split="ordinary", seed=0, config=config,
                        dataset_fingerprint=small.fingerprint, device="cpu", precision="bf16")
    assert cell.precision == "bf16"
    data = build_task_data(small, cell)
    first, second = (run_cell(spec, data, device="cpu") for _ in range(2))
    assert first.status == second.status == "ok", first.error
    assert first.cell.precision == "bf16"
    assert np.array_equal(first.predictions(), second.predictions())
    assert first.test_acc == second.test_acc and first.train_loss == second.train_loss
    torch.manual_seed(0)
    logits = fp32_logits(TinyNet(), torch.rand(4, 1, 48, 48), amp=True)
    assert logits.dtype == torch.float32 and logits.shape == (4, 8)

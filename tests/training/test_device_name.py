"""A record names the CPU it ran on: the model name and native bf16 units from
/proc/cpuinfo, so cells of one grid can be checked to share a machine type."""

from __future__ import annotations

import platform

import pytest
import torch

from fer_bench.training import device as device_module
from fer_bench.training.device import device_name


@pytest.mark.parametrize(("model", "flags", "expected"), [
    ("AMD EPYC", {"avx2", "avx512_bf16"}, "AMD EPYC (AVX512-BF16)"),
    ("Intel(R) Xeon(R) Platinum 8480+", {"amx_bf16", "avx512_bf16"},
     "Intel(R) Xeon(R) Platinum 8480+ (AMX-BF16, AVX512-BF16)"),
    ("Intel(R) Core(TM) i7-8700", {"avx2"}, "Intel(R) Core(TM) i7-8700"),
])
def test_cpu_name_from_cpuinfo(monkeypatch, model, flags, expected):
    monkeypatch.setattr(device_module, "_cpuinfo_model_and_flags", lambda: (model, frozenset(flags)))
    assert device_name(torch.device("cpu")) == expected


def test_without_cpuinfo_falls_back_to_the_platform(monkeypatch):
    monkeypatch.setattr(device_module, "_cpuinfo_model_and_flags", lambda: ("", frozenset()))
    assert device_name(torch.device("cpu")) == (platform.processor() or platform.machine() or "cpu")


def test_this_machine_has_a_name():
    name = device_name(torch.device("cpu"))
    assert name and name != "cpu"
    model, _ = device_module._cpuinfo_model_and_flags()
    if model:   # Linux: the record says which CPU, not just "x86_64"
        assert name.startswith(model)

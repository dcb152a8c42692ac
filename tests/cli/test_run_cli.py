"""``fer-bench run`` (fer_bench.cli.run) on the embedded synthetic set."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fer_bench.cli.main import main
from fer_bench.models import ModelSpec, register_model, unregister_model


class CliNet(nn.Module):
    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        self.head = nn.Linear(in_chans * 12 * 12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.avg_pool2d(x, 4).flatten(1))


class ExplodingNet(CliNet):
    def forward(self, x):
        if self.training:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x)


@pytest.fixture()
def cli_models():
    register_model(ModelSpec(name="cli_tiny", factory=CliNet, batch_size=64))
    register_model(ModelSpec(name="cli_oom", factory=ExplodingNet, batch_size=64))
    yield
    unregister_model("cli_tiny")
    unregister_model("cli_oom")


def _run(tmp_path, *extra: str, model: str = "cli_tiny") -> list[str]:
    return ["run", "--model", model, "--nhot", "3", "--split", "complex", "--seed", "0",
            "--epochs", "2", "--data", "synthetic", "--device", "cpu",
            "--results", str(tmp_path / "results"), *extra]


def test_run_trains_then_reads_from_store(tmp_path, capsys, cli_models):
    assert main(_run(tmp_path)) == 0
    first = capsys.readouterr().out
    assert "epoch 1/2" in first and "epoch 2/2" in first
    assert "trained now" in first and "SYNTHETIC" in first
    assert "accuracy (honest" in first and "MiB" in first and "cli_tiny-n3-complex-s0" in first
    stored = list((tmp_path / "results" / "cli_tiny").glob("*.json"))
    assert len(stored) == 1

    assert main(_run(tmp_path)) == 0
    second = capsys.readouterr().out
    assert "from store" in second and "epoch 1/2" not in second

    assert main(_run(tmp_path, "--rerun")) == 0
    assert "epoch 1/2" in capsys.readouterr().out


def test_run_json_output(tmp_path, capsys, cli_models):
    assert main(_run(tmp_path, "--json")) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    record = payload["record"]
    assert payload["from_store"] is False and payload["store_path"].endswith(".json")
    assert record["status"] == "ok" and record["dataset_label"] == "synthetic"
    assert len(record["epoch_times_s"]) == 2 and record["acc_honest"] == record["test_acc"][record["best_val_epoch"] - 1]
    assert "epoch 2/2" in captured.err


def test_failed_cell_exits_1_with_message(tmp_path, capsys, cli_models):
    assert main(_run(tmp_path, model="cli_oom")) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "out of memory" in out and "cli_oom" in out


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert main(_run(tmp_path, model="no_such_model")) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err

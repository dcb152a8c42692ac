"""A researcher's own experiment: one new file in benchmarks/, nothing else changed.

The module registers a loss in-process, declares its axes with ``fer_axes``, runs through
pytest + pytest-benchmark, and ``fer-bench leaderboard`` shows its own section with rows
labelled by the loss names.
"""

from __future__ import annotations

import json

from tests.helpers.cells import run_benchmark_module

pytest_plugins = ["pytester"]

EXPERIMENT = '''
"""Half-weighted MSE against MSE (a researcher's own experiment)."""
import pytest
import torch

from fer_bench.models import register_model
from fer_bench.training.losses import LOSSES


def half_mse(logits, targets):
    return 0.5 * (torch.softmax(logits, dim=1) - targets).pow(2).mean()


def exp_tiny(num_classes=8, in_chans=1):
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(6), torch.nn.Flatten(),
                               torch.nn.Linear(in_chans * 36, num_classes))


LOSSES.register("half_mse", half_mse)
register_model(exp_tiny)

pytestmark = [
    pytest.mark.fer_experiment("my_losses", title="Half MSE vs MSE"),
    pytest.mark.fer_axes(model=["exp_tiny"], loss=["mse", "half_mse"], nhot=[1, 8],
                         split=["ordinary"]),
]


def test_my_loss(fer_cell, benchmark):
    record = fer_cell.run(benchmark)
    assert record.status == "ok"
'''


def test_one_file_experiment_with_its_own_loss_reaches_the_leaderboard(pytester, tmp_path):
    result, out = run_benchmark_module(pytester, tmp_path, test_my_experiment=EXPERIMENT)
    result.assert_outcomes(passed=4)
    ids = sorted(entry["param"] for entry in json.loads(out.read_text())["benchmarks"])
    assert ids == ["exp_tiny-n1-ordinary-s0-loss=half_mse", "exp_tiny-n1-ordinary-s0-loss=mse",
                   "exp_tiny-n8-ordinary-s0-loss=half_mse", "exp_tiny-n8-ordinary-s0-loss=mse"]

    board = pytester.run("fer-bench", "leaderboard", str(out), "--out", str(tmp_path / "board"))
    assert board.ret == 0, board.stderr.str()
    from fer_bench.leaderboard.markdown import escape_markdown

    page = (tmp_path / "board" / "README.md").read_text()
    assert "Half MSE vs MSE" in page
    for label in ("exp_tiny loss=half_mse", "exp_tiny loss=mse"):
        assert f"| {escape_markdown(label)} |" in page
    assert "exp_tiny loss=half_mse" in board.stdout.str()          # the terminal table

"""A researcher's experiment with its own loss, model and leaderboard column: ONE file.

The benchmark module registers a loss, a tiny model and a leaderboard column and declares
its experiment; nothing else is written (no conftest, no package). It runs through pytest
+ pytest-benchmark in a subprocess; ``fer-bench leaderboard`` then reads the run's JSON in
another process, which never imported the module, and shows the column with its values
in the rich table and the markdown page.
"""

from __future__ import annotations

import json
import statistics

from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.markdown import escape_markdown

pytest_plugins = ["pytester"]

MODULE = "test_one_file"
COLUMN = "final train loss (mean over N, seeds)"
EXPERIMENT = '''
"""Half-weighted MSE against MSE, with its own leaderboard column."""
import statistics

import pytest
import torch

from fer_bench.leaderboard.columns import Column, register_column
from fer_bench.models import register_model
from fer_bench.training.losses import LOSSES


def half_mse(logits, targets):
    return 0.5 * (torch.softmax(logits, dim=1) - targets).pow(2).mean()


def one_file_tiny(num_classes=8, in_chans=1):
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(6), torch.nn.Flatten(),
                               torch.nn.Linear(in_chans * 36, num_classes))


def final_loss(row):
    """The training loss of the row's cells' last epoch, averaged over every N and seed."""
    return f"{statistics.fmean(r.train_loss[-1] for r in row.records):.4g}"


LOSSES.register("half_mse", half_mse)
register_model(one_file_tiny)
register_column(Column("final train loss (mean over N, seeds)", final_loss,
                       experiments=("one_file",)))

pytestmark = [
    pytest.mark.fer_experiment("one_file", title="Half MSE vs MSE, one file"),
    pytest.mark.fer_axes(model=["one_file_tiny"], loss=["mse", "half_mse"], nhot=[1, 8],
                         split=["ordinary"]),
]


def test_half_mse(fer_cell, benchmark):
    assert fer_cell.run(benchmark).status == "ok"
'''


def _expected_values(document: dict) -> dict[str, str]:
    """row label -> the column's text, recomputed here from the run's records."""
    by_loss: dict[str, list[float]] = {}
    for entry in document["benchmarks"]:
        record = CellRecord.from_dict(entry["extra_info"]["fer_bench"])
        by_loss.setdefault(record.cell.recipe.loss, []).append(record.train_loss[-1])
    return {f"one_file_tiny loss={loss}": f"{statistics.fmean(losses):.4g}"
            for loss, losses in by_loss.items()}


def _cells(line: str) -> list[str]:
    """The cells of a markdown table line (a "|" inside a cell is escaped as &#124;)."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_one_file_registers_a_loss_a_column_and_an_experiment(pytester, tmp_path):
    pytester.makepyfile(**{MODULE: EXPERIMENT})
    assert [p.name for p in pytester.path.iterdir()] == [f"{MODULE}.py"]   # nothing else
    out = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(
        "--fer-profile", "smoke", "--fer-epochs", "1", "--fer-results", str(tmp_path / "store"),
        "--benchmark-json", str(out), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)
    assert [p.name for p in pytester.path.rglob("*.py")] == [f"{MODULE}.py"]
    document = json.loads(out.read_text())
    assert document["fer_bench"]["columns"] == [
        {"name": COLUMN, "experiments": ["one_file"], "module": f"{MODULE}.py"}]
    expected = _expected_values(document)
    assert sorted(expected) == ["one_file_tiny loss=half_mse", "one_file_tiny loss=mse"]
    assert len(set(expected.values())) == 2, expected     # two rows, two distinct values
    run_output = result.stdout.str()                      # the run's own results tables
    assert COLUMN in run_output and all(v in run_output for v in expected.values())

    board = pytester.run("fer-bench", "leaderboard", str(out), "--out", str(tmp_path / "board"))
    assert board.ret == 0, board.stderr.str()
    assert "left out" not in board.stderr.str()
    page = (tmp_path / "board" / "README.md").read_text()
    assert "Half MSE vs MSE, one file" in page
    header = next(line for line in page.splitlines()
                  if line.startswith("| model |") and escape_markdown(COLUMN) in line)
    position = _cells(header).index(escape_markdown(COLUMN))
    for label, value in expected.items():
        row = next(line for line in page.splitlines()
                   if line.startswith(f"| {escape_markdown(label)} |"))
        assert _cells(row)[position] == value, (row, header)
    table = board.stdout.str()                            # the rich table, another process
    assert COLUMN in table
    for label, value in expected.items():
        line = next(line for line in table.splitlines() if label in line)
        assert value in [cell.strip() for cell in line.split("│")], line
    merged = json.loads((tmp_path / "board" / "results.json").read_text())
    assert merged["fer_bench_sources"][0]["fer_bench"]["columns"][0]["name"] == COLUMN

"""An experiment's own epochs: ``fer_experiment(..., epochs=N)`` sets its cells' epochs
below ``--fer-epochs`` and the profile's, above the model's own (pytester, in process, a
tiny registered model; no cell is trained)."""

from __future__ import annotations

import re

import pytest

# Imported before any in-process pytest run (see tests/plugin/test_plugin.py).
import torch  # noqa: F401
import torch._dynamo  # noqa: F401

import fer_bench.training.runner  # noqa: F401
from tests.helpers.cells import BASE_ARGS, tiny_model_project

pytest_plugins = ["pytester"]

MODULE = """
import pytest

pytestmark = pytest.mark.fer_experiment("budget", epochs={epochs})


def test_budget(fer_cell):
    print("CELL EPOCHS", fer_cell.config.epochs)
"""


def _run(pytester, data_dir, epochs, *args: str):
    with tiny_model_project(pytester, "budget_tiny", test_budget=MODULE.format(epochs=epochs)):
        return pytester.runpytest_inprocess(
            "-s", "--fer-data", str(data_dir), "--fer-models", "budget_tiny", "--fer-nhot", "8",
            "--fer-splits", "ordinary", "--fer-plan", "cells",
            "--fer-results", str(pytester.path / "results"), *BASE_ARGS, *args)


@pytest.mark.parametrize("args, expected", [
    ((), 1),                                  # the experiment's own
    (("--fer-epochs", "3"), 3),               # the user's option wins
    (("--fer-profile", "smoke"), 2),          # so do the profile's epochs
], ids=["marker", "option", "profile"])
def test_the_experiment_s_epochs_reach_its_cells_and_the_plan(pytester, data_dir, args, expected):
    result = _run(pytester, data_dir, 1, *args)
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert re.findall(r"CELL EPOCHS (\d+)", text) == [str(expected)]
    plan_row = next(line for line in result.outlines if line.strip().startswith("budget_tiny"))
    assert plan_row.split()[4] == str(expected)          # model, precision, cells, train, epochs


def test_a_bad_epochs_value_is_one_line_naming_the_marker(pytester, data_dir):
    result = _run(pytester, data_dir, "'two'")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "@pytest.mark.fer_experiment(epochs=...): expected a whole number >= 1, got 'two'" in text
    assert "Traceback" not in text

"""The plan a run prints before its first cell (``fer_bench.pytest.plan``), and a cell that
cannot be set up failing with one line (pytester, in process, a tiny registered model)."""

from __future__ import annotations

import re

# Imported before any in-process pytest run (see tests/plugin/test_plugin.py).
import torch  # noqa: F401
import torch._dynamo  # noqa: F401

import fer_bench.training.runner  # noqa: F401
from fer_bench.pytest.plan import LONG_FOR_A_CPU_S, Plan, PlannedCell, plan_lines
from tests.helpers.cells import BASE_ARGS, tiny_model_project

pytest_plugins = ["pytester"]

MODULE = """
def test_grid(fer_cell, benchmark):
    assert fer_cell.run(benchmark).status == "ok"
"""


def grid_args(pytester, data_dir, *args: str) -> tuple[str, ...]:
    return ("-q", "--fer-profile", "smoke", "--fer-epochs", "1", "--fer-data", str(data_dir),
            "--fer-models", "plan_tiny", "--fer-nhot", "1,8", "--fer-splits", "ordinary",
            "--fer-results", str(pytester.path / "results"), *BASE_ARGS, *args)


def test_the_plan_comes_first_with_its_cost_then_counts_the_store(pytester, data_dir):
    with tiny_model_project(pytester, "plan_tiny", test_grid=MODULE):
        first = pytester.runpytest_inprocess(*grid_args(pytester, data_dir, "--fer-plan", "cost"))
        first.assert_outcomes(passed=2)
        lines = first.outlines
        head = [i for i, line in enumerate(lines) if line.startswith("fer_bench plan:")]
        cells = [i for i, line in enumerate(lines) if line.startswith("fer_bench [")]
        assert len(head) == 1 and cells and head[0] < cells[0]
        assert re.match(r"fer_bench plan: 2 cells on cpu, \S+ data \([\d,]+ images\), profile "
                        r"smoke: 2 to train, 0 from the store \(.*results\)$", lines[head[0]])
        row = next(line for line in lines if line.strip().startswith("plan_tiny"))
        assert row.split()[:5] == ["plan_tiny", "fp32", "2", "2", "1"]   # cells, to train, epochs
        assert re.search(r"estimated time: about \d+ s on this device", first.stdout.str())

        again = pytester.runpytest_inprocess(*grid_args(pytester, data_dir, "--fer-plan", "cost"))
        again.assert_outcomes(passed=2)
        text = again.stdout.str()      # the plan resolved the very cells the first run stored
        assert ": 0 to train, 2 from the store" in text and "estimated time" not in text

        quiet = pytester.runpytest_inprocess(*grid_args(pytester, data_dir, "--fer-plan", "off"))
        quiet.assert_outcomes(passed=2)
        assert "fer_bench plan:" not in quiet.stdout.str()


def test_a_cell_that_cannot_be_set_up_is_one_line_in_the_plan_and_in_its_error(pytester, data_dir):
    with tiny_model_project(pytester, "plan_tiny", test_grid=MODULE):
        result = pytester.runpytest_inprocess(*grid_args(
            pytester, data_dir, "--fer-variant", "ms-majority", "--fer-plan", "cells"))
        result.assert_outcomes(errors=1)
        text = result.stdout.str()
        assert "0 to train, 0 from the store (" in text and ", 1 will not run" in text
        assert "will not run (1 cell): label treatment 'ms-majority' needs data cleaned" in text
        # the plan and the error section say it once each (pytest's short summary, cut to the
        # terminal's width, may repeat it: not counted)
        said = [line for line in text.splitlines() if not line.startswith(("ERROR ", "FAILED "))]
        assert sum(line.count("needs data cleaned by rule 'ferplus-ms'") for line in said) == 2
        assert "During handling of the above exception" not in text and "Traceback" not in text


def planned(seconds: float, profile: str = "default", device: str = "cpu") -> Plan:
    cells = [PlannedCell(nodeid=f"t[{i}]", state="train", cell_id=f"vgg16-n{i}", model="vgg16",
                         precision="fp32", epochs=40, seconds=seconds / 4) for i in range(4)]
    cells.append(PlannedCell(nodeid="t[x]", state="stored", cell_id="vgg16-x", model="vgg16",
                             precision="fp32", epochs=40))
    rate = {"model": "vgg16", "precision": "fp32", "train_flops_per_image": 9.4e8,
            "train_flops_per_s": 2.1e10}
    return Plan(cells=cells, device=device, profile=profile, data="synthetic data (35,000 images)",
                store="results", rates=[rate], probe_s=3.2)


def test_a_long_estimate_on_a_cpu_names_the_profiles_that_fit_and_goes_on():
    lines = plan_lines(planned(3 * 7 * 86400))
    assert lines[0] == ("fer_bench plan: 5 cells on cpu, synthetic data (35,000 images): "
                        "4 to train, 1 from the store (results)")
    row = next(line for line in lines if line.strip().startswith("vgg16"))
    assert row.split() == ["vgg16", "fp32", "5", "4", "40", "0.94", "21", "5.2", "days", "3.0",
                           "weeks"]
    assert "estimated time: about 3.0 weeks on this device" in lines[-2]
    assert "long for a CPU; the run goes on" in lines[-1]
    assert "--fer-profile smoke (" in lines[-1] and "--fer-profile cpu (" in lines[-1]
    on_smoke = plan_lines(planned(2 * LONG_FOR_A_CPU_S, profile="smoke"))[-1]
    assert "--fer-profile" not in on_smoke and "To shorten it, select fewer cells" in on_smoke
    on_cpu = plan_lines(planned(2 * LONG_FOR_A_CPU_S, profile="cpu"))[-1]
    assert "--fer-profile smoke (" in on_cpu and "--fer-profile cpu" not in on_cpu
    assert not any("long for" in line for line in plan_lines(planned(LONG_FOR_A_CPU_S / 2)))
    assert not any("long for" in line for line in plan_lines(planned(1e6, device="cuda")))
    busy = planned(60)
    busy.load, busy.cores = 3.9, 2
    assert plan_lines(busy)[-1] == ("  this machine is busy (load 3.9 on 2 cores): the rates, "
                                    "and the cells, depend on what else runs")

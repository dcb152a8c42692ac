"""Axis values from options and markers: bad names, skips, local weights files, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import fer_bench.training.runner  # noqa: F401  (torch-importing registries, once per process)
from fer_bench.cli.main import main
from tests.helpers.cells import run_smoke_grid, tiny_model_project

pytest_plugins = ["pytester"]

MODULE = """
import pytest


def test_cell(fer_cell, benchmark):
    record = fer_cell.run(benchmark)
    print("RECORD", record.cell_id, record.cell.recipe.init, record.init_file)
"""


@pytest.fixture
def axis_dir(pytester):
    with tiny_model_project(pytester, "axis_tiny", test_axis=MODULE) as project:
        yield project


def run(pytester, data_dir, *args):
    return run_smoke_grid(pytester, data_dir, "axis_tiny", *args)


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--fer-loss", "msee", "unknown loss 'msee'; did you mean: mse"),
    ("--fer-augmentation", "flip_rot25", "unknown augmentation 'flip_rot25'; did you mean: flip_rot20"),
    ("--fer-splits", "ordinari", "unknown split 'ordinari'; did you mean: ordinary"),
    ("--fer-init", "imagnet", "unknown init 'imagnet' (--fer-init); did you mean: imagenet?"),
    ("--fer-variant", "nhot-9", "unknown label treatment 'nhot-9'"),
])
def test_unknown_axis_values_are_one_usage_error(axis_dir, data_dir, option, value, expected):
    result = run(axis_dir, data_dir, option, value, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert expected in text and option in text and "Traceback" not in text


def test_bad_marker_value_names_the_test(axis_dir, data_dir):
    axis_dir.makepyfile(test_marked="""
import pytest
pytestmark = pytest.mark.fer_axes(loss=["mse", "l2"])
def test_marked(fer_cell):
    pass
""")
    result = run(axis_dir, data_dir, "--collect-only", "test_marked.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_marked.py::test_marked" in result.stderr.str()
    assert "unknown loss 'l2'" in result.stderr.str()


def test_imagenet_cell_skips_with_the_reason_and_the_rest_run(axis_dir, data_dir):
    result = run(axis_dir, data_dir, "--fer-init", "scratch,imagenet", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*model 'axis_tiny' has no ImageNet weights*"])
    assert "RECORD axis_tiny-n8-ordinary-s0 scratch" in result.stdout.str()


def test_local_weights_file_runs_and_records_its_sha256(axis_dir, data_dir, tmp_path):
    import hashlib

    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(6), torch.nn.Flatten(),
                                torch.nn.Linear(36, 8))
    weights = tmp_path / "axis_tiny.pt"
    torch.save(model.state_dict(), weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    result = run(axis_dir, data_dir, "--fer-init", f"file:{weights}",
                 "--benchmark-json", str(tmp_path / "out.json"))
    result.assert_outcomes(passed=1)
    assert f"RECORD axis_tiny-n8-ordinary-s0-init=file-{sha[:8]} file:{sha} {weights}" in result.stdout.str()
    entry = json.loads((tmp_path / "out.json").read_text())["benchmarks"][0]
    assert entry["param"] == f"axis_tiny-n8-ordinary-s0-init=file-{sha[:8]}"
    # the same content under another name is the same cell: served from the store
    renamed = tmp_path / "renamed.pt"
    renamed.write_bytes(weights.read_bytes())
    again = run(axis_dir, data_dir, "--fer-init", f"file:{renamed}", "--benchmark-json",
                str(tmp_path / "again.json"))
    again.assert_outcomes(passed=1)
    assert json.loads((tmp_path / "again.json").read_text())["benchmarks"][0]["extra_info"]["from_store"]


def test_missing_weights_file_is_a_usage_error(axis_dir, data_dir, tmp_path):
    result = run(axis_dir, data_dir, "--fer-init", f"file:{tmp_path / 'nope.pt'}", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "nope.pt does not exist" in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(("args", "expected"), [
    (["--loss", "msee"], "unknown loss 'msee'; did you mean: mse"),
    (["--augmentation", "flip_rot25"], "did you mean: flip_rot20"),
    (["--init", "imagnet"], "did you mean: imagenet"),
    (["--variant", "nhot-0"], "unknown label treatment 'nhot-0'"),
])
def test_run_cli_rejects_unknown_axis_values(capsys, args, expected):
    code = main(["run", "--model", "small_cnn", "--split", "ordinary", "--data", "synthetic",
                 "--epochs", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_run_cli_unknown_split_suggests(capsys):
    code = main(["run", "--model", "small_cnn", "--split", "complx", "--data", "synthetic"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown split 'complx'; did you mean: complex" in err

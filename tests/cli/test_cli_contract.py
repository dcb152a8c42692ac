"""The ``fer-bench`` error contract (issue 13), one table of bad invocations.

Every user error, from any subcommand, is ONE line ``fer-bench: error: ...`` on stderr
naming the bad value and what is allowed, never a traceback (unless ``--debug``); exit 2
for usage errors, 1 for runtime failures (``fer_bench.cli.main``'s docstring and the README
"Errors, exit status, logging" section document which is which).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

from fer_bench.cli.main import build_parser, main
from fer_bench.models import ModelSpec, register_model, unregister_model
from tests.helpers.kaggle_pair import write_kaggle_pair

USAGE, RUNTIME = 2, 1
RUN = ["run", "--model", "small_cnn", "--split", "ordinary", "--data", "synthetic"]


class TrainingBoom(nn.Module):
    """Healthy for the output check; raises in every training step."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        self.head = nn.Linear(in_chans * 12 * 12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("simulated kernel failure")
        return self.head(nn.functional.avg_pool2d(x, 4).flatten(1))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("contract")
    full = write_kaggle_pair(root / "full", ["Training"] * 160 + ["PublicTest"] * 20 + ["PrivateTest"] * 20)
    training_only = write_kaggle_pair(root / "training_only", ["Training"] * 40)
    bad_row = write_kaggle_pair(root / "bad_row", ["Training"] * 5, bad_pixels_line=3)
    not_json = root / "not_json.json"
    not_json.write_text("{ this is not json")
    a_file = root / "a_file.txt"
    a_file.write_text("x")
    return {"tmp": str(root), "full": str(full), "training_only": str(training_only),
            "bad_row": str(bad_row / "fer2013.csv"), "not_json": str(not_json),
            "a_file": str(a_file), "results": str(root / "results")}


@pytest.fixture(scope="module", autouse=True)
def boom_model():
    register_model(ModelSpec(name="contract_boom", factory=TrainingBoom, batch_size=32))
    yield
    unregister_model("contract_boom")


#: (invocation, exit status, text the one error line contains). ``{name}`` is a path from
#: the ``files`` fixture. This table is the one in the issue's closing note.
BAD_INVOCATIONS: list[tuple[str, int, str]] = [
    # top level
    ("", USAGE, "the following arguments are required: COMMAND"),
    ("train", USAGE, "argument COMMAND: invalid choice: 'train' (choose from"),
    ("--no-such-flag models", USAGE, "unrecognized arguments: --no-such-flag"),
    # data stats / data align
    ("data", USAGE, "the following arguments are required: DATA_COMMAND"),
    ("data stats --seed -1", USAGE, "argument --seed: -1 is not >= 0"),
    ("data stats --data {tmp}/missing", USAGE, "argument --data: {tmp}/missing: data path does not exist; give a FERPlus folder"),
    ("data stats --format parquet", USAGE, "argument --format: invalid choice: 'parquet' (choose from 'auto', 'folder', 'kaggle', 'synthetic')"),
    ("data stats --data {full} --labels folder", USAGE, "--labels folder needs the FERPlus folder layout"),
    ("data stats --data {bad_row}", RUNTIME, "fer2013.csv: line 3, column 2 (pixels): pixel string holds a non-integer value"),
    ("data align --limit 0", USAGE, "argument --limit: 0 is not >= 1"),
    ("data align --detector dnn", USAGE, "argument --detector: invalid choice: 'dnn' (choose from 'hog', 'cnn')"),
    ("data align --upscale 20", USAGE, "argument --upscale: 20 is not >= 48"),
    # models / list
    ("models --verbose", USAGE, "unrecognized arguments: --verbose"),
    ("list widgets", USAGE, "argument kind: invalid choice: 'widgets' (choose from 'models', 'losses', 'augmentations', 'splits', 'labels', 'aligners')"),
    # run
    ("run --split ordinary", USAGE, "the following arguments are required: --model"),
    ("run --model small_cnn --split ordinary --nhot 9", USAGE, "argument --nhot: 9 is not in 1..8"),
    ("run --model small_cnn --split ordinary --nhot 0", USAGE, "argument --nhot: 0 is not in 1..8"),
    ("run --model small_cnn --split ordinary --nhot three", USAGE, "argument --nhot: expected a whole number in 1..8, got 'three'"),
    ("run --model small_cnn --split ordinary --epochs 0", USAGE, "argument --epochs: 0 is not >= 1"),
    ("run --model small_cnn --split ordinary --seed -1", USAGE, "argument --seed: -1 is not >= 0"),
    ("run --model vgg17 --split ordinary --data synthetic", USAGE, "argument --model: unknown model 'vgg17'; did you mean: vgg13, vgg16, vgg19?"),
    ("run --model small_cnn --split complx --data synthetic", USAGE, "argument --split: unknown split 'complx'; did you mean: complex?"),
    ("run --model small_cnn --split ordinary --loss msee --data synthetic", USAGE, "argument --loss: unknown loss 'msee'; did you mean: mse"),
    ("run --model small_cnn --split ordinary --variant nhot-9 --data synthetic", USAGE, "argument --variant: unknown label treatment 'nhot-9'"),
    ("run --model small_cnn --split ordinary --init file:{tmp}/none.pt --data synthetic", USAGE, "--init 'file:{tmp}/none.pt': weights file {tmp}/none.pt does not exist"),
    ("run --model small_cnn --split ordinary --device gpu", USAGE, "argument --device: unknown device 'gpu'; use cpu, cuda, cuda:N or mps"),
    ("run --model small_cnn --split ordinary --device cuda:99 --data synthetic", USAGE, "argument --device: 'cuda:99'"),
    ("run --model small_cnn --split official --data {training_only} --device cpu --results {results}", USAGE, "split 'official' needs FERPlus Training, PublicTest and PrivateTest images; this data has no PublicTest (validation) and no PrivateTest (test) images"),
    ("run --model contract_boom --split ordinary --epochs 1 --data {full} --device cpu --results {results}", RUNTIME, "cell contract_boom-n8-ordinary-s0 failed: model contract_boom raised RuntimeError in epoch 1 (training)"),
    # launch
    ("launch --shards 2 --no-such-option", USAGE, "unrecognized arguments: --no-such-option"),
    # leaderboard
    ("leaderboard", USAGE, "the following arguments are required: results"),
    ("leaderboard {tmp}/missing.json", USAGE, "argument results: {tmp}/missing.json does not exist"),
    ("leaderboard {not_json} --no-write", RUNTIME, "not pytest-benchmark JSON (invalid JSON at line 1"),
    ("leaderboard {not_json} --out {a_file}", USAGE, "argument --out: {a_file} is a file; give a folder"),
]


def invoke(argv: list[str], capsys) -> tuple[int, str, str]:
    """``fer-bench argv`` in process: (exit status, stdout, stderr). argparse's exits come
    back as the status; any other exception escaping ``main`` fails the test."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("invocation", "status", "expected"), BAD_INVOCATIONS,
                         ids=[row[0] or "(nothing)" for row in BAD_INVOCATIONS])
def test_bad_invocation_is_one_error_line(files, capsys, invocation, status, expected):
    argv = [part.format(**files) for part in invocation.split()]
    code, out, err = invoke(argv, capsys)
    errors = [line for line in err.splitlines() if line.startswith("fer-bench: error: ")]
    assert code == status, err
    assert len(errors) == 1, err
    assert expected.format(**files) in errors[0], errors[0]
    assert "Traceback" not in err and "Traceback" not in out
    # nothing else on stderr but fer_bench's own one-line log messages
    assert all(line.startswith("fer-bench: ") for line in err.splitlines()), err


def test_the_table_covers_every_subcommand():
    covered = {row[0].split()[0] for row in BAD_INVOCATIONS if row[0]}
    assert {"data", "models", "list", "run", "launch", "leaderboard"} <= covered
    assert len(BAD_INVOCATIONS) >= 15
    assert {row[1] for row in BAD_INVOCATIONS} == {USAGE, RUNTIME}


def test_debug_shows_the_traceback(files, capsys):
    from fer_bench.errors import DataPathError

    for argv in (["--debug", "data", "stats", "--data", f"{files['tmp']}/missing"],
                 ["data", "stats", "--data", f"{files['tmp']}/missing", "--debug"]):
        with pytest.raises(DataPathError, match="does not exist"):
            main(argv)


def test_unexpected_exception_is_one_line_unless_debug(monkeypatch, capsys):
    import fer_bench.cli.listing

    def broken(kind):
        raise KeyError("registry went away")

    monkeypatch.setattr(fer_bench.cli.listing, "list_command", broken)
    code, _, err = invoke(["list", "losses"], capsys)
    assert code == RUNTIME and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("fer-bench: error: unexpected KeyError: 'registry went away'")
    assert "--debug" in err
    with pytest.raises(KeyError):
        main(["list", "losses", "--debug"])


def test_interrupt_is_one_line_and_exit_130(monkeypatch, capsys):
    import fer_bench.cli.listing

    def interrupted(kind):
        raise KeyboardInterrupt

    monkeypatch.setattr(fer_bench.cli.listing, "list_command", interrupted)
    code, _, err = invoke(["list", "losses"], capsys)
    assert (code, err) == (130, "fer-bench: interrupted\n")


def test_version_comes_from_package_metadata(capsys):
    import fer_bench

    assert fer_bench.__version__ == metadata.version("fer-bench")
    code, out, _ = invoke(["--version"], capsys)
    assert code == 0 and out == f"fer-bench {metadata.version('fer-bench')}\n"


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "fer-bench"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, f"{prefix} {name}")


def test_every_option_of_every_subcommand_has_a_help_line():
    missing = []
    for prog, parser in _subparsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without a help line: {missing}"


def test_the_installed_command_end_to_end(tmp_path):
    """The console script itself: one line, exit 2, no traceback; --debug has it."""
    env = {**os.environ, "FER_BENCH_CACHE": str(tmp_path / "cache")}
    script = Path(sys.executable).with_name("fer-bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fer_bench.cli"]
    bad = subprocess.run([*command, "run", "--model", "small_cnn", "--split", "ordinary",
                          "--nhot", "9"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == ("fer-bench: error: argument --nhot: 9 is not in 1..8 "
                          "(see: fer-bench run --help)\n")
    debug = subprocess.run([*command, "--debug", "data", "stats", "--data", str(tmp_path / "x")],
                           capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DataPathError" in debug.stderr

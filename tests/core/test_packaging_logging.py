"""Packaging and logging (issue 13, parts 6-7).

* The version has one source (``pyproject.toml`` -> package metadata -> ``__version__``).
* Dependencies are declared where they are imported: everything fer_bench imports is a
  core dependency or in an extra; timm and torchvision are not core dependencies.
* A LICENSE file; the README says where to get FERPlus and how to cite.
* Information goes to ``logging``; library code does not print; a normal run passes
  under ``-W error``.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest

import fer_bench
from tests.helpers.kaggle_pair import write_kaggle_pair

tomllib = pytest.importorskip("tomllib")      # Python >= 3.11
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fer_bench"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalized(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files of fer_bench that import it (stdlib and fer_bench excluded)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("fer_bench", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_version_has_one_source():
    assert fer_bench.__version__ == metadata.version("fer-bench") == PYPROJECT["project"]["version"]
    init = (PACKAGE / "__init__.py").read_text()
    assert PYPROJECT["project"]["version"] not in init      # not hard-coded twice


def test_dependencies_are_declared_where_they_are_imported():
    project = PYPROJECT["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {_requirement_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    assert "timm" not in core and "torchvision" not in core
    distributions = metadata.packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports().items():
        names = {_normalized(d) for d in distributions.get(module, [module])}
        if module == "dlib":
            names.add("dlib-bin")                     # dlib's prebuilt wheel (a core dependency)
        if not names & (core | extras):
            undeclared[module] = sorted(files)
    assert undeclared == {}
    imported = set(_third_party_imports())
    assert "timm" not in imported and "torchvision" not in imported
    baselines = tomllib.loads((ROOT / "baselines" / "pyproject.toml").read_text())
    assert "timm" in {_requirement_name(r) for r in baselines["project"]["dependencies"]}


def test_license_and_readme():
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "2026 fer_bench contributors" in license_text
    readme = (ROOT / "README.md").read_text()
    for text in ("https://github.com/microsoft/FERPlus", "fer2013new.csv",
                 "challenges-in-representation-learning-facial-expression-recognition-challenge",
                 "Facial Expression Recognition without One-hot Labels", "Duan, Ruxiao",
                 "Training Deep Networks for Facial Expression Recognition with Crowd-Sourced",
                 "ICMI", "host_rss_cell_delta", "--debug", "| 2 | usage error"):
        assert text in readme, text


def test_library_code_does_not_print():
    """``print`` only in command-line modules (the ``fer_bench/cli/`` package, ``cli.py``) and
    ``*_command`` handlers; everything else logs (or returns text)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "cli.py" or path.parent == PACKAGE / "cli":
            continue
        tree = ast.parse(path.read_text())
        allowed = {id(node) for function in ast.walk(tree)
                   if isinstance(function, ast.FunctionDef) and function.name.endswith("_command")
                   for node in ast.walk(function)}
        offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                      and node.func.id == "print" and id(node) not in allowed]
    assert offenders == []


def test_loading_logs_facts_and_warns_about_nothing(tmp_path, caplog):
    """Duplicate names (a fact of the file) and a cache rebuild are information: logged,
    never a Python warning (which ``-W error`` would turn into a failure)."""
    from fer_bench.data.cache import load_dataset

    folder = write_kaggle_pair(tmp_path / "pair", ["Training"] * 12)
    lines = (folder / "fer2013new.csv").read_text().splitlines()
    lines[5] = lines[5].replace("fer0000004.png", "fer0000001.png")       # a duplicated name
    (folder / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.INFO, logger="fer_bench"):
            load_dataset(folder, cache_dir=tmp_path / "cache")
            (cache_file,) = (tmp_path / "cache").iterdir()
            cache_file.write_bytes(b"not a zip")
            load_dataset(folder, cache_dir=tmp_path / "cache")
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert any(n == "fer_bench.data.sources" and lvl == logging.WARNING and "appear more than once" in m
               for n, lvl, m in messages)
    assert any(n == "fer_bench.data.cache" and lvl == logging.INFO and "rebuilding the cache" in m
               for n, lvl, m in messages)


def test_a_normal_cli_run_passes_under_w_error(tmp_path):
    folder = write_kaggle_pair(tmp_path / "pair", ["Training"] * 160 + ["PublicTest"] * 20
                               + ["PrivateTest"] * 20)
    env = {**os.environ, "FER_BENCH_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "error"}
    base = [sys.executable, "-W", "error", "-m", "fer_bench.cli"]
    stats = subprocess.run([*base, "data", "stats", "--data", str(folder), "--json"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert stats.returncode == 0, stats.stderr
    run = subprocess.run([*base, "run", "--model", "small_cnn", "--split", "official", "--epochs",
                          "1", "--data", str(folder), "--device", "cpu",
                          "--results", str(tmp_path / "results"), "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr and "Traceback" not in run.stderr

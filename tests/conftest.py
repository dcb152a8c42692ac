"""Fixtures shared by the unit and integration tests.

``ferplus_dir`` is the real FERPlus folder (``../shared/data/ferplus`` beside the repo, or
``$FER_BENCH_FERPLUS``). CI always has it; a developer machine without it skips the
real-data tests with that reason, except under CI=true where its absence is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The plan's cost estimate trains each model a few steps before the first cell, which tests
# that count a model's builds or training batches would see; the suite's runs (and their
# subprocesses) print the plan without timing anything. tests/plugin/test_plugin_plan.py and
# tests/training/test_estimate.py check the estimate itself (--fer-plan cost).
os.environ.setdefault("FER_BENCH_PLAN", "cells")


def _find_ferplus() -> Path | None:
    env = os.environ.get("FER_BENCH_FERPLUS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "ferplus")
    for path in candidates:
        if (path / "fer2013new.csv").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def ferplus_dir() -> Path:
    path = _find_ferplus()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have the real FERPlus data at ../shared/data/ferplus")
        pytest.skip("real FERPlus data not found (../shared/data/ferplus or $FER_BENCH_FERPLUS)")
    return path


@pytest.fixture(scope="session")
def ferplus_raw(ferplus_dir):
    """The real data set loaded once per session (through the cache)."""
    from fer_bench.data.cache import load_dataset

    return load_dataset(ferplus_dir)


@pytest.fixture(scope="session")
def ferplus_clean(ferplus_raw):
    """The real data set after cleaning (35,389 images)."""
    from fer_bench.data.clean import clean

    return clean(ferplus_raw)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A small synthetic FERPlus folder (``tests.helpers.cells.write_ferplus_folder``), one per module."""
    from tests.helpers.cells import write_ferplus_folder

    return write_ferplus_folder(tmp_path_factory.mktemp("plugin_data") / "ferplus")

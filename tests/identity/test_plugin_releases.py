"""Every plug-in's release enters a cell's identity (``Cell.plugin_releases``): an upgraded
third-party loss makes its cells store misses, while a cell of fer_bench's built-ins only
keeps the digest it had before the field existed."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from fer_bench.data.align.axis import ALIGNERS
from fer_bench.data.clean import clean
from fer_bench.data.labels.treatments import LABELS, LabelTreatment
from fer_bench.data.splits import SPLITS, SplitKind
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import ConfigError
from fer_bench.identity.cell import Cell
from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import CellRecord
from fer_bench.results.store import ResultStore
from fer_bench.training.augment.base import AUGMENTATIONS, AugmentationSet
from fer_bench.training.losses import LOSSES
from fer_bench.training.resolve import resolve_cell, resolve_config
from fer_bench.training.runner import run_cell
from fer_bench.training.tasks import build_task_data
from tests.helpers.cells import make_cell, tiny_spec
from tests.helpers.plugin_pkg import make_entry_point_package

LOSS_BODY = '''
import torch.nn.functional as F

RELEASE = "{version}"

def acme_mse(logits, targets):
    """Mean squared error between softmax and targets."""
    return F.mse_loss(logits.softmax(dim=1), targets)
'''


def _install_acme_loss(tmp_path, monkeypatch, version: str):
    """Distribution ``acme-losses`` ``version`` declaring loss ``acme_mse`` (entry-point group
    ``fer_bench.losses``), put on ``sys.path``; returns its site folder."""
    return make_entry_point_package(
        tmp_path / f"v{version}", "acme_losses", LOSS_BODY.format(version=version),
        models={"acme_mse": "acme_mse"}, dist_name="acme-losses", version=version,
        group="fer_bench.losses", monkeypatch=monkeypatch)


@pytest.fixture(scope="module")
def tiny_clean():
    return clean(make_synthetic(400, seed=11))


def test_upgraded_third_party_loss_makes_its_cell_a_store_miss(tmp_path, monkeypatch, tiny_clean):
    spec = tiny_spec("tiny_release_probe")
    store = ResultStore(tmp_path / "store")
    site_10 = _install_acme_loss(tmp_path, monkeypatch, "1.0")
    cell = make_cell(spec, tiny_clean, nhot=3, config=resolve_config(spec, epochs=1, loss="acme_mse"))
    assert cell.plugin_releases == (("loss", "acme-losses==1.0"),)
    assert cell.to_dict()["plugin_releases"] == {"loss": "acme-losses==1.0"}
    assert store.get(cell) is None
    record = run_cell(spec, build_task_data(tiny_clean, cell), device="cpu")
    assert record.status == "ok", record.error
    store.put(record)
    assert store.get(cell) == record   # the same release: served from the store
    assert sys.modules["acme_losses"].RELEASE == "1.0"

    # pip install -U acme-losses: release 1.1 replaces 1.0 on the path, mid-process.
    sys.path.remove(str(site_10))
    _install_acme_loss(tmp_path, monkeypatch, "1.1")
    upgraded = make_cell(spec, tiny_clean, nhot=3,
                         config=resolve_config(spec, epochs=1, loss="acme_mse"))
    assert LOSSES.entry("acme_mse").release == "acme-losses==1.1"
    assert sys.modules["acme_losses"].RELEASE == "1.1"
    assert upgraded.plugin_releases == (("loss", "acme-losses==1.1"),)
    assert upgraded.id == cell.id                  # the same readable id ...
    assert upgraded.digest() != cell.digest()      # ... another identity
    assert store.get(upgraded) is None             # a miss: 1.1 trains its own cell
    assert store.get(cell) == record               # 1.0's result stays under its identity
    assert len(store.records()) == 1


#: Digests of two built-in cells computed with the code before plug-in releases entered
#: the identity (commit 9f7db29): the field must not change them.
BUILTIN_GOLDEN = {
    "122c6fc32ae2": Cell(model="vgg13", variant="nhot-8", split="ordinary", seed=3,
                         recipe=TrainConfig(epochs=3, loss="pld", augmentation="flip_rot20"),
                         model_release="fer-baselines==0.1.0", dataset="0123456789abcdef",
                         device_type="cpu", precision="bf16"),
    "052ba5488e9d": Cell(model="tiny", variant="ms-majority", split="official-majority", seed=0),
}


def test_built_in_cells_keep_their_digests(tiny_clean):
    for digest, cell in BUILTIN_GOLDEN.items():
        assert "plugin_releases" not in cell.to_dict()
        assert cell.digest() == digest
    spec = tiny_spec("tiny_release_probe")
    for loss, augmentation, variant, split in (("mse", "none", "nhot-3", "ordinary"),
                                               ("pld", "flip_rr", "ms-majority", "official-majority"),
                                               ("cce", "adaptive_x1=5_x2=25", "nhot-8", "complex")):
        alignment = "landmarks-dlib-hog-0123abcd" if augmentation.startswith("adaptive") else "none"
        cell = resolve_cell(spec, variant=variant, split=split, seed=0, device="cpu",
                            config=resolve_config(spec, loss=loss, augmentation=augmentation),
                            dataset_fingerprint=tiny_clean.fingerprint, alignment=alignment)
        assert cell.plugin_releases == ()
        assert "plugin_releases" not in cell.to_dict()
        assert cell.digest() == Cell.from_dict(json.loads(json.dumps(cell.to_dict()))).digest()


@pytest.fixture
def acme_plugins():
    """One in-process plug-in per axis: loss and split kind declare a release, the others
    are plain in-process registrations; all removed afterwards."""
    registered = [
        (LOSSES, "acme_l1", lambda logits, targets: (logits.softmax(1) - targets).abs().mean(),
         {"distribution": "acme-losses", "version": "2.0"}),
        (AUGMENTATIONS, "acme_identity",
         AugmentationSet("acme_identity", 1, lambda images, targets, seed: (images, targets)), {}),
        (LABELS, "acme-soft", LabelTreatment(
            "acme-soft", lambda data, train, seed: (train, data.dist[train])), {}),
        (SPLITS, "acme-half", SplitKind("acme-half", lambda data, seed, fraction: (
            np.arange(0, len(data), 2), np.arange(1, len(data), 4), np.arange(3, len(data), 4))),
         {"distribution": "acme-splits", "version": "0.3"}),
        (ALIGNERS, "acme-align", replace(ALIGNERS.get("dlib-hog"), upsample=2), {}),
    ]
    for registry, name, obj, release in registered:
        registry.register(name, obj, **release)
    yield
    for registry, name, _, _ in registered:
        registry.unregister(name)


def test_every_plugin_axis_enters_the_identity(acme_plugins, tiny_clean):
    spec = tiny_spec("tiny_release_probe")
    config = resolve_config(spec, loss="acme_l1", augmentation="acme_identity")
    cell = resolve_cell(spec, variant="acme-soft", split="acme-half", seed=0, config=config,
                        dataset_fingerprint=tiny_clean.fingerprint, device="cpu",
                        alignment="acme-align-0123abcd")
    assert dict(cell.plugin_releases) == {
        "loss": "acme-losses==2.0", "augmentation": "in-process", "variant": "in-process",
        "split": "acme-splits==0.3", "alignment": "in-process"}
    # Through JSON and a record, as the store keeps it: the same identity and digest.
    again = Cell.from_dict(json.loads(json.dumps(cell.to_dict(), sort_keys=True)))
    assert again == cell and again.digest() == cell.digest()
    record = CellRecord(cell=cell)
    assert CellRecord.from_dict(json.loads(json.dumps(record.to_dict()))).cell == cell
    # A mapping in any order is the same identity; another release is another one.
    assert Cell(**{**cell.__dict__, "plugin_releases": dict(reversed(cell.plugin_releases))}) == cell
    bumped = cell.with_axes(plugin_releases={**dict(cell.plugin_releases), "split": "acme-splits==0.4"})
    assert bumped.digest() != cell.digest()


def test_unknown_plugin_name_is_one_clear_error(tiny_clean):
    spec = tiny_spec("tiny_release_probe")
    with pytest.raises(ConfigError, match=r"unknown split 'ordinry'; did you mean: ordinary"):
        resolve_cell(spec, variant="nhot-3", split="ordinry", seed=0, config=resolve_config(spec),
                     dataset_fingerprint=tiny_clean.fingerprint, device=torch.device("cpu"))

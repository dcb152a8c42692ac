"""The atomic result store (fer_bench.store) and get_or_run_cell's use of it."""

from __future__ import annotations

import json

import pytest
from torch import nn

from fer_bench.config import TrainConfig
from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.record import CellRecord
from fer_bench.registry import ModelSpec
from fer_bench.store import ResultStore, default_root
from fer_bench.tasks import Task
from fer_bench.training import runner
from fer_bench.training.runner import get_or_run_cell, resolve_config


def _record(**changes) -> CellRecord:
    values = dict(model="vgg16", nhot=3, split="complex", seed=0, epochs=2, acc_honest=0.5,
                  acc_optimistic=0.6, val_acc=[0.4, 0.5], test_acc=[0.6, 0.5],
                  per_class_acc={"neutral": 0.7, "contempt": None}, config=TrainConfig().to_dict(),
                  test_predictions="AAEC", dataset_fingerprint="f" * 16)
    values.update(changes)
    return CellRecord(**values)


def test_key_layout_and_sanitised_model_name(tmp_path):
    store = ResultStore(tmp_path)
    config = TrainConfig(epochs=2)
    key = store.key("small_cnn", 3, "complex", 0, config, "0123456789abcdef")
    assert key == f"small_cnn/small_cnn-n3-complex-s0-{config.digest()}-0123456789ab.json"
    odd = store.key("acme/vit b:1", 1, "ordinary", 2, config, "ab")
    assert odd.startswith("acme_vit_b_1/acme_vit_b_1-n1-ordinary-s2-")
    assert store.key("m", 1, "ordinary", 0, TrainConfig(epochs=3), "ab") != store.key(
        "m", 1, "ordinary", 0, config, "ab")


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_RESULTS", str(tmp_path / "elsewhere"))
    assert ResultStore().root == tmp_path / "elsewhere" == default_root()
    monkeypatch.delenv("FER_BENCH_RESULTS")
    assert str(ResultStore().root) == "results"


def test_put_get_roundtrip_and_overwrite(tmp_path):
    store = ResultStore(tmp_path / "store")
    key = store.key("vgg16", 3, "complex", 0, TrainConfig(), "f" * 16)
    assert store.get(key) is None
    record = _record()
    path = store.put(key, record)
    assert path == store.path(key) and path.is_file()
    assert store.get(key) == record
    newer = _record(acc_honest=0.55)
    store.put(key, newer)
    assert store.get(key) == newer
    assert [p.name for p in path.parent.iterdir()] == [path.name]     # no temp files left
    assert store.records() == [newer]


@pytest.mark.parametrize("content", [
    '{"model": "vgg16", "nhot": 3, "spl',            # half-written
    "",                                               # empty
    '{"schema_version": 0, "model": "x"}',            # other schema
    '["not", "a", "record"]',
])
def test_unreadable_file_warns_moves_aside_and_reads_as_missing(tmp_path, content):
    store = ResultStore(tmp_path)
    key = store.key("vgg16", 3, "complex", 0, TrainConfig(), "f" * 16)
    store.path(key).parent.mkdir(parents=True)
    store.path(key).write_text(content)
    with pytest.warns(UserWarning, match=r"vgg16-n3-complex-s0.*unreadable"):
        assert store.get(key) is None
    assert not store.path(key).exists()
    aside = store.path(key).with_name(store.path(key).name + ".corrupt")
    assert aside.read_text() == content                                  # nothing is deleted
    assert store.get(key) is None                                        # now simply missing


# ---- get_or_run_cell -------------------------------------------------------------------

class CountingNet(nn.Module):
    built = 0

    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        CountingNet.built += 1
        self.head = nn.Linear(in_chans * 12 * 12, num_classes)

    def forward(self, x):
        return self.head(nn.functional.avg_pool2d(x, 4).flatten(1))


class BrokenNet(CountingNet):
    def forward(self, x):
        raise RuntimeError("broken on purpose")


@pytest.fixture(scope="module")
def synthetic_clean():
    return clean(make_synthetic(900, seed=0))


def test_second_call_comes_from_store_without_building_data(tmp_path, synthetic_clean, monkeypatch):
    store = ResultStore(tmp_path)
    spec = ModelSpec(name="counter", factory=CountingNet, batch_size=32)
    config = resolve_config(spec, epochs=1)
    task = Task(2, "ordinary", 0)
    CountingNet.built = 0
    first, from_store = get_or_run_cell(store, spec, synthetic_clean, task, config, device="cpu")
    assert (first.status, from_store, CountingNet.built) == ("ok", False, 1)
    assert store.get(store.key("counter", 2, "ordinary", 0, config, synthetic_clean.fingerprint)) == first

    def no_data(*args, **kwargs):
        raise AssertionError("task data must not be built for a stored cell")

    with monkeypatch.context() as patch:
        patch.setattr(runner, "build_task_data", no_data)
        again, from_store = get_or_run_cell(store, spec, synthetic_clean, task, config)
    assert from_store and again == first and CountingNet.built == 1

    rerun, from_store = get_or_run_cell(store, spec, synthetic_clean, task, config, rerun=True)
    assert not from_store and CountingNet.built == 2
    assert rerun.test_predictions == first.test_predictions              # same cell, same device

    # a corrupt file is set aside and the cell retrained
    path = store.path(store.key("counter", 2, "ordinary", 0, config, synthetic_clean.fingerprint))
    path.write_text(path.read_text()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        healed, from_store = get_or_run_cell(store, spec, synthetic_clean, task, config)
    assert not from_store and healed.status == "ok" and CountingNet.built == 3
    assert json.loads(path.read_text())["status"] == "ok"


def test_failed_cells_are_stored_but_retried(tmp_path, synthetic_clean):
    store = ResultStore(tmp_path)
    spec = ModelSpec(name="broken", factory=BrokenNet, batch_size=32)
    config = resolve_config(spec, epochs=1)
    task = Task(1, "complex", 0)
    CountingNet.built = 0
    record, from_store = get_or_run_cell(store, spec, synthetic_clean, task, config)
    assert record.status == "failed" and "broken on purpose" in record.error and not from_store
    key = store.key("broken", 1, "complex", 0, config, synthetic_clean.fingerprint)
    assert store.get(key).status == "failed"
    again, from_store = get_or_run_cell(store, spec, synthetic_clean, task, config)
    assert not from_store and CountingNet.built == 2 and again.status == "failed"

"""The result store (fer_bench.results.store): identity-keyed files, integrity checks, atomic
writes, and get_or_run_cell's use of it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fer_bench.data.clean import clean, subset
from fer_bench.data.synthetic import make_synthetic
from fer_bench.identity.cell import PROTOCOL_VERSION, Cell
from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import CellRecord
from fer_bench.models import ModelSpec
from fer_bench.results import run as results_run
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore, default_root
from fer_bench.training.resolve import resolve_config
from tests.helpers.cells import BuildCountingNet, make_cell

CELL = Cell(model="vgg16", variant="nhot-3", split="complex", seed=0,
            recipe=TrainConfig(epochs=2), model_release="fer-baselines==0.1.0",
            dataset="f" * 16, device_type="cpu", precision="fp32")


def _record(cell: Cell = CELL, **changes) -> CellRecord:
    values = dict(cell=cell, acc_honest=0.5, acc_optimistic=0.6, val_acc=[0.4, 0.5],
                  test_acc=[0.6, 0.5], per_class_acc={"neutral": 0.7, "contempt": None},
                  test_predictions="AAEC", dataset_fingerprint=cell.dataset)
    values.update(changes)
    return CellRecord(**values)


def test_file_name_is_readable_id_plus_identity_hash(tmp_path):
    store = ResultStore(tmp_path)
    assert store.key(CELL) == f"vgg16/vgg16-n3-complex-s0-{CELL.digest()}.json"
    pld = CELL.with_axes(loss="pld", augmentation="flip_rot20")
    assert pld.id == "vgg16-n3-complex-s0-loss=pld-aug=flip_rot20"
    assert store.key(pld).startswith("vgg16/vgg16-n3-complex-s0-loss=pld-aug=flip_rot20-")
    # every identity field changes the file: no two cells share one
    variants = [CELL, CELL.with_axes(epochs=3), CELL.with_axes(protocol=PROTOCOL_VERSION + 1),
                CELL.with_axes(model_release="fer-baselines==0.2.0"),
                CELL.with_axes(device_type="cuda", precision="bf16"),
                CELL.with_axes(dataset="e" * 16), CELL.with_axes(seed=1), CELL.with_axes(init="imagenet")]
    assert len({store.key(c) for c in variants}) == len(variants)


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "a/b", "con", "CON.txt", "ü nicode/..",
                                  "..", ".", "", "x" * 300, "a\\b", "nul"])
def test_any_model_name_stays_inside_the_store(tmp_path, name):
    store = ResultStore(tmp_path / "store")
    cell = CELL.with_axes(model=name)
    path = store.put(_record(cell))
    assert path.resolve().is_relative_to((tmp_path / "store").resolve())
    assert path.parent.parent.resolve() == (tmp_path / "store").resolve()
    assert path.parent.name.split(".")[0].lower() not in {"con", "nul", ""}
    assert store.get(cell) == _record(cell)


def test_names_that_sanitise_alike_never_share_a_file(tmp_path):
    store = ResultStore(tmp_path)
    pairs = [("vgg16_", "vgg16"), ("my model", "my_model"), ("a/b", "a_b")]
    for first, second in pairs:
        one, two = CELL.with_axes(model=first), CELL.with_axes(model=second)
        assert store.path(one) != store.path(two)
        store.put(_record(one, acc_honest=0.1))
        store.put(_record(two, acc_honest=0.2))
        assert store.get(one).acc_honest == 0.1 and store.get(two).acc_honest == 0.2


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_RESULTS", str(tmp_path / "elsewhere"))
    assert ResultStore().root == tmp_path / "elsewhere" == default_root()
    monkeypatch.delenv("FER_BENCH_RESULTS")
    assert str(ResultStore().root) == "results"


def test_put_get_roundtrip_and_overwrite(tmp_path):
    store = ResultStore(tmp_path / "store")
    assert store.get(CELL) is None
    record = _record()
    path = store.put(record)
    assert path == store.path(CELL) and path.is_file()
    assert store.get(CELL) == record
    newer = _record(acc_honest=0.55)
    store.put(newer)
    assert store.get(CELL) == newer
    assert [p.name for p in path.parent.iterdir()] == [path.name]     # no temp files left
    assert store.records() == [newer]


def test_a_file_holding_another_identity_is_a_miss_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    other = CELL.with_axes(epochs=5)
    store.put(_record(other))
    store.path(other).rename(store.path(CELL))          # e.g. renamed by hand
    with pytest.warns(UserWarning, match=r"differs from the requested .* \['recipe'\]"):
        assert store.get(CELL) is None
    assert store.path(CELL).exists()                   # not deleted, just not served


def test_cpu_record_is_never_served_to_a_cuda_request(tmp_path):
    store = ResultStore(tmp_path)
    store.put(_record())
    cuda = CELL.with_axes(device_type="cuda", precision="bf16")
    assert store.get(cuda) is None
    assert store.get(CELL.with_axes(device_type="cuda")) is None    # fp32 on CUDA: also another cell


@pytest.mark.parametrize("content", [
    '{"cell": {"model": "vgg16", "variant": "nhot-3", "spl',   # half-written
    "",                                                        # empty
    '["not", "a", "record"]',
    '{"schema_version": 2, "cell": {"model": "x"}}',           # broken identity
])
def test_unreadable_file_warns_moves_aside_and_reads_as_missing(tmp_path, content):
    store = ResultStore(tmp_path)
    store.path(CELL).parent.mkdir(parents=True)
    store.path(CELL).write_text(content)
    with pytest.warns(UserWarning, match=r"vgg16-n3-complex-s0.*unreadable"):
        assert store.get(CELL) is None
    assert not store.path(CELL).exists()
    aside = store.path(CELL).with_name(store.path(CELL).name + ".corrupt")
    assert aside.read_text() == content                                  # nothing is deleted
    assert store.get(CELL) is None                                       # now simply missing


def test_record_of_an_older_schema_is_a_silent_miss(tmp_path):
    store = ResultStore(tmp_path)
    store.path(CELL).parent.mkdir(parents=True)
    store.path(CELL).write_text('{"schema_version": 1, "model": "vgg16"}')
    assert store.get(CELL) is None and store.path(CELL).exists()


# ---- get_or_run_cell -------------------------------------------------------------------

class BrokenNet(BuildCountingNet):
    def forward(self, x):
        raise RuntimeError("broken on purpose")


@pytest.fixture(scope="module")
def synthetic_clean():
    return clean(make_synthetic(900, seed=0))


def test_second_call_comes_from_store_without_building_data(tmp_path, synthetic_clean, monkeypatch):
    store = ResultStore(tmp_path)
    spec = ModelSpec(name="counter", factory=BuildCountingNet, batch_size=32)
    config = resolve_config(spec, epochs=1)
    cell = make_cell(spec, synthetic_clean, nhot=2, config=config)
    BuildCountingNet.built = 0
    first, from_store = get_or_run_cell(store, spec, synthetic_clean, cell, device="cpu")
    assert (first.status, from_store, BuildCountingNet.built) == ("ok", False, 1)
    assert store.get(cell) == first

    def no_data(*args, **kwargs):
        raise AssertionError("task data must not be built for a stored cell")

    with monkeypatch.context() as patch:
        patch.setattr(results_run, "build_task_data", no_data)
        again, from_store = get_or_run_cell(store, spec, synthetic_clean, cell)
    assert from_store and again == first and BuildCountingNet.built == 1

    rerun, from_store = get_or_run_cell(store, spec, synthetic_clean, cell, rerun=True)
    assert not from_store and BuildCountingNet.built == 2
    assert rerun.test_predictions == first.test_predictions              # same cell, same device

    # a corrupt file is set aside and the cell retrained
    path = store.path(cell)
    path.write_text(path.read_text()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        healed, from_store = get_or_run_cell(store, spec, synthetic_clean, cell)
    assert not from_store and healed.status == "ok" and BuildCountingNet.built == 3
    assert json.loads(path.read_text())["status"] == "ok"


def test_failed_cells_are_stored_but_retried(tmp_path, synthetic_clean):
    store = ResultStore(tmp_path)
    spec = ModelSpec(name="broken", factory=BrokenNet, batch_size=32)
    config = resolve_config(spec, epochs=1)
    cell = make_cell(spec, synthetic_clean, nhot=1, split="complex", config=config)
    BuildCountingNet.built = 0
    record, from_store = get_or_run_cell(store, spec, synthetic_clean, cell)
    assert record.status == "failed" and "broken on purpose" in record.error and not from_store
    assert store.get(cell).status == "failed"
    again, from_store = get_or_run_cell(store, spec, synthetic_clean, cell)
    assert not from_store and BuildCountingNet.built == 2 and again.status == "failed"


def test_protocol_version_change_retrains(tmp_path, synthetic_clean, monkeypatch):
    store = ResultStore(tmp_path)
    spec = ModelSpec(name="counter", factory=BuildCountingNet, batch_size=32)
    cell = make_cell(spec, synthetic_clean, config=resolve_config(spec, epochs=1))
    BuildCountingNet.built = 0
    get_or_run_cell(store, spec, synthetic_clean, cell)
    assert get_or_run_cell(store, spec, synthetic_clean, cell)[1] is True
    bumped = replace(cell, protocol=cell.protocol + 1)      # what a bumped PROTOCOL_VERSION builds
    record, from_store = get_or_run_cell(store, spec, synthetic_clean, bumped)
    assert not from_store and BuildCountingNet.built == 2 and record.cell.protocol == cell.protocol + 1


def test_model_names_that_sanitise_alike_both_train(tmp_path, synthetic_clean):
    store = ResultStore(tmp_path)
    BuildCountingNet.built = 0
    for name in ("vgg16_", "vgg16"):
        spec = ModelSpec(name=name, factory=BuildCountingNet, batch_size=32)
        cell = make_cell(spec, synthetic_clean, config=resolve_config(spec, epochs=1))
        record, from_store = get_or_run_cell(store, spec, synthetic_clean, cell)
        assert not from_store and record.model == name
    assert BuildCountingNet.built == 2 and len(store.records()) == 2


def test_subset_and_full_data_are_different_cells(tmp_path, synthetic_clean):
    store = ResultStore(tmp_path)
    spec = ModelSpec(name="counter", factory=BuildCountingNet, batch_size=32)
    config = resolve_config(spec, epochs=1)
    small = subset(synthetic_clean, 600, seed=0)
    full_cell = make_cell(spec, synthetic_clean, config=config)
    small_cell = make_cell(spec, small, config=config)
    assert full_cell.dataset != small_cell.dataset and full_cell.id == small_cell.id
    get_or_run_cell(store, spec, synthetic_clean, full_cell)
    record, from_store = get_or_run_cell(store, spec, small, small_cell)
    assert not from_store and record.n_test < store.get(full_cell).n_test
    with pytest.raises(ValueError, match="names dataset"):
        get_or_run_cell(store, spec, small, full_cell)

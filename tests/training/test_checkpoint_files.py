"""Checkpoints that must not be trusted, and the checkpoint's life in the store.

A truncated, corrupt or foreign checkpoint (another cell, PROTOCOL_VERSION or format
version, unpicklable bytes, tensors that do not fit the model) is reported in one warning
line, removed, and the cell runs from epoch 1 to the uninterrupted record.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.identity.cell import PROTOCOL_VERSION
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore
from fer_bench.training import checkpoint, checkpoint_file
from fer_bench.training.checkpoint_file import read_info, verified_payload, write_checkpoint
from fer_bench.training.resolve import resolve_config
from tests.helpers.cells import make_cell, tiny_spec

EPOCHS = 3
MEASURED = {"epoch_times_s", "setup_s", "flops_s", "eval_s", "store_s", "wall_s",
            "compile_seconds", "train_images_per_s", "eval_images_per_s", "peak_memory_bytes",
            "started_at", "finished_at", "checkpoint_write_s", "checkpoint_bytes",
            "resumed_from_epoch"}
LOGGER = "fer_bench.training.checkpoint"


class Evil:
    """Not an allowed global of ``torch.load(weights_only=True)``."""


@pytest.fixture(scope="module")
def setting():
    data = clean(make_synthetic(600, seed=2))
    spec = tiny_spec("ckpt_tiny")
    config = resolve_config(spec, epochs=EPOCHS, ema=0.5, schedule="cosine", warmup=0.2)
    return spec, data, make_cell(spec, data, config=config), make_cell(spec, data, config=config, seed=1)


def comparable(record) -> dict:
    return {k: v for k, v in record.to_dict().items() if k not in MEASURED}


def interrupted(store: ResultStore, setting, cell=None, after_epoch: int = 2) -> Path:
    """Run the cell until ``after_epoch``'s checkpoint is written, then stop (Ctrl-C)."""
    spec, data, own, _ = setting

    def stop(report):
        if report.epoch == after_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_or_run_cell(store, spec, data, cell or own, device="cpu", on_epoch=stop)
    path = store.checkpoint_path(cell or own)
    assert read_info(path).epoch == after_epoch
    return path


@pytest.fixture(scope="module")
def baseline(setting, tmp_path_factory):
    spec, data, cell, _ = setting
    record, from_store = get_or_run_cell(ResultStore(tmp_path_factory.mktemp("base"), checkpoints=False),
                                         spec, data, cell, device="cpu")
    assert not from_store and record.status == "ok" and record.checkpoint_bytes is None
    return record


@pytest.fixture(scope="module")
def good(setting, tmp_path_factory) -> bytes:
    """The bytes of the cell's checkpoint after epoch 2."""
    return interrupted(ResultStore(tmp_path_factory.mktemp("good")), setting).read_bytes()


def run_with(store: ResultStore, setting, caplog):
    """Run the cell on ``store``; (record, warning lines of the checkpoint module)."""
    spec, data, cell, _ = setting
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        record, from_store = get_or_run_cell(store, spec, data, cell, device="cpu")
    assert not from_store
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert not store.checkpoint_path(cell).exists() and store.checkpoints() == []
    return record, warnings


def test_checkpoints_change_nothing_in_the_record(setting, baseline, tmp_path):
    """With checkpoints (after every epoch) the record equals the run without them, plus
    the checkpoint's size and write time; the checkpoint is gone once the record is stored."""
    spec, data, cell, _ = setting
    record, _ = get_or_run_cell(ResultStore(tmp_path), spec, data, cell, device="cpu")
    assert comparable(record) == comparable(baseline)
    assert record.checkpoint_bytes > 10_000 and record.checkpoint_write_s > 0
    assert record.resumed_from_epoch is None
    assert sorted(p.suffix for p in tmp_path.rglob("*") if p.is_file()) == [".json"]


def test_good_checkpoint_resumes(setting, baseline, good, tmp_path, caplog):
    """The control of the tests below: the same bytes unmangled are resumed from."""
    store = ResultStore(tmp_path)
    store.checkpoint_path(setting[2]).parent.mkdir(parents=True)
    store.checkpoint_path(setting[2]).write_bytes(good)
    assert [(i.cell_id, i.epoch, i.epochs) for i in store.checkpoints()] == [(setting[2].id, 2, EPOCHS)]
    record, warnings = run_with(store, setting, caplog)
    assert warnings == [] and record.resumed_from_epoch == 2
    assert comparable(record) == comparable(baseline)
    assert any("resumes after epoch 2 of 3" in r.getMessage() for r in caplog.records)


def _cut_payload(blob: bytes) -> bytes:
    """Half the payload gone, the trailer kept."""
    info_len = int.from_bytes(blob[-16:-8], "big") + 16
    payload, tail = blob[:-info_len], blob[-info_len:]
    return payload[:len(payload) // 2] + tail


def _flip(blob: bytes) -> bytes:
    middle = len(blob) // 3
    return blob[:middle] + bytes([blob[middle] ^ 0x01]) + blob[middle + 1:]


@pytest.mark.parametrize("name, mangle, reason", [
    ("truncated", lambda b: b[:len(b) // 2], "truncated or not a fer_bench checkpoint"),
    ("end marker cut", lambda b: b[:-3], "no end marker"),
    ("payload cut", _cut_payload, "truncated: "),
    ("one bit flipped", _flip, "corrupt: the payload's sha256 differs"),
    ("random bytes", lambda b: os.urandom(len(b)), "not a fer_bench checkpoint"),
    ("empty", lambda b: b"", "truncated (0 bytes)"),
])
def test_damaged_checkpoint_is_not_trusted(setting, baseline, good, tmp_path, caplog, name, mangle, reason):
    store = ResultStore(tmp_path)
    path = store.checkpoint_path(setting[2])
    path.parent.mkdir(parents=True)
    path.write_bytes(mangle(good))
    record, warnings = run_with(store, setting, caplog)
    assert len(warnings) == 1 and reason in warnings[0], warnings
    assert str(path) in warnings[0] and warnings[0].endswith("the cell restarts from epoch 1")
    assert record.resumed_from_epoch is None and comparable(record) == comparable(baseline)


def _foreign_cell(setting, tmp_path, monkeypatch) -> Path:
    store = ResultStore(tmp_path / "other")
    return interrupted(store, setting, cell=setting[3])


def _foreign_protocol(setting, tmp_path, monkeypatch) -> Path:
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "PROTOCOL_VERSION", PROTOCOL_VERSION + 1)
        return interrupted(ResultStore(tmp_path / "other"), setting)


def _foreign_format(setting, tmp_path, monkeypatch) -> Path:
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_file, "FORMAT_VERSION", checkpoint_file.FORMAT_VERSION + 98)
        return interrupted(ResultStore(tmp_path / "other"), setting)


def _rewritten(setting, tmp_path, change) -> Path:
    """The good checkpoint's payload changed by ``change(payload)``, framed anew (valid sha)."""
    path = interrupted(ResultStore(tmp_path / "other"), setting)
    info = read_info(path)
    with verified_payload(info) as handle:
        payload = torch.load(handle, weights_only=True)
    payload = change(payload)
    meta = {"cell_id": info.cell_id, "cell_digest": info.cell_digest, "protocol": info.protocol,
            "epoch": info.epoch, "epochs": info.epochs}
    write_checkpoint(path, lambda sink: torch.save(payload, sink), meta)
    return path


def _unpicklable(setting, tmp_path, monkeypatch) -> Path:
    return _rewritten(setting, tmp_path, lambda payload: {**payload, "evil": Evil()})


def _misfit(setting, tmp_path, monkeypatch) -> Path:
    def change(payload):
        payload["model"]["head.weight"] = torch.zeros(3, 3)
        return payload
    return _rewritten(setting, tmp_path, change)


def _disagreeing(setting, tmp_path, monkeypatch) -> Path:
    return _rewritten(setting, tmp_path, lambda payload: {**payload, "epoch": 1})


@pytest.mark.parametrize("make, reason", [
    (_foreign_cell, "belongs to another cell (ckpt_tiny-n3-ordinary-s1"),
    (_foreign_protocol, f"written under PROTOCOL_VERSION {PROTOCOL_VERSION + 1}, now {PROTOCOL_VERSION}"),
    (_foreign_format, "format version 99, this fer_bench reads 1"),
    (_unpicklable, "unreadable payload (UnpicklingError"),
    (_misfit, "its model state tensor 'head.weight' differs in shape or type"),
    (_disagreeing, "its payload disagrees with its trailer"),
], ids=["other cell", "other protocol", "other format", "unpicklable", "misfit", "disagreeing"])
def test_foreign_checkpoint_is_not_trusted(setting, baseline, tmp_path, monkeypatch, caplog, make, reason):
    foreign = make(setting, tmp_path, monkeypatch).read_bytes()
    store = ResultStore(tmp_path / "store")
    path = store.checkpoint_path(setting[2])
    path.parent.mkdir(parents=True)
    path.write_bytes(foreign)
    record, warnings = run_with(store, setting, caplog)
    assert len(warnings) == 1 and reason in warnings[0], warnings
    assert record.resumed_from_epoch is None and comparable(record) == comparable(baseline)


def test_rerun_discards_the_checkpoint(setting, baseline, good, tmp_path, caplog):
    store = ResultStore(tmp_path)
    path = store.checkpoint_path(setting[2])
    path.parent.mkdir(parents=True)
    path.write_bytes(good)
    (path.parent / f".{path.name}.x1y2.tmp").write_bytes(b"half a write")   # a killed write
    spec, data, cell, _ = setting
    record, _ = get_or_run_cell(store, spec, data, cell, device="cpu", rerun=True)
    assert record.resumed_from_epoch is None and comparable(record) == comparable(baseline)
    assert sorted(p.suffix for p in tmp_path.rglob("*") if p.is_file()) == [".json"]


def test_checkpoints_can_be_switched_off(setting, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BENCH_CHECKPOINTS", "0")
    store = ResultStore(tmp_path)
    assert not store.checkpoints_enabled
    interrupted_at = []

    def stop(report):
        interrupted_at.append(report.epoch)
        assert not any(tmp_path.rglob("*.ckpt"))
        if report.epoch == 2:
            raise KeyboardInterrupt

    spec, data, cell, _ = setting
    with pytest.raises(KeyboardInterrupt):
        get_or_run_cell(store, spec, data, cell, device="cpu", on_epoch=stop)
    assert interrupted_at == [1, 2] and store.checkpoints() == []

"""Record statuses are typed (``identity.record.Status``) and records on disk stay as they
were: the status is stored as its text, old records load, today's re-serialise byte for
byte. ``fer_bench.strenum.StrEnum`` behaves the same on Python 3.10 and 3.11+."""

from __future__ import annotations

import enum
import importlib.util
import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from fer_bench import strenum
from fer_bench.identity.cell import Cell
from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import CellRecord, Status
from fer_bench.planning.profiles import ProfileName

CELLS = Path(__file__).resolve().parents[2] / "leaderboard" / "cells"
COMMITTED = sorted(CELLS.glob("*/*.json"))


def store_text(record: CellRecord) -> str:
    """What ``ResultStore.put`` writes for ``record``."""
    return json.dumps(record.to_dict(), indent=1, sort_keys=True, allow_nan=True)


@pytest.mark.skipif(not COMMITTED, reason="no committed cells under leaderboard/cells/")
def test_committed_records_load_typed_and_today_s_re_serialise_byte_for_byte():
    """Every committed record loads with a typed status and writes back every stored value
    unchanged; one written with all of today's fields comes back byte for byte (a field
    added later, e.g. ``majority_acc``, only adds its default to older records)."""
    today = {f.name for f in fields(CellRecord)}
    for path in COMMITTED:
        text = path.read_text(encoding="utf-8")
        stored = json.loads(text)
        record = CellRecord.from_dict(stored)
        assert isinstance(record.status, Status) and record.status == stored["status"]
        written = json.loads(store_text(record))
        assert {key: written[key] for key in stored} == stored, path.name
        assert set(written) == today
        if set(stored) == today:   # written with every field of today's schema
            assert store_text(record) == text, path.name


def test_to_dict_holds_plain_text_and_the_status_comes_back_typed():
    cell = Cell(model="m", variant="nhot-3", split="complex", seed=0, recipe=TrainConfig(epochs=2),
                model_release="in-process", dataset="f" * 16, device_type="cpu", precision="fp32")
    record = CellRecord(cell=cell, status="failed", error="boom", profile=ProfileName.SMOKE)
    assert record.status is Status.FAILED
    data = record.to_dict()
    assert type(data["status"]) is str and type(data["profile"]) is str   # xdist sends only plain str
    assert '"status": "failed"' in store_text(record) and '"profile": "smoke"' in store_text(record)
    back = CellRecord.from_dict(json.loads(store_text(record)))
    assert back == record and back.status is Status.FAILED
    assert f"{Status.OK}" == str(Status.OK) == "ok" and Status("ok") is Status.OK


def test_an_unknown_status_is_one_clear_error():
    with pytest.raises(ValueError, match=r"record status 'skipped' is not one of ok, failed"):
        CellRecord(cell=None, status="skipped")


def test_the_python_3_10_strenum_behaves_as_3_11s(monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 10, 14, "final", 0))
    spec = importlib.util.spec_from_file_location("strenum_on_310", strenum.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.StrEnum is not getattr(enum, "StrEnum", None)   # the 3.10 branch ran

    class Colour(module.StrEnum):
        RED = "red"

    assert isinstance(Colour.RED, str) and Colour.RED == "red" and Colour("red") is Colour.RED
    assert str(Colour.RED) == f"{Colour.RED}" == f"{Colour.RED:>4}".strip() == "red"
    assert json.dumps([Colour.RED]) == '["red"]' and {"red": 1}[Colour.RED] == 1

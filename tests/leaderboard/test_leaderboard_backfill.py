"""benchmarks/backfill_records.py: records of older runs get their training-target fingerprint
and honest top-1 accuracy recomputed from the data, exactly as the runner computes them,
with nothing else of the record changed (issue 22 part 2). Built on a temporary store of
tiny cells trained on the synthetic set's ``smoke`` subset (the profile's fixed subset)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.data.cache import load_dataset
from fer_bench.data.clean import clean, subset
from fer_bench.identity.record import encode_uint8
from fer_bench.planning.profiles import PROFILES
from fer_bench.results.store import ResultStore
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from tests.helpers.cells import make_cell, task_for, tiny_spec

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "backfill_records.py"
FILLED = ("train_targets_sha256", "acc_top1_honest")


def _script():
    spec = importlib.util.spec_from_file_location("backfill_records", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(store root, {file name: record as trained}) for tiny 1-epoch cells on the smoke
    subset of the synthetic set: 1-, 7- and 8-hot ordinary seed 0, 8-hot complex seed 1."""
    smoke = PROFILES["smoke"]
    data = subset(clean(load_dataset("synthetic")), smoke.subset, seed=smoke.subset_seed)
    model = tiny_spec()
    config = resolve_config(model, epochs=1)
    root = tmp_path_factory.mktemp("store")
    store = ResultStore(root)
    originals = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for nhot, split, seed in ((1, "ordinary", 0), (7, "ordinary", 0), (8, "ordinary", 0),
                                  (8, "complex", 1)):
            task = task_for(model, data, nhot=nhot, split=split, seed=seed, config=config)
            record = run_cell(model, task)
            assert record.status == "ok" and record.train_targets_sha256 and record.acc_top1_honest is not None
            originals[store.path(record.cell).name] = record
            record.experiment = "nhot"
    finally:
        torch.set_num_threads(threads)
    return root, originals, data, model, config


def _write_old(trained, tmp_path):
    """A copy of the trained store as an older run wrote it: the two fields empty."""
    _, originals, *_ = trained
    store = ResultStore(tmp_path / "cells")
    for record in originals.values():
        payload = record.to_dict()
        payload.update(train_targets_sha256="", acc_top1_honest=None)
        path = store.path(record.cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1, sort_keys=True))
    return store


def _payloads(store):
    return {p.name: json.loads(p.read_text()) for p in sorted(store.root.glob("*/*.json"))}


def test_backfill_recomputes_both_fields_and_changes_nothing_else(trained, tmp_path, capsys):
    _, originals, *_ = trained
    store = _write_old(trained, tmp_path)
    before = _payloads(store)
    assert _script().main([str(store.root), "--data", "synthetic"]) == 0
    after = _payloads(store)
    assert set(after) == set(before) == set(originals)
    for name, payload in after.items():
        original = originals[name]
        assert payload["train_targets_sha256"] == original.train_targets_sha256   # as the runner
        assert payload["acc_top1_honest"] == original.acc_top1_honest
        assert {k: v for k, v in payload.items() if k not in FILLED} == \
               {k: v for k, v in before[name].items() if k not in FILLED}
        assert store.get(original.cell) is not None          # the same identity, still served
    out = capsys.readouterr().out
    assert "4 filled" in out
    # 1-hot trains on other targets than 8-hot; the same split, so only the targets differ
    by_id = {originals[n].cell_id: after[n]["train_targets_sha256"] for n in after}
    assert by_id["tiny-n1-ordinary-s0"] != by_id["tiny-n8-ordinary-s0"]
    # a second run finds nothing to fill and leaves the bytes as they are
    text = {p: p.read_text() for p in store.root.glob("*/*.json")}
    assert _script().main([str(store.root), "--data", "synthetic"]) == 0
    assert {p: p.read_text() for p in store.root.glob("*/*.json")} == text
    assert "4 complete" in capsys.readouterr().out


def test_a_value_already_there_is_kept_and_dry_run_writes_nothing(trained, tmp_path, capsys):
    store = _write_old(trained, tmp_path)
    path = sorted(store.root.glob("*/*.json"))[0]
    payload = json.loads(path.read_text())
    payload["train_targets_sha256"] = "kept-as-it-is"
    path.write_text(json.dumps(payload, indent=1, sort_keys=True))
    text = {p: p.read_text() for p in store.root.glob("*/*.json")}
    assert _script().main([str(store.root), "--data", "synthetic", "--dry-run"]) == 0
    assert {p: p.read_text() for p in store.root.glob("*/*.json")} == text
    assert "would fill" in capsys.readouterr().out
    assert _script().main([str(store.root), "--data", "synthetic"]) == 0
    filled = json.loads(path.read_text())
    assert filled["train_targets_sha256"] == "kept-as-it-is" and filled["acc_top1_honest"] is not None


def test_records_that_do_not_match_the_data_are_left_untouched(trained, tmp_path, capsys):
    _, originals, *_ = trained
    store = _write_old(trained, tmp_path)
    paths = sorted(store.root.glob("*/*.json"))
    tampered = json.loads(paths[0].read_text())          # predictions of another cell
    predictions = np.frombuffer(__import__("base64").b64decode(tampered["test_predictions"]), np.uint8)
    tampered["test_predictions"] = encode_uint8((predictions + 1) % 8)
    paths[0].write_text(json.dumps(tampered, indent=1, sort_keys=True))
    other = json.loads(paths[1].read_text())             # a dataset this data is not
    other["cell"]["dataset"] = "0123456789abcdef"
    paths[1].write_text(json.dumps(other, indent=1, sort_keys=True))
    untouched = {p: p.read_text() for p in paths[:2]}
    assert _script().main([str(store.root), "--data", "synthetic"]) == 1
    assert {p: p.read_text() for p in paths[:2]} == untouched
    out = capsys.readouterr().out
    assert "do not reproduce its tie-aware correctness" in out
    assert "names dataset 0123456789abcdef, which is neither the data given" in out
    assert "2 filled" in out and "2 mismatch" in out


def test_the_fingerprint_tells_identical_training_data(trained):
    """7-hot equals 8-hot exactly when no training image has votes on all 8 emotions."""
    _, originals, data, model, config = trained
    cells = {r.cell_id: r for r in originals.values()}
    task = task_for(model, data, nhot=8, split="ordinary", seed=0, config=config)
    eight_wide = int((task.train_targets > 0).sum(dim=1).max())
    same = cells["tiny-n7-ordinary-s0"].train_targets_sha256 == cells["tiny-n8-ordinary-s0"].train_targets_sha256
    assert same == (eight_wide < 8)
    assert make_cell(model, data, nhot=8, seed=0, config=config) == cells["tiny-n8-ordinary-s0"].cell

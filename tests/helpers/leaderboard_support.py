"""Builders shared by the leaderboard tests (no tests here).

* ``golden_document()``: ``tests/fixtures/leaderboard_golden.json`` (written at record schema 1:
  model / nhot / split / seed / config / config_hash) rewritten to schema 2: each record's
  identity becomes a ``Cell`` (recipe = its config, dataset = its dataset fingerprint, CPU
  fp32) reported for experiment "nhot"; every measured number is kept, so the golden
  numbers of the tests stay what they were.
* ``make_record``: a ``CellRecord`` built from ``Cell(...)`` with only what a test needs.
* ``document_of``: a pytest-benchmark document holding records, as the plugin writes it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.identity.cell import Cell
from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import SCHEMA_VERSION, CellRecord, encode_bool, encode_uint8

GOLDEN_V1 = Path(__file__).resolve().parents[1] / "fixtures" / "leaderboard_golden.json"
GOLDEN_NAME = "leaderboard_golden.json"
NHOT_TITLE = "N-hot vs 1-hot (report 4.4, 4.5)"
_V1_ONLY = ("model", "nhot", "split", "seed", "epochs", "config", "config_hash")


def upgrade_record(old: dict[str, Any], experiment: str = "nhot") -> dict[str, Any]:
    """A schema-1 record dict -> the schema-2 dict of the same measurement."""
    config = old["config"]
    cell = Cell(model=old["model"], variant=f"nhot-{old['nhot']}", split=old["split"],
                seed=old["seed"], recipe=TrainConfig(**config), model_release="fer-baselines==0.1.0",
                dataset=old["dataset_fingerprint"], device_type=old["device"], precision="fp32")
    new = {k: v for k, v in old.items() if k not in _V1_ONLY}
    new.update(cell=cell.to_dict(), experiment=experiment, schema_version=SCHEMA_VERSION)
    CellRecord.from_dict(new)    # fails loudly if the schema moved again
    return new


def golden_document() -> dict[str, Any]:
    """The golden pytest-benchmark document at record schema 2 (see the module docstring)."""
    document = json.loads(GOLDEN_V1.read_text())
    for entry in document["benchmarks"]:
        extra = entry.get("extra_info") or {}
        if "fer_bench" in extra:
            extra["fer_bench"] = upgrade_record(extra["fer_bench"])
            extra.update(experiment="nhot", timing="measured")
    document["fer_bench"]["experiments"] = {"nhot": NHOT_TITLE}
    return document


def write_golden(folder: Path) -> Path:
    """Write ``golden_document()`` as ``<folder>/leaderboard_golden.json``; return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GOLDEN_NAME
    path.write_text(json.dumps(golden_document()))
    return path


def make_record(model: str = "small_cnn", nhot: int | None = 1, seed: int = 0,
                acc: float | None = 0.8, *, split: str = "ordinary", experiment: str = "nhot",
                variant: str | None = None, recipe: TrainConfig | None = None,
                dataset: str = "synth-0a1b2c3d", dataset_label: str = "synthetic",
                device_type: str = "cpu", precision: str = "fp32",
                correct: np.ndarray | None = None, test_acc: list[float] | None = None,
                sizes: tuple[int, int, int] = (324, 36, 40), **fields: Any) -> CellRecord:
    """One ok record (``acc=None``: failed). ``correct``: per-image correctness [n_test]
    (sets n_test and test_correct); ``test_acc``: per-epoch test accuracies."""
    cell = Cell(model=model, variant=variant or f"nhot-{nhot}", split=split, seed=seed,
                recipe=recipe or TrainConfig(epochs=3), model_release="fer-baselines==0.1.0",
                dataset=dataset, device_type=device_type, precision=precision)
    n_train, n_val, n_test = sizes
    record = CellRecord(
        cell=cell, status="ok" if acc is not None else "failed",
        error=None if acc is not None else "CellFailed: loss is NaN",
        acc_honest=acc, acc_optimistic=None if acc is None else min(1.0, acc + 0.01),
        test_acc=list(test_acc) if test_acc is not None else ([] if acc is None else [acc]),
        epoch_times_s=[1.0, 1.5, 2.0], train_images_per_s=300.0, peak_memory_bytes=2**30,
        memory_kind="host_rss", params=170_000, device=device_type,
        n_train=n_train, n_val=n_val, n_test=n_test, dataset_label=dataset_label,
        dataset_fingerprint=dataset, split_fingerprint=f"{split}-s{seed}-{dataset}",
        experiment=experiment, profile="smoke")
    if correct is not None:
        correct = np.asarray(correct, dtype=bool)
        record.n_test = len(correct)
        record.test_correct = encode_bool(correct)
        record.test_predictions = encode_uint8(np.zeros(len(correct), dtype=np.uint8))
        record.acc_honest = float(correct.mean())
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def document_of(records: list[CellRecord], experiments: dict[str, str] | None = None,
                data_label: str = "synthetic") -> dict[str, Any]:
    """A pytest-benchmark JSON document of ``records`` as the fer_bench plugin writes it."""
    benchmarks = []
    for record in records:
        benchmarks.append({
            "group": f"{record.experiment}-{record.split}-{record.model}",
            "name": f"test_cell[{record.cell_id}]", "fullname": f"test_cell[{record.cell_id}]",
            "params": {}, "param": record.cell_id, "options": {},
            "stats": {"min": 1.0, "max": 2.0, "mean": 1.5, "rounds": 3},
            "extra_info": {"fer_bench": record.to_dict(), "from_store": False,
                           "cell_id": record.cell_id, "experiment": record.experiment,
                           "profile": record.profile, "timing": "measured"},
        })
    return {"machine_info": {}, "commit_info": {}, "benchmarks": benchmarks,
            "datetime": "2025-01-03T00:00:00", "version": "5.1.0",
            "fer_bench": {"profile": "smoke", "data_label": data_label,
                          "command": "pytest benchmarks/", "versions": {}, "device": "cpu",
                          "date": "2025-01-03", "experiments": dict(experiments or {})}}


def clone(record: CellRecord, **axes: Any) -> CellRecord:
    """A deep copy of ``record`` with cell / recipe axes replaced (``Cell.with_axes``)."""
    copied = copy.deepcopy(record)
    if axes:
        copied.cell = copied.cell.with_axes(**axes)
    return copied


def single_seed_mcnemar_pair() -> tuple[list[CellRecord], int]:
    """1-hot and 8-hot records of one seed on 60 test images whose per-image correctness
    differs in exactly 8 images, all in the 8-hot cell's favour (McNemar's exact test), and
    that number of discordant images."""
    rng = np.random.default_rng(5)
    base = rng.random(60) < 0.6
    better = base.copy()
    better[np.flatnonzero(~base)[:8]] = True
    return [make_record(nhot=1, seed=0, correct=base), make_record(nhot=8, seed=0, correct=better)], 8

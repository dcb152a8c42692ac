"""Fill the fields records of older runs lack, from the data: the training-target
fingerprint and the honest top-1 accuracy.

    python benchmarks/backfill_records.py STORE --data PATH [--dry-run]

``STORE`` is a result store folder (``<model>/<id>-<hash>.json``, e.g. ``leaderboard/cells``);
``--data`` the data the cells were trained on (a FERPlus folder, or ``synthetic`` for the
embedded set). For every ok record whose ``train_targets_sha256`` is "" or whose
``acc_top1_honest`` is None:

* the record's cell is rebuilt with ``fer_bench.training.tasks.build_task_data`` on the cleaned data
  whose fingerprint is the cell's ``dataset`` (the whole cleaned set, or a profile's fixed
  subset such as ``smoke``'s), and checked against the record: the same split fingerprint,
  the same number of images, and the stored per-image test predictions scoring exactly the
  stored tie-aware correctness (so the data and the predictions are the ones the cell had);
* ``train_targets_sha256`` = ``fer_bench.training.runner.train_targets_sha256`` of that task
  data (the split fingerprint and the treated training targets), as the runner computes it;
* ``acc_top1_honest`` = ``fer_bench.training.metrics.top1_accuracy`` of the stored predictions (the
  honest epoch's) against the split's test distributions. The per-epoch ``test_top1`` and
  the optimistic top-1 cannot be recovered (only the honest epoch's predictions are
  stored) and stay as they are.

Only those two fields change; the cell (identity) and every other field are kept, and the
file is replaced atomically (``fer_bench.fileio``), in the store's own JSON layout. A record
that cannot be matched (other data, an aligned cell, a failed cell) is left untouched and
reported on one line. Prints one line per record and a total; exit status 0, or 1 when a
record could not be checked against the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.data.cache import load_dataset
from fer_bench.data.clean import clean, subset
from fer_bench.data.schema import CleanDataset
from fer_bench.errors import FerBenchError
from fer_bench.fileio import atomic_write_text
from fer_bench.identity.record import SCHEMA_VERSION, CellRecord
from fer_bench.planning.cells import cleaning_of
from fer_bench.planning.profiles import PROFILES
from fer_bench.training import metrics
from fer_bench.training.runner import train_targets_sha256
from fer_bench.training.tasks import build_task_data

#: The fields this script may write; everything else of a record is kept as it was.
FILLED = ("train_targets_sha256", "acc_top1_honest")


class Mismatch(Exception):
    """The record does not match the data it names (the message says how)."""


@dataclass
class Outcome:
    """What happened to one record file: ``action`` "filled", "complete", "skipped" or
    "mismatch", and the line printed for it."""

    path: Path
    action: str
    line: str


class DataSets:
    """Cleaned data sets by fingerprint, built lazily from one source: each cleaning rule's
    whole set and every profile's fixed subset of it."""

    def __init__(self, data: str) -> None:
        self.data = data
        self._raw: Any = None
        self._by_fingerprint: dict[str, CleanDataset] = {}
        self._rules: set[str] = set()

    def get(self, fingerprint: str, rule: str) -> CleanDataset | None:
        if rule not in self._rules:
            self._rules.add(rule)
            if self._raw is None:
                self._raw = load_dataset(None if self.data == "synthetic" else self.data,
                                         format="synthetic" if self.data == "synthetic" else "auto")
            whole = clean(self._raw, rule)
            self._by_fingerprint[whole.fingerprint] = whole
            for profile in PROFILES.values():
                if profile.subset is not None and profile.subset < len(whole):
                    part = subset(whole, profile.subset, seed=profile.subset_seed)
                    self._by_fingerprint[part.fingerprint] = part
        return self._by_fingerprint.get(fingerprint)


def needs_filling(payload: dict[str, Any]) -> bool:
    """An ok record of this schema that lacks either filled field."""
    return (payload.get("schema_version") == SCHEMA_VERSION and payload.get("status") == "ok"
            and (not payload.get("train_targets_sha256") or payload.get("acc_top1_honest") is None))


def computed_fields(record: CellRecord, datasets: DataSets) -> dict[str, Any]:
    """The two fields recomputed for ``record`` from the data (see the module docstring);
    ``Mismatch`` when the data is not the cell's or the stored predictions disagree."""
    cell = record.cell
    if cell.alignment != "none":
        raise Mismatch(f"cell {cell.id} trains on aligned images (alignment {cell.alignment}); "
                       "rebuild it with its aligner")
    data = datasets.get(cell.dataset, cleaning_of(cell))
    if data is None:
        raise Mismatch(f"cell {cell.id} names dataset {cell.dataset}, which is neither the data "
                       f"given ({datasets.data}) nor a profile's subset of it")
    task = build_task_data(data, cell)
    if task.split_fingerprint != record.split_fingerprint or \
            (task.n_train, task.n_val, task.n_test) != (record.n_train, record.n_val, record.n_test):
        raise Mismatch(f"cell {cell.id}: the rebuilt split ({task.split_fingerprint}, "
                       f"{task.n_train}/{task.n_val}/{task.n_test} images) is not the record's "
                       f"({record.split_fingerprint}, {record.n_train}/{record.n_val}/{record.n_test})")
    dist = task.test_dist.cpu().numpy()
    predictions = record.predictions()
    if len(predictions) != len(dist):
        raise Mismatch(f"cell {cell.id}: {len(predictions)} stored test predictions for "
                       f"{len(dist)} test images")
    scores = np.eye(dist.shape[1], dtype=np.float32)[predictions]   # one-hot [M, 8]
    correct = metrics.tie_aware_correct(scores, dist)
    stored = record.correct() if record.test_correct else None
    if (stored is not None and not np.array_equal(correct, stored)) or \
            abs(float(correct.mean()) - float(record.acc_honest)) > 1e-9:
        raise Mismatch(f"cell {cell.id}: the stored test predictions do not reproduce its "
                       f"tie-aware correctness / honest accuracy {record.acc_honest} on this data")
    return {"train_targets_sha256": train_targets_sha256(task),
            "acc_top1_honest": metrics.top1_accuracy(scores, dist)}


def backfill_file(path: Path, datasets: DataSets, dry_run: bool = False) -> Outcome:
    """Fill one record file in place (atomically) where it lacks a field."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Outcome(path, "skipped", f"{path}: unreadable ({exc}); left as it is")
    if not isinstance(payload, dict) or not needs_filling(payload):
        return Outcome(path, "complete", f"{path}: nothing to fill")
    try:
        record = CellRecord.from_dict(payload)
        values = computed_fields(record, datasets)
    except Mismatch as exc:
        return Outcome(path, "mismatch", f"{path}: {exc}; left as it is")
    except (FerBenchError, ValueError, TypeError) as exc:
        return Outcome(path, "skipped", f"{path}: {exc}; left as it is")
    updated = dict(payload)
    for name in FILLED:   # only what is missing; a value already there is never replaced
        if payload.get(name) in (None, ""):
            updated[name] = values[name]
    changed = sorted(k for k in updated if updated[k] != payload.get(k))
    if set(changed) - set(FILLED) or CellRecord.from_dict(updated).cell != record.cell:
        raise AssertionError(f"{path}: backfill would change {changed}")   # never: a bug
    if not dry_run:
        atomic_write_text(path, json.dumps(updated, indent=1, sort_keys=True, allow_nan=True))
    shown = ", ".join(f"{k}={updated[k]!r}" if k != "train_targets_sha256" else f"{k}={updated[k][:16]}…"
                      for k in changed)
    return Outcome(path, "filled", f"{path}: {'would fill' if dry_run else 'filled'} {shown}")


def record_files(store: Path) -> Iterator[Path]:
    """The store's record files, ``<model folder>/*.json``, in name order."""
    yield from sorted(store.glob("*/*.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="result store folder (e.g. leaderboard/cells)")
    parser.add_argument("--data", required=True,
                        help="the data the cells trained on: a FERPlus folder, or 'synthetic'")
    parser.add_argument("--dry-run", action="store_true", help="compute and report, write nothing")
    args = parser.parse_args(argv)
    if not args.store.is_dir():
        print(f"backfill_records: store folder {args.store} does not exist", file=sys.stderr)
        return 2
    datasets = DataSets(args.data)
    counts: dict[str, int] = {}
    for path in record_files(args.store):
        outcome = backfill_file(path, datasets, dry_run=args.dry_run)
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
        if outcome.action != "complete":
            print(outcome.line)
    print("backfill_records: " + ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
          if counts else f"backfill_records: no record files under {args.store}")
    return 1 if counts.get("mismatch") else 0


if __name__ == "__main__":
    sys.exit(main())

"""Read pytest-benchmark JSON written by the fer_bench plugin and merge shards.

Input contract (one file = one pytest-benchmark run, possibly one shard of a grid):
top-level ``benchmarks`` list; each fer_bench cell carries
``extra_info = {"fer_bench": CellRecord.to_dict(), "from_store": bool, "cell_id": str,
"profile": str}``; the top level also holds ``machine_info``, ``commit_info``,
``datetime``, ``version`` (pytest-benchmark's) and ``fer_bench`` = {profile, data_label,
dataset_fingerprint, command, versions, device, date, shard, untimed_failures}.
``untimed_failures`` lists the records (``to_dict``) of cells that failed before their
first epoch: pytest-benchmark keeps no entry for them, yet they are cells and are shown
as failed. Benchmarks without ``extra_info.fer_bench`` (e.g. a throughput benchmark) are
ignored.

Input contract additions (record schema 2): ``extra_info`` also holds ``experiment`` (the
benchmark module's experiment) and ``timing``; the top-level ``fer_bench`` block holds
``experiments`` = {name: title}.

Merging rule: a cell is keyed by (``record.cell.digest()``, ``record.experiment``): its
complete identity (``fer_bench.identity.cell.Cell``: model and release, variant, split, seed,
recipe, dataset fingerprint, device type, precision, protocol) and the experiment it was
reported for. The same key in two places is accepted only when the two records are
*identical*, meaning equal ``CellRecord.to_dict()``. What lies outside the record
(pytest-benchmark's timing ``stats``, ``from_store``, the file's machine info) is allowed
to differ: a shard that re-used a stored cell reports ``from_store=True`` and its own
pytest timing, yet it is the same result. Anything else is a conflict and raises
``DataError`` naming both files. The same cell under two experiments is two entries (it
shows in both sections).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fer_bench.errors import DataError
from fer_bench.identity.record import SCHEMA_VERSION, CellRecord

CellKey = tuple[str, str]


def cell_key(record: CellRecord) -> CellKey:
    """The key of a cell across shards: (``record.cell.digest()``, ``record.experiment``)."""
    return (record.cell.digest(), record.experiment)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Top-level fields of two record dicts that differ (for the conflict message)."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


@dataclass
class LoadedResults:
    """Merged content of one or more pytest-benchmark JSON files.

    ``records``: one ``CellRecord`` per distinct cell, in first-seen order.
    ``provenance``: one dict per input file: {"path", "fer_bench", "machine_info",
    "commit_info", "datetime", "version", "n_cells", "n_from_store"}.
    ``sources``: cell key -> the file it was first read from.
    """

    records: list[CellRecord] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[CellKey, str] = field(default_factory=dict)
    _documents: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _entries: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _untimed: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _by_key: dict[CellKey, CellRecord] = field(default_factory=dict, repr=False)

    def merged_document(self) -> dict[str, Any]:
        """One pytest-benchmark JSON document holding every distinct cell once.

        Top-level fields come from the first file; ``benchmarks`` holds the first-seen
        entry of each fer_bench cell plus every non-fer_bench entry of every file;
        ``fer_bench_sources`` lists each input file's provenance. ``load_results`` reads
        it back to the same records and the same provenance (so a page re-rendered from
        it keeps every source's experiment titles).
        """
        merged = copy.deepcopy(self._documents[0]) if self._documents else {}
        merged["benchmarks"] = copy.deepcopy(self._entries)
        merged["fer_bench_sources"] = copy.deepcopy(self.provenance)
        if self._untimed or "fer_bench" in merged:
            if not isinstance(merged.get("fer_bench"), dict):
                merged["fer_bench"] = {}
            merged["fer_bench"]["untimed_failures"] = copy.deepcopy(self._untimed)
        return merged

    def _add_provenance(self, source: dict[str, Any]) -> None:
        """Keep one input file's provenance; the same file given again (e.g. directly and
        inside a merged file) is listed once."""
        if source not in self.provenance:
            self.provenance.append(source)

    def _add(self, record: CellRecord, path: Path) -> bool:
        """Merge one record; False when an identical copy is already there."""
        key = cell_key(record)
        if key in self._by_key:
            first, again = self._by_key[key].to_dict(), record.to_dict()
            if first != again:
                raise DataError(
                    f"conflicting results for cell {record.cell_id} (experiment "
                    f"{record.experiment!r}, identity {key[0]}): {self.sources[key]} and {path} "
                    f"hold different records (fields differ: {', '.join(_differences(first, again))})"
                )
            return False
        self._by_key[key] = record
        self.sources[key] = str(path)
        self.records.append(record)
        return True


def _read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read results file ({exc.strerror or exc})") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not pytest-benchmark JSON (invalid JSON at line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise DataError(f"{path}: not pytest-benchmark JSON (no top-level 'benchmarks' list)")
    return document


def _record_of(entry: Any, path: Path, index: int) -> CellRecord | None:
    """The CellRecord inside one benchmark entry, or None for a non-fer_bench benchmark."""
    if not isinstance(entry, dict):
        raise DataError(f"{path}: benchmarks[{index}] is not an object")
    extra = entry.get("extra_info") or {}
    payload = extra.get("fer_bench") if isinstance(extra, dict) else None
    if payload is None:
        return None
    name = entry.get("name", f"benchmarks[{index}]")
    if not isinstance(payload, dict):
        raise DataError(f"{path}: benchmark {name!r}: extra_info.fer_bench is not an object")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            f"{path}: benchmark {name!r}: record schema_version {payload.get('schema_version')!r} "
            f"was written by another fer_bench (this one reads {SCHEMA_VERSION}: the complete "
            "cell identity); re-run the benchmarks with this version")
    try:
        return CellRecord.from_dict(payload)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: benchmark {name!r}: bad fer_bench record ({exc})") from exc


def expand_run_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Each folder in ``paths`` replaced by its shard JSON files, files kept as they are.

    A run folder of ``fer-bench launch`` (it has a manifest) gives one file per shard and
    must be complete: a shard that is missing, still running, failed, or whose JSON is
    truncated raises ``DataError`` naming every such shard (never silently dropped). Any
    other folder gives the ``*.json`` files directly inside it, each of which must parse.
    (``fer_bench.results.rundir.run_shard_files``.)
    """
    expanded: list[Path] = []
    for raw_path in paths:
        path = Path(raw_path)
        if path.is_dir():
            from fer_bench.results.rundir import run_shard_files

            expanded.extend(run_shard_files(path))
        else:
            expanded.append(path)
    return expanded


def load_results(paths: Sequence[str | Path]) -> LoadedResults:
    """Read and merge pytest-benchmark JSON files (shards of one grid, or several runs);
    a folder stands for its shard files (``expand_run_folders``).

    Raises ``DataError`` naming the file for a file that is not pytest-benchmark JSON or
    holds a malformed record, and naming both files for a conflicting duplicate cell.
    """
    if not paths:
        raise DataError("no results files given")
    paths = expand_run_folders(paths)
    loaded = LoadedResults()
    for raw_path in paths:
        path = Path(raw_path)
        document = _read_document(path)
        loaded._documents.append(document)
        n_cells = n_from_store = 0
        for index, entry in enumerate(document["benchmarks"]):
            record = _record_of(entry, path, index)
            if record is None:
                loaded._entries.append(entry)
                continue
            n_cells += 1
            n_from_store += bool(entry.get("extra_info", {}).get("from_store", False))
            if loaded._add(record, path):
                loaded._entries.append(entry)
        untimed = _dict_or_empty(document.get("fer_bench")).get("untimed_failures") or []
        if not isinstance(untimed, list):
            raise DataError(f"{path}: fer_bench.untimed_failures is not a list")
        for index, payload in enumerate(untimed):
            entry = {"name": f"fer_bench.untimed_failures[{index}]", "extra_info": {"fer_bench": payload}}
            record = _record_of(entry, path, index)
            if record is None:
                raise DataError(f"{path}: fer_bench.untimed_failures[{index}] is empty")
            n_cells += 1
            if loaded._add(record, path):
                loaded._untimed.append(payload)
        sources = document.get("fer_bench_sources")
        if isinstance(sources, list) and sources and all(isinstance(s, dict) for s in sources):
            # A merged file (``merged_document``) keeps each original file's provenance
            # (experiment titles, machine, command); re-rendering it must not lose them.
            for source in sources:
                loaded._add_provenance(copy.deepcopy(source))
            continue
        loaded._add_provenance({
            "path": str(path),
            "fer_bench": _dict_or_empty(document.get("fer_bench")),
            "machine_info": _dict_or_empty(document.get("machine_info")),
            "commit_info": _dict_or_empty(document.get("commit_info")),
            "datetime": document.get("datetime", ""),
            "version": document.get("version", ""),
            "n_cells": n_cells,
            "n_from_store": n_from_store,
        })
    return loaded


def records_frame(records: Iterable[CellRecord]) -> pd.DataFrame:
    """One row per record with the scalar fields the leaderboard uses.

    Columns: experiment, model, variant, nhot (None for a non-N-hot variant), split, seed,
    status, acc_honest, acc_optimistic, acc_top1_honest (fractions in [0, 1], NaN when failed
    or, for top-1, not recorded), train_targets_sha256 ("" when not recorded),
    median_epoch_s (seconds), train_images_per_s, peak_memory_bytes, memory_kind, params,
    n_test, dataset_label, profile, the identity axes dataset (fingerprint), device_type,
    precision, protocol, model_release, loss, augmentation, init, epochs, then
    split_fingerprint, cell_id and cell_digest (``Cell.digest``).
    """
    rows = []
    for record in records:
        times = record.epoch_times_s
        median_epoch = float(pd.Series(times, dtype=float).median()) if times else float("nan")
        cell = record.cell
        rows.append({
            "experiment": record.experiment, "model": record.model, "variant": record.variant,
            "nhot": record.nhot, "split": record.split, "seed": record.seed,
            "status": record.status,
            "acc_honest": _num(record.acc_honest), "acc_optimistic": _num(record.acc_optimistic),
            "acc_top1_honest": _num(record.acc_top1_honest),
            "train_targets_sha256": record.train_targets_sha256,
            "median_epoch_s": median_epoch,
            "train_images_per_s": _num(record.train_images_per_s),
            "peak_memory_bytes": _num(record.peak_memory_bytes),
            "memory_kind": record.memory_kind, "params": _num(record.params),
            "n_test": record.n_test, "dataset_label": record.dataset_label,
            "profile": record.profile, "dataset": cell.dataset,
            "device_type": cell.device_type, "precision": cell.precision,
            "protocol": cell.protocol, "model_release": cell.model_release,
            "loss": cell.recipe.loss, "augmentation": cell.recipe.augmentation,
            "init": cell.recipe.init, "epochs": cell.recipe.epochs,
            "split_fingerprint": record.split_fingerprint, "cell_id": record.cell_id,
            "cell_digest": cell.digest(),
        })
    columns = ["experiment", "model", "variant", "nhot", "split", "seed", "status",
               "acc_honest", "acc_optimistic", "acc_top1_honest", "train_targets_sha256",
               "median_epoch_s", "train_images_per_s",
               "peak_memory_bytes", "memory_kind", "params", "n_test", "dataset_label",
               "profile", "dataset", "device_type", "precision", "protocol", "model_release",
               "loss", "augmentation", "init", "epochs", "split_fingerprint", "cell_id",
               "cell_digest"]
    return pd.DataFrame(rows, columns=columns)


def _dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: float | int | None) -> float:
    return float("nan") if value is None else float(value)

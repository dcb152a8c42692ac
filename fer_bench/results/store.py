"""Result store: one JSON file per finished cell, keyed by the cell's complete identity.

Layout: ``<root>/<model folder>/<readable id>-<identity hash>.json`` (``Cell.folder_name`` /
``Cell.file_name``): filesystem-safe whatever the model name holds, and two different cells
never share a file. ``get`` re-checks every identity field of the record it read against the
cell asked for; a mismatch (a renamed or hand-edited file) is a miss, with a warning, so a
result is only ever served for the exact cell it belongs to (another protocol version,
model release, device type or precision is another cell).

Writes go through ``fer_bench.fileio.atomic_write_text``: a crash leaves the old file or the
new one, never half of one. A file that does not parse is moved aside to ``*.corrupt`` with
a warning and the cell is trained again; a record of an older schema is simply a miss.
No record is ever deleted.

Epoch checkpoints (``training.checkpoint``) lie beside the record: ``<id>-<hash>.ckpt``
(``checkpoint_path``), written after every epoch of a cell in training and deleted once its
record is written; ``checkpoints()`` lists those present with their epoch (what
``fer-bench launch --status`` can show for cells in progress). ``$FER_BENCH_CHECKPOINTS=0``
(or ``checkpoints=False``) runs cells without them.

Several processes may share one store (shards of ``fer-bench launch``, two launches of the
same grid): ``claim(cell)`` holds the cell's lock file (``<id>-<hash>.claim`` beside the
record; protocol in ``fer_bench.results.claims``) while it trains, waits while another live process
holds it, and takes over a stale one, so a cell is trained once and a waiter reads the
record the holder wrote.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fer_bench.fileio import atomic_write_text
from fer_bench.identity.cell import Cell
from fer_bench.identity.record import SCHEMA_VERSION, CellRecord
from fer_bench.results.claims import CLAIM_SUFFIX, ClaimInfo, ClaimSettings, acquire, read_claim
from fer_bench.training import preempt
from fer_bench.training.checkpoint_file import (
    CHECKPOINT_SUFFIX,
    CheckpointError,
    CheckpointInfo,
    read_info,
)

RESULTS_ENV = "FER_BENCH_RESULTS"
CHECKPOINTS_ENV = "FER_BENCH_CHECKPOINTS"
log = logging.getLogger(__name__)


def default_root() -> Path:
    """``$FER_BENCH_RESULTS``, else ``./results``."""
    return Path(os.environ.get(RESULTS_ENV) or "results")


class ResultStore:
    """Cell records as JSON files under ``root`` (default ``default_root()``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 claims: ClaimSettings | None = None, checkpoints: bool | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.claim_settings = claims or ClaimSettings.from_env()
        if checkpoints is None:
            checkpoints = os.environ.get(CHECKPOINTS_ENV, "1").strip().lower() not in ("0", "off", "no", "false")
        #: Whether cells trained into this store write epoch checkpoints.
        self.checkpoints_enabled = checkpoints

    def key(self, cell: Cell) -> str:
        """The record's path relative to ``root``: ``<model folder>/<file name>``."""
        return f"{cell.folder_name()}/{cell.file_name()}"

    def path(self, cell: Cell) -> Path:
        """Absolute file path of ``cell``'s record (always inside ``root``)."""
        return self.root / self.key(cell)

    def get(self, cell: Cell) -> CellRecord | None:
        """The stored record of exactly ``cell``, or None (missing, unreadable, older
        schema, or a record of another identity)."""
        path = self.path(cell)
        record = self._read(path)
        if record is None:
            return None
        if record.cell != cell:
            differ = sorted(k for k, v in cell.to_dict().items() if record.cell.to_dict().get(k) != v)
            warnings.warn(f"result file {path} holds cell {record.cell_id} which differs from "
                          f"the requested {cell.id} in {differ}; ignored, the cell will be "
                          f"trained again", stacklevel=2)
            return None
        return record

    def put(self, record: CellRecord) -> Path:
        """Write ``record`` atomically under its cell's key; returns the file path."""
        path = self.path(record.cell)
        blob = json.dumps(record.to_dict(), indent=1, sort_keys=True, allow_nan=True)
        atomic_write_text(path, blob)
        return path

    def _read(self, path: Path) -> CellRecord | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            if isinstance(data, dict) and isinstance(data.get("schema_version"), int) \
                    and data["schema_version"] != SCHEMA_VERSION:
                log.info("result file %s has schema %s (current %s): treated as missing",
                         path, data["schema_version"], SCHEMA_VERSION)
                return None
            return CellRecord.from_dict(data)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            aside = self._move_aside(path)
            warnings.warn(f"result file {path} is unreadable ({type(exc).__name__}: {exc}); "
                          f"moved to {aside}, the cell will be trained again", stacklevel=3)
            return None

    def records(self) -> list[CellRecord]:
        """Every readable record under ``root`` (unreadable files are moved aside)."""
        found = []
        for path in sorted(self.root.glob("*/*.json")):
            record = self._read(path)
            if record is not None:
                found.append(record)
        return found

    # ------------------------------------------------------------------ claims
    def claim_path(self, cell: Cell) -> Path:
        """The lock file of ``cell``: beside its record, ``<id>-<hash>.claim``."""
        return self.path(cell).with_suffix(CLAIM_SUFFIX)

    @contextmanager
    def claim(self, cell: Cell) -> Iterator[CellRecord | None]:
        """Hold ``cell``'s claim for the body of the ``with`` (waiting while another live
        process holds it; a stale claim is taken over). Yields the record another process
        wrote for this cell between this call and the claim being ours (so the caller
        never trains it twice), else None. The claim is released on exit, also on error;
        ``ClaimTimeout`` when the wait exceeds ``claim_settings.wait_s``.
        """
        before = self._stamp(cell)
        held, _ = acquire(self.claim_path(cell), self.claim_settings, what=f"cell {cell.id}",
                          check=lambda: preempt.check(f"while waiting for the claim on cell {cell.id}"))
        try:
            yield self.get(cell) if self._stamp(cell) != before else None
        finally:
            held.release()

    def claims(self) -> list[ClaimInfo]:
        """Every claim file under ``root`` (live or stale; ``stale_reason`` tells)."""
        found = []
        for path in sorted(self.root.glob(f"*/*{CLAIM_SUFFIX}")):
            info = read_claim(path)
            if info is not None:
                found.append(info)
        return found

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, cell: Cell) -> Path:
        """The epoch checkpoint of ``cell``: beside its record, ``<id>-<hash>.ckpt``."""
        return self.path(cell).with_suffix(CHECKPOINT_SUFFIX)

    def checkpoints(self) -> list[CheckpointInfo]:
        """The checkpoints under ``root`` (cells in progress or interrupted), each with its
        cell id, epoch / epochs finished, size and time written; read from the files' last
        bytes only. An unreadable one is left out (it is reported when its cell resumes)."""
        found = []
        for path in sorted(self.root.glob(f"*/*{CHECKPOINT_SUFFIX}")):
            try:
                found.append(read_info(path))
            except (CheckpointError, OSError) as exc:
                log.debug("checkpoint %s unreadable: %s", path, exc)
        return found

    def _stamp(self, cell: Cell) -> tuple[int, int] | None:
        """(inode, mtime ns) of the record file: changes whenever a record is written."""
        try:
            stat = self.path(cell).stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    @staticmethod
    def _move_aside(path: Path) -> Path:
        aside = path.with_name(path.name + ".corrupt")
        counter = 1
        while aside.exists():
            aside = path.with_name(f"{path.name}.corrupt{counter}")
            counter += 1
        os.replace(path, aside)
        return aside

"""One cell from the store, or trained and stored (``get_or_run_cell``).

The store is asked before any task data is built; a cell is trained under the store's
claim on it (``ResultStore.claim``, protocol in ``results.claims``), continued from its
epoch checkpoint when there is one (``training.checkpoint``), and its record (failed ones
included) is stored before the call returns. Training itself is ``training.runner.run_cell``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from fer_bench.errors import ConfigError
from fer_bench.identity.cell import Cell
from fer_bench.identity.record import CellRecord, Status
from fer_bench.models import ModelSpec
from fer_bench.training import preempt
from fer_bench.training.checkpoint import CheckpointFile
from fer_bench.training.device import default_device
from fer_bench.training.loop import EpochReport
from fer_bench.training.runner import run_cell
from fer_bench.training.tasks import build_task_data

__all__ = ["get_or_run_cell"]

log = logging.getLogger(__name__)


def _usable(stored: CellRecord | None, clean: Any) -> bool:
    """A stored record ``get_or_run_cell`` may return for data ``clean``: ok, and carrying
    the ground-truth metrics when the data has a ``GroundTruth``."""
    return (stored is not None and stored.status == Status.OK
            and (getattr(clean, "truth", None) is None or stored.kl_true_mean is not None))


def get_or_run_cell(store: Any, spec: ModelSpec, clean: Any, cell: Cell, *,
                    device: str | torch.device | None = None, rerun: bool = False,
                    on_epoch: Callable[[EpochReport], None] | None = None,
                    profile: str = "", init_path: Path | None = None,
                    experiment: str = "") -> tuple[CellRecord, bool]:
    """The stored record of exactly ``cell``, or train it and store the result.

    Returns (record, from_store). ``store``: a ``results.store.ResultStore`` (or any object
    with its ``get`` / ``put``; ``claim``, ``checkpoint_path`` and ``checkpoints_enabled``
    are used when it has them). The store is asked before any task data is built. A stored
    failed record is retried, not returned; ``rerun`` trains regardless. Every finished
    cell, failed ones included, is stored. ``cell.dataset`` must be ``clean``'s fingerprint.

    Training happens under the store's claim on the cell (``ResultStore.claim``): a cell
    another process is training is waited for, and the record it wrote meanwhile (ok or
    failed) is returned from the store instead of training the cell a second time.
    A stored record of data with a ``GroundTruth`` (synthetic) that lacks ``kl_true_mean``
    (written before it was recorded) is trained again, so every such record carries it.

    Epoch checkpoints (a store with ``checkpoint_path``, unless its ``checkpoints_enabled``
    is False): the cell continues from its checkpoint when there is one (``rerun``
    discards it), writes one after every epoch and removes it once the record is stored.
    SIGTERM / SIGUSR1 during the call stop it at a safe point (``training.preempt``):
    ``CellPreempted`` (exit status 75, requeue) after the claim is released.
    """
    if cell.dataset != clean.fingerprint:
        raise ConfigError(f"cell {cell.id} names dataset {cell.dataset!r}, the data given is "
                          f"{clean.fingerprint!r}")
    with preempt.handling():
        preempt.check(f"before cell {cell.id} started")
        if not rerun:
            stored = store.get(cell)
            if _usable(stored, clean):
                if hasattr(store, "checkpoint_path"):   # left by a kill after the record was written
                    store.checkpoint_path(cell).unlink(missing_ok=True)
                return stored, True
        claim = getattr(store, "claim", None)
        with claim(cell) if claim is not None else nullcontext() as written_meanwhile:
            if written_meanwhile is not None:
                return written_meanwhile, True
            stored = None if rerun else store.get(cell)       # finished before our claim?
            checkpoint = _checkpoint_of(store, cell, discard=rerun or _usable(stored, clean))
            if _usable(stored, clean):
                return stored, True
            device = torch.device(device or default_device())
            setup_start = time.perf_counter()
            data = build_task_data(clean, cell, device=device)
            try:
                record = run_cell(spec, data, device=device, on_epoch=on_epoch, profile=profile,
                                  init_path=init_path, checkpoint=checkpoint,
                                  setup_seconds=time.perf_counter() - setup_start)
            except preempt.CellPreempted as exc:
                kept = checkpoint.describe() if checkpoint is not None else "no checkpoints"
                exc.message = (f"cell {cell.id} {exc.message}; {kept}; exit "
                               f"{preempt.REQUEUE_EXIT}: requeue to continue")
                log.warning("%s", exc.message)
                raise
            record.experiment = experiment
            store_start = time.perf_counter()
            store.put(record)
            # The file then holds the time of its own first write (a second write, a few ms).
            record.store_s = time.perf_counter() - store_start
            record.wall_s = (record.wall_s or 0.0) + record.store_s
            store.put(record)
            if checkpoint is not None:
                checkpoint.remove()
        preempt.check(f"after cell {cell.id} was stored")
    return record, False


def _checkpoint_of(store: Any, cell: Cell, *, discard: bool) -> CheckpointFile | None:
    """``cell``'s checkpoint in ``store`` (None for a store without checkpoints), called
    under the cell's claim: temp files of killed writes are removed, and the checkpoint too
    when ``discard`` (a rerun, or the record is stored already)."""
    path_of = getattr(store, "checkpoint_path", None)
    if path_of is None or not getattr(store, "checkpoints_enabled", True):
        return None
    checkpoint = CheckpointFile(path_of(cell), cell)
    if discard and checkpoint.path.exists():
        log.info("cell %s: checkpoint %s discarded (rerun, or record stored)", cell.id, checkpoint.path)
    checkpoint.remove() if discard else checkpoint.remove_leftovers()
    return checkpoint

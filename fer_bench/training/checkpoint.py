"""Epoch checkpoints: after every epoch a cell writes everything needed to continue it.

``CheckpointFile.save`` writes, atomically beside the cell's claim (``<id>-<hash>.ckpt``,
framing in ``checkpoint_file``), at the end of epoch k (after its evaluation):

* the model's, the optimizer's and the learning-rate schedule's state (the schedule's step
  count is the position in the one-cycle / cosine curve), and the EMA weights;
* every random stream: torch's CPU generator (dropout), every CUDA device's when the cell
  runs on CUDA, numpy's and Python's global generators (model code may draw from them),
  and the cell's own torch generators: shuffle, label draws (PLD), online augmentation;
* what the finished epochs measured: per-epoch training seconds, losses (and the model's
  extra loss term), validation and test accuracy (tie-aware and top-1), evaluation
  seconds, and the best validation
  epoch's test probabilities float32 [n_test, 8] (so the honest selection survives);
  plus the time spent so far (set-up, FLOP counting, compilation, checkpoint writes, wall).

``CheckpointFile.load`` + ``resume`` continue a cell from epoch k + 1: on a CPU the result
equals an uninterrupted run's bit for bit (same weights, optimizer moments, schedule step,
batch orders, label and augmentation draws, dropout masks). On CUDA the same states are
restored, but cuDNN autotuning and its nondeterministic backward kernels make even two
uninterrupted CUDA runs differ in floating-point noise; a resumed CUDA cell agrees with an
uninterrupted one only to that noise (untested here: no GPU on this project's CI).

The payload is read with ``torch.load(..., weights_only=True)``: only tensors and plain
types (random states are stored as tensors and ints). A checkpoint is never trusted when
it is truncated, corrupt (sha256), written by another format version, another
PROTOCOL_VERSION or for another cell identity, unpicklable, or does not fit the model
built now: one warning line, the file is removed, and the cell starts from epoch 1.
Epoch times are never measured twice: a resumed epoch keeps the time it took when it ran.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_bench.identity.cell import PROTOCOL_VERSION, Cell
from fer_bench.identity.record import CellRecord
from fer_bench.training.checkpoint_file import (
    CheckpointError,
    check_info,
    leftover_temp_files,
    read_info,
    verified_payload,
    write_checkpoint,
)
from fer_bench.training.loop import Best, TrainingRun

log = logging.getLogger(__name__)

#: Per-epoch lists of the record, restored as they were measured.
EPOCH_LISTS = ("epoch_times_s", "train_loss", "val_acc", "test_acc", "test_top1")
#: The per-epoch means of the model's extra loss term: one per epoch for a model with
#: ``ModelSpec.extra_loss``, none otherwise. A checkpoint written before it was recorded
#: lacks it: resumed from for a model without the term, not trusted for one with it.
EXTRA_LOSS_LIST = "train_extra_loss"
#: Seconds spent by earlier processes on the cell, added to this process's.
SUMMED = ("setup_s", "flops_s", "compile_seconds", "checkpoint_write_s", "wall_s")
_GENERATORS = ("shuffle", "label_draws", "augment_draws")


@dataclass
class Resumed:
    """A cell continued from its checkpoint: ``epoch`` finished epochs (1-based, the last
    one checkpointed), the best epoch so far, and the earlier processes' measurements
    (``carried``: record field -> value)."""

    epoch: int
    best: Best
    carried: dict[str, Any]


def _random_states(run: TrainingRun, device: torch.device) -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss_next},
    }
    for name in _GENERATORS:
        states[name] = getattr(run, name).get_state()
    return states


def _set_random_states(run: TrainingRun, states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and states["cuda"] is not None:
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy = states["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    python = states["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()),
                     python["gauss"]))
    for name in _GENERATORS:
        getattr(run, name).set_state(states[name])


def capture(run: TrainingRun, record: CellRecord, best: Best, epoch: int,
            device: torch.device, wall_s: float) -> dict[str, Any]:
    """The checkpoint payload after ``epoch`` (1-based) finished; ``wall_s``: the cell's
    wall seconds so far, all processes together."""
    measured = {name: list(getattr(record, name)) for name in (*EPOCH_LISTS, EXTRA_LOSS_LIST)}
    measured.update({name: getattr(record, name) for name in SUMMED if name != "wall_s"})
    measured.update(eval_s=record.eval_s, wall_s=wall_s, started_at=record.started_at,
                    checkpoint_bytes=record.checkpoint_bytes)
    return {
        "cell_digest": record.cell.digest(), "protocol": PROTOCOL_VERSION, "epoch": epoch,
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "ema": run.average.model.state_dict() if run.average is not None else None,
        "random": _random_states(run, device),
        "record": measured,
        "best": {"epoch": best.epoch, "val_acc": best.val_acc, "test_probs": best.test_probs},
    }


def _same_tensors(saved: Any, own: dict[str, torch.Tensor], what: str) -> None:
    if not isinstance(saved, dict) or set(saved) != set(own):
        raise CheckpointError(f"its {what} has other tensors than the model built now")
    for name, tensor in own.items():
        other = saved[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape or other.dtype != tensor.dtype:
            raise CheckpointError(f"its {what} tensor {name!r} differs in shape or type")


def _check_fits(run: TrainingRun, payload: dict[str, Any], epoch: int, n_test: int) -> None:
    """``CheckpointError`` unless ``payload`` can be loaded into ``run`` as it is built
    (checked before anything is changed, so a bad checkpoint leaves the run untouched)."""
    _same_tensors(payload["model"], run.model.state_dict(), "model state")
    if (payload["ema"] is None) != (run.average is None):
        raise CheckpointError("EMA weights present / absent unlike the recipe")
    if run.average is not None:
        _same_tensors(payload["ema"], run.average.model.state_dict(), "EMA state")
    groups, own_groups = payload["optimizer"]["param_groups"], run.optimizer.param_groups
    if len(groups) != len(own_groups) or any(
            len(g["params"]) != len(o["params"]) for g, o in zip(groups, own_groups, strict=True)):
        raise CheckpointError("its optimizer holds other parameter groups")
    if not isinstance(payload["schedule"].get("last_epoch"), int):
        raise CheckpointError("no schedule position")
    states = payload["random"]
    for name in _GENERATORS:
        if states[name].shape != getattr(run, name).get_state().shape:
            raise CheckpointError(f"its {name} generator state does not fit this device")
    record = payload["record"]
    if any(len(record[name]) != epoch for name in EPOCH_LISTS):
        raise CheckpointError(f"its per-epoch lists do not hold {epoch} epochs")
    with_extra = run.spec.extra_loss is not None
    if EXTRA_LOSS_LIST not in record and with_extra:
        raise CheckpointError(f"it was written before {EXTRA_LOSS_LIST} was recorded")
    if len(record.get(EXTRA_LOSS_LIST, ())) != (epoch if with_extra else 0):
        raise CheckpointError(f"its {EXTRA_LOSS_LIST} does not fit the model's extra loss term "
                              f"over {epoch} epochs")
    best = payload["best"]
    if not 1 <= best["epoch"] <= epoch or tuple(best["test_probs"].shape) != (n_test, 8):
        raise CheckpointError("its best epoch or test probabilities do not fit")


def resume(file: CheckpointFile, run: TrainingRun, *, n_test: int,
           device: torch.device) -> Resumed | None:
    """Load ``file`` (when there is one to trust) into ``run``: weights, optimizer,
    schedule, EMA, every random state. None when the cell starts from epoch 1."""
    payload = file.load()
    if payload is None:
        return None
    epoch = int(payload["epoch"])
    try:
        _check_fits(run, payload, epoch, n_test)
    except (CheckpointError, KeyError, TypeError, AttributeError) as exc:
        file.distrust(str(exc) if isinstance(exc, CheckpointError) else f"malformed ({exc!r})")
        return None
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.schedule.load_state_dict(payload["schedule"])
    if run.average is not None:
        run.average.model.load_state_dict(payload["ema"])
    _set_random_states(run, payload["random"], device)
    best = payload["best"]
    log.info("cell %s resumes after epoch %d of %d from %s", file.cell.id, epoch,
             file.cell.recipe.epochs, file.path)
    return Resumed(epoch, Best(int(best["epoch"]), float(best["val_acc"]),
                               best["test_probs"].to(device)), dict(payload["record"]))


def carry(record: CellRecord, resumed: Resumed) -> None:
    """Put what the earlier processes measured into ``record`` (this process's own set-up,
    FLOP counting and compile seconds are already in it): per-epoch lists as measured,
    seconds summed, the first start time, ``resumed_from_epoch``."""
    carried = resumed.carried
    for name in EPOCH_LISTS:
        setattr(record, name, list(carried[name]))
    record.train_extra_loss = list(carried.get(EXTRA_LOSS_LIST, ()))
    for name in SUMMED:
        if carried.get(name) is not None:
            setattr(record, name, (getattr(record, name) or 0.0) + carried[name])
    record.eval_s = carried["eval_s"]
    record.checkpoint_bytes = carried["checkpoint_bytes"]
    record.started_at = carried["started_at"] or record.started_at
    record.resumed_from_epoch = resumed.epoch


class CheckpointFile:
    """The checkpoint of ``cell`` at ``path`` (the store's ``checkpoint_path``)."""

    def __init__(self, path: Path, cell: Cell) -> None:
        self.path, self.cell = Path(path), cell

    def save(self, payload: dict[str, Any]) -> tuple[int, float]:
        """Write ``payload`` (``capture``) atomically; returns (bytes, wall seconds)."""
        start = time.perf_counter()
        meta = {"cell_id": self.cell.id, "cell_digest": payload["cell_digest"],
                "protocol": payload["protocol"], "epoch": payload["epoch"],
                "epochs": self.cell.recipe.epochs}
        size = write_checkpoint(self.path, lambda sink: torch.save(payload, sink), meta)
        return size, time.perf_counter() - start

    def load(self) -> dict[str, Any] | None:
        """The verified payload, or None: no checkpoint, or one not to trust (reported
        in one warning line and removed)."""
        try:
            info = read_info(self.path)
        except FileNotFoundError:
            return None
        except (CheckpointError, OSError) as exc:
            self.distrust(str(exc))
            return None
        try:
            check_info(info, cell_digest=self.cell.digest(), protocol=PROTOCOL_VERSION)
            with verified_payload(info) as handle:
                payload = torch.load(handle, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict) or (payload.get("cell_digest"), payload.get("protocol"),
                                                 payload.get("epoch")) != (
                    info.cell_digest, info.protocol, info.epoch):
                raise CheckpointError("its payload disagrees with its trailer")
        except CheckpointError as exc:
            self.distrust(str(exc))
            return None
        except Exception as exc:   # torch.load: UnpicklingError, RuntimeError, EOFError ...
            self.distrust(f"unreadable payload ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})")
            return None
        return payload

    def distrust(self, reason: str) -> None:
        """Report a checkpoint not to trust (one line) and remove it."""
        log.warning("checkpoint %s of cell %s is not trusted: %s; the cell restarts from epoch 1",
                    self.path, self.cell.id, reason)
        self.remove()

    def remove(self) -> None:
        """Delete the checkpoint and any temp file a killed write left beside it."""
        self.path.unlink(missing_ok=True)
        self.remove_leftovers()

    def remove_leftovers(self) -> None:
        """Delete temp files of writes killed half-way (only the claim holder calls this)."""
        for leftover in leftover_temp_files(self.path):
            leftover.unlink(missing_ok=True)

    def describe(self) -> str:
        """Where the cell stands on disk, for a log line."""
        try:
            info = read_info(self.path)
        except FileNotFoundError:
            return "no epoch finished yet, it restarts from epoch 1"
        except (CheckpointError, OSError) as exc:
            return f"its checkpoint {self.path} is not usable ({exc})"
        return f"its checkpoint after epoch {info.epoch} of {info.epochs} is kept at {self.path}"

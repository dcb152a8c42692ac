"""How a cell ended by model code is described: the stage it failed in and the ``error``
text of its record.

The runner enters each stage of a cell inside ``entering(Stage.X)``; an exception that
leaves the block carries the innermost stage it left (``stage_of``), whatever file or
function raised it. ``describe_model_failure`` turns it into the record's ``error``.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

from fer_bench.identity.record import CellRecord
from fer_bench.strenum import StrEnum

__all__ = ["OOM_ERRORS", "Stage", "describe_model_failure", "entering", "stage_of"]

#: torch's out-of-memory error (its name moved between releases).
OOM_ERRORS: tuple[type[BaseException], ...] = (
    getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
#: The attribute of an exception that holds the stage it left.
_ATTRIBUTE = "fer_bench_stage"


class Stage(StrEnum):
    """A stage of one cell's work in which model code runs (its text goes into ``error``)."""

    BUILD = "building the model"
    TRAINING = "training"
    EVALUATION = "evaluation"


@contextlib.contextmanager
def entering(stage: Stage) -> Iterator[None]:
    """Run the block as ``stage``: an exception leaving it is tagged with ``stage`` unless
    an inner block tagged it already (the innermost stage wins), then raised on."""
    try:
        yield
    except BaseException as exc:
        if stage_of(exc) is None:
            # an exception type with __slots__ and no __dict__ keeps no stage
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _ATTRIBUTE, stage)
        raise


def stage_of(exc: BaseException) -> Stage | None:
    """The innermost stage ``exc`` left (``entering``), or None when it left none."""
    stage = getattr(exc, _ATTRIBUTE, None)
    return stage if isinstance(stage, Stage) else None


def describe_model_failure(model: str, record: CellRecord, exc: BaseException) -> str:
    """The ``error`` of a cell ended by ``exc`` from model code: model, epoch, stage,
    the exception's type and message, and where it was raised (the last frame outside
    torch), e.g. ``model m raised ValueError in epoch 2 (evaluation) at m.py:12: bad``."""
    stage = stage_of(exc)
    epoch = len(record.epoch_times_s) + 1
    if stage is Stage.BUILD or (stage is None and record.params is None):
        when = "while building the model (before epoch 1)"
    else:
        when = f"in epoch {epoch}" + (f" ({stage})" if stage else "")
    frames = list(traceback.walk_tb(exc.__traceback__))
    outside_torch = [(f, n) for f, n in frames if not f.f_code.co_filename.startswith(_TORCH_DIR)]
    where = ""
    if outside_torch or frames:
        frame, lineno = (outside_torch or frames)[-1]
        where = f" at {Path(frame.f_code.co_filename).name}:{lineno}"
    message = " ".join(str(exc).split()) or "(no message)"
    return f"model {model} raised {type(exc).__name__} {when}{where}: {message}"

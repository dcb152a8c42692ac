"""The one training-configuration object (the *recipe* of a cell): SPEC defaults < model
spec < profile < user. Everything here changes what a cell learns, so all of it is part of
the cell's identity (``fer_bench.identity.cell.Cell.recipe``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: SPEC "Training defaults" (report 4.1).
DEFAULT_EPOCHS = 40
DEFAULT_LR = 1e-4
DEFAULT_BATCH_SIZE = 64
DEFAULT_LOSS = "mse"
DEFAULT_AUGMENTATION = "none"
DEFAULT_INIT = "scratch"
DEFAULT_COMPILE = "none"
#: ``compile`` value that evaluates through ``torch.compile`` (``fer_bench.training.compiled``).
COMPILE_EVAL = "eval"
COMPILE_CHOICES = (DEFAULT_COMPILE, COMPILE_EVAL)
#: Fields added after the identity's schema settled: ``to_dict`` writes one only when it
#: differs from this default, so every identity stored before the field existed keeps its
#: digest (and its store file) and still reads back.
ADDED_FIELDS: dict[str, Any] = {"compile": DEFAULT_COMPILE}


@dataclass(frozen=True)
class TrainConfig:
    """How one cell trains.

    ``loss``: a name in the loss registry (``training/losses.py``; "mse" = report 4.3.3's best).
    ``augmentation``: a name in the augmentation registry ("none" = Base only;
    "flip_rot20" = Base + Flip + Rotate +-20, the report's best, 4x).
    ``init``: "scratch", "imagenet", or "file:<sha256>" (a local weights file, identified
    by its content; see ``fer_bench.identity.cell.resolve_init``).
    ``val_fraction``: share of the training split carved off for model selection.
    ``input_size``: side in pixels the 48x48 images are resized to for the model.
    ``optimizer`` / ``momentum`` / ``schedule`` / ``warmup`` / ``ema``: see
    ``fer_bench.training.recipe`` (the defaults are the study's: Adam at a constant lr).
    ``label_smoothing``: targets become (1 - a) t + a / 8 before the loss (0 = off).
    ``tta``: test-time augmentation, "none", "flip" (evaluation averages the softmax of the
    image and its mirror) or "flip_shift1" (``fer_bench.training.tta``).
    ``compile``: "none" or "eval": evaluation runs the model through ``torch.compile``
    (inductor), training stays eager (``fer_bench.training.compiled``). Results equal eager
    ones only up to floating-point rounding, hence part of the identity.
    """

    epochs: int = DEFAULT_EPOCHS
    lr: float = DEFAULT_LR
    batch_size: int = DEFAULT_BATCH_SIZE
    loss: str = DEFAULT_LOSS
    augmentation: str = DEFAULT_AUGMENTATION
    init: str = DEFAULT_INIT
    val_fraction: float = 0.1
    input_size: int = 48
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    schedule: str = "constant"
    warmup: float = 0.0
    ema: float = 0.0
    label_smoothing: float = 0.0
    tta: str = "none"
    compile: str = DEFAULT_COMPILE

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with every non-None override applied (unknown keys raise TypeError)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s): {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """All fields, except an ``ADDED_FIELDS`` one left at its default."""
        return {k: v for k, v in asdict(self).items()
                if not (k in ADDED_FIELDS and v == ADDED_FIELDS[k])}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; a field this version does not know raises ValueError
        (a record written by a newer recipe must not be read as an older one)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown recipe field(s) {sorted(unknown)}")
        return cls(**data)

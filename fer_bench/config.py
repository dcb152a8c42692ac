"""The one training-configuration object: SPEC defaults < model spec < user overrides."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: SPEC "Training defaults" (report 4.1).
DEFAULT_EPOCHS = 40
DEFAULT_LR = 1e-4
DEFAULT_BATCH_SIZE = 64
DEFAULT_LOSS = "mse"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes what a cell learns. Its ``digest()`` keys the result store.

    ``augmentation`` names a static augmentation set of ``fer_bench.training.augment``
    ("none" = Base only; "flip_rot20" = Base + Flip + Rotate +-20, the report's best, 4x).
    ``val_fraction`` is the share of the training split carved off for model selection.
    ``amp`` enables bf16 autocast (CUDA only; ignored on CPU).
    """

    epochs: int = DEFAULT_EPOCHS
    lr: float = DEFAULT_LR
    batch_size: int = DEFAULT_BATCH_SIZE
    loss: str = DEFAULT_LOSS
    augmentation: str = "none"
    val_fraction: float = 0.1
    pretrained: bool = False
    input_size: int = 48
    weight_decay: float = 0.0
    amp: bool = True

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with every non-None override applied (unknown keys raise TypeError)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s): {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def digest(self) -> str:
        """Short stable hash of the config (12 hex chars)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

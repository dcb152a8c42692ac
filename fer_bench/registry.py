"""Model registry: entry-point group ``fer_bench.models``, loaded lazily.

(Contract section written first; discovery code follows below it.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

ENTRY_POINT_GROUP = "fer_bench.models"


@dataclass(frozen=True)
class ModelSpec:
    """A model and its training preferences. ``None`` means "use the SPEC default".

    ``factory(num_classes=8, in_chans=1, pretrained=False)`` returns a ``torch.nn.Module``
    mapping float [B, in_chans, input_size, input_size] (pixels in [0, 1]) to logits
    [B, num_classes]. A plain third-party factory that does not accept ``pretrained`` is
    called without it.
    ``extra_loss(model, outputs, logits, targets) -> Tensor | None`` adds a model-specific
    term (e.g. an attention regulariser) to the training loss.
    """

    name: str
    factory: Callable[..., torch.nn.Module]
    input_size: int = 48
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    loss: str | None = None
    augmentation: str | None = None
    pretrained_available: bool = False
    extra_loss: Callable[..., Any] | None = None
    description: str = ""
    source: str = ""   # filled by the registry: distribution name + entry point value
    tags: tuple[str, ...] = field(default_factory=tuple)   # e.g. ("classical", "small")

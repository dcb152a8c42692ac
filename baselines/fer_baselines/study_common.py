"""Pieces shared by the study's FER-specific models (``ran``, ``dan``, ``mten``).

* ``resnet18_trunk``: timm ResNet-18 without its classifier, at ``in_chans`` channels, with
  its stem adapted to 48x48 faces (``stem_stride`` of the 7x7 conv; the stem max-pool is
  always removed, as in ``classic.py``).
* ``output_part``: one named tensor of a model's dict output, with a ``ModelError`` naming
  the model when it is missing (an ``extra_loss`` handed the wrong outputs).
* ``refuse_pretrained``: these models ship no weights; ``init=file:...`` is the way to
  start from a local checkpoint (the core loads it into the built model).
* ``study_spec``: the ``ModelSpec`` every one of them declares (48x48 input, no bundled
  weights, an ``extra_loss``, tagged ``study``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import timm
import torch
from torch import nn

from fer_bench.errors import ModelError
from fer_bench.models import ModelSpec

RESNET18_FEATURES = 512


def resnet18_trunk(in_chans: int, stem_stride: int) -> nn.Module:
    """timm ``resnet18`` with ``num_classes=0``: [B, in_chans, H, W] -> pooled [B, 512];
    ``forward_features`` gives the last map [B, 512, H / (8 * stem_stride), ...].

    The stem max-pool is removed; the 7x7 stem conv keeps its kernel and gets stride
    ``stem_stride`` (2 = timm's, total stride 16; 1 = total stride 8).
    """
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    trunk = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=in_chans)
    trunk.maxpool = nn.Identity()
    trunk.conv1.stride = (stem_stride, stem_stride)
    return trunk


def output_part(model_name: str, outputs: Any, key: str) -> torch.Tensor:
    """``outputs[key]`` of a model's dict output, or a ``ModelError`` naming the model."""
    if not isinstance(outputs, dict) or key not in outputs:
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ModelError(f"model {model_name!r}: extra_loss needs the forward output's "
                         f"{key!r} entry, got {got}")
    return outputs[key]


def refuse_pretrained(model_name: str, pretrained: bool) -> None:
    """Raise ``ModelError`` when pretrained weights are asked for (none are bundled)."""
    if pretrained:
        raise ModelError(f"model {model_name!r}: no pretrained weights are bundled (the "
                         f"study's face-ID checkpoints are not reachable); train from "
                         f"scratch or start from a local state dict with init=file:PATH")


def study_spec(name: str, factory: Callable[..., nn.Module], extra_loss: Callable[..., torch.Tensor],
               description: str, **preferences: Any) -> ModelSpec:
    """A study model's ``ModelSpec``: 48x48 input, no bundled weights, tagged ``study``."""
    return ModelSpec(name=name, factory=factory, input_size=48, extra_loss=extra_loss,
                     pretrained_available=False, description=description, tags=("study",),
                     **preferences)

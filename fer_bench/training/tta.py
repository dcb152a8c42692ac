"""Test-time augmentation: which views of an image evaluation averages, and with what weight.

``TrainConfig.tta`` (part of every cell's identity) names one of ``TTA_VIEWS``:

* "none": the image itself.
* "flip": the image and its horizontal mirror, softmax probabilities averaged 1:1 (the
  VGG paper's mirrored evaluation).
* "flip_shift1": airbench94's ``tta_level=2`` (KellerJordan/cifar10-airbench,
  ``airbench94.py``, ``infer_mirror_translate``): the mirror pair of the image (weight 1/2)
  and the mirror pairs of the image translated by one pixel up-left and down-right (1/4
  each). airbench pads by reflection; the shift here repeats the border pixels, as the
  training shifts of ``rand_flip_shift*`` do (``augment.sets.random_flip_shift``). Six
  forward passes per image, three times the cost of "flip".

Averaging is over probabilities, not logits, for every choice, so "flip" stays what the
committed cells were evaluated with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class View:
    """One view of a batch: translated by (``dy``, ``dx``) pixels (content moves down/right
    for positive values), then mirrored left-right when ``mirror``; ``weight`` of its
    probabilities in the average (a choice's weights sum to 1)."""

    dy: int = 0
    dx: int = 0
    mirror: bool = False
    weight: float = 1.0


TTA_VIEWS: dict[str, tuple[View, ...]] = {
    "none": (View(),),
    "flip": (View(weight=0.5), View(mirror=True, weight=0.5)),
    "flip_shift1": (View(weight=0.25), View(mirror=True, weight=0.25),
                    View(-1, -1, weight=0.125), View(-1, -1, mirror=True, weight=0.125),
                    View(1, 1, weight=0.125), View(1, 1, mirror=True, weight=0.125)),
}
TTA_CHOICES = tuple(TTA_VIEWS)


def tta_views(tta: str) -> tuple[View, ...]:
    """The views of TTA choice ``tta``; KeyError naming the choices for an unknown one."""
    try:
        return TTA_VIEWS[tta]
    except KeyError:
        raise KeyError(f"unknown tta {tta!r}; valid: {', '.join(TTA_CHOICES)}") from None


def apply_view(x: torch.Tensor, view: View, *, channels_last: bool) -> torch.Tensor:
    """``x`` float [B, C, H, W] seen through ``view``: same shape; a translated view is made
    contiguous in ``channels_last`` or the standard memory format."""
    if view.dy or view.dx:
        pad = max(abs(view.dy), abs(view.dx))
        height, width = x.shape[-2:]
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        top, left = pad - view.dy, pad - view.dx
        shifted = padded[..., top:top + height, left:left + width]
        x = shifted.contiguous(memory_format=torch.channels_last if channels_last
                               else torch.contiguous_format)
    if view.mirror:
        x = torch.flip(x, dims=[-1])
    return x

"""The augmentation registry and the tensor ops its sets are built from: ``AugmentationSet``,
``AUGMENTATIONS`` (entry-point group ``fer_bench.augmentations``), ``hflip`` and ``rotate``.

A leaf of ``training``: the study's sets and the online sets (``augment.sets``) and the
adaptive family (``augment.adaptive``) import from here, never from each other; both are
``AUGMENTATIONS``' built-in modules, imported on its first lookup or listing. Positive
angles rotate counter-clockwise as the image is displayed; rotation samples bilinearly and
fills the corners from the nearest border pixel (Keras' ``fill_mode="nearest"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fer_bench.errors import ConfigError
from fer_bench.registry import Registry, instances_of
from fer_bench.training.device import one_thread_for_small

#: Images rotated per grid_sample call: bounds the float32 working memory (~40 MB at 48x48).
ROTATE_CHUNK = 4096


@dataclass(frozen=True)
class AugmentationSet:
    """An augmentation set. Static part: ``expand(images uint8 [T, H, W], targets [T, C],
    seed)`` returns images [k*T, H, W] and targets [k*T, C] once per cell; ``multiple`` = k.
    Online part (optional): ``online(batch uint8 [B, H, W], generator)`` returns a
    transformed batch of the same shape, drawn afresh for every training batch on the
    device (no per-image Python).

    ``needs``: names of per-image tensors the set reads (e.g. ``("inclination",)``); such a
    set's ``expand`` takes a fourth argument ``meta``, a dict of those tensors [T] in the
    order of the images (built by ``fer_bench.training.tasks`` from the cell's alignment). Its
    ``multiple`` is then the largest factor. Call ``apply``, which checks and passes them.
    """

    name: str
    multiple: int
    expand: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    description: str = ""
    online: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    needs: tuple[str, ...] = ()

    def apply(self, images: torch.Tensor, targets: torch.Tensor, seed: int,
              meta: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``expand`` with the per-image tensors ``needs`` names taken from ``meta``;
        ``ConfigError`` naming the missing ones (e.g. an adaptive set on a cell without an
        aligner's landmarks)."""
        if not self.needs:
            return self.expand(images, targets, seed)
        meta = meta or {}
        missing = [key for key in self.needs if key not in meta]
        if missing:
            raise ConfigError(f"augmentation {self.name!r} needs per-image {', '.join(missing)} "
                              "from face landmarks, which this cell has none of; run it on an "
                              "aligned cell or with landmarks (--fer-alignment, "
                              "fer_bench.data.align.axis)")
        count = images.shape[0]
        given = {}
        for key in self.needs:
            value = torch.as_tensor(meta[key])
            if value.shape[0] != count:
                raise ConfigError(f"augmentation {self.name!r}: {key} has {value.shape[0]} "
                                  f"values for {count} images")
            given[key] = value
        return self.expand(images, targets, seed, given)


#: Entry-point group ``fer_bench.augmentations``; targets are ``AugmentationSet`` objects.
#: Its built-in modules (the study's and online sets, the adaptive family) are imported on
#: the first lookup or listing.
AUGMENTATIONS: Registry[AugmentationSet] = Registry(
    "augmentation", "fer_bench.augmentations", instances_of(AugmentationSet, "augmentation"),
    option="--fer-augmentation",
    builtins=("fer_bench.training.augment.sets", "fer_bench.training.augment.adaptive"))


def check_augmentation(name: str) -> None:
    """Raise ``ConfigError`` (close names) when ``name`` is not a registered set."""
    AUGMENTATIONS.get(name)


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Horizontal mirror of uint8 [T, H, W] images."""
    with one_thread_for_small(images.numel(), images.device):
        return torch.flip(images, dims=[-1])


def _rotation_grid(angles_rad: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid float32 [n, H, W, 2] for ``grid_sample`` (align_corners=False).

    Built with broadcast multiply-adds instead of ``F.affine_grid``, whose batched matmul
    costs about 4x ``grid_sample`` itself on a CPU. Output pixel p samples the input at
    R(+a) . p, which turns the picture by a counter-clockwise on screen (x right, y down,
    both normalised to [-1, 1]); the aspect factors keep non-square images undistorted.
    """
    device = angles_rad.device
    xs = (torch.arange(width, dtype=torch.float32, device=device) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=torch.float32, device=device) * 2 + 1) / height - 1
    cos = torch.cos(angles_rad)[:, None, None]
    sin = torch.sin(angles_rad)[:, None, None]
    xs, ys = xs[None, None, :], ys[None, :, None]
    grid_x = cos * xs - sin * (height / width) * ys
    grid_y = sin * (width / height) * xs + cos * ys
    return torch.stack([grid_x, grid_y], dim=-1)


def rotate(images: torch.Tensor, angles_deg: torch.Tensor | float, chunk: int = ROTATE_CHUNK) -> torch.Tensor:
    """Rotate uint8 [T, H, W] images about their centre; returns uint8 [T, H, W].

    ``angles_deg`` is one angle (one grid shared by every image) or a float tensor [T]
    (degrees, counter-clockwise positive). Works in chunks of ``chunk`` images to bound
    memory.
    """
    with one_thread_for_small(images.numel(), images.device):
        return _rotate(images, angles_deg, chunk)


def _rotate(images: torch.Tensor, angles_deg: torch.Tensor | float, chunk: int) -> torch.Tensor:
    count, height, width = images.shape
    angles = torch.as_tensor(angles_deg, dtype=torch.float32, device=images.device) * (math.pi / 180.0)
    shared_grid = _rotation_grid(angles.reshape(1), height, width) if angles.ndim == 0 else None
    out = torch.empty_like(images)
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        if shared_grid is not None:
            grid = shared_grid.expand(stop - start, -1, -1, -1)
        else:
            grid = _rotation_grid(angles[start:stop], height, width)
        batch = images[start:stop].unsqueeze(1).float()
        rotated = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[start:stop] = rotated.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)
    return out

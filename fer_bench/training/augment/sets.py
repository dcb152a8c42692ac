"""Batched tensor augmentation (SPEC "Augmentation", report 4.3.1) and model-input conversion.

Static sets append transformed copies of every training image with the same target, once
per cell, on the device the images live on (no PIL, no per-image Python loop):

=============  =========================================================  ======
name           copies                                                     size
=============  =========================================================  ======
none           Base                                                        1x
flip           Base + Flip (horizontal mirror)                             2x
flip_rot<T>    Base + Flip + Rotate +T + Rotate -T  (T in 10/20/30/40)     4x
flip_rr        Base + Flip + Rotate +a_i + Rotate -b_i, a_i, b_i ~ U[10,30] 4x
=============  =========================================================  ======

Adaptive sets (report 5.3.2), the family ``adaptive_x1=<X1>_x2=<X2>``, choose each image's
copies from the inclination of its eye line: ``fer_bench.training.augment.adaptive``. The
registry itself and the ops (``hflip``, ``rotate``) live in ``augment.base``, which both
import; the registry imports both modules on its first lookup or listing.

Online sets (beyond the study) transform every training batch afresh on the device instead:
``rand_flip`` (random mirror), ``rand_flip_shift2`` / ``rand_flip_shift4`` (random mirror and
random translation up to 2 / 4 pixels).

Positive angles rotate counter-clockwise as the image is displayed. Rotation samples
bilinearly and fills the corners from the nearest border pixel (like Keras' default
``fill_mode="nearest"``), so no black wedges appear. "flip_rot20" is the report's best.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fer_bench.training.augment.base import (  # noqa: F401  (re-exported: the augment API)
    AUGMENTATIONS,
    AugmentationSet,
    check_augmentation,
    hflip,
    rotate,
)
from fer_bench.training.device import one_thread_for_small

RANDOM_ANGLE_RANGE_DEG = (10.0, 30.0)
#: Second entropy word of the "flip_rr" angle stream, ``default_rng([seed, RR_ANGLE_STREAM])``,
#: kept apart from the split (seed; [seed, 1]) and N-hot ([seed, 2]) streams.
RR_ANGLE_STREAM = 3


def _study_set(images: torch.Tensor, targets: torch.Tensor, seed: int, *, flip: bool,
               angle: float | None = None, random_angles: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The study's sets: block order Base, Flip, Rotate +, Rotate -. ``seed`` only matters
    for random angles (numpy ``default_rng([seed, RR_ANGLE_STREAM])`` draws them)."""
    blocks = [images]
    if flip:
        blocks.append(hflip(images))
    if angle is not None:
        blocks += [rotate(images, angle), rotate(images, -angle)]
    elif random_angles:
        low, high = RANDOM_ANGLE_RANGE_DEG
        angles = np.random.default_rng([seed, RR_ANGLE_STREAM]).uniform(low, high, size=(2, images.shape[0]))
        angles_t = torch.from_numpy(angles.astype(np.float32)).to(images.device)
        blocks += [rotate(images, angles_t[0]), rotate(images, -angles_t[1])]
    if len(blocks) == 1:
        return images, targets
    return torch.cat(blocks), targets.repeat(len(blocks), 1)


def _register_study_sets() -> None:
    def study(name: str, multiple: int, description: str, **options: object) -> None:
        def expand(images: torch.Tensor, targets: torch.Tensor, seed: int):
            return _study_set(images, targets, seed, **options)  # type: ignore[arg-type]
        AUGMENTATIONS.register(name, AugmentationSet(name, multiple, expand, description), builtin=True)

    study("none", 1, "Base only", flip=False)
    study("flip", 2, "Base + Flip", flip=True)
    for angle in (10, 20, 30, 40):
        study(f"flip_rot{angle}", 4, f"Base + Flip + Rotate +-{angle} deg", flip=True,
              angle=float(angle))
    low, high = RANDOM_ANGLE_RANGE_DEG
    study("flip_rr", 4, f"Base + Flip + Rotate +a / -b, a, b ~ U[{low:g}, {high:g}] deg per image",
          flip=True, random_angles=True)


_register_study_sets()


def random_flip_shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of uint8 [B, H, W] mirrored with probability 1/2 and translated by an
    integer (dy, dx) drawn uniformly from [-max_shift, max_shift] (border pixels repeated).

    Two copies over the whole batch, no Python loop: the rows of every image picked by one
    ``index_select`` (a row map per image), then its columns by one ``gather`` with a
    per-image column map (mirror + shift) broadcast over the rows. On a CPU this is about
    twice as fast as one ``take`` with a flat per-pixel source index (which needs an int64
    index as large as the batch), with the same result.
    """
    count, height, width = batch.shape
    device = batch.device
    with one_thread_for_small(batch.numel(), device):
        flip = torch.rand(count, generator=generator, device=device) < 0.5
        shifts = torch.randint(-max_shift, max_shift + 1, (2, count), generator=generator, device=device)
        rows = (torch.arange(height, device=device)[None, :] - shifts[0][:, None]).clamp_(0, height - 1)
        cols = torch.arange(width, device=device)[None, :].expand(count, width)
        cols = torch.where(flip[:, None], width - 1 - cols, cols)
        cols = (cols - shifts[1][:, None]).clamp_(0, width - 1)
        first_row = torch.arange(count, device=device)[:, None] * height + rows     # [B, H]
        shifted = batch.reshape(count * height, width).index_select(0, first_row.reshape(-1))
        return shifted.reshape(count, height, width).gather(
            2, cols[:, None, :].expand(count, height, width))


def _register_online_sets() -> None:
    for shift in (0, 2, 4):
        name = "rand_flip" if shift == 0 else f"rand_flip_shift{shift}"

        def online(batch: torch.Tensor, generator: torch.Generator, shift: int = shift) -> torch.Tensor:
            return random_flip_shift(batch, shift, generator)

        AUGMENTATIONS.register(name, AugmentationSet(
            name, 1, lambda images, targets, seed: (images, targets),
            "online, every batch: random mirror (p=1/2)"
            + (f" and random shift up to +-{shift} px" if shift else ""), online=online), builtin=True)


_register_online_sets()


def to_model_input(batch: torch.Tensor, input_size: int, channels_last: bool = False) -> torch.Tensor:
    """uint8 [B, H, W] -> float32 [B, 1, S, S] in [0, 1], S = ``input_size``.

    Resizes bilinearly (antialiased when shrinking) when S != H, e.g. 224 for DAN.
    ``channels_last`` returns that memory format (faster convolutions on CUDA).
    A batch on a CPU is converted on one thread (``one_thread_for_small``).
    """
    numel = batch.shape[0] * max(batch.shape[-2] * batch.shape[-1], input_size * input_size)
    with one_thread_for_small(numel, batch.device):
        x = batch.unsqueeze(1).float().div_(255.0)
        if x.shape[-1] != input_size or x.shape[-2] != input_size:
            shrink = input_size < x.shape[-1]
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear",
                              align_corners=False, antialias=shrink).clamp_(0.0, 1.0)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def needs_landmarks(augmentation: str) -> bool:
    """Whether augmentation set ``augmentation`` reads per-image landmarks (``needs``)."""
    return bool(AUGMENTATIONS.get(augmentation).needs)

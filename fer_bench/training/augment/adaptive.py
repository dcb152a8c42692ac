"""Adaptive augmentation sets (report 5.3.2, proposed there, never run).

Each image's copies are chosen from the inclination of its eye line (``meta["inclination"]``,
degrees, positive = the face is turned clockwise on screen, NaN without landmarks): the
family ``adaptive_x1=<X1>_x2=<X2>`` (any well-formed name works, e.g.
``adaptive_x1=2.5_x2=20``; ``DEFAULT_ADAPTIVE`` is registered up front) gives

* |inclination| < X1: Base + Rotate +-20 (no flip: the mirror of a level face adds little);
* X1 <= |inclination| <= X2: Base + Flip + Rotate +-20 (the full set);
* |inclination| > X2: Base + Flip + one Rotate 20 *away from the tilt* (towards upright:
  counter-clockwise, +20 here, for a face turned clockwise), never one that tilts it further;
* no landmarks (NaN): the full set, as ``flip_rot20``.

Between 3x and 4x; ``adaptive_size`` counts it for given inclinations. The family is
registered in ``AUGMENTATIONS`` (``augment.base``) when this module is imported, which the
registry does on its first lookup or listing (one of its built-in modules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import torch

from fer_bench.errors import ConfigError
from fer_bench.training.augment.base import AUGMENTATIONS, AugmentationSet, hflip, rotate

ADAPTIVE_ANGLE = 20.0
#: The family's name pattern; X1, X2 in degrees, written as ``format(x, "g")``.
ADAPTIVE_PATTERN = r"adaptive_x1=(\d+(?:\.\d+)?)_x2=(\d+(?:\.\d+)?)"
ADAPTIVE_TEMPLATE = "adaptive_x1=<X1>_x2=<X2>"
#: X1 / X2 chosen by a SMALL sweep (benchmarks/adaptive_sweep.py: 3,000 real images,
#: small_cnn, 3 epochs, seed 0; honest accuracy: x1=5_x2=25 49.7%, 5/15 49.3%, 3/15 48.3%,
#: 8/15 46.7%, flip_rot20 50.3%, Base 42.0%, n_test 300, so all within noise). On the full
#: training split (HOG landmarks for 74% of faces) the default makes 0.888 of the 4x images.
DEFAULT_ADAPTIVE_X1 = 5.0
DEFAULT_ADAPTIVE_X2 = 25.0


def adaptive_name(x1: float, x2: float) -> str:
    """The set's canonical name, ``adaptive_x1=5_x2=15``."""
    return f"adaptive_x1={float(x1):g}_x2={float(x2):g}"


DEFAULT_ADAPTIVE = adaptive_name(DEFAULT_ADAPTIVE_X1, DEFAULT_ADAPTIVE_X2)


def adaptive_plan(inclination: torch.Tensor | np.ndarray, x1: float, x2: float
                  ) -> dict[str, torch.Tensor]:
    """Which copies each image gets: bool [T] masks ``flip``, ``plus``, ``minus`` (Rotate
    +angle / -angle in ``rotate``'s convention, counter-clockwise positive) from the
    inclination in degrees (clockwise on screen positive, NaN = no landmarks). Base is
    always kept. See the module docstring for the rule."""
    tilt = torch.as_tensor(inclination, dtype=torch.float32).cpu()
    known = torch.isfinite(tilt)
    size = tilt.abs()
    level = known & (size < x1)
    steep = known & (size > x2)
    # Away from the tilt: a face turned clockwise (tilt > 0) is turned back counter-clockwise.
    return {"flip": ~level,
            "plus": ~steep | (tilt > 0),
            "minus": ~steep | (tilt < 0)}


def adaptive_size(inclination: torch.Tensor | np.ndarray, x1: float, x2: float) -> int:
    """Images the set ``adaptive_x1=<x1>_x2=<x2>`` makes from images of these inclinations
    (compare with ``4 * len(inclination)`` for ``flip_rot20``)."""
    plan = adaptive_plan(inclination, x1, x2)
    return int(len(plan["flip"]) + sum(int(mask.sum()) for mask in plan.values()))


def _adaptive_set(images: torch.Tensor, targets: torch.Tensor, seed: int,
                  meta: Mapping[str, torch.Tensor], *, x1: float, x2: float,
                  angle: float = ADAPTIVE_ANGLE) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks Base (all), Flip, Rotate +angle, Rotate -angle, each of the images its plan
    selects, in their order; no randomness (``seed`` unused)."""
    plan = adaptive_plan(meta["inclination"], x1, x2)
    blocks, target_blocks = [images], [targets]
    for key, transform in (("flip", hflip), ("plus", lambda x: rotate(x, angle)),
                           ("minus", lambda x: rotate(x, -angle))):
        index = plan[key].nonzero().squeeze(1).to(images.device)
        if index.numel():
            blocks.append(transform(images.index_select(0, index)))
            target_blocks.append(targets.index_select(0, index.to(targets.device)))
    return torch.cat(blocks), torch.cat(target_blocks)


def _build_adaptive(name: str, match: re.Match[str]) -> AugmentationSet:
    x1, x2 = float(match.group(1)), float(match.group(2))
    canonical = adaptive_name(x1, x2)
    if name != canonical:
        raise ConfigError(f"augmentation {name!r}: write it as {canonical!r} (one name per set)")
    if x1 > x2:
        raise ConfigError(f"augmentation {name!r}: X1 ({x1:g}) must not exceed X2 ({x2:g})")

    def expand(images: torch.Tensor, targets: torch.Tensor, seed: int,
               meta: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return _adaptive_set(images, targets, seed, meta, x1=x1, x2=x2)

    return AugmentationSet(
        canonical, 4, expand,
        f"adaptive (5.3.2), 3-4x by inclination: |a|<{x1:g} deg Base+Rotate+-{ADAPTIVE_ANGLE:g}, "
        f"|a|>{x2:g} deg Base+Flip+Rotate {ADAPTIVE_ANGLE:g} towards upright, else and without "
        f"landmarks Base+Flip+Rotate+-{ADAPTIVE_ANGLE:g}", needs=("inclination",))


AUGMENTATIONS.register_family(
    ADAPTIVE_TEMPLATE, ADAPTIVE_PATTERN, _build_adaptive, builtin=True,
    description="adaptive augmentation (report 5.3.2): flip / rotation chosen per image from "
                "its landmarks' inclination; X1, X2 in degrees")
AUGMENTATIONS.get(DEFAULT_ADAPTIVE)   # the default is listed from the start

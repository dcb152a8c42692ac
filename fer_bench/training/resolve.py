"""A cell's identity put together (``resolve_config``, ``resolve_cell``: the one place)
and its initialisation checked and loaded (``check_init``, ``load_weights_file``).

SPEC defaults < model spec < profile < user, then the dataset fingerprint, device type,
effective precision, the model's release and the releases of the other plug-ins the cell
uses (``plugin_releases``). Apart from ``runner`` (which trains a cell
once its identity is put together); nothing here changes what a cell's identity holds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fer_bench.data.labels.treatments import LABELS
from fer_bench.errors import CellFailed, CellSkipped, ConfigError
from fer_bench.identity.cell import (
    DEFAULT_ALIGNMENT,
    Cell,
    InitChoice,
    effective_precision,
    file_sha256,
    resolve_init,
)
from fer_bench.identity.config import TrainConfig
from fer_bench.models import ModelSpec
from fer_bench.training.augment.base import AUGMENTATIONS
from fer_bench.training.augment.sets import check_augmentation, needs_landmarks
from fer_bench.training.device import cpu_has_bf16
from fer_bench.training.losses import LOSSES, get_loss
from fer_bench.training.recipe import check_recipe
from fer_bench.training.tta import TTA_CHOICES

_SPEC_CONFIG_FIELDS = ("epochs", "lr", "batch_size", "loss", "augmentation", "input_size")


def resolve_config(spec: ModelSpec, **overrides: Any) -> TrainConfig:
    """SPEC defaults < the spec's non-None preferences (named fields, then ``spec.recipe``)
    < non-None ``overrides``.

    ``init`` may be given as the user wrote it ("file:PATH"); it is stored resolved
    ("file:<sha256>"). Raises ``ConfigError`` for an unknown loss, augmentation or init,
    TypeError for an unknown field.
    """
    from_spec = {name: getattr(spec, name) for name in _SPEC_CONFIG_FIELDS}
    config = (TrainConfig().with_overrides(**from_spec).with_overrides(**spec.recipe)
              .with_overrides(**overrides))
    get_loss(config.loss)
    check_augmentation(config.augmentation)
    check_recipe(config)
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if config.tta not in TTA_CHOICES:
        raise ConfigError(f"unknown tta {config.tta!r}; valid: {', '.join(TTA_CHOICES)}")
    config = replace(config, init=resolve_init(config.init).name)
    if config.epochs < 1 or config.batch_size < 1 or config.input_size < 1:
        raise ConfigError(f"epochs, batch_size and input_size must be >= 1: {config}")
    return config


def resolve_cell(spec: ModelSpec, *, variant: str, split: str, seed: int, config: TrainConfig,
                 dataset_fingerprint: str, device: str | torch.device,
                 precision: str = "auto", alignment: str = DEFAULT_ALIGNMENT) -> Cell:
    """The complete identity of ``spec`` trained with ``config`` on this data and device.

    ``precision``: "auto" | "fp32" | "bf16" as asked (``--fer-precision``); the cell holds
    the effective one (``cell.effective_precision``: "auto" is bf16 on CUDA, the model's
    ``cpu_precision`` on a CPU with bf16 units).
    ``alignment``: the aligner output the cell uses (``data.alignment.cell_alignment``);
    ``ConfigError`` when the augmentation needs landmarks and it has none."""
    from fer_bench.data.align.axis import parse_cell_alignment

    use = parse_cell_alignment(alignment)
    if needs_landmarks(config.augmentation) and use is None:
        raise ConfigError(f"augmentation {config.augmentation!r} needs face landmarks: give "
                          "the cell an aligner (alignment axis, data.align.axis.cell_alignment)")
    releases = plugin_releases(variant=variant, split=split, loss=config.loss,
                               augmentation=config.augmentation,
                               aligner=use.aligner if use is not None else None)
    device_type = torch.device(device).type
    return Cell(model=spec.name, variant=variant, split=split, seed=int(seed), recipe=config,
                model_release=spec.release or "unregistered", alignment=alignment,
                dataset=dataset_fingerprint, plugin_releases=releases,
                device_type=device_type,
                precision=effective_precision(device_type, precision,
                                              model_cpu_precision=spec.cpu_precision,
                                              cpu_has_bf16=device_type == "cpu" and cpu_has_bf16()))


def plugin_releases(*, variant: str, split: str, loss: str, augmentation: str,
                    aligner: str | None = None) -> dict[str, str]:
    """axis -> "dist==version" (or "in-process") of each plug-in a cell uses that fer_bench
    does not build in: its label treatment (axis ``variant``), split kind, loss, augmentation
    set and aligner (axis ``alignment``; None: no aligner). Empty for a built-ins-only cell,
    whose identity then stays what it was before plug-in releases entered it
    (``Cell.plugin_releases``). Looks every name up, so an unknown or broken one raises
    ``ConfigError`` (close names suggested)."""
    from fer_bench.data.align.axis import ALIGNERS
    from fer_bench.data.splits import SPLITS

    used = [("variant", LABELS, variant), ("split", SPLITS, split), ("loss", LOSSES, loss),
            ("augmentation", AUGMENTATIONS, augmentation)]
    if aligner is not None:
        used.append(("alignment", ALIGNERS, aligner))
    releases = {axis: registry.release(name) for axis, registry, name in used}
    return {axis: release for axis, release in releases.items() if release is not None}


def check_init(spec: ModelSpec, init: InitChoice | str) -> None:
    """Raise ``CellSkipped`` when ``spec`` cannot take ``init`` (ImageNet weights it has not)."""
    name = init.name if isinstance(init, InitChoice) else init
    if name == "imagenet" and not spec.pretrained_available:
        raise CellSkipped(f"model {spec.name!r} has no ImageNet weights (init=imagenet); "
                          f"use --fer-init scratch or file:PATH")


def load_weights_file(model: torch.nn.Module, path: Path, expected_sha256: str, model_name: str) -> int:
    """Load a local weights file into ``model``; returns the number of tensors loaded.

    ``.safetensors`` or a torch file read with ``weights_only=True`` (never a pickle of
    code); ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers are unwrapped. Tensors whose
    name and shape match are loaded (a new classifier head stays initialised). Raises
    ``CellFailed`` when the file changed since its sha256 was taken or nothing matches.
    """
    if file_sha256(path) != expected_sha256:
        raise CellFailed(f"weights file {path} changed since the cell was defined (sha256)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = model.state_dict()
    matching = {k: v for k, v in state.items()
                if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not matching:
        raise CellFailed(f"weights file {path}: no tensor matches model {model_name!r} "
                         f"({len(state)} tensors in the file)")
    model.load_state_dict(matching, strict=False)
    return len(matching)

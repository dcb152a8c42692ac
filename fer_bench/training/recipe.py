"""The optimisation side of a recipe: optimizer, learning-rate schedule, weight averaging.

All three are fields of ``TrainConfig`` (so of every cell's identity):

* ``optimizer``: "adam" (the study's, report 4.1), "adamw", or "sgd" (Nesterov momentum
  ``momentum``); ``weight_decay`` as given (decoupled for adamw, L2 otherwise).
* ``schedule``: "constant" (the study's), "onecycle" (linear warm-up from 0 over the first
  ``warmup`` share of all steps to ``lr``, then linear decay to 0 at the last step) or
  "cosine" (the same warm-up, then cosine decay to 0). Stepped once per batch.
* ``ema``: decay of an exponential moving average of the weights (0 = off); evaluation and
  model selection then use the averaged weights, as in the airbench / timm recipes.
"""

from __future__ import annotations

import copy
import math

import torch

from fer_bench.errors import ConfigError
from fer_bench.identity.config import COMPILE_CHOICES, TrainConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle", "cosine")


def check_recipe(config: TrainConfig) -> None:
    """Raise ``ConfigError`` naming the field for an optimizer/schedule/EMA value not allowed."""
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {config.schedule!r}; valid: {', '.join(SCHEDULES)}")
    if not 0.0 <= config.warmup < 1.0:
        raise ConfigError(f"warmup must be a share of the steps in [0, 1), got {config.warmup}")
    if not 0.0 <= config.ema < 1.0:
        raise ConfigError(f"ema must be a decay in [0, 1), got {config.ema}")
    if config.compile not in COMPILE_CHOICES:
        raise ConfigError(f"unknown compile choice {config.compile!r}; valid: {', '.join(COMPILE_CHOICES)}")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` over the model's parameters at ``config.lr``."""
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=True,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at batch ``step`` (0-based) of ``total_steps``."""
    if config.schedule == "constant" or total_steps <= 1:
        return 1.0
    warm = config.warmup * total_steps
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm + 1) / max(1.0, total_steps - warm))
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-batch scheduler following ``lr_factor``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config))


class WeightAverage:
    """Exponential moving average of a model's parameters and buffers (``decay`` per step).

    ``model`` is the averaged copy used for evaluation. Buffers (BatchNorm statistics) are
    copied, not averaged, as in timm's ``ModelEmaV2`` without warm-up.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for averaged, current in zip(self.model.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current.detach(), 1.0 - self.decay)
        for averaged, current in zip(self.model.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)

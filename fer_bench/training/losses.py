"""The ten loss functions of SPEC "Loss functions" (report 4.3.3).

Every loss takes logits [B, C] and targets [B, C] (rows are label distributions summing
to 1) and returns a scalar: the batch mean of a per-image loss. As in the study (Keras
losses on a softmax output layer), all but the cross-entropy family act on
``p = softmax(logits)``; the cross-entropy family uses ``log_softmax`` for stability.
Losses compute in float32 even under bf16 autocast.

Beside the study's ten, "ms_multitarget" is Microsoft's FERPlus multi-target loss (the
``ms-multitarget`` label mode, ``fer_bench.data.labels.ferplus_ms``).

"pld" (probabilistic label drawing) is cross-entropy against a one-hot target drawn, each
epoch, from every image's distribution: the runner calls ``draw_one_hot`` once per epoch
when ``Loss.draws_targets`` is true.

Losses live in the registry ``LOSSES`` (entry-point group ``fer_bench.losses``). A third
party adds one with an entry point whose target is a ``Loss`` or a plain function
``(logits [B, C], targets [B, C]) -> scalar``::

    [project.entry-points."fer_bench.losses"]
    focal = "my_pkg.losses:focal"
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fer_bench.errors import ConfigError
from fer_bench.registry import Entry, Registry

EPS = 1e-7  # Keras' epsilon: clips probabilities away from 0 inside logarithms


@dataclass(frozen=True)
class Loss:
    """A named loss ``(logits [B, C], targets [B, C]) -> scalar``."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    draws_targets: bool = False   # True for "pld": targets are redrawn one-hot each epoch

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.fn(logits.float(), targets.float())


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


def mse(logits, targets):
    return (_probs(logits) - targets).pow(2).mean()


def mae(logits, targets):
    return (_probs(logits) - targets).abs().mean()


def logcosh(logits, targets):
    diff = _probs(logits) - targets
    # log(cosh(x)) = x + softplus(-2x) - log 2, stable for any x
    return (diff + F.softplus(-2.0 * diff) - math.log(2.0)).mean()


def cosine(logits, targets):
    """Negative cosine similarity (Keras): -1 when p points along the target."""
    return -F.cosine_similarity(_probs(logits), targets, dim=1, eps=EPS).mean()


def cce(logits, targets):
    """Soft-target categorical cross-entropy: -sum_c t_c log p_c."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def kld(logits, targets):
    """KL(t || p) = sum_c t_c (log t_c - log p_c), 0 log 0 = 0."""
    return (torch.xlogy(targets, targets) - targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def hinge(logits, targets):
    """Categorical hinge (Keras): max(0, 1 + max_c (1-t_c) p_c - sum_c t_c p_c)."""
    probs = _probs(logits)
    positive = (targets * probs).sum(dim=1)
    negative = ((1.0 - targets) * probs).amax(dim=1)
    return F.relu(negative - positive + 1.0).mean()


def msle(logits, targets):
    return (torch.log1p(_probs(logits)) - torch.log1p(targets)).pow(2).mean()


def poisson(logits, targets):
    probs = _probs(logits)
    return (probs - targets * torch.log(probs + EPS)).mean()


#: Microsoft's floor on the multi-target weights (ferplus.py ``_process_target`` L200).
MS_TARGET_EPSILON = 0.001


def ms_multitarget(logits, targets):
    """Microsoft's multi-target loss (Barsoum et al. 2016, "multi-label learning"):
    ``-log max_c (w_c p_c)`` with ``w = (1 - 0.001) * mask + 0.001`` and ``mask = targets > 0``
    (weight 1 on a masked class, 0.001 elsewhere).

    microsoft/FERPlus ``src/train.py`` ``cost_func`` L43-44 (``-log reduce_max(target *
    prediction)``) on the target ``_process_target`` builds for mode multi_target
    (``src/ferplus.py`` L197-201): any class of the mask may take the probability, the loss
    rewards the most probable one. Computed in log space: ``log w_c + log_softmax_c``.
    Label smoothing makes every share positive, so it would mask every class.
    """
    mask = (targets > 0).to(logits.dtype)
    log_weights = torch.log((1.0 - MS_TARGET_EPSILON) * mask + MS_TARGET_EPSILON)
    return -(log_weights + F.log_softmax(logits, dim=1)).amax(dim=1).mean()


LOSS_GROUP = "fer_bench.losses"


def _as_loss(name: str, obj: object, entry: Entry) -> Loss:
    """A ``Loss`` (renamed to its registered name) or a plain loss function -> ``Loss``."""
    if isinstance(obj, Loss):
        return obj if obj.name == name else Loss(name, obj.fn, obj.draws_targets)
    if callable(obj):
        return Loss(name, obj)
    raise ConfigError(f"loss {name!r} ({entry.source}): target is a {type(obj).__name__}, "
                      f"not a Loss or a function (logits, targets) -> scalar")


LOSSES: Registry[Loss] = Registry("loss", LOSS_GROUP, _as_loss, option="--fer-loss")
for _loss in (Loss("mse", mse), Loss("pld", cce, draws_targets=True), Loss("logcosh", logcosh),
              Loss("cosine", cosine), Loss("cce", cce), Loss("mae", mae), Loss("kld", kld),
              Loss("hinge", hinge), Loss("msle", msle), Loss("poisson", poisson),
              Loss("ms_multitarget", ms_multitarget)):
    LOSSES.register(_loss.name, _loss, builtin=True)
#: The study's ten losses (report 4.3.3), in its order.
STUDY_LOSSES = ("mse", "pld", "logcosh", "cosine", "cce", "mae", "kld", "hinge", "msle", "poisson")


def get_loss(name: str) -> Loss:
    """The loss registered as ``name``; ``ConfigError`` with close names otherwise."""
    return LOSSES.get(name)


def draw_one_hot(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One one-hot row per image, drawn from its distribution (PLD).

    targets float [T, C] (rows sum to 1) -> float [T, C] one-hot, on the same device;
    ``generator`` (on that device) makes the draw reproducible.
    """
    drawn = torch.multinomial(targets.float(), 1, generator=generator).squeeze(1)
    return F.one_hot(drawn, targets.shape[1]).to(targets.dtype)

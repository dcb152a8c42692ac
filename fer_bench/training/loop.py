"""The training loop of one cell: what it holds (``TrainingRun``), one epoch's pass
(``train_epoch``) and its seeded random streams.

Apart from ``runner`` so the checkpoint module (``training.checkpoint``) can capture and
restore a ``TrainingRun`` without importing the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from fer_bench.errors import CellFailed
from fer_bench.identity.config import TrainConfig
from fer_bench.models import ModelSpec, logits_of
from fer_bench.training import preempt
from fer_bench.training.augment.sets import to_model_input
from fer_bench.training.device import select_batch, synchronized_time
from fer_bench.training.evaluate import autocast_for
from fer_bench.training.losses import Loss
from fer_bench.training.recipe import WeightAverage

#: Offset of the PLD label-draw stream's seed from the shuffle stream's (both torch generators).
LABEL_DRAW_SEED_OFFSET = 1_000_003
#: Offset of the online-augmentation stream's seed (random mirror / shift of each batch).
AUGMENT_SEED_OFFSET = 2_000_003


@dataclass(frozen=True)
class EpochReport:
    """What ``on_epoch`` hears after each epoch (``epoch`` is 1-based; accuracies in [0, 1])."""

    epoch: int
    epochs: int
    train_seconds: float
    train_loss: float
    val_acc: float
    test_acc: float


def training_generators(seed: int, device: torch.device | str) -> tuple[torch.Generator, torch.Generator]:
    """(shuffle, label draws): the runner's two seeded torch random streams on ``device``."""
    shuffle = torch.Generator(device=device).manual_seed(seed)
    return shuffle, torch.Generator(device=device).manual_seed(seed + LABEL_DRAW_SEED_OFFSET)


@dataclass
class TrainingRun:
    """What one cell's training loop holds (built once per cell by the runner).

    ``shuffle`` / ``label_draws`` / ``augment_draws``: the cell's seeded torch generators
    (batch order, PLD target draws, online augmentation) on the training device.
    """

    model: torch.nn.Module
    spec: ModelSpec
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Loss
    online: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    shuffle: torch.Generator
    label_draws: torch.Generator
    augment_draws: torch.Generator
    average: WeightAverage | None
    channels_last: bool
    amp: bool

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights evaluation and model selection use (the average when ``ema`` > 0)."""
        return self.average.model if self.average is not None else self.model


class EpochPass(NamedTuple):
    """What one training pass measured: wall seconds, the mean loss over its batches (the
    model's extra term included), and the mean of the model's extra term alone (None for a
    model without ``ModelSpec.extra_loss``; a batch where it returned None counts 0)."""

    seconds: float
    loss: float
    extra_loss: float | None


@dataclass
class Best:
    """Test probabilities float32 [n_test, 8] of the epoch (1-based) with the best
    validation accuracy so far."""

    epoch: int
    val_acc: float
    test_probs: torch.Tensor


def train_epoch(run: TrainingRun, images: torch.Tensor, targets: torch.Tensor,
                epoch: int) -> EpochPass:
    """One pass over ``images`` uint8 [T, H, W] with ``targets`` float [T, 8] in shuffled
    full batches; returns its ``EpochPass`` (wall seconds, mean loss, mean extra term).

    Per-batch losses stay on the device and are checked once at the end of the epoch (no
    per-batch host sync); a NaN/inf loss raises ``CellFailed`` naming epoch and batch.
    A SIGTERM / SIGUSR1 caught by ``preempt`` stops the pass before its next batch
    (``preempt.CellPreempted``): the epoch is dropped whole, never half-counted.
    """
    model, config, device = run.model, run.config, images.device
    model.train()
    batch_size = config.batch_size
    n_batches = images.shape[0] // batch_size
    batch_losses = torch.zeros(n_batches, device=device)
    has_extra = run.spec.extra_loss is not None
    extra_losses = torch.zeros(n_batches, device=device) if has_extra else None
    smoothing = config.label_smoothing
    start = synchronized_time(device)
    order = torch.randperm(images.shape[0], generator=run.shuffle, device=device)
    for b in range(n_batches):
        preempt.check(f"in epoch {epoch} before batch {b + 1}/{n_batches}")
        index = order[b * batch_size:(b + 1) * batch_size]
        batch = select_batch(images, index)
        if run.online is not None:
            batch = run.online(batch, run.augment_draws)
        x = to_model_input(batch, config.input_size, run.channels_last)
        y = select_batch(targets, index)
        # the model's own extra term sees the unsmoothed targets (e.g. MTEN's support head)
        y_loss = y * (1.0 - smoothing) + smoothing / y.shape[1] if smoothing else y
        with autocast_for(device, run.amp):
            outputs = model(x)
            logits = logits_of(outputs)
            loss = run.loss_fn(logits, y_loss)
            if has_extra:
                extra = run.spec.extra_loss(model, outputs, logits, y)
                if extra is not None:
                    extra = extra.float()
                    loss = loss + extra
                    extra_losses[b] = extra.detach()   # a copy on the device: no host sync
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.schedule.step()
        if run.average is not None:
            run.average.update(model)
        batch_losses[b] = loss.detach()
    seconds = synchronized_time(device) - start
    finite = torch.isfinite(batch_losses)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0]) + 1
        kind = "NaN" if bool(torch.isnan(batch_losses[bad - 1])) else "infinite"
        raise CellFailed(f"{kind} loss at epoch {epoch}, batch {bad} for model {run.spec.name}")
    mean_extra = float(extra_losses.mean()) if extra_losses is not None else None
    return EpochPass(seconds, float(batch_losses.mean()), mean_extra)

"""What cells will cost before they run: counted FLOPs and a rate measured on this device.

One cell's work, per epoch: ``T`` training images (the training split times its static
augmentation's ``multiple``, full batches only) and ``E = V + M`` evaluated images
(validation and test, with flip TTA where the recipe has it). ``training.flops`` counts
``f_t`` FLOPs per training image (forward + backward) and ``f_e`` per evaluated image;
``measure_rate`` times a few real training steps and evaluation batches of the model here,
which gives the FLOP rates ``r_t = f_t * images/s`` and ``r_e`` this device reaches on it
(FLOP/s). The estimate, in seconds::

    seconds = setup + epochs * (T * f_t / r_t + E * f_e / r_e)

``setup``: the measured time to build the model and count its FLOPs (every cell does both).
Because the rate is measured on the same model and recipe, ``T * f_t / r_t`` is
``T / (training images/s)``: the FLOPs say how heavy the model is (and, with the rate,
how well this device runs it), the measured steps say how fast it goes. A model whose FLOPs
cannot be counted is estimated from its measured images/s alone.

Left out: loading, cleaning and splitting the data, expanding static augmentation, face
alignment, ``torch.compile`` warm-up, the store, and any other load on the device (on a
shared machine the cells run slower than the rate measured at the start). Measurement
draws no random number from the run's generators (``torch.random.fork_rng``) and leaves no
model behind.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from fer_bench.data.schema import IMAGE_SIZE
from fer_bench.identity.config import TrainConfig
from fer_bench.models import ModelSpec, build_model, logits_of
from fer_bench.training.augment.sets import AUGMENTATIONS, to_model_input
from fer_bench.training.device import synchronized_time
from fer_bench.training.evaluate import autocast_for, eval_batch_size, predict
from fer_bench.training.flops import cell_flops
from fer_bench.training.heap import keep_heap
from fer_bench.training.losses import get_loss
from fer_bench.training.recipe import WeightAverage, make_optimizer

__all__ = ["CellWork", "Rate", "RateCache", "cell_work", "estimate_seconds", "format_long",
           "measure_rate"]

#: Seconds of timed training steps ``measure_rate`` aims for (evaluation: half as long):
#: at least ``MIN_CALLS`` calls unless that would take over 2x as long, at least one.
DEFAULT_BUDGET_S = 1.0
MIN_CALLS = 3
MAX_TRAIN_STEPS = 30
MAX_EVAL_BATCHES = 10
#: Untimed calls first: a process's first steps select kernels and allocate (small_cnn's
#: first two ran 5x slower than the rest on this project's CPU). Fewer once they took
#: the budget.
WARM_UP_CALLS = 3
#: On a CPU, a call is cut to at most this many counted FLOPs (and at least
#: ``PROBE_BATCH`` images): one VGG-sized training step of 64 images takes several seconds
#: on 2 cores, and per image a batch of 8 costs about the same there. Never by timing: on a
#: busy machine every call of two-thread torch waits for a core for about the same time
#: whatever its size, which would shrink the batch for nothing.
PROBE_FLOPS = 20e9
PROBE_BATCH = 8


@dataclass(frozen=True)
class Rate:
    """One model's measured speed at one recipe, precision and device.

    FLOPs are per image (``None`` when the counter could not count the model); rates are
    FLOP/s (``None`` with them); images/s are what was timed; seconds are wall seconds.
    """

    model: str
    device: str
    precision: str                      # "fp32" | "bf16"
    train_flops_per_image: int | None   # forward + backward
    eval_flops_per_image: int | None    # forward, x2 with flip TTA
    train_images_per_s: float
    eval_images_per_s: float
    setup_s: float                      # building the model and counting its FLOPs
    probe_s: float                      # the whole measurement, warm-up included

    @property
    def train_flops_per_s(self) -> float | None:
        """FLOP/s of the timed training steps (counted FLOPs x images/s)."""
        if self.train_flops_per_image is None:
            return None
        return self.train_flops_per_image * self.train_images_per_s

    @property
    def eval_flops_per_s(self) -> float | None:
        if self.eval_flops_per_image is None:
            return None
        return self.eval_flops_per_image * self.eval_images_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train_flops_per_s": self.train_flops_per_s,
                "eval_flops_per_s": self.eval_flops_per_s}


@dataclass(frozen=True)
class CellWork:
    """The images one cell trains and evaluates, per epoch, and its epochs."""

    epochs: int
    train_images: int   # images trained per epoch (full batches of the expanded set)
    eval_images: int    # validation + test images evaluated per epoch


def cell_work(config: TrainConfig, *, n_train: int, n_val: int, n_test: int) -> CellWork:
    """``CellWork`` of a cell with recipe ``config`` on a split of ``n_train`` / ``n_val`` /
    ``n_test`` images (before augmentation). A static set that expands each image up to
    ``multiple`` times counts ``multiple`` (the adaptive sets' largest factor: an upper
    bound for them)."""
    expanded = n_train * AUGMENTATIONS.get(config.augmentation).multiple
    trained = (expanded // config.batch_size) * config.batch_size
    return CellWork(epochs=config.epochs, train_images=trained, eval_images=n_val + n_test)


def estimate_seconds(work: CellWork, rate: Rate) -> float:
    """Estimated wall seconds of one cell (module docstring): setup, then per epoch its
    training images at the measured training rate and its evaluated images at the
    evaluation rate. FLOPs per image cancel against the same model's FLOP rate, so this
    is computed from images/s, which also covers a model whose FLOPs were not counted."""
    per_epoch = (work.train_images / rate.train_images_per_s
                 + work.eval_images / rate.eval_images_per_s)
    return rate.setup_s + work.epochs * per_epoch


def _devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def measure_rate(spec: ModelSpec, config: TrainConfig, device: str | torch.device,
                 precision: str, *, budget_s: float = DEFAULT_BUDGET_S) -> Rate:
    """Time ``spec``'s training and evaluation on ``device`` at ``config`` and ``precision``.

    The model is built from scratch (``pretrained=False``: no download) with its FLOPs
    counted as a cell counts them, then trained with the cell's optimizer, loss (and the
    model's extra loss term), online augmentation, weight averaging, bf16 autocast when
    ``precision`` is "bf16", and channels_last, on random uint8 images [B, 48, 48] of the
    recipe's batch size ``B`` (fewer for a heavy model on a CPU, ``_call_size``) with
    random target distributions [B, 8]: warm-up steps, then
    steps for about ``budget_s`` seconds (the median step is the rate); then evaluation
    batches through ``evaluate.predict`` the same way for ``budget_s / 2``.
    Exceptions from model code propagate (the caller reports the model as not estimated).
    The heap is kept first (``training.heap``), as ``run_cell`` keeps it for the cells timed.
    """
    keep_heap()
    device = torch.device(device)
    start = time.perf_counter()
    amp = precision == "bf16"
    with torch.random.fork_rng(devices=_devices(device)):
        torch.manual_seed(0)
        model = build_model(spec, num_classes=8, in_chans=1, pretrained=False)
        model = model.to(device=device, memory_format=torch.channels_last)
        train_flops, eval_flops = cell_flops(model, config, channels_last=True, amp=amp)
        setup_s = time.perf_counter() - start
        batch = config.batch_size
        generator = torch.Generator(device=device).manual_seed(0)
        images = torch.randint(0, 256, (batch, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8,
                               device=device, generator=generator)
        targets = torch.softmax(torch.randn(batch, 8, device=device, generator=generator), dim=1)
        online = AUGMENTATIONS.get(config.augmentation).online
        loss_fn = get_loss(config.loss)
        optimizer = make_optimizer(model, config)
        average = WeightAverage(model, config.ema) if config.ema > 0 else None

        def step(size: int) -> None:
            x = images[:size] if online is None else online(images[:size], generator)
            x = to_model_input(x, config.input_size, True)
            with autocast_for(device, amp):
                outputs = model(x)
                logits = logits_of(outputs)
                loss = loss_fn(logits, targets[:size])
                if spec.extra_loss is not None:
                    extra = spec.extra_loss(model, outputs, logits, targets[:size])
                    if extra is not None:
                        loss = loss + extra.float()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(model)

        model.train()
        size = _call_size(batch, train_flops, device)
        step_s = _median_call_s(lambda: step(size), device, budget_s, MAX_TRAIN_STEPS)
        eval_model = average.model if average is not None else model
        eval_batch = eval_batch_size(config.input_size, batch, device)
        eval_images = images.repeat((eval_batch + batch - 1) // batch, 1, 1)[:eval_batch]

        def evaluate(count: int) -> None:
            predict(eval_model, eval_images[:count], input_size=config.input_size,
                    batch_size=count, channels_last=True, amp=amp, tta=config.tta)

        eval_size = _call_size(eval_batch, eval_flops, device)
        eval_s = _median_call_s(lambda: evaluate(eval_size), device, budget_s / 2,
                                MAX_EVAL_BATCHES)
    return Rate(model=spec.name, device=str(device), precision=precision,
                train_flops_per_image=train_flops, eval_flops_per_image=eval_flops,
                train_images_per_s=size / step_s, eval_images_per_s=eval_size / eval_s,
                setup_s=setup_s, probe_s=time.perf_counter() - start)


def _call_size(full: int, flops_per_image: int | None, device: torch.device) -> int:
    """Images per timed call: ``full`` (the batch a cell uses), cut on a CPU to
    ``PROBE_FLOPS`` worth of counted FLOPs (at least ``PROBE_BATCH`` images)."""
    if device.type != "cpu" or not flops_per_image:
        return full
    return max(min(full, int(PROBE_FLOPS // flops_per_image)), min(full, PROBE_BATCH))


def _seconds(work: Any, device: torch.device) -> float:
    start = synchronized_time(device)
    work()
    return synchronized_time(device) - start


def _median_call_s(work: Any, device: torch.device, budget_s: float, most: int) -> float:
    """The median wall seconds of one call of ``work()``: after ``WARM_UP_CALLS`` untimed
    calls (fewer once they took ``budget_s``), called until ``budget_s`` passed and
    ``MIN_CALLS`` were made (at most ``most`` calls, and no more once ``2 * budget_s``
    passed). The median, not the mean: on a shared machine one call that waited for a core
    would otherwise set the rate."""
    warm = 0.0
    for _ in range(WARM_UP_CALLS):
        warm += _seconds(work, device)
        if warm >= budget_s:
            break
    times: list[float] = []
    while True:
        times.append(_seconds(work, device))
        elapsed = sum(times)
        if (len(times) >= most or elapsed >= 2 * budget_s
                or (elapsed >= budget_s and len(times) >= MIN_CALLS)):
            return max(statistics.median(times), 1e-9)


class RateCache:
    """``measure_rate`` once per model and what changes its step's cost (input size, batch,
    optimizer, weight averaging, online augmentation, TTA), precision and device. Not the
    loss (a few element-wise ops on [B, 8]): the losses experiment times its model once."""

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S) -> None:
        self.budget_s = budget_s
        self.rates: dict[tuple, Rate] = {}

    def get(self, spec: ModelSpec, config: TrainConfig, device: str | torch.device,
            precision: str) -> Rate:
        online = AUGMENTATIONS.get(config.augmentation).online is not None
        key = (spec.name, config.input_size, config.batch_size, config.optimizer,
               config.ema > 0, online, config.tta, precision, str(torch.device(device)))
        if key not in self.rates:
            self.rates[key] = measure_rate(spec, config, device, precision, budget_s=self.budget_s)
        return self.rates[key]

    @property
    def seconds(self) -> float:
        """Wall seconds spent measuring so far."""
        return sum(rate.probe_s for rate in self.rates.values())


def format_long(seconds: float) -> str:
    """A duration for a plan: "40 s", "12 min", "3.4 h", "5.2 days", "3.1 weeks"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 14 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (7 * 86400):.1f} weeks"

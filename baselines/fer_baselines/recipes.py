"""Model + recipe pairs beyond the study, registered as ``ModelSpec``s.

``fast_resnet``: the fast CPU recipe (issue "speed you can trust"): the small residual net
of ``fast_resnet.py`` trained with SGD-Nesterov, a one-cycle learning rate, batched random
mirror + shift augmentation on the device, soft-target cross-entropy on the label
distributions, and mirrored test-time augmentation. Its numbers are in the leaderboard's
speedrun table (``benchmarks/test_speedrun.py``, its own 9 epochs) and N-hot grid (the
``cpu`` profile, 3 epochs).

``fast_resnet_long``: the raised speedrun recipe (issue 21: 86% honest within 15 minutes of
training on two CPU cores): the same net, bf16, trained ``LONG_EPOCHS`` one-cycle epochs
with an exponential moving average of the weights (evaluation and model selection use it),
and airbench's six-view test-time augmentation (mirror x one-pixel translations,
``fer_bench.training.tta``, "flip_shift1"). Its pilot without EMA and six views (30 epochs,
seed 0) reached 85.39% honest, 85.96% at its last epoch.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from fer_baselines.fast_resnet import FastResNet
from fer_bench.models import ModelSpec

FAST_WIDTHS = (32, 48, 96, 192)
#: The recipe's own length: 9 one-cycle epochs, measured at 11.4 minutes of training (12.9
#: with per-epoch evaluation) on this project's 2-core CPU, within the 15-minute budget. The ``cpu`` profile's grid cells
#: shorten it to 3 epochs (about 5 minutes a cell); epochs are part of every cell's identity.
FAST_EPOCHS = 9
#: ``fast_resnet_long``'s length: quiet bf16 epochs take 25-27 s here (the heap kept), so 32
#: epochs are 13.3-14.4 minutes of training.
LONG_EPOCHS = 32
#: Per-step decay of its weight average: a half-life of 69 steps, about 0.6 of an epoch of
#: 110 batches, so the average smooths the last epochs without lagging the schedule.
LONG_EMA = 0.99


def build_fast_resnet(num_classes: int = 8, in_chans: int = 1) -> nn.Module:
    """``FastResNet`` with the recipe's widths: [B, 1, 48, 48] in [0, 1] -> logits [B, 8]."""
    return FastResNet(num_classes=num_classes, in_chans=in_chans, widths=FAST_WIDTHS)


fast_resnet = ModelSpec(
    name="fast_resnet",
    factory=build_fast_resnet,
    epochs=FAST_EPOCHS,
    lr=0.2,
    batch_size=256,
    loss="cce",
    augmentation="rand_flip_shift4",
    recipe={"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4,
            "schedule": "onecycle", "warmup": 0.25, "tta": "flip"},
    description="small residual net + one-cycle SGD + batched flip/shift: fast on a CPU",
    tags=("fast", "cpu"),
    # bf16 on a CPU with bf16 units: training 1.55-1.66x, evaluation 1.54x faster
    # (benchmarks/precision_probe.py, quiet, AMD EPYC / AVX512-BF16), and the converged grid's
    # pre-registered fp32 twins (1-hot s0, 8-hot s0, 8-hot s1, ordinary, 9 epochs) put bf16
    # 0.01 points below fp32 on average (-0.23, +0.45, -0.26): no accuracy cost.
    cpu_precision="bf16",
)


fast_resnet_long = replace(
    fast_resnet,
    name="fast_resnet_long",
    epochs=LONG_EPOCHS,
    recipe={**fast_resnet.recipe, "ema": LONG_EMA, "tta": "flip_shift1"},
    description="fast_resnet, 32 one-cycle epochs + weight EMA + 6-view TTA: the 15-minute speedrun",
)

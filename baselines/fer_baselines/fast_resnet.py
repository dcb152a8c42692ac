"""``fast_resnet``: a small airbench-style residual net built to train fast on a CPU.

Layout (defaults; see ``FastResNet`` for the knobs)::

    [B, 1, 48, 48] pixels in [0, 1] -> (x - 0.5) / 0.25
    stem   Conv3x3(1 -> w0) -> BN -> GELU -> MaxPool2                       48 -> 24
    3 x stage i (w_{i-1} -> w_i):
        Conv3x3 -> MaxPool2 -> BN -> GELU                                   /2
        + residual [Conv3x3 -> BN -> GELU] x ``depth``                      same size
    head   AdaptiveMaxPool(1) -> Flatten -> Linear(w3, num_classes, no bias) * scale

Defaults (widths 32/48/96/192, depth 1, stem_pool): 659,872 parameters, 175.9 MFLOP per
training image (forward + backward, torch.utils.flop_counter, batch 256).

Channels-last friendly, no dropout; meant to be trained with batched flip + translate
augmentation, label-distribution cross-entropy, SGD-Nesterov with a one-cycle LR.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DEFAULT_WIDTHS = (32, 48, 96, 192)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.GELU(),
    )


class _Stage(nn.Module):
    """[B, cin, H, W] -> [B, cout, H/2, W/2]: conv -> pool -> BN -> act, then residual convs."""

    def __init__(self, cin: int, cout: int, depth: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.GELU()
        self.res = nn.Sequential(*(_conv_bn(cout, cout) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn(self.pool(self.conv(x))))
        if len(self.res):
            x = x + self.res(x)
        return x


class FastResNet(nn.Module):
    """[B, in_chans, 48, 48] pixels in [0, 1] -> logits [B, num_classes]."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1,
                 widths: tuple[int, ...] = DEFAULT_WIDTHS, depth: int = 1,
                 head_scale: float = 1 / 8, stem_pool: bool = True) -> None:
        super().__init__()
        self.stem = _conv_bn(in_chans, widths[0])
        if stem_pool:
            self.stem.append(nn.MaxPool2d(2))
        self.stages = nn.Sequential(*(_Stage(widths[i], widths[i + 1], depth)
                                      for i in range(len(widths) - 1)))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes, bias=False)
        self.head_scale = head_scale

    def forward(self, images: Tensor) -> Tensor:
        x = (images - 0.5) * 4.0
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1)) * self.head_scale


def fast_resnet(num_classes: int = 8, in_chans: int = 1, **kwargs) -> nn.Module:
    """A freshly initialised ``FastResNet`` (no pretrained weights exist)."""
    return FastResNet(num_classes=num_classes, in_chans=in_chans, **kwargs)

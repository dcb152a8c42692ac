"""``small_cnn``: a three-block CNN that trains an epoch of ~25k 48x48 faces in about
20 s on 2 CPU cores (batch 64, Adam), for smoke tests and quick grids.

Layout (171,448 parameters with 1 input channel and 8 classes)::

    [B, 1, 48, 48]
    3 x (Conv3x3 no-bias -> BatchNorm -> ReLU -> MaxPool2)   channels 16, 32, 64
    [B, 64, 6, 6] -> AdaptiveAvgPool2d(6) -> Flatten -> Dropout(0.5)
    -> Linear(2304, 64) -> ReLU -> Linear(64, num_classes)   logits [B, num_classes]

The adaptive pool is a no-op at 48x48 and keeps the head valid for other input sizes.
"""

from __future__ import annotations

from torch import Tensor, nn

from fer_bench.models import ModelSpec

CHANNELS = (16, 32, 64)
HEAD_GRID = 6
HEAD_HIDDEN = 64


def _conv_block(in_chans: int, out_chans: int) -> nn.Sequential:
    """[B, in, H, W] -> [B, out, H/2, W/2]."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCnn(nn.Module):
    """[B, in_chans, 48, 48] pixels in [0, 1] -> logits [B, num_classes]."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        widths = (in_chans, *CHANNELS)
        self.features = nn.Sequential(*(_conv_block(widths[i], widths[i + 1])
                                        for i in range(len(CHANNELS))))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(HEAD_GRID),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(CHANNELS[-1] * HEAD_GRID * HEAD_GRID, HEAD_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(HEAD_HIDDEN, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def create_small_cnn(num_classes: int = 8, in_chans: int = 1) -> nn.Module:
    """A freshly initialised ``SmallCnn`` (no pretrained weights exist)."""
    return SmallCnn(num_classes=num_classes, in_chans=in_chans)


small_cnn = ModelSpec(
    name="small_cnn",
    factory=create_small_cnn,
    description="3 conv blocks (16/32/64, BN, max-pool) + MLP head, ~171k parameters",
    tags=("small",),
)

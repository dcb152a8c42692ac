"""``ran``: Region Attention Network (Wang et al., "Region Attention Networks for Pose and
Occlusion Robust Facial Expression Recognition", IEEE TIP 2020) at 48x48 grayscale.

Written from the official code, kaiwang960112/Challenge-condition-FER-dataset,
``FERplus_dir/attention_rank_loss.py`` (model ``ResNet.forward`` and the region-biased
loss ``MyLoss``) and ``FERplus_dir/train_attention_rank_loss.py`` (6 inputs per face:
5 regions + the face, loss = cross-entropy + region-biased loss with weight 1).

Architecture ([B, 1, S, S] pixels in [0, 1] -> logits [B, 8])::

    regions: the whole face I_0 and K = 5 fixed-fraction crops I_1..I_5, each resized
             (bilinear) back to S x S              -> [(1 + K) * B, 1, S, S]
    shared ResNet-18 trunk (timm, in_chans=1; stem max-pool removed, as classic.py does
             for 48x48: total stride 16, a 3x3 last map at S = 48) + global average
                                                    -> F_i  [B, 6, 512]
    self-attention   mu_i = softmax_i(sigmoid(Linear(512, 1)(F_i)))
    mean             F_m  = sum_i mu_i F_i / sum_i mu_i
    relation attn.   nu_i = softmax_i(sigmoid(Linear(1024, 1)([F_i; F_m])))
    pooled           P    = sum_i mu_i nu_i [F_i; F_m] / sum_i mu_i nu_i   [B, 1024]
    head             Linear(1024, 8)                                       logits

As upstream, each sigmoid weight is also soft-maxed across the regions (the paper's
equations stop at the sigmoid; the released code adds the softmax). The forward returns
``{"logits": [B, 8], "region_weights": mu [B, 6]}``; index 0 is the whole face (the
paper's I_0; upstream stores it last).

Crops (``DEFAULT_CROPS``): the paper's fixed-position regions, top-left, top-right and
bottom-centre at 0.75 of the face side, plus two centred crops at 0.9 and 0.8 that stand
in, deterministically, for its random crops of 0.7..0.95 (upstream's FERPlus run also used
5 regions + the face, cut offline with dlib; we cut them inside the model). Each crop is a
slice of the batch tensor followed by one ``F.interpolate`` of the whole batch: no
per-sample host code. All 6 regions go through the trunk as one batch of 6B images, so in
training BatchNorm normalises the regions together (upstream calls the trunk once per
region, i.e. per-region batch statistics; the running statistics used in evaluation are
shared either way).

Input geometry: the input side must be at least ``MIN_INPUT`` = 32 (trunk stride 16 -> a
last map of at least 2x2 per region) and every crop at least ``MIN_CROP`` = 16 px (one
trunk cell of the input); with the default crops that is S >= 32. A smaller input raises
``ModelError`` naming the model: when the model is built with ``input_size`` and in the
forward pass, which the runner's build-time output check runs at the configured size.

Region-biased loss (``extra_loss``): mean over the batch of
``max(0, 0.1 - (max_{k>=1} mu_k - mu_0))``, the margin ``REGION_MARGIN`` = 0.1 between the
best crop's weight and the whole face's weight, weight ``RB_WEIGHT`` = 1 as upstream.

Batch of one in training: works; every BatchNorm sees 6 regions x at least 2x2 values per
channel and the attention softmaxes run over regions, not over the batch.

Parameters at 1 channel and 8 classes: 11,179,978. Upstream (3-channel ResNet-18 trunk,
alpha 512->1, beta 1024->1, fc 1024->8) has 11,186,250; the difference (6,272) is the
stem conv's two dropped input channels (2 x 64 x 7 x 7). Parameters do not depend on the
input size.

No pretrained weights are bundled (upstream starts from an MS-Celeb-1M face-ID
checkpoint that is not reachable here); the model trains from scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_baselines.study_common import (
    RESNET18_FEATURES,
    output_part,
    refuse_pretrained,
    resnet18_trunk,
    study_spec,
)
from fer_bench.errors import ModelError

NAME = "ran"
REGION_MARGIN = 0.1
RB_WEIGHT = 1.0
MIN_INPUT = 32
MIN_CROP = 16


@dataclass(frozen=True)
class Crop:
    """A square region: side ``fraction`` of the face side; ``top``/``left`` place it in
    the free margin (0 = flush with the top/left edge, 0.5 = centred, 1 = flush bottom/right)."""

    name: str
    fraction: float
    top: float
    left: float

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) pixel bounds of this crop in a height x width image."""
        side_h = max(1, round(self.fraction * height))
        side_w = max(1, round(self.fraction * width))
        y0 = round(self.top * (height - side_h))
        x0 = round(self.left * (width - side_w))
        return y0, y0 + side_h, x0, x0 + side_w


DEFAULT_CROPS: tuple[Crop, ...] = (
    Crop("top_left", 0.75, 0.0, 0.0),
    Crop("top_right", 0.75, 0.0, 1.0),
    Crop("bottom_centre", 0.75, 1.0, 0.5),
    Crop("centre_90", 0.9, 0.5, 0.5),
    Crop("centre_80", 0.8, 0.5, 0.5),
)


def min_input_size(crops: tuple[Crop, ...] = DEFAULT_CROPS) -> int:
    """Smallest square input side the crop geometry serves."""
    smallest = min(crop.fraction for crop in crops)
    return max(MIN_INPUT, math.ceil(MIN_CROP / smallest - 1e-9))


def crop_boxes(height: int, width: int, crops: tuple[Crop, ...] = DEFAULT_CROPS,
               name: str = NAME) -> list[tuple[int, int, int, int]]:
    """Pixel boxes of ``crops`` in a height x width input; ``ModelError`` naming the model
    when the input is too small for the trunk or a crop is under ``MIN_CROP`` pixels."""
    if min(height, width) < MIN_INPUT:
        raise ModelError(
            f"model {name!r}: input {height}x{width} is too small for its crop geometry: "
            f"the shared ResNet-18 trunk (stride 16) needs every region to be at least "
            f"{MIN_INPUT}x{MIN_INPUT}; use input_size >= {min_input_size(crops)}")
    boxes = []
    for crop in crops:
        y0, y1, x0, x1 = crop.box(height, width)
        if min(y1 - y0, x1 - x0) < MIN_CROP:
            raise ModelError(
                f"model {name!r}: input {height}x{width} is too small for its crop geometry: "
                f"crop {crop.name!r} ({crop.fraction:g} of the side) is {y1 - y0}x{x1 - x0} "
                f"px, under {MIN_CROP} px; use input_size >= {min_input_size(crops)}")
        boxes.append((y0, y1, x0, x1))
    return boxes


class RegionAttentionNet(nn.Module):
    """[B, in_chans, S, S] -> {"logits": [B, num_classes], "region_weights": [B, 1 + K]}."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1, input_size: int = 48,
                 crops: tuple[Crop, ...] = DEFAULT_CROPS, name: str = NAME) -> None:
        super().__init__()
        if not crops:
            raise ModelError(f"model {name!r}: needs at least one crop besides the whole face")
        for crop in crops:
            if not (0.0 < crop.fraction <= 1.0 and 0.0 <= crop.top <= 1.0
                    and 0.0 <= crop.left <= 1.0):
                raise ModelError(f"model {name!r}: crop {crop} must have fraction in (0, 1] "
                                 f"and top/left in [0, 1]")
        self.name = name
        self.crops = tuple(crops)
        crop_boxes(input_size, input_size, self.crops, name)   # fail at build time
        self.trunk = resnet18_trunk(in_chans, stem_stride=2)
        self.alpha = nn.Linear(RESNET18_FEATURES, 1)
        self.beta = nn.Linear(2 * RESNET18_FEATURES, 1)
        self.fc = nn.Linear(2 * RESNET18_FEATURES, num_classes)

    @property
    def num_regions(self) -> int:
        return 1 + len(self.crops)

    def regions(self, images: Tensor) -> Tensor:
        """[B, C, H, W] -> [(1 + K) * B, C, H, W]: the face, then each crop resized to H x W
        (region-major: rows r * B .. r * B + B - 1 are region r)."""
        height, width = images.shape[-2:]
        parts = [images]
        for y0, y1, x0, x1 in crop_boxes(height, width, self.crops, self.name):
            parts.append(F.interpolate(images[:, :, y0:y1, x0:x1], size=(height, width),
                                       mode="bilinear", align_corners=False))
        return torch.cat(parts, dim=0)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        batch = images.shape[0]
        regions = self.regions(images)
        features = self.trunk(regions).reshape(self.num_regions, batch, -1).transpose(0, 1)
        mu = torch.softmax(torch.sigmoid(self.alpha(features)).squeeze(-1), dim=1)     # [B, R]
        mean = (mu.unsqueeze(-1) * features).sum(1) / mu.sum(1, keepdim=True)        # [B, 512]
        joined = torch.cat([features, mean.unsqueeze(1).expand_as(features)], dim=-1)  # [B, R, 1024]
        nu = torch.softmax(torch.sigmoid(self.beta(joined)).squeeze(-1), dim=1)       # [B, R]
        weights = (mu * nu).unsqueeze(-1)
        pooled = (weights * joined).sum(1) / weights.sum(1)
        return {"logits": self.fc(pooled), "region_weights": mu}


def region_biased_loss(region_weights: Tensor, margin: float = REGION_MARGIN) -> Tensor:
    """mean_b max(0, margin - (max_{k>=1} w[b, k] - w[b, 0])); column 0 is the whole face."""
    weights = region_weights.float()
    best_crop = weights[:, 1:].max(dim=1).values
    return torch.clamp(margin - (best_crop - weights[:, 0]), min=0.0).mean()


def ran_extra_loss(model: nn.Module, outputs: object, logits: Tensor, targets: Tensor) -> Tensor:
    """``RB_WEIGHT`` x the region-biased loss of the forward's ``region_weights``."""
    return RB_WEIGHT * region_biased_loss(output_part(NAME, outputs, "region_weights"))


def create_ran(num_classes: int = 8, in_chans: int = 1, pretrained: bool = False,
               input_size: int = 48) -> nn.Module:
    """A freshly initialised ``RegionAttentionNet`` (``input_size`` only checks the geometry)."""
    refuse_pretrained(NAME, pretrained)
    return RegionAttentionNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size)


ran = study_spec(
    NAME, create_ran, ran_extra_loss,
    "RAN (Wang et al. 2020): shared ResNet-18 over the face + 5 crops, "
    "self/relation attention, region-biased loss; from scratch",
)

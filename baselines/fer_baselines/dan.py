"""``dan``: Distract your Attention Network (Wen et al., "Distract Your Attention:
Multi-head Cross Attention Network for Facial Expression Recognition", 2021/2023) at 48x48
grayscale.

Written from the official code, yaoing/DAN: ``networks/dan.py`` (``DAN``,
``CrossAttentionHead``, ``SpatialAttention``, ``ChannelAttention``) and ``rafdb.py``
(``AffinityLoss``, ``PartitionLoss``; loss = cross-entropy + 1 x affinity + 1 x partition).

Architecture ([B, 1, S, S] pixels in [0, 1] -> logits [B, 8])::

    ResNet-18 trunk (timm, in_chans=1), stem adapted for 48x48 (see below)
                                                     -> X [B, 512, S/8, S/8] (6x6 at 48)
    4 cross-attention heads, each
        spatial: Conv1x1(512->256)+BN, then ReLU(Conv3x3 + Conv1x3 + Conv3x1 (256->512,
                 each + BN)), summed over channels -> a [B, 1, h, w] map; X * map
        channel: global average -> Linear(512, 32) -> BN1d -> ReLU -> Linear(32, 512)
                 -> sigmoid; pooled * weights     -> head [B, 512]
    heads stacked [B, 4, 512], log-softmax across the head axis, summed over heads
    Linear(512, 8) -> BatchNorm1d(8)                 -> logits

The forward returns ``{"logits": [B, 8], "features": [B, 512] (X averaged), "heads":
[B, 4, 512] (after the log-softmax)}``.

Stem (48x48 adaptation): the stock ResNet-18 downsamples by 32, which leaves a 2x2 map at
48x48, where the 3x3 / 1x3 / 3x1 spatial convolutions see mostly padding. Here the 7x7
stem conv has stride 1 and the stem max-pool is removed, so the total stride is 8 and the
last map is 6x6 at 48x48, close to the 7x7 map the paper's 224x224 inputs give. Kernel
shapes are unchanged. This runs the trunk at 48x48 about 0.7x as costly as the stock
trunk at 224x224, so ``input_size`` stays 48 (SPEC's DAN row says 224: upsampling a 48x48
face to 224 adds no information and would cost ~1.4x more per image on this geometry).

Affinity loss with distribution targets: upstream gives each image one class y and
computes ``||f - c_y||^2 / sum_d Var_k(c_k)[d]`` averaged over the batch (``f`` = pooled
features, ``c`` = learnable class centres, variance across the classes). fer_bench's
training targets are N-hot distributions ``t`` [B, 8], so here each image's squared
distance is *weighted by its target distribution*: ``sum_k t_k ||f - c_k||^2``, i.e. the
upstream loss in expectation over a label drawn from ``t``. A one-hot target gives exactly
upstream's term (upstream also adds 1e-12 for each of the 7 masked-out classes through a
clamp; that constant is dropped). The centres live in the model as the parameter
``centres`` [8, 512] (upstream keeps them in the loss module, optimised alongside the
model), drawn from N(0, 1) as upstream, so the runner's optimiser trains them.

Partition loss: ``log(1 + H / mean(Var_heads))``, the variance across the H heads
(unbiased, as upstream) averaged over batch and features. Upstream divides by the variance
unguarded, so H identical heads give +inf; here the variance is floored at
``PARTITION_VAR_FLOOR`` = 1e-6, so identical heads cost ``log(1 + 4e6)`` (~15.2, with no
gradient) instead of failing the cell. A single head gives 0.

Batch of one in training: not possible. The channel attention's BatchNorm1d(32) and the
output BatchNorm1d(8) normalise over the batch and have one value per channel; torch
raises for that, so the forward raises a ``ModelError`` naming the model first. The
runner drops the last partial batch, so this only happens with ``batch_size=1``.
Evaluation (running statistics) works at any batch size.

Parameters at 1 channel and 8 classes: 19,722,072 (trunk 11,170,240; 4 heads x 2,135,904;
fc 4,104; BN 16; centres 4,096). Upstream (3-channel torchvision trunk, 8 classes, with the
centres of its ``AffinityLoss`` counted) has 19,728,344; the difference (6,272) is the stem
conv's two dropped input channels (2 x 64 x 7 x 7). Parameters do not depend on the input
size.

No pretrained weights are bundled (upstream starts from an MS-Celeb-1M face-ID ResNet-18
that is not reachable here); the model trains from scratch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import init

from fer_baselines.study_common import (
    RESNET18_FEATURES,
    output_part,
    refuse_pretrained,
    resnet18_trunk,
    study_spec,
)
from fer_bench.errors import ModelError

NAME = "dan"
NUM_HEADS = 4
AFFINITY_WEIGHT = 1.0
PARTITION_WEIGHT = 1.0
PARTITION_VAR_FLOOR = 1e-6
SPATIAL_HIDDEN = 256
CHANNEL_HIDDEN = 32


def _conv_bn(in_chans: int, out_chans: int, kernel: tuple[int, int]) -> nn.Sequential:
    padding = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, kernel_size=kernel, padding=padding),
                         nn.BatchNorm2d(out_chans))


class SpatialAttention(nn.Module):
    """[B, 512, h, w] -> [B, 512, h, w]: the input times a one-channel attention map."""

    def __init__(self, channels: int = RESNET18_FEATURES, hidden: int = SPATIAL_HIDDEN) -> None:
        super().__init__()
        self.reduce = _conv_bn(channels, hidden, (1, 1))
        self.conv_3x3 = _conv_bn(hidden, channels, (3, 3))
        self.conv_1x3 = _conv_bn(hidden, channels, (1, 3))
        self.conv_3x1 = _conv_bn(hidden, channels, (3, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.reduce(x)
        y = F.relu(self.conv_3x3(y) + self.conv_1x3(y) + self.conv_3x1(y))
        return x * y.sum(dim=1, keepdim=True)


class ChannelAttention(nn.Module):
    """[B, 512, h, w] -> [B, 512]: the pooled map times channel weights (512-32-512)."""

    def __init__(self, channels: int = RESNET18_FEATURES, hidden: int = CHANNEL_HIDDEN) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean(dim=(2, 3))
        return pooled * self.attention(pooled)


class CrossAttentionHead(nn.Module):
    """Spatial then channel attention: [B, 512, h, w] -> [B, 512]."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = SpatialAttention()
        self.channel = ChannelAttention()
        for m in self.modules():   # upstream CrossAttentionHead.init_weights
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    init.constant_(m.bias, 0)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                init.constant_(m.weight, 1)
                init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.channel(self.spatial(x))


class DistractAttentionNet(nn.Module):
    """[B, in_chans, S, S] -> {"logits": [B, num_classes], "features": [B, 512],
    "heads": [B, num_heads, 512]}."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1, num_heads: int = NUM_HEADS,
                 name: str = NAME) -> None:
        super().__init__()
        if num_heads < 1:
            raise ModelError(f"model {name!r}: num_heads must be >= 1, got {num_heads}")
        self.name = name
        self.features = resnet18_trunk(in_chans, stem_stride=1)
        self.heads = nn.ModuleList(CrossAttentionHead() for _ in range(num_heads))
        self.fc = nn.Linear(RESNET18_FEATURES, num_classes)
        self.bn = nn.BatchNorm1d(num_classes)
        self.centres = nn.Parameter(torch.randn(num_classes, RESNET18_FEATURES))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if self.training and images.shape[0] < 2:
            raise ModelError(
                f"model {self.name!r}: a training batch of {images.shape[0]} image cannot "
                f"pass its BatchNorm1d layers (channel attention and output normalise over "
                f"the batch); train with batch_size >= 2 (evaluation takes any batch)")
        fmap = self.features.forward_features(images)
        heads = torch.stack([head(fmap) for head in self.heads], dim=1)
        if heads.shape[1] > 1:
            heads = F.log_softmax(heads, dim=1)
        logits = self.bn(self.fc(heads.sum(dim=1)))
        return {"logits": logits, "features": fmap.mean(dim=(2, 3)), "heads": heads}


def affinity_loss(features: Tensor, centres: Tensor, targets: Tensor) -> Tensor:
    """mean_b sum_k t[b, k] ||f_b - c_k||^2 / sum_d Var_k(c)[d] (see the module docstring)."""
    features, centres, targets = features.float(), centres.float(), targets.float()
    squared = (features.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(dim=-1)   # [B, K]
    return (targets * squared).sum(dim=1).mean() / centres.var(dim=0).sum()


def partition_loss(heads: Tensor, var_floor: float = PARTITION_VAR_FLOOR) -> Tensor:
    """log(1 + H / max(mean Var_heads, var_floor)); 0 for a single head."""
    num_heads = heads.shape[1]
    if num_heads < 2:
        return heads.new_zeros((), dtype=torch.float32)
    variance = heads.float().var(dim=1).mean()
    return torch.log1p(num_heads / variance.clamp(min=var_floor))


def dan_extra_loss(model: nn.Module, outputs: object, logits: Tensor, targets: Tensor) -> Tensor:
    """``AFFINITY_WEIGHT`` x affinity loss + ``PARTITION_WEIGHT`` x partition loss."""
    centres = getattr(model, "centres", None)
    if not isinstance(centres, Tensor):
        raise ModelError(f"model {NAME!r}: extra_loss needs the model's 'centres' parameter")
    features = output_part(NAME, outputs, "features")
    heads = output_part(NAME, outputs, "heads")
    return (AFFINITY_WEIGHT * affinity_loss(features, centres, targets)
            + PARTITION_WEIGHT * partition_loss(heads))


def create_dan(num_classes: int = 8, in_chans: int = 1, pretrained: bool = False) -> nn.Module:
    """A freshly initialised ``DistractAttentionNet`` with four heads."""
    refuse_pretrained(NAME, pretrained)
    return DistractAttentionNet(num_classes=num_classes, in_chans=in_chans)


dan = study_spec(
    NAME, create_dan, dan_extra_loss,
    "DAN (Wen et al.): ResNet-18 (stride-8 stem, 6x6 map at 48px) + 4 "
    "cross-attention heads, affinity + partition losses; from scratch",
    epochs=60,
)

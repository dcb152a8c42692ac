"""Classical ImageNet architectures from timm, sized for 48x48 grayscale faces.

Every model maps float [B, 1, 48, 48] (pixels in [0, 1]) to logits [B, 8]. timm's
ImageNet networks downsample by 32, which turns a 48x48 face into a 1x1 or 2x2 map before
the last stage; each model here removes exactly one stride-2 step early in the network, so
it downsamples by 16 and its last feature map is 3x3:

* VGG13/16/19 (timm ``vgg13``/``vgg16``/``vgg19``, no batch norm, as in the study): the
  last max-pool is removed, and timm's ConvMlp pre-logits (which stretches the map to 7x7
  for a 7x7 conv to 4096 channels, ~120M parameters) is replaced by the head
  ``AdaptiveAvgPool2d(1) -> Flatten -> Linear(512, 512) -> ReLU -> Dropout(0.5) ->
  Linear(512, num_classes)``.
* ResNet18/34/50: the stem max-pool is removed (the 7x7 stride-2 conv stays).
* DenseNet121/169/201: the stem max-pool (``features.pool0``) is removed.
* MobileNetV2 (``mobilenetv2_100``), MobileNetV3-Large (``mobilenetv3_large_100``),
  EfficientNet-B0..B7 (``efficientnet_b0``..``efficientnet_b7``): the stem conv's stride
  goes from 2 to 1.

Kernel shapes are unchanged, so ImageNet weights still fit. ``pretrained=True`` loads them:
from ``$FER_BASELINES_WEIGHTS_DIR/<name>.safetensors`` or ``<name>.pth`` when that file
exists (a state dict of the timm architecture, e.g. timm's ImageNet checkpoint; loaded
with ``torch.load(weights_only=True)``), otherwise from timm's default pretrained tag over
the network. timm sums the RGB stem filters into one grayscale channel and drops the
ImageNet classifier. Off by default; nothing touches the network unless asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import timm
import timm.models
import torch
from torch import nn

from fer_bench.errors import ModelError
from fer_bench.models import ModelSpec

WEIGHTS_DIR_ENV = "FER_BASELINES_WEIGHTS_DIR"
VGG_HEAD_HIDDEN = 512


def local_weights_file(name: str) -> Path | None:
    """``$FER_BASELINES_WEIGHTS_DIR/<name>.safetensors`` or ``.pth`` if set and present."""
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    if not folder:
        return None
    for suffix in (".safetensors", ".pth"):
        path = Path(folder) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` or ``.pth`` file (``weights_only=True``).

    A ``.pth`` holding ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


class PooledMlpHead(nn.Module):
    """[B, C, H, W] features -> global average -> Linear(C, hidden) -> ReLU -> Dropout(0.5)
    -> Linear(hidden, num_classes): logits [B, num_classes]."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = VGG_HEAD_HIDDEN,
                 drop: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.pool(features).flatten(1)
        return self.fc2(self.drop(self.act(self.fc1(x))))


def _adapt_to_48(model: nn.Module, family: str, num_classes: int) -> nn.Module:
    """Remove one early stride-2 step (see the module docstring); VGG gets its small head."""
    if family == "vgg":
        if not isinstance(model.features[-1], nn.MaxPool2d):
            raise ModelError(f"unexpected timm VGG layout: last feature layer is "
                             f"{type(model.features[-1]).__name__}, not MaxPool2d")
        model.features[-1] = nn.Identity()
        model.pre_logits = nn.Identity()
        last_conv = [m for m in model.features if isinstance(m, nn.Conv2d)][-1]
        model.head = PooledMlpHead(last_conv.out_channels, num_classes)
    elif family == "resnet":
        model.maxpool = nn.Identity()
    elif family == "densenet":
        model.features.pool0 = nn.Identity()
    elif family == "stem_stride":
        model.conv_stem.stride = (1, 1)
    else:
        raise ValueError(f"unknown family {family!r}")
    return model


def create_timm_baseline(name: str, arch: str, family: str, num_classes: int = 8,
                         in_chans: int = 1, pretrained: bool = False) -> nn.Module:
    """timm ``arch`` adapted to 48x48 inputs: [B, in_chans, 48, 48] -> logits [B, num_classes].

    ``pretrained``: weights from the local file for ``name`` if present, else timm's default
    ImageNet tag (network). Raises ``ModelError`` when neither exists.
    """
    overlay = None
    if pretrained:
        path = local_weights_file(name)
        if path is not None:
            overlay = {"state_dict": load_state_dict_file(path)}
        elif not timm.models.is_model_pretrained(arch):
            raise ModelError(f"model {name!r}: timm has no pretrained weights for {arch!r} and "
                             f"${WEIGHTS_DIR_ENV}/{name}.safetensors|.pth does not exist")
    model = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes,
                              in_chans=in_chans, pretrained_cfg_overlay=overlay)
    return _adapt_to_48(model, family, num_classes)


def _factory(name: str, arch: str, family: str) -> Callable[..., nn.Module]:
    def factory(num_classes: int = 8, in_chans: int = 1, pretrained: bool = False) -> nn.Module:
        return create_timm_baseline(name, arch, family, num_classes, in_chans, pretrained)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"{name}: timm {arch!r} for 48x48 inputs -> logits [B, num_classes]."
    return factory


_CHANGE = {
    "vgg": "last max-pool removed; head avgpool -> Linear(512, 512) -> ReLU -> Dropout(0.5) -> Linear(512, 8)",
    "resnet": "stem max-pool removed",
    "densenet": "stem max-pool removed",
    "stem_stride": "stem conv stride 1",
}


def _spec(name: str, arch: str, family: str, title: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        factory=_factory(name, arch, family),
        pretrained_available=(timm.models.is_model_pretrained(arch)
                              or local_weights_file(name) is not None),
        description=f"{title} (timm {arch}), 48x48: {_CHANGE[family]}",
        tags=("classical",),
    )


vgg13 = _spec("vgg13", "vgg13", "vgg", "VGG13")
vgg16 = _spec("vgg16", "vgg16", "vgg", "VGG16")
vgg19 = _spec("vgg19", "vgg19", "vgg", "VGG19")
resnet18 = _spec("resnet18", "resnet18", "resnet", "ResNet18")
resnet34 = _spec("resnet34", "resnet34", "resnet", "ResNet34")
resnet50 = _spec("resnet50", "resnet50", "resnet", "ResNet50")
densenet121 = _spec("densenet121", "densenet121", "densenet", "DenseNet121")
densenet169 = _spec("densenet169", "densenet169", "densenet", "DenseNet169")
densenet201 = _spec("densenet201", "densenet201", "densenet", "DenseNet201")
mobilenetv2 = _spec("mobilenetv2", "mobilenetv2_100", "stem_stride", "MobileNetV2 1.0")
mobilenetv3 = _spec("mobilenetv3", "mobilenetv3_large_100", "stem_stride", "MobileNetV3-Large 1.0")
efficientnet_b0 = _spec("efficientnet_b0", "efficientnet_b0", "stem_stride", "EfficientNet-B0")
efficientnet_b1 = _spec("efficientnet_b1", "efficientnet_b1", "stem_stride", "EfficientNet-B1")
efficientnet_b2 = _spec("efficientnet_b2", "efficientnet_b2", "stem_stride", "EfficientNet-B2")
efficientnet_b3 = _spec("efficientnet_b3", "efficientnet_b3", "stem_stride", "EfficientNet-B3")
efficientnet_b4 = _spec("efficientnet_b4", "efficientnet_b4", "stem_stride", "EfficientNet-B4")
efficientnet_b5 = _spec("efficientnet_b5", "efficientnet_b5", "stem_stride", "EfficientNet-B5")
efficientnet_b6 = _spec("efficientnet_b6", "efficientnet_b6", "stem_stride", "EfficientNet-B6")
efficientnet_b7 = _spec("efficientnet_b7", "efficientnet_b7", "stem_stride", "EfficientNet-B7")
#: VGG13 on faces upsampled to 64x64, the input size of Barsoum et al.'s VGG13
#: (microsoft/FERPlus ``src/models.py`` L27-33; their network is a smaller VGG-like one,
#: L50-72, this is timm's VGG13 as above). Same weights file as ``vgg13``.
vgg13_64 = replace(vgg13, name="vgg13_64", input_size=64,
                   description="VGG13 (timm vgg13) on faces upsampled to 64x64, as Barsoum et al. "
                               f"fed theirs: {_CHANGE['vgg']}")

#: Every spec of this module, by name.
CLASSIC_SPECS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (
        vgg13, vgg13_64, vgg16, vgg19, resnet18, resnet34, resnet50, densenet121, densenet169,
        densenet201, mobilenetv2, mobilenetv3, efficientnet_b0, efficientnet_b1,
        efficientnet_b2, efficientnet_b3, efficientnet_b4, efficientnet_b5, efficientnet_b6,
        efficientnet_b7,
    )
}

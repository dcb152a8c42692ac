"""``mten`` / ``mten_b0``: Savchenko's multi-task EfficientNet (HSEmotion, "MT-EmotiEffNet")
at 48x48 grayscale, EfficientNet-B2 (``mten``) and B0 (``mten_b0``).

Written from the official code, av-savchenko/face-emotion-recognition:
``python-package/hsemotion/facial_emotions.py`` (the multi-task model ``enet_b0_8_va_mtl``:
a timm EfficientNet whose single linear classifier has 8 expression logits followed by 2
extra outputs, valence and arousal) and ``src/affectnet/train_emotions-pytorch.ipynb``
(timm EfficientNet-B0 / B2 trained with Adam, batch 64).

Architecture ([B, 1, 48, 48] pixels in [0, 1] -> logits [B, 8])::

    timm efficientnet_b2 (or efficientnet_b0), in_chans=1, stem conv stride 1 (as
    classic.py's efficientnet_b*: total stride 16, a 3x3 last map at 48x48)
    global average -> Linear(1408 (B2) | 1280 (B0), 8 + 2)
    outputs[:, :8]          -> logits
    sigmoid(outputs[:, 8:]) -> aux [B, 2]

The forward returns ``{"logits": [B, 8], "aux": [B, 2]}``.

The auxiliary task. FERPlus has no valence / arousal (or action-unit) labels, and the
runner hands ``extra_loss`` only the training targets ``t`` [B, 8]: the N-hot reduced
distribution over the 8 emotions (rows sum to 1); the 10-way votes with "unknown" and
"NF" are not available to it. So the two extra outputs regress two properties of the
tagger distribution ``t`` itself, in [0, 1]:

* ``aux[:, 0]`` = normalised entropy ``H(t) / log 8`` (how much the taggers disagree);
* ``aux[:, 1]`` = normalised support ``(#{k: t_k > 0} - 1) / 7``, i.e. (min(X, N) - 1) / 7
  for an image of complexity X under N-hot training (the report's complexity, the axis of
  its "complex" test split).

Loss (``extra_loss``): ``AUX_WEIGHT`` (1) x mean squared error between ``aux`` and those
two numbers. Both are 0 for a one-hot target, so with 1-hot training (or PLD, whose
targets are one-hot draws) the auxiliary head only learns to output 0: the second task
carries information exactly when the targets do. It is a stand-in for the 10-way vote
head the issue suggests; that needs the runner to pass the votes (see the fer_bench
report of issue 10).

Batch of one in training: works (every BatchNorm2d has at least a 3x3 map per channel;
the squeeze-excite blocks have no normalisation).

Parameters at 1 channel and 8 + 2 outputs: ``mten`` 7,714,508, ``mten_b0`` 4,019,782.
HSEmotion's models (timm EfficientNet-B2 / B0, 3 channels, 8 + 2 outputs) have 7,715,084
and 4,020,358; the difference (576 each) is the stem conv's two dropped input channels
(2 x 32 x 3 x 3). Parameters do not depend on the input size.

No pretrained weights are bundled (HSEmotion starts from VGGFace2 face-ID weights, not
reachable here); the model trains from scratch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_baselines.classic import create_timm_baseline
from fer_baselines.study_common import output_part, refuse_pretrained, study_spec
from fer_bench.errors import ModelError
from fer_bench.models import ModelSpec

AUX_OUTPUTS = 2
AUX_WEIGHT = 1.0
ARCHES = {"mten": "efficientnet_b2", "mten_b0": "efficientnet_b0"}


class MultiTaskEfficientNet(nn.Module):
    """[B, in_chans, S, S] -> {"logits": [B, num_classes], "aux": [B, 2] in (0, 1)}."""

    def __init__(self, name: str = "mten", num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        if name not in ARCHES:
            raise ModelError(f"model {name!r}: unknown MTEN variant; known: {sorted(ARCHES)}")
        self.name = name
        self.num_classes = num_classes
        self.net = create_timm_baseline(name, ARCHES[name], "stem_stride",
                                        num_classes=num_classes + AUX_OUTPUTS,
                                        in_chans=in_chans, pretrained=False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        outputs = self.net(images)
        return {"logits": outputs[:, :self.num_classes],
                "aux": torch.sigmoid(outputs[:, self.num_classes:])}


def ambiguity_targets(targets: Tensor) -> Tensor:
    """[B, K] distributions -> [B, 2]: (H(t) / log K, (#{t_k > 0} - 1) / (K - 1))."""
    t = targets.float()
    classes = t.shape[1]
    positive = t > 0
    logs = torch.where(positive, t, torch.ones_like(t)).log()
    entropy = -(t * logs).sum(dim=1) / math.log(classes)
    support = (positive.sum(dim=1).float() - 1.0).clamp(min=0.0) / (classes - 1)
    return torch.stack([entropy, support], dim=1)


def mten_extra_loss(model: nn.Module, outputs: object, logits: Tensor, targets: Tensor) -> Tensor:
    """``AUX_WEIGHT`` x MSE(aux, ambiguity_targets(targets))."""
    name = getattr(model, "name", "mten")
    aux = output_part(name, outputs, "aux").float()
    return AUX_WEIGHT * F.mse_loss(aux, ambiguity_targets(targets))


def _factory(name: str):
    def factory(num_classes: int = 8, in_chans: int = 1, pretrained: bool = False) -> nn.Module:
        refuse_pretrained(name, pretrained)
        return MultiTaskEfficientNet(name=name, num_classes=num_classes, in_chans=in_chans)

    factory.__name__ = factory.__qualname__ = f"create_{name}"
    factory.__doc__ = f"A freshly initialised {name} ({ARCHES[name]}, 8 + 2 outputs)."
    return factory


def _spec(name: str, title: str) -> ModelSpec:
    return study_spec(
        name, _factory(name), mten_extra_loss,
        f"MTEN (HSEmotion multi-task {title}, stem stride 1): 8 emotions + an "
        f"auxiliary head regressing the target's entropy and support; from scratch",
    )


mten = _spec("mten", "EfficientNet-B2")
mten_b0 = _spec("mten_b0", "EfficientNet-B0")

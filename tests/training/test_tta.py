"""Test-time augmentation views (fer_bench.training.tta) and ``predict`` averaging them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_bench.errors import ConfigError
from fer_bench.training.augment.sets import to_model_input
from fer_bench.training.evaluate import predict
from fer_bench.training.resolve import resolve_config
from fer_bench.training.tta import TTA_VIEWS, View, apply_view, tta_views
from tests.helpers.cells import tiny_spec


def ramp(height: int = 5, width: int = 6) -> torch.Tensor:
    """float [1, 1, H, W] whose pixel (r, c) holds 10 r + c."""
    rows = torch.arange(height, dtype=torch.float32)[:, None] * 10
    return (rows + torch.arange(width, dtype=torch.float32)[None, :])[None, None]


def test_translation_moves_content_and_repeats_the_border():
    x = ramp()
    down_right = apply_view(x, View(1, 1), channels_last=False)[0, 0]
    assert down_right[2, 3] == x[0, 0, 1, 2]          # content moved one down, one right
    assert down_right[0, 0] == x[0, 0, 0, 0]          # the border is repeated, not zero
    assert torch.equal(down_right[0, 1:], x[0, 0, 0, :-1])
    up_left = apply_view(x, View(-1, -1), channels_last=False)[0, 0]
    assert up_left[1, 2] == x[0, 0, 2, 3] and up_left[-1, -1] == x[0, 0, -1, -1]


def test_mirror_and_memory_format():
    x = ramp().repeat(2, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    mirrored = apply_view(x, View(mirror=True), channels_last=True)
    assert torch.equal(mirrored, torch.flip(x, dims=[-1]))
    shifted = apply_view(x, View(1, -1, mirror=True), channels_last=True)
    assert shifted.shape == x.shape and shifted.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", sorted(TTA_VIEWS))
def test_weights_sum_to_one(name):
    assert sum(view.weight for view in tta_views(name)) == pytest.approx(1.0)


def test_unknown_choice_is_named():
    with pytest.raises(KeyError, match="valid: none, flip, flip_shift1"):
        tta_views("ten_crop")
    with pytest.raises(ConfigError, match="unknown tta 'ten_crop'"):
        resolve_config(tiny_spec(), tta="ten_crop")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 8))


def _images() -> torch.Tensor:
    return torch.randint(0, 256, (10, 8, 8), generator=torch.Generator().manual_seed(1)).to(torch.uint8)


def _predicted(tta: str, *, batch_size: int, channels_last: bool):
    """(model, predict's probabilities under ``tta``, the model input [10, 1, 8, 8])."""
    model, images = _model(), _images()
    probs, _ = predict(model, images, input_size=8, batch_size=batch_size,
                       channels_last=channels_last, amp=False, tta=tta)
    return model, probs, to_model_input(images, 8)


def test_flip_is_the_mirror_average_committed_cells_used():
    """"flip" must stay bit for bit 0.5 * (p + p_mirror), what every committed flip cell ran."""
    model, probs, x = _predicted("flip", batch_size=4, channels_last=False)
    with torch.no_grad():
        expected = 0.5 * (torch.softmax(model(x), 1) + torch.softmax(model(torch.flip(x, dims=[-1])), 1))
    assert torch.equal(probs, expected)


def test_six_views_are_the_weighted_average():
    model, probs, x = _predicted("flip_shift1", batch_size=3, channels_last=True)
    with torch.no_grad():
        expected = sum(view.weight * torch.softmax(model(apply_view(x, view, channels_last=False)), 1)
                       for view in tta_views("flip_shift1"))
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(10))
    _, plain, _ = _predicted("none", batch_size=3, channels_last=True)
    assert not torch.allclose(plain, probs)           # the views do change the answer

"""Static augmentation sets and model-input conversion (fer_bench.training.augment.sets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_bench.training.augment.sets import (
    AUGMENTATIONS,
    hflip,
    rotate,
    to_model_input,
)


@pytest.fixture(scope="module")
def faces(ferplus_clean):
    """64 real FERPlus faces and their distributions."""
    return (torch.from_numpy(ferplus_clean.images[:64].copy()),
            torch.from_numpy(ferplus_clean.dist[:64].copy()))


def test_flip_is_exact_mirror(faces):
    images, _ = faces
    flipped = hflip(images)
    assert torch.equal(flipped, torch.from_numpy(images.numpy()[:, :, ::-1].copy()))
    assert torch.equal(hflip(flipped), images)


def test_rotate_zero_is_identity(faces):
    images, _ = faces
    assert torch.equal(rotate(images, 0.0), images)


def test_rotate_90_matches_rot90_counterclockwise(faces):
    images, _ = faces
    expected = torch.rot90(images, k=1, dims=(-2, -1))   # numpy/torch rot90 = counter-clockwise
    diff = (rotate(images, 90.0).int() - expected.int()).abs()
    assert int(diff.max()) <= 1


def test_rotate_changes_image_and_inverts_roughly(faces):
    images, _ = faces
    turned = rotate(images, 20.0)
    assert (turned.int() - images.int()).abs().float().mean() > 5
    back = rotate(turned, -20.0)
    centre = slice(12, 36)
    err = (back[:, centre, centre].float() - images[:, centre, centre].float()).abs().mean()
    assert err < 8, err


def test_rotate_in_chunks_equals_one_pass(faces):
    images, _ = faces
    angles = torch.linspace(-30, 30, images.shape[0])
    assert torch.equal(rotate(images, angles, chunk=7), rotate(images, angles))


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS if not AUGMENTATIONS.get(n).needs])
def test_expand_sizes_targets_and_blocks(faces, name):
    """The fixed-size sets (the adaptive ones, which need landmarks: test_adaptive_augment)."""
    images, targets = faces
    out_images, out_targets = AUGMENTATIONS.get(name).apply(images, targets, 0)
    factor = AUGMENTATIONS.get(name).multiple
    count = images.shape[0]
    assert out_images.shape == (factor * count, 48, 48) and out_images.dtype == torch.uint8
    assert out_targets.shape == (factor * count, 8)
    for block in range(factor):
        assert torch.equal(out_targets[block * count:(block + 1) * count], targets)
    assert torch.equal(out_images[:count], images)
    if factor >= 2:
        assert torch.equal(out_images[count:2 * count], hflip(images))
    if name.startswith("flip_rot"):
        angle = float(name.removeprefix("flip_rot"))
        assert torch.equal(out_images[2 * count:3 * count], rotate(images, angle))
        assert torch.equal(out_images[3 * count:], rotate(images, -angle))


def test_expand_deterministic_and_seeded(faces):
    images, targets = faces
    flip_rr = AUGMENTATIONS.get("flip_rr")
    first, _ = flip_rr.apply(images, targets, 3)
    again, _ = flip_rr.apply(images, targets, 3)
    other, _ = flip_rr.apply(images, targets, 4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_unknown_augmentation_lists_valid_names(faces):
    images, targets = faces
    with pytest.raises(ValueError, match="flip_rot20"):
        AUGMENTATIONS.get("mixup").apply(images, targets, 0)


def test_to_model_input_scales_and_resizes(faces):
    images, _ = faces
    x = to_model_input(images[:4], 48)
    assert x.shape == (4, 1, 48, 48) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0] * 255, images[:4].float())
    big = to_model_input(images[:4], 224, channels_last=True)
    assert big.shape == (4, 1, 224, 224)
    assert float(big.min()) >= 0.0 and float(big.max()) <= 1.0
    assert big.is_contiguous(memory_format=torch.channels_last)
    assert abs(float(big.mean()) - float(x.mean())) < 0.01
    small = to_model_input(images[:4], 24)
    assert small.shape == (4, 1, 24, 24)
    assert np.isfinite(small.numpy()).all()


def test_random_flip_shift_is_a_batched_mirror_and_translation():
    from fer_bench.training.augment.sets import random_flip_shift

    images = torch.arange(4 * 6 * 6, dtype=torch.int64).reshape(4, 6, 6).to(torch.uint8)
    same = random_flip_shift(images, 0, torch.Generator().manual_seed(0))
    for i in range(4):   # shift 0: each image is itself or its mirror
        assert torch.equal(same[i], images[i]) or torch.equal(same[i], images[i].flip(-1))
    out = random_flip_shift(images, 2, torch.Generator().manual_seed(1))
    again = random_flip_shift(images, 2, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8 and torch.equal(out, again)
    for i in range(4):   # every output pixel is a pixel of its own image (border repeated)
        assert set(out[i].flatten().tolist()) <= set(images[i].flatten().tolist())

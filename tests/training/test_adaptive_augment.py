"""Adaptive augmentation (report 5.3.2): the name family, the per-image rule, the rotation
sign against ``augment.rotate``'s convention, the set's size, and the missing-landmarks
errors. No dlib needed: faces are drawn with known eye positions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fer_bench.data.align.geometry import eye_angle
from fer_bench.errors import ConfigError
from fer_bench.training.augment.adaptive import (
    ADAPTIVE_TEMPLATE,
    DEFAULT_ADAPTIVE,
    adaptive_name,
    adaptive_plan,
    adaptive_size,
)
from fer_bench.training.augment.sets import AUGMENTATIONS, hflip, rotate
from tests.helpers.cells import apply, blob_centre, draw_face, rotation_about

NAN = float("nan")


# ----------------------------------------------------------------------------- the family
def test_well_formed_unregistered_names_are_built_on_lookup():
    name = "adaptive_x1=2.5_x2=33"
    assert name not in AUGMENTATIONS.names()
    assert name in AUGMENTATIONS                       # well-formed: a member of the family
    aug = AUGMENTATIONS.get(name)
    assert aug.name == name and aug.needs == ("inclination",) and aug.multiple == 4
    assert name in AUGMENTATIONS.names()               # registered from now on
    assert AUGMENTATIONS.get(name) is aug
    assert DEFAULT_ADAPTIVE in AUGMENTATIONS.names()   # the default is there from the start
    assert adaptive_name(5, 15.0) == "adaptive_x1=5_x2=15"
    assert [f.template for f in AUGMENTATIONS.families()] == [ADAPTIVE_TEMPLATE]


@pytest.mark.parametrize(("name", "message"), [
    ("adaptive_x1=05_x2=15", "write it as 'adaptive_x1=5_x2=15'"),
    ("adaptive_x1=5.0_x2=15", "write it as 'adaptive_x1=5_x2=15'"),
    ("adaptive_x1=20_x2=15", "X1 \\(20\\) must not exceed X2 \\(15\\)"),
    ("adaptive_x1=5", "unknown augmentation 'adaptive_x1=5'; did you mean: .*adaptive_x1=<X1>_x2=<X2>"),
])
def test_bad_names_of_the_family(name, message):
    with pytest.raises(ConfigError, match=message):
        AUGMENTATIONS.get(name)
    assert name not in AUGMENTATIONS.names()


# ----------------------------------------------------------------------------- the rule
def test_plan_per_inclination():
    tilt = torch.tensor([0.0, -4.9, 5.0, -10.0, 15.0, 15.1, -25.0, NAN])
    plan = adaptive_plan(tilt, 5.0, 15.0)
    # level faces: no flip; steep faces: only the rotation towards upright; NaN: full set
    assert plan["flip"].tolist() == [False, False, True, True, True, True, True, True]
    assert plan["plus"].tolist() == [True, True, True, True, True, True, False, True]
    assert plan["minus"].tolist() == [True, True, True, True, True, False, True, True]
    assert adaptive_size(tilt, 5.0, 15.0) == 8 + 6 + 7 + 7
    # X1 = 0 and X2 = infinity-like: the full set, as flip_rot20
    assert adaptive_size(tilt, 0.0, 1e9) == 4 * 8


def test_expand_blocks_and_targets():
    images = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    targets = torch.eye(8)[:5]
    tilt = torch.tensor([1.0, 10.0, 30.0, -30.0, NAN])   # level, middle, steep x2, none
    assert DEFAULT_ADAPTIVE == "adaptive_x1=5_x2=25"
    out, out_targets = AUGMENTATIONS.get(DEFAULT_ADAPTIVE).apply(images, targets, 0,
                                                                 {"inclination": tilt})
    flip, plus, minus = [1, 2, 3, 4], [0, 1, 2, 4], [0, 1, 3, 4]
    expected = torch.cat([images, hflip(images[flip]), rotate(images[plus], 20.0),
                          rotate(images[minus], -20.0)])
    assert torch.equal(out, expected)
    assert torch.equal(out_targets, torch.cat([targets, targets[flip], targets[plus], targets[minus]]))


def _tilted_face(degrees: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A face turned ``degrees`` clockwise on screen about the image centre."""
    upright = {"left": np.array([16.0, 19.0]), "right": np.array([31.0, 19.0]),
               "mouth": np.array([23.5, 34.0])}
    tilt = rotation_about(np.array([23.5, 23.5]), degrees)
    face = {k: apply(tilt, v[None])[0] for k, v in upright.items()}
    return draw_face(face["left"], face["right"], face["mouth"]), face


@pytest.mark.parametrize("degrees", [25.0, -25.0])
def test_steep_face_is_rotated_towards_upright(degrees):
    """The one rotation a steeply tilted face gets turns it back: a face turned 25 deg
    clockwise (inclination +25, right eye lower) comes out at +5 deg, not +45. This pins the
    inclination sign (``align.eye_angle``: clockwise positive) against ``augment.rotate``'s
    (counter-clockwise positive)."""
    image, face = _tilted_face(degrees)
    measured = eye_angle(blob_centre(image, face["left"]), blob_centre(image, face["right"]))
    assert abs(measured - degrees) < 1.0      # the drawn face has the inclination we meant
    images = torch.from_numpy(image[None].copy())
    out, _ = AUGMENTATIONS.get("adaptive_x1=5_x2=15").apply(
        images, torch.ones(1, 8) / 8, 0, {"inclination": torch.tensor([measured])})
    assert out.shape[0] == 3                   # Base + Flip + one rotation
    turned = out[2].numpy()
    # where the eyes land after the rotation towards upright (20 deg counter-clockwise)
    back = rotation_about(np.array([23.5, 23.5]), -math.copysign(20.0, degrees))
    left, right = apply(back, face["left"][None])[0], apply(back, face["right"][None])[0]
    found_left, found_right = blob_centre(turned, left), blob_centre(turned, right)
    assert np.abs(found_left - left).max() < 1.0 and np.abs(found_right - right).max() < 1.0
    after = eye_angle(found_left, found_right)
    assert abs(after - math.copysign(5.0, degrees)) < 1.5
    assert turned[np.rint(left[1]).astype(int), np.rint(left[0]).astype(int)] < 120  # an eye is there


# ----------------------------------------------------------------------------- bad input
def test_adaptive_set_without_landmarks_is_a_config_error():
    aug = AUGMENTATIONS.get(DEFAULT_ADAPTIVE)
    images, targets = torch.zeros(3, 48, 48, dtype=torch.uint8), torch.ones(3, 8) / 8
    with pytest.raises(ConfigError, match="needs per-image inclination"):
        aug.apply(images, targets, 0, {})
    with pytest.raises(ConfigError, match="2 values for 3 images"):
        aug.apply(images, targets, 0, {"inclination": torch.zeros(2)})
    # the static sets ignore meta
    assert AUGMENTATIONS.get("flip").apply(images, targets, 0, {"inclination": torch.zeros(3)})[0].shape[0] == 6


def test_resolve_cell_refuses_an_adaptive_cell_without_aligner():
    from fer_bench.models import get_model
    from fer_bench.training.resolve import resolve_cell, resolve_config

    spec = get_model("small_cnn")
    config = resolve_config(spec, augmentation=DEFAULT_ADAPTIVE, epochs=1)
    with pytest.raises(ConfigError, match="needs face landmarks"):
        resolve_cell(spec, variant="nhot-8", split="ordinary", seed=0, config=config,
                     dataset_fingerprint="x", device="cpu")
    cell = resolve_cell(spec, variant="nhot-8", split="ordinary", seed=0, config=config,
                        dataset_fingerprint="x", device="cpu",
                        alignment="landmarks-dlib-hog-0123abcd")
    assert cell.id.endswith(f"aug={DEFAULT_ADAPTIVE}-align=landmarks-dlib-hog-0123abcd")


def test_materialised_names_never_crowd_out_the_template():
    for name in ("adaptive_x1=5_x2=15", "adaptive_x1=5_x2=25", "adaptive_x1=2.5_x2=33",
                 "adaptive_x1=5_x2=35"):
        AUGMENTATIONS.get(name)
    with pytest.raises(ConfigError, match=r"did you mean: (adaptive_x1=[^,]+, ){3}adaptive_x1=<X1>_x2=<X2>\?"):
        AUGMENTATIONS.get("adaptive_x1=5")

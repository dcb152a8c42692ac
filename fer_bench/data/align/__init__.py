"""fer_bench.data.align: face alignment with dlib, and alignment as a cell's axis.

``run`` (``align_dataset``, ``aligned_raw``) is the entry point; ``models`` finds dlib and
its model files, ``settings`` holds ``AlignSettings`` and the cache key, ``geometry`` the
numpy geometry, ``detect`` the dlib calls and the worker pool, ``result`` ``AlignResult``,
``cache`` the chunked resumable cache, ``axis`` the ``alignment`` axis of a cell. The
public names of the first six are re-exported here.
"""

from __future__ import annotations

from fer_bench.data.align.cache import cache_paths, load_aligned, source_key
from fer_bench.data.align.detect import Aligner
from fer_bench.data.align.geometry import (
    STATUS_NAMES,
    estimate_similarity,
    eye_angle,
    eye_centres,
    landmark_status,
    warp_similarity,
)
from fer_bench.data.align.models import find_model_file, import_dlib
from fer_bench.data.align.result import AlignProgress, AlignResult
from fer_bench.data.align.run import align_dataset, aligned_raw
from fer_bench.data.align.settings import AlignSettings, settings_key

__all__ = [
    "AlignSettings", "AlignResult", "AlignProgress", "Aligner", "align_dataset", "load_aligned",
    "aligned_raw", "estimate_similarity", "warp_similarity", "eye_angle", "eye_centres",
    "landmark_status", "find_model_file", "import_dlib", "STATUS_NAMES", "settings_key",
    "source_key", "cache_paths",
]

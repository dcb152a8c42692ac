"""The alignment cache: one result file per source and setting, built from resumable chunks.

Files live in ``<cache>/align/`` (``<cache>``: the data cache's folder, ``$FER_BENCH_CACHE``
or the user cache folder; never the data folder): ``<source>-<settings>-v<format>.npz``,
the merged result, and while a run is under way ``<source>-<settings>-v<format>.parts/``,
one ``rows-<lo>-<hi>.npz`` per finished chunk (rows [lo, hi), 7 digits each), written
atomically (``fileio.atomic_write``) so an interrupted run resumes where it stopped; the
parts are removed once the merged file is written. ``<source>`` (``source_key``) hashes
the source fingerprint, the image count and the image bytes; ``<settings>``
(``settings.settings_key``) the settings, the sha256 of every model file and dlib's
version, so other data, settings, models or another dlib release never reuse a file.
Every file carries its key as JSON ``meta``; one whose meta differs, or that does not
read, is redone with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.data.align.result import RESULT_ARRAYS, AlignResult, make_result
from fer_bench.data.align.settings import ALIGN_FORMAT_VERSION, AlignSettings, settings_key
from fer_bench.data.schema import RawDataset
from fer_bench.errors import DataError
from fer_bench.fileio import atomic_write


def source_key(raw: RawDataset) -> str:
    """16 hex chars over the source fingerprint, the image count and the image bytes."""
    digest = hashlib.sha256(f"{raw.fingerprint}\0{len(raw)}\0".encode())
    digest.update(np.ascontiguousarray(raw.images, dtype=np.uint8).tobytes())
    return digest.hexdigest()[:16]


def align_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/align``; ``cache_dir`` defaults to the data cache's folder."""
    if cache_dir is None:
        from fer_bench.data.cache import default_cache_dir
        cache_dir = default_cache_dir()
    return Path(cache_dir) / "align"


@dataclass(frozen=True)
class CacheFiles:
    """The cache files of one source and setting."""

    key: str              # "<source>-<settings>"
    meta: dict[str, Any]  # what every cache file of this key must carry
    final: Path           # the merged result file
    parts: Path           # the folder of finished chunks

    def part(self, lo: int, hi: int) -> tuple[Path, dict[str, Any]]:
        """The file of the finished chunk of rows [lo, hi) and the meta it must carry."""
        return self.parts / f"rows-{lo:07d}-{hi:07d}.npz", {**self.meta, "lo": lo, "hi": hi}

    def read_parts(self, bounds: list[tuple[int, int]]) -> dict[int, dict[str, np.ndarray]]:
        """The chunks of ``bounds`` already finished (index -> arrays); unreadable ones or
        ones of other settings are left out (with a warning)."""
        found = {}
        for index, (lo, hi) in enumerate(bounds):
            path, meta = self.part(lo, hi)
            if path.exists():
                got = read_npz(path, meta, RESULT_ARRAYS, stacklevel=4)
                if got is not None:
                    got.pop("meta")
                    found[index] = got
        return found

    def save_part(self, lo: int, hi: int, arrays: dict[str, np.ndarray]) -> None:
        path, meta = self.part(lo, hi)
        save_npz(path, meta, arrays)

    def save_final(self, arrays: dict[str, np.ndarray], timing: dict[str, Any]) -> None:
        """The merged result (``timing`` kept in its meta); then the parts go."""
        save_npz(self.final, {**self.meta, "timing": timing}, arrays)
        shutil.rmtree(self.parts, ignore_errors=True)

    def clear(self) -> None:
        """Remove the merged file and every finished chunk."""
        self.final.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)


def cache_files(raw: RawDataset, settings: AlignSettings,
                cache_dir: str | os.PathLike | None) -> CacheFiles:
    """The ``CacheFiles`` of ``raw`` under ``settings``; hashes the model files (a missing
    one, or a missing dlib, raises ``AlignError`` here)."""
    key = f"{source_key(raw)}-{settings_key(settings)}"
    stem = align_cache_dir(cache_dir) / f"{key}-v{ALIGN_FORMAT_VERSION}"
    meta = {"version": ALIGN_FORMAT_VERSION, "key": key, "fingerprint": raw.fingerprint,
            "settings": settings.key(), "n": len(raw)}
    return CacheFiles(key, meta, stem.with_suffix(".npz"), stem.with_suffix(".parts"))


def cache_paths(raw: RawDataset, settings: AlignSettings,
                cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(merged result file, folder of finished chunks) for one source and setting. Raises
    ``AlignError`` when a model file or dlib is missing (their sha256 / version are part of
    the key)."""
    files = cache_files(raw, settings, cache_dir)
    return files.final, files.parts


def check_outside_data(target: Path, raw: RawDataset) -> None:
    """``DataError`` when ``target`` would lie inside ``raw``'s data folder."""
    source = Path(raw.report.path) if raw.report.path and not raw.is_synthetic else None
    if source is None or not source.exists():
        return
    root = source if source.is_dir() else source.parent
    if target.resolve().is_relative_to(root.resolve()):
        raise DataError(f"{target}: the alignment cache would be inside the data folder {root}; "
                        "set $FER_BENCH_CACHE elsewhere")


def save_npz(target: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """``meta`` (JSON) and ``arrays`` into one npz file, atomically (``fileio.atomic_write``)."""
    atomic_write(target, lambda handle: np.savez(handle, meta=np.array(json.dumps(meta)), **arrays))


def read_npz(path: Path, expect: dict[str, Any], names: tuple[str, ...],
             stacklevel: int = 3) -> dict[str, Any] | None:
    """Arrays of a cache file whose meta matches ``expect``; None (with a warning, at
    ``stacklevel``: the public caller) when it is corrupt or of another key."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[name] for name in names}
    except Exception as exc:  # zipfile, numpy and json each raise their own types
        warnings.warn(f"{path}: corrupt alignment cache file ({type(exc).__name__}); redoing it",
                      stacklevel=stacklevel)
        return None
    if any(meta.get(k) != v for k, v in expect.items()):
        warnings.warn(f"{path}: alignment cache file of other settings or data; redoing it",
                      stacklevel=stacklevel)
        return None
    arrays["meta"] = meta
    return arrays


def load_final(raw: RawDataset, settings: AlignSettings, files: CacheFiles) -> AlignResult | None:
    """The merged result of ``files`` as ``raw``'s ``AlignResult`` (``timing["from_cache"]``
    True), or None when there is none or it is unusable."""
    if not files.final.exists():
        return None
    arrays = read_npz(files.final, files.meta, RESULT_ARRAYS)
    if arrays is None:
        return None
    timing = dict(arrays["meta"].get("timing", {}), from_cache=True)
    return make_result(raw, settings, arrays, files.key, timing, files.final)


def load_aligned(raw: RawDataset, settings: AlignSettings | None = None, *,
                 cache_dir: str | os.PathLike | None = None) -> AlignResult | None:
    """The cached alignment of ``raw`` under ``settings``, or None when there is none (or it
    is corrupt / of other settings). Needs the model files (their sha256 is in the key)
    and dlib (its version is)."""
    settings = settings or AlignSettings()
    return load_final(raw, settings, cache_files(raw, settings, cache_dir))

"""``load_dataset``: the one entry point every other module uses to get data.

A real source is decoded once (``sources.load_source``) and kept as one uncompressed
``.npz`` (no pickles) under ``$FER_BENCH_CACHE`` or ``platformdirs.user_cache_dir("fer_bench")``,
never inside the data folder. The cache file is named after the source's resolved path,
format, label snapshot and ``CACHE_FORMAT_VERSION``; inside, it stores the source
fingerprint (``sources.source_fingerprint``); every member of the zip carries a CRC-32 that
``zipfile`` verifies as it is read. A cache file whose fingerprint no longer matches the
source (stale) or that cannot be read, is truncated or fails a CRC check (corrupt) is
rebuilt, never trusted, and said so on the ``fer_bench.data.cache`` logger (information:
nothing for the user to change). Python warnings are kept for what the user should change
(a cache folder inside the data folder, one that cannot be written). Files are
written atomically (``fer_bench.fileio.atomic_write``), so concurrent runs are safe.

The embedded synthetic set is generated on demand and not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fer_bench.data.schema import LoadReport, RawDataset
from fer_bench.data.sources import SourceLocation, load_source, locate_source, source_fingerprint
from fer_bench.errors import ConfigError
from fer_bench.fileio import atomic_write

log = logging.getLogger(__name__)

#: Bump whenever the loaders or this file change what a cached ``RawDataset`` holds: the
#: fingerprint covers the source files, not the code that read them.
CACHE_FORMAT_VERSION = 1
DATA_ENV = "FER_BENCH_DATA"
CACHE_ENV = "FER_BENCH_CACHE"
SYNTHETIC_NOTICE = ("fer_bench: no data path given; using the embedded SYNTHETIC data set "
                    f"(set --data/{DATA_ENV} for FERPlus)")
_ARRAYS = ("images", "votes", "usage", "names")
_announced_synthetic_default = False


class CacheInvalid(Exception):
    """A cache file that must not be trusted; the message says why."""


def resolve_data_path(path: str | os.PathLike | None) -> str | None:
    """The data path to use: ``path`` if given, else ``$FER_BENCH_DATA``, else ``None``
    (meaning the embedded synthetic set)."""
    if path is not None:
        return os.fspath(path)
    return os.environ.get(DATA_ENV) or None


def default_cache_dir() -> Path:
    """``$FER_BENCH_CACHE`` if set, else the platform's user cache folder for fer_bench."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs
    return Path(platformdirs.user_cache_dir("fer_bench"))


def cache_file(loc: SourceLocation, labels: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the cache file for one source location and label snapshot."""
    where = str((loc.kaggle_csv or loc.root).resolve())
    key = hashlib.sha256(f"{where}\0{loc.format}\0{labels}".encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{loc.format}-{labels}-{key}-v{CACHE_FORMAT_VERSION}.npz"


def load_dataset(path: str | os.PathLike | None = None, format: str = "auto",
                 labels: str = "fer2013new", *, cache_dir: str | os.PathLike | None = None,
                 use_cache: bool = True) -> RawDataset:
    """Load a data source as a ``RawDataset`` (canonical order), through the cache.

    ``path=None`` uses ``$FER_BENCH_DATA``, else the embedded synthetic set (announced once
    per process, as a warning on the ``fer_bench.data.cache`` logger: stderr unless logging
    is configured otherwise). ``format`` and ``labels`` are as in ``sources.load_source``.
    ``cache_dir`` overrides the cache folder; ``use_cache=False`` reads the source directly
    and neither reads nor writes a cache file. Raises ``DataError`` for bad input
    (``DataPathError`` for a path that is no data source), ``ConfigError`` for a format
    that needs a path when none is given.
    """
    global _announced_synthetic_default
    resolved = resolve_data_path(path)
    if resolved is None and format in ("auto", "synthetic"):
        if not _announced_synthetic_default:
            log.warning(SYNTHETIC_NOTICE)
            _announced_synthetic_default = True
        resolved = "synthetic"
    if resolved is None:
        raise ConfigError(f"--format {format} needs a data path (--data or ${DATA_ENV}); "
                          f"only --format auto or synthetic work without one")

    loc = locate_source(resolved, format)
    if loc.format == "synthetic" or not use_cache:
        return load_source(resolved, loc.format, labels)

    target = cache_file(loc, labels, cache_dir)
    fingerprint = source_fingerprint(loc)
    if target.exists():
        try:
            raw = _read_cache(target, fingerprint, loc, labels)
            raw.report.path = resolved
            return raw
        except CacheInvalid as exc:
            log.info("%s: %s; rebuilding the cache", target, exc)

    raw = load_source(resolved, loc.format, labels)
    if raw.fingerprint != fingerprint:
        log.warning("%s: source changed while it was read; not caching it", resolved)
    elif _inside(target, loc.root):
        warnings.warn(f"{target}: cache folder is inside the data folder; not caching "
                      f"(set ${CACHE_ENV} elsewhere)", stacklevel=2)
    else:
        try:
            _write_cache(target, raw, loc, labels)
        except OSError as exc:
            warnings.warn(f"{target}: could not write the cache ({exc}); continuing without it "
                          f"(set ${CACHE_ENV} to a writable folder)", stacklevel=2)
    return raw


def _inside(target: Path, root: Path | None) -> bool:
    if root is None:
        return False
    return target.resolve().is_relative_to(root.resolve())


def _write_cache(target: Path, raw: RawDataset, loc: SourceLocation, labels: str) -> None:
    """Write ``raw`` to ``target`` atomically (temporary file in the same folder + replace)."""
    arrays = {
        "images": np.ascontiguousarray(raw.images, dtype=np.uint8),
        "votes": np.ascontiguousarray(raw.votes, dtype=np.int32),
        "usage": np.ascontiguousarray(raw.usage, dtype=np.int8),
        "names": np.asarray(raw.names, dtype=str),  # fixed-width unicode, no pickles
    }
    meta = {
        "version": CACHE_FORMAT_VERSION, "format": loc.format, "labels": labels,
        "fingerprint": raw.fingerprint,
        "report": asdict(raw.report),
    }
    atomic_write(target, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays))


def _read_cache(target: Path, fingerprint: str, loc: SourceLocation, labels: str) -> RawDataset:
    """Read and verify one cache file; raise ``CacheInvalid`` saying why it is not usable."""
    try:
        with np.load(target, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {key: npz[key] for key in _ARRAYS}
    except Exception as exc:  # zipfile, numpy and json each raise their own types
        raise CacheInvalid(f"corrupt cache file ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("version") != CACHE_FORMAT_VERSION:
        raise CacheInvalid("cache file of another format version")
    if (meta.get("format"), meta.get("labels")) != (loc.format, labels):
        raise CacheInvalid("cache file of another format or label snapshot")
    if meta.get("fingerprint") != fingerprint:
        raise CacheInvalid("stale cache file (the source files changed since it was written)")
    try:
        report = LoadReport(**meta["report"])
    except (KeyError, TypeError) as exc:
        raise CacheInvalid(f"corrupt cache file (bad report: {exc})") from None
    return RawDataset(images=arrays["images"], votes=arrays["votes"], usage=arrays["usage"],
                      names=arrays["names"].astype(object), fingerprint=meta["fingerprint"],
                      report=report)

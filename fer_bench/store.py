"""Atomic per-cell result store: one JSON file per finished cell.

Layout: ``<root>/<model>/<model>-n<N>-<split>-s<seed>-<config digest>-<dataset fp[:12]>.json``.
A file is written to a temporary name in the same folder, fsynced, then renamed over the
final name, so a crash leaves either the old file or the new one, never half of one.
A file that does not parse (or has another schema) is moved aside to ``*.corrupt`` with a
warning and treated as missing, so the cell is trained again; nothing is deleted.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path

from fer_bench.config import TrainConfig
from fer_bench.record import CellRecord

RESULTS_ENV = "FER_BENCH_RESULTS"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_root() -> Path:
    """``$FER_BENCH_RESULTS``, else ``./results``."""
    return Path(os.environ.get(RESULTS_ENV) or "results")


def safe_name(name: str) -> str:
    """A model name usable as a file name on any filesystem ("timm/vit b" -> "timm_vit_b")."""
    cleaned = _UNSAFE.sub("_", name).strip("._")
    return cleaned or "model"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ResultStore:
    """Cell records as JSON files under ``root`` (default ``default_root()``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def key(self, model: str, nhot: int, split: str, seed: int, config: TrainConfig,
            dataset_fingerprint: str) -> str:
        """The record's path relative to ``root``, e.g.
        ``small_cnn/small_cnn-n3-complex-s0-<config digest>-<dataset fp[:12]>.json``."""
        name = safe_name(model)
        return (f"{name}/{name}-n{nhot}-{split}-s{seed}-{config.digest()}-"
                f"{dataset_fingerprint[:12]}.json")

    def path(self, key: str) -> Path:
        """Absolute file path of ``key``."""
        return self.root / key

    def get(self, key: str) -> CellRecord | None:
        """The stored record, or None when missing or unreadable (then moved to ``*.corrupt``)."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return CellRecord.from_dict(json.loads(text))
        except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            aside = self._move_aside(path)
            warnings.warn(f"result file {path} is unreadable ({type(exc).__name__}: {exc}); "
                          f"moved to {aside}, the cell will be trained again", stacklevel=2)
            return None

    def put(self, key: str, record: CellRecord) -> Path:
        """Write ``record`` atomically under ``key``; returns the file path."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = json.dumps(record.to_dict(), indent=1, sort_keys=True, allow_nan=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            # mkstemp creates 0600; give the result the permissions a plain open() would.
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        self._fsync_dir(path.parent)
        return path

    def records(self) -> list[CellRecord]:
        """Every readable record under ``root`` (unreadable files are moved aside)."""
        found = []
        for path in sorted(self.root.glob("*/*.json")):
            record = self.get(path.relative_to(self.root).as_posix())
            if record is not None:
                found.append(record)
        return found

    @staticmethod
    def _move_aside(path: Path) -> Path:
        aside = path.with_name(path.name + ".corrupt")
        counter = 1
        while aside.exists():
            aside = path.with_name(f"{path.name}.corrupt{counter}")
            counter += 1
        os.replace(path, aside)
        return aside

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        """Make the rename itself durable (POSIX; a no-op where directories can't be opened)."""
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

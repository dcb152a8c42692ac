"""The one atomic-write helper of the project (result store, data cache, leaderboard files).

A file is written to a temporary name in its own folder, flushed and fsynced, then renamed
over the final name (``os.replace``, atomic on POSIX and Windows), and the folder is fsynced
so the rename itself survives a crash. Readers therefore see the old file or the new one,
never half of one, even after ``kill -9``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX; a no-op where directories can't be opened)."""
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


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Create or replace ``path`` atomically; ``write(handle)`` fills a binary handle.

    Parent folders are created. The file gets the permissions a plain ``open`` would give
    (0666 minus the umask), not ``mkstemp``'s 0600. On any exception the temporary file is
    removed and the old file, if any, is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (an init weights file, a dlib model file), memoised per
    (resolved path, size, mtime) for the 256 most recent files."""
    path = Path(path)
    st = path.stat()
    return _sha256_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_of(resolved: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(resolved, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()

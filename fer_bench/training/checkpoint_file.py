"""The file format of a cell's epoch checkpoint, without torch (the store and
``fer-bench launch --status`` read checkpoint metadata through it).

A checkpoint ``<id>-<hash>.ckpt`` lies beside the cell's record and claim. Its bytes::

    payload (torch.save zip, read back with weights_only=True)
    trailer (UTF-8 JSON: format, version, protocol, cell digest and id, epoch, epochs,
             payload_bytes, payload_sha256, written_at)
    8-byte big-endian length of the trailer
    MAGIC (8 bytes)

Written through ``fileio.atomic_write`` (temp file, fsync, rename): a reader sees the old
checkpoint or the new one. The trailer makes every bad file detectable before torch reads a
byte of it: no magic (truncated, or not a checkpoint), a length that does not add up
(truncated), another format version, protocol or cell digest (foreign), a payload whose
sha256 differs (corrupt). ``read_info`` is cheap (the last bytes only).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from fer_bench.fileio import atomic_write

CHECKPOINT_SUFFIX = ".ckpt"
MAGIC = b"FERCKPT\x01"
FORMAT = "fer_bench.checkpoint"
#: Bumped when the payload's layout changes; a checkpoint of another version is not trusted.
FORMAT_VERSION = 1
_TAIL = struct.Struct(">Q")
_MAX_TRAILER = 1 << 16
_CHUNK = 1 << 20


class CheckpointError(Exception):
    """A checkpoint that cannot be trusted; the message says why in a few words."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint's trailer: which cell, how far it got (``epoch`` of ``epochs`` finished),
    ``size`` bytes on disk, ``written_at`` ISO 8601 UTC."""

    path: Path
    cell_id: str
    cell_digest: str
    protocol: int
    version: int
    epoch: int
    epochs: int
    payload_bytes: int
    payload_sha256: str
    size: int
    written_at: str


class _HashingWriter:
    """A binary sink that counts and hashes what passes through it into ``handle``."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.sha, self.count = handle, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.handle.write(view)
        self.count += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self.handle.flush()


def write_checkpoint(path: Path, write_payload: Callable[[Any], None], meta: dict[str, Any]) -> int:
    """Write a checkpoint atomically: ``write_payload(sink)`` streams the payload (e.g.
    ``torch.save(obj, sink)``), ``meta`` (cell_id, cell_digest, protocol, epoch, epochs)
    goes into the trailer. Returns the file's size in bytes."""
    size = 0

    def write(handle: IO[bytes]) -> None:
        nonlocal size
        sink = _HashingWriter(handle)
        write_payload(sink)
        trailer = json.dumps({
            **meta, "format": FORMAT, "version": FORMAT_VERSION, "payload_bytes": sink.count,
            "payload_sha256": sink.sha.hexdigest(),
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }, sort_keys=True).encode()
        handle.write(trailer + _TAIL.pack(len(trailer)) + MAGIC)
        size = sink.count + len(trailer) + _TAIL.size + len(MAGIC)

    atomic_write(path, write)
    return size


def read_info(path: Path) -> CheckpointInfo:
    """The trailer of the checkpoint at ``path``; ``CheckpointError`` when it has none that
    parses, or its sizes do not add up (a truncated file); FileNotFoundError when absent."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        tail = _TAIL.size + len(MAGIC)
        if size < tail:
            raise CheckpointError(f"truncated ({size} bytes)")
        handle.seek(size - tail)
        end = handle.read(tail)
        if end[_TAIL.size:] != MAGIC:
            raise CheckpointError("truncated or not a fer_bench checkpoint (no end marker)")
        (length,) = _TAIL.unpack(end[:_TAIL.size])
        if not 0 < length <= min(_MAX_TRAILER, size - tail):
            raise CheckpointError(f"bad trailer length {length}")
        handle.seek(size - tail - length)
        try:
            meta = json.loads(handle.read(length).decode())
            info = CheckpointInfo(
                path=Path(path), cell_id=str(meta["cell_id"]), cell_digest=str(meta["cell_digest"]),
                protocol=int(meta["protocol"]), version=int(meta["version"]), epoch=int(meta["epoch"]),
                epochs=int(meta["epochs"]), payload_bytes=int(meta["payload_bytes"]),
                payload_sha256=str(meta["payload_sha256"]), size=size,
                written_at=str(meta.get("written_at", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"unreadable trailer ({type(exc).__name__})") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"not a fer_bench checkpoint (format {meta.get('format')!r})")
    if info.payload_bytes + length + tail != size:
        raise CheckpointError(f"truncated: {size} bytes, the trailer accounts for "
                              f"{info.payload_bytes + length + tail}")
    return info


def check_info(info: CheckpointInfo, *, cell_digest: str, protocol: int) -> None:
    """``CheckpointError`` unless ``info`` belongs to this cell under this protocol and
    format version, with an epoch in 1..epochs."""
    if info.version != FORMAT_VERSION:
        raise CheckpointError(f"format version {info.version}, this fer_bench reads {FORMAT_VERSION}")
    if info.protocol != protocol:
        raise CheckpointError(f"written under PROTOCOL_VERSION {info.protocol}, now {protocol}")
    if info.cell_digest != cell_digest:
        raise CheckpointError(f"belongs to another cell ({info.cell_id}, identity {info.cell_digest[:12]})")
    if not 1 <= info.epoch <= info.epochs:
        raise CheckpointError(f"epoch {info.epoch} outside 1..{info.epochs}")


class _Window(io.RawIOBase):
    """Bytes ``[0, length)`` of ``handle`` as a seekable file (the payload without its trailer)."""

    def __init__(self, handle: IO[bytes], length: int) -> None:
        self.handle, self.length, self.pos = handle, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self.length - self.pos))
        self.handle.seek(self.pos)
        got = self.handle.readinto(memoryview(buffer)[:count]) or 0
        self.pos += got
        return got


@contextmanager
def verified_payload(info: CheckpointInfo) -> Iterator[IO[bytes]]:
    """A seekable reader of ``info``'s payload, open for the ``with`` body, after checking
    its sha256 against the trailer (``CheckpointError`` when it differs: corrupt bytes)."""
    with open(info.path, "rb") as handle:
        sha, left = hashlib.sha256(), info.payload_bytes
        while left:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                raise CheckpointError("truncated payload")
            sha.update(chunk)
            left -= len(chunk)
        if sha.hexdigest() != info.payload_sha256:
            raise CheckpointError("corrupt: the payload's sha256 differs from its trailer's")
        yield io.BufferedReader(_Window(handle, info.payload_bytes))


def leftover_temp_files(path: Path) -> list[Path]:
    """Temp files an interrupted ``atomic_write`` of ``path`` left behind (``.<name>.*.tmp``)."""
    return sorted(Path(path).parent.glob(f".{Path(path).name}.*.tmp"))

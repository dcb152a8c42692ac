"""The FERPlus folder layout (Microsoft's ``generate_training_data.py``): PNGs in
``FER2013Train|FER2013Valid|FER2013Test/`` and each folder's ``label.csv`` (an older vote
snapshot, ``--labels folder``).

Images must be 48x48. 8-bit grayscale (PIL mode ``L``) is read as is; other 8-bit modes
(palette, RGB(A), LA, 1-bit) are converted to ``L`` with PIL's ITU-R 601-2 luma transform
and counted in one report warning; any other mode (16-bit, float, ...) is a ``DataError``.
Images are matched to ``fer2013new.csv`` rows by NAME within their usage folder.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from PIL import PngImagePlugin

from fer_bench.data.schema import IMAGE_SIZE, USAGE_FOLDERS, USAGES, VOTE_COLUMNS, LoadReport
from fer_bench.data.source_votes import VOTES_FILE, VoteTable, parse_votes
from fer_bench.errors import DataError

FOLDER_LABEL_FILE = "label.csv"
#: 8-bit PIL modes converted to grayscale ``L``; anything else but ``L`` is rejected.
_CONVERTIBLE_MODES = frozenset({"1", "P", "PA", "LA", "RGB", "RGBA"})


def png_listing(root: Path) -> dict[str, dict[str, os.DirEntry]]:
    """usage folder name -> {png name -> DirEntry}; missing folders map to {}."""
    listing: dict[str, dict[str, os.DirEntry]] = {}
    for sub in USAGE_FOLDERS.values():
        folder = root / sub
        entries: dict[str, os.DirEntry] = {}
        if folder.is_dir():
            with os.scandir(folder) as it:
                entries = {e.name: e for e in it if e.name.endswith(".png")}
        listing[sub] = entries
    return listing


def read_folder_labels(root: Path, table: VoteTable) -> np.ndarray:
    """Votes int32 [N, 10] from the per-folder ``label.csv`` files, in ``table`` order."""
    by_name: dict[tuple[str, str], list[int]] = {}
    for sub in USAGE_FOLDERS.values():
        label_csv = root / sub / FOLDER_LABEL_FILE
        if not label_csv.is_file():
            if (root / sub).is_dir():
                raise DataError(f"{label_csv}: folder label file not found (--labels folder)")
            continue
        with open(label_csv, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) < 2 or not row[0].strip():
                    raise DataError(f"{label_csv}: line {line}: expected name, box and "
                                    f"{len(VOTE_COLUMNS)} vote counts")
                by_name[(sub, row[0].strip())] = parse_votes(row[2:], label_csv, line, 2)
    out = np.empty_like(table.votes)
    for i, (name, usage) in enumerate(zip(table.names, table.usage, strict=True)):
        sub = USAGE_FOLDERS[USAGES[usage]]
        try:
            out[i] = by_name[(sub, name)]
        except KeyError:
            raise DataError(f"{root / sub / FOLDER_LABEL_FILE}: no row for image {name} "
                            f"({VOTES_FILE} line {table.line_of[name]})") from None
    return out


def count_votes_differ(folder_votes: np.ndarray, table: VoteTable) -> int:
    """Images whose folder votes match none of the fer2013new.csv rows carrying their name.

    A duplicated name has several fer2013new rows; agreeing with any of them is not a
    difference between the snapshots (the old snapshot kept the earlier row's votes).
    """
    differ = np.any(folder_votes != table.votes, axis=1)
    for i in np.nonzero(differ)[0]:
        rows = table.duplicate_votes.get(table.names[i], [])
        if any(list(folder_votes[i]) == r for r in rows):
            differ[i] = False
    return int(differ.sum())


def decode_png(data: bytes, where: str) -> tuple[np.ndarray, bool]:
    """One PNG -> (uint8 [48, 48], converted-from-another-mode flag)."""
    try:
        im = PngImagePlugin.PngImageFile(io.BytesIO(data))
        im.load()
    except Exception as exc:  # PIL raises SyntaxError, OSError, ValueError, zlib.error ...
        raise DataError(f"{where}: corrupt or unreadable PNG ({exc})") from None
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{where}: image is {im.size[0]}x{im.size[1]}, "
                        f"expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    converted = im.mode != "L"
    if converted:
        if im.mode not in _CONVERTIBLE_MODES:
            raise DataError(f"{where}: PIL mode {im.mode!r} is not 8-bit grayscale")
        im = im.convert("L")
    return np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE), converted


def read_folder_images(root: Path, table: VoteTable,
                        listing: dict[str, dict[str, os.DirEntry]],
                        report: LoadReport) -> np.ndarray:
    """Decode every image of ``table`` from its usage folder: uint8 [N, 48, 48]."""
    images = np.empty((len(table.names), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    converted = 0
    for i, (name, usage) in enumerate(zip(table.names, table.usage, strict=True)):
        sub = USAGE_FOLDERS[USAGES[usage]]
        entry = listing[sub].get(name)
        if entry is None:
            raise DataError(f"{root / sub / name}: PNG missing for {VOTES_FILE} line "
                            f"{table.line_of[name]}")
        with open(entry.path, "rb") as fh:
            images[i], was_converted = decode_png(fh.read(), entry.path)
        converted += was_converted
    if converted:
        report.warnings.append(f"{root}: {converted} PNG(s) were not 8-bit grayscale and were "
                               "converted to grayscale (ITU-R 601-2 luma)")
    listed = {(USAGE_FOLDERS[USAGES[u]], n) for n, u in zip(table.names, table.usage, strict=True)}
    unlisted = sum((sub, n) not in listed for sub, names in listing.items() for n in names)
    if unlisted:
        report.warnings.append(f"{root}: {unlisted} PNG(s) have no row in {VOTES_FILE} "
                               "and were ignored")
    return images

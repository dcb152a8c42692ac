"""Readers for the two ways users hold FERPlus, plus the embedded synthetic set.

``load_source(path, format, labels)`` returns a ``RawDataset`` in canonical order (the
row order of ``fer2013new.csv``) from either

* ``"folder"``: the layout of Microsoft's ``generate_training_data.py``:
  ``FER2013Train|FER2013Valid|FER2013Test/*.png`` (+ per-folder ``label.csv``) and
  ``fer2013new.csv``, joined on the image NAME (names are not row indices), or
* ``"kaggle"``: Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``) with ``fer2013new.csv``
  beside it, row-aligned (row i of one is row i of the other).

Both apply the same rules, so they give identical images, votes, usage and order:
rows with an empty ``Image name`` are skipped and counted; a name that appears twice is
kept once, at the position of its LATER row, with that row's votes (the exporter wrote
the later row's pixels over the earlier one's PNG).

Images must be 48x48. 8-bit grayscale (PIL mode ``L``) is read as is; other 8-bit modes
(palette, RGB(A), LA, 1-bit) are converted to ``L`` with PIL's ITU-R 601-2 luma transform
and counted in one warning; any other mode (16-bit, float, ...) is a ``DataError``.

Text files may start with a UTF-8 byte-order mark (Excel writes one); it is skipped.
Facts about a file that the user cannot change (duplicated names) are logged on
``fer_bench.data.sources`` and kept in the ``LoadReport``'s warnings, not raised as Python
warnings. Nothing here writes to disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import PngImagePlugin

from fer_bench.data.schema import (
    IMAGE_SIZE,
    USAGE_FOLDERS,
    USAGES,
    VOTE_COLUMNS,
    LoadReport,
    RawDataset,
)
from fer_bench.data.synthetic import is_synthetic_source, make_synthetic, synthetic_options
from fer_bench.errors import DataError, DataPathError

log = logging.getLogger(__name__)

VOTES_FILE = "fer2013new.csv"
KAGGLE_FILE = "fer2013.csv"
FOLDER_LABEL_FILE = "label.csv"
FORMATS = ("folder", "kaggle", "synthetic")
LABEL_SNAPSHOTS = ("fer2013new", "folder")
PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE
#: 8-bit PIL modes converted to grayscale ``L``; anything else but ``L`` is rejected.
_CONVERTIBLE_MODES = frozenset({"1", "P", "PA", "LA", "RGB", "RGBA"})
_FINGERPRINT_VERSION = "fer_bench-source-v1"
#: What a data path may be, for error messages.
SOURCE_HINT = ("give a FERPlus folder (FER2013Train/Valid/Test + fer2013new.csv), a Kaggle "
               "fer2013.csv with fer2013new.csv beside it, or 'synthetic'")


@dataclass(frozen=True)
class SourceLocation:
    """Where a source lives once ``path`` and ``format`` are resolved.

    ``root`` is the folder holding ``fer2013new.csv``; ``kaggle_csv`` is set for "kaggle".
    """

    format: str
    root: Path | None
    kaggle_csv: Path | None = None

    @property
    def votes_csv(self) -> Path:
        assert self.root is not None
        return self.root / VOTES_FILE


@dataclass
class _VoteTable:
    """Rows of ``fer2013new.csv`` that survive the name rules, in canonical order."""

    rows: int                       # data rows in the file
    row_index: np.ndarray           # int64 [N]: 0-based data-row index of each kept row
    names: list[str]
    usage: np.ndarray               # int8 [N]
    votes: np.ndarray               # int32 [N, 10]
    line_of: dict[str, int]         # name -> 1-based line of its winning row
    unnamed_rows: int = 0
    duplicate_names: list[str] = field(default_factory=list)
    duplicate_votes: dict[str, list[list[int]]] = field(default_factory=dict)  # every row's votes
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- locating

def locate_source(path: str | os.PathLike, format: str = "auto") -> SourceLocation:
    """Resolve ``path`` to a source and its format ("auto" detects it from the path).

    A folder with a ``FER2013Train|Valid|Test`` subfolder is "folder"; a folder with
    ``fer2013.csv`` (and no image folders) or a ``.csv`` file other than fer2013new.csv
    is "kaggle"; ``"synthetic"`` (or ``"synthetic:taggers=T"``) is the embedded set.
    Raises ``DataPathError`` (a
    ``DataError``, exit status 2 in the CLI) when the path
    does not exist, is empty, or lacks ``fer2013new.csv``.
    """
    if format not in ("auto",) + FORMATS:
        raise DataPathError(f"unknown data format {format!r}; choose one of auto, {', '.join(FORMATS)}")
    if format == "synthetic" or is_synthetic_source(path):
        if is_synthetic_source(path):
            synthetic_options(str(path))   # a bad option fails here, naming the source
        return SourceLocation("synthetic", None)
    p = Path(path).expanduser()
    if not p.exists():
        raise DataPathError(f"{p}: data path does not exist; {SOURCE_HINT}")
    kaggle_csv = None
    if p.is_file():
        if p.name == VOTES_FILE:       # the vote file alone stands for its folder
            p = p.parent
        else:
            kaggle_csv, p = p, p.parent
    elif not any(p.iterdir()):
        raise DataPathError(f"{p}: data folder is empty; {SOURCE_HINT}")
    if format == "auto":
        if kaggle_csv is not None:
            format = "kaggle"
        elif any((p / sub).is_dir() for sub in USAGE_FOLDERS.values()):
            format = "folder"
        elif (p / KAGGLE_FILE).is_file():
            format = "kaggle"
        else:
            raise DataPathError(f"{p}: neither a FERPlus folder ({'/'.join(USAGE_FOLDERS.values())}) "
                            f"nor a Kaggle {KAGGLE_FILE}")
    if format == "kaggle" and kaggle_csv is None:
        kaggle_csv = p / KAGGLE_FILE
        if not kaggle_csv.is_file():
            raise DataPathError(f"{kaggle_csv}: Kaggle pixel file not found")
    if not (p / VOTES_FILE).is_file():
        raise DataPathError(f"{p / VOTES_FILE}: vote file not found (needed beside the "
                        f"{'images' if format == 'folder' else 'Kaggle csv'})")
    return SourceLocation(format, p, kaggle_csv)


def _png_listing(root: Path) -> dict[str, dict[str, os.DirEntry]]:
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


def source_fingerprint(loc: SourceLocation,
                       listing: dict[str, dict[str, os.DirEntry]] | None = None) -> str:
    """Hex SHA-256 of a source's files, cheap enough to check a cache on every load.

    Label files are hashed by content (``fer2013new.csv``, the per-folder ``label.csv``);
    bulk image data by name, size and mtime (ns): every PNG of the usage folders, or the
    Kaggle ``fer2013.csv``. Editing, adding, removing or touching any of them changes it.
    """
    h = hashlib.sha256(f"{_FINGERPRINT_VERSION}\0{loc.format}\0".encode())
    if loc.format == "synthetic":
        return h.hexdigest()
    h.update(loc.votes_csv.read_bytes())
    if loc.format == "kaggle":
        st = loc.kaggle_csv.stat()
        h.update(f"\0{loc.kaggle_csv.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    listing = listing if listing is not None else _png_listing(loc.root)
    for sub in sorted(listing):
        label_csv = loc.root / sub / FOLDER_LABEL_FILE
        h.update(f"\0{sub}/{FOLDER_LABEL_FILE}\0".encode())
        if label_csv.is_file():
            h.update(label_csv.read_bytes())
        lines = []
        for name in sorted(listing[sub]):
            st = listing[sub][name].stat()
            lines.append(f"{sub}/{name}\0{st.st_size}\0{st.st_mtime_ns}\n")
        h.update("".join(lines).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- vote files

def _parse_votes(cells: list[str], csv_path: Path, line: int, first_col: int) -> list[int]:
    """The 10 vote counts of one row, or a DataError naming file, line and column."""
    try:
        votes = [int(c) for c in cells]
        if len(votes) == len(VOTE_COLUMNS) and min(votes) >= 0:
            return votes
    except ValueError:
        pass
    for k, col in enumerate(VOTE_COLUMNS):       # slow path: say exactly what is wrong
        where = f"{csv_path}: line {line}, column {first_col + k + 1} ({col})"
        if k >= len(cells) or cells[k].strip() == "":
            raise DataError(f"{where}: missing vote count")
        try:
            value = int(cells[k])
        except ValueError:
            raise DataError(f"{where}: vote count {cells[k]!r} is not an integer") from None
        if value < 0:
            raise DataError(f"{where}: vote count {value} is negative")
    raise DataError(f"{csv_path}: line {line}: expected {len(VOTE_COLUMNS)} vote columns, "
                    f"got {len(cells)}")


def _read_vote_table(csv_path: Path) -> _VoteTable:
    """Read ``fer2013new.csv`` and apply the name rules (skip unnamed, later duplicate wins)."""
    expected = ["Usage", "Image name", *VOTE_COLUMNS]
    usage_code = {u: i for i, u in enumerate(USAGES)}
    names: list[str | None] = []
    usages: list[int] = []
    votes: list[list[int]] = []
    lines: list[int] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [c.strip() for c in header] != expected:
            raise DataError(f"{csv_path}: line 1: header must be {','.join(expected)}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) < 2:
                raise DataError(f"{csv_path}: line {line}: expected {len(expected)} columns")
            usage = row[0].strip()
            if usage not in usage_code:
                raise DataError(f"{csv_path}: line {line}, column 1 (Usage): "
                                f"{usage!r} is not one of {', '.join(USAGES)}")
            usages.append(usage_code[usage])
            names.append(row[1].strip() or None)
            votes.append(_parse_votes(row[2:], csv_path, line, first_col=2))
            lines.append(line)

    rows_of: dict[str, list[int]] = {}       # name -> its row indices, in file order
    for i, name in enumerate(names):
        if name is not None:
            rows_of.setdefault(name, []).append(i)
    keep = [i for i, name in enumerate(names) if name is not None and rows_of[name][-1] == i]
    duplicates = [n for n, rs in rows_of.items() if len(rs) > 1]
    table = _VoteTable(
        rows=len(names),
        row_index=np.asarray(keep, dtype=np.int64),
        names=[names[i] for i in keep],
        usage=np.asarray([usages[i] for i in keep], dtype=np.int8),
        votes=np.asarray([votes[i] for i in keep], dtype=np.int32).reshape(-1, len(VOTE_COLUMNS)),
        line_of={names[i]: lines[i] for i in keep},
        unnamed_rows=sum(n is None for n in names),
        duplicate_names=duplicates,
        duplicate_votes={n: [votes[i] for i in rows_of[n]] for n in duplicates},
    )
    if duplicates:
        detail = "; ".join(f"{n} (lines {', '.join(str(lines[i]) for i in rows_of[n])})"
                           for n in duplicates[:10])
        if len(duplicates) > 10:
            detail += f"; and {len(duplicates) - 10} more"
        msg = (f"{csv_path}: {len(duplicates)} image name(s) appear more than once; "
               f"the later row wins: {detail}")
        table.warnings.append(msg)
        log.warning(msg)    # a fact of the file, nothing the user can change
    return table


def _read_folder_labels(root: Path, table: _VoteTable) -> np.ndarray:
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
                by_name[(sub, row[0].strip())] = _parse_votes(row[2:], label_csv, line, 2)
    out = np.empty_like(table.votes)
    for i, (name, usage) in enumerate(zip(table.names, table.usage, strict=True)):
        sub = USAGE_FOLDERS[USAGES[usage]]
        try:
            out[i] = by_name[(sub, name)]
        except KeyError:
            raise DataError(f"{root / sub / FOLDER_LABEL_FILE}: no row for image {name} "
                            f"({VOTES_FILE} line {table.line_of[name]})") from None
    return out


def _count_votes_differ(folder_votes: np.ndarray, table: _VoteTable) -> int:
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


# ----------------------------------------------------------------------------- images

def _decode_png(data: bytes, where: str) -> tuple[np.ndarray, bool]:
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


def _read_folder_images(root: Path, table: _VoteTable,
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
            images[i], was_converted = _decode_png(fh.read(), entry.path)
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


def _read_kaggle_pixels(kaggle_csv: Path, table: _VoteTable) -> np.ndarray:
    """Pixels of the rows ``table`` keeps from the row-aligned Kaggle csv: uint8 [N, 48, 48]."""
    wanted = {int(r): k for k, r in enumerate(table.row_index)}
    images = np.empty((len(table.names), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    usage_code = {u: i for i, u in enumerate(USAGES)}
    rows = 0
    with open(kaggle_csv, newline="", encoding="utf-8-sig") as fh, warnings.catch_warnings():
        # older numpy only warns when fromstring stops at an unparsable token
        warnings.simplefilter("error", DeprecationWarning)
        reader = csv.reader(fh)
        header = [c.strip() for c in next(reader, [])]
        if header[:3] != ["emotion", "pixels", "Usage"]:
            raise DataError(f"{kaggle_csv}: line 1: header must be emotion,pixels,Usage")
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) < 3:
                raise DataError(f"{kaggle_csv}: line {line}: expected emotion,pixels,Usage")
            try:
                values = np.fromstring(row[1], dtype=np.int32, sep=" ")
            except (ValueError, DeprecationWarning):
                raise DataError(f"{kaggle_csv}: line {line}, column 2 (pixels): pixel string "
                                "holds a non-integer value") from None
            if values.size != PIXELS_PER_IMAGE:
                raise DataError(f"{kaggle_csv}: line {line}, column 2 (pixels): pixel string has "
                                f"{values.size} values, expected {PIXELS_PER_IMAGE}")
            if values.min() < 0 or values.max() > 255:
                raise DataError(f"{kaggle_csv}: line {line}, column 2 (pixels): "
                                "pixel value outside 0..255")
            k = wanted.get(rows)
            if k is not None:
                if usage_code.get(row[2].strip()) != table.usage[k]:
                    raise DataError(f"{kaggle_csv}: line {line}: Usage {row[2].strip()!r} "
                                    f"differs from {VOTES_FILE} line {table.line_of[table.names[k]]}"
                                    " (files not row-aligned?)")
                images[k] = values.reshape(IMAGE_SIZE, IMAGE_SIZE)
            rows += 1
    if rows != table.rows:
        raise DataError(f"{kaggle_csv} has {rows} data rows but {kaggle_csv.parent / VOTES_FILE} "
                        f"has {table.rows}; the two files must be row-aligned")
    return images


# ----------------------------------------------------------------------------- entry point

def load_source(path: str | os.PathLike, format: str = "auto",
                labels: str = "fer2013new") -> RawDataset:
    """Read one source into a ``RawDataset`` in canonical order (no cache; see ``cache.py``).

    ``path``: FERPlus folder, Kaggle ``fer2013.csv`` (or a folder holding it and
    ``fer2013new.csv``), or ``"synthetic"`` (``"synthetic:taggers=T"``: T simulated
    taggers per image, ``data.synthetic.make_synthetic``). ``format``: "auto" | "folder" | "kaggle" |
    "synthetic". ``labels``: "fer2013new" (default) or "folder" (the per-folder
    ``label.csv`` snapshot INSTEAD of fer2013new.csv; folder format only; the report's
    ``votes_differ`` counts images whose votes differ between the two snapshots).
    Raises ``DataError`` naming the file and row/image for any bad input.
    """
    if labels not in LABEL_SNAPSHOTS:
        raise DataError(f"unknown label snapshot {labels!r}; choose one of {', '.join(LABEL_SNAPSHOTS)}")
    loc = locate_source(path, format)
    if labels == "folder" and loc.format != "folder":
        raise DataPathError(f"{path}: --labels folder needs the FERPlus folder layout "
                        f"(per-folder {FOLDER_LABEL_FILE}); this source is {loc.format!r}")
    if loc.format == "synthetic":
        return make_synthetic(**(synthetic_options(str(path)) if is_synthetic_source(path) else {}))

    table = _read_vote_table(loc.votes_csv)
    report = LoadReport(source_format=loc.format, label_snapshot=labels, path=str(path),
                        rows=table.rows, unnamed_rows=table.unnamed_rows,
                        duplicate_names=list(table.duplicate_names),
                        warnings=list(table.warnings))
    votes = table.votes
    if loc.format == "folder":
        listing = _png_listing(loc.root)
        if not any(listing.values()):
            raise DataError(f"{loc.root}: no PNG images in {', '.join(USAGE_FOLDERS.values())}")
        fingerprint = source_fingerprint(loc, listing)
        images = _read_folder_images(loc.root, table, listing, report)
        if labels == "folder":
            votes = _read_folder_labels(loc.root, table)
            report.votes_differ = _count_votes_differ(votes, table)
    else:
        fingerprint = source_fingerprint(loc)
        images = _read_kaggle_pixels(loc.kaggle_csv, table)
    return RawDataset(images=images, votes=votes, usage=table.usage,
                      names=np.array(table.names, dtype=object), fingerprint=fingerprint,
                      report=report)

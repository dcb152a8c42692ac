"""Readers for the two ways users hold FERPlus, plus the embedded synthetic set.

``load_source(path, format, labels)`` returns a ``RawDataset`` in canonical order (the
row order of ``fer2013new.csv``) from either

* ``"folder"``: the layout of Microsoft's ``generate_training_data.py``:
  ``FER2013Train|FER2013Valid|FER2013Test/*.png`` (+ per-folder ``label.csv``) and
  ``fer2013new.csv``, joined on the image NAME (names are not row indices), or
* ``"kaggle"``: Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``) with ``fer2013new.csv``
  beside it, row-aligned (row i of one is row i of the other).

Both apply the same rules, so they give identical images, votes, usage and order. This
module locates a source, fingerprints it and puts the ``RawDataset`` and its
``LoadReport`` (the defects found: unnamed rows, duplicated names, converted or unlisted
images, differing vote snapshots) together; the readers are ``source_votes``
(``fer2013new.csv`` and its name rules), ``source_folder`` (PNGs and ``label.csv``) and
``source_kaggle`` (``fer2013.csv``). Text files may start with a UTF-8 byte-order mark
(Excel writes one); it is skipped. Facts about a file that the user cannot change
(duplicated names) are logged on ``fer_bench.data.sources`` and kept in the
``LoadReport``'s warnings, not raised as Python warnings. Nothing here writes to disk.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench.data.schema import USAGE_FOLDERS, LoadReport, RawDataset
from fer_bench.data.source_folder import (
    FOLDER_LABEL_FILE,
    count_votes_differ,
    png_listing,
    read_folder_images,
    read_folder_labels,
)
from fer_bench.data.source_kaggle import KAGGLE_FILE, read_kaggle_pixels
from fer_bench.data.source_votes import VOTES_FILE, read_vote_table
from fer_bench.data.synthetic import is_synthetic_source, make_synthetic, synthetic_options
from fer_bench.errors import DataError, DataPathError

FORMATS = ("folder", "kaggle", "synthetic")
LABEL_SNAPSHOTS = ("fer2013new", "folder")
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


def locate_source(path: str | os.PathLike, format: str = "auto") -> SourceLocation:
    """Resolve ``path`` to a source and its format ("auto" detects it from the path).

    A folder with a ``FER2013Train|Valid|Test`` subfolder is "folder"; a folder with
    ``fer2013.csv`` (and no image folders) or a ``.csv`` file other than fer2013new.csv
    is "kaggle"; ``"synthetic"`` (or ``"synthetic:taggers=T"``) is the embedded set.
    Raises ``DataPathError`` (a ``DataError``, exit status 2 in the CLI) when the path
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
    listing = listing if listing is not None else png_listing(loc.root)
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

    table = read_vote_table(loc.votes_csv)
    report = LoadReport(source_format=loc.format, label_snapshot=labels, path=str(path),
                        rows=table.rows, unnamed_rows=table.unnamed_rows,
                        duplicate_names=list(table.duplicate_names),
                        warnings=list(table.warnings))
    votes = table.votes
    if loc.format == "folder":
        listing = png_listing(loc.root)
        if not any(listing.values()):
            raise DataError(f"{loc.root}: no PNG images in {', '.join(USAGE_FOLDERS.values())}")
        fingerprint = source_fingerprint(loc, listing)
        images = read_folder_images(loc.root, table, listing, report)
        if labels == "folder":
            votes = read_folder_labels(loc.root, table)
            report.votes_differ = count_votes_differ(votes, table)
    else:
        fingerprint = source_fingerprint(loc)
        images = read_kaggle_pixels(loc.kaggle_csv, table)
    return RawDataset(images=images, votes=votes, usage=table.usage,
                      names=np.array(table.names, dtype=object), fingerprint=fingerprint,
                      report=report)

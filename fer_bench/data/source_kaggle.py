"""Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``): pixels as space-separated integers,
row-aligned with ``fer2013new.csv`` (row i of one is row i of the other)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from fer_bench.data.schema import IMAGE_SIZE, USAGES
from fer_bench.data.source_votes import VOTES_FILE, VoteTable
from fer_bench.errors import DataError

KAGGLE_FILE = "fer2013.csv"
PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE


def read_kaggle_pixels(kaggle_csv: Path, table: VoteTable) -> np.ndarray:
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

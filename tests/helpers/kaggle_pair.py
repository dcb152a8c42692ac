"""Small Kaggle-format sources (``fer2013.csv`` + ``fer2013new.csv``) for tests (tests only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer_bench.data.schema import VOTE_COLUMNS

BOM = "\ufeff"


def vote_rows(n: int, seed: int = 0) -> np.ndarray:
    """int [n, 10] votes of 10 taggers each: mostly 1-3 emotions, every 4th image 5 emotions
    (complex), no unknown/NF, so cleaning keeps every image."""
    rng = np.random.default_rng(seed)
    votes = np.zeros((n, len(VOTE_COLUMNS)), dtype=np.int64)
    for i in range(n):
        k = 5 if i % 4 == 0 else int(rng.integers(1, 4))
        emotions = rng.choice(8, size=k, replace=False)
        counts = np.ones(k, dtype=np.int64) + rng.multinomial(10 - k, np.full(k, 1 / k))
        votes[i, emotions] = counts
    return votes


def write_kaggle_pair(folder: Path, usages: Sequence[str], *, seed: int = 0,
                      bom: tuple[str, ...] = (), bad_pixels_line: int | None = None) -> Path:
    """Write ``folder/fer2013.csv`` and ``folder/fer2013new.csv`` with one row per entry of
    ``usages`` (row-aligned); ``bom`` names the files that start with a UTF-8 BOM
    ("fer2013.csv", "fer2013new.csv"); ``bad_pixels_line`` (1-based file line) gets a
    non-integer pixel. Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    votes = vote_rows(len(usages), seed)
    new_lines = ["Usage,Image name," + ",".join(VOTE_COLUMNS)]
    old_lines = ["emotion,pixels,Usage"]
    for i, usage in enumerate(usages):
        new_lines.append(f"{usage},fer{i:07d}.png," + ",".join(map(str, votes[i])))
        pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        if bad_pixels_line == i + 2:
            pixels = pixels.replace(" ", " x ", 1)
        old_lines.append(f"{int(np.argmax(votes[i, :7]))},{pixels},{usage}")
    for name, lines in (("fer2013new.csv", new_lines), ("fer2013.csv", old_lines)):
        text = "\n".join(lines) + "\n"
        (folder / name).write_text((BOM if name in bom else "") + text, encoding="utf-8")
    return folder

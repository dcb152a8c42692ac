"""The in-memory shapes every data stage hands to the next one.

Constants and dataclasses only; no I/O. Every other module of ``fer_bench.data``
produces or consumes these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The 8 emotions kept after cleaning, in FERPlus column order.
EMOTIONS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
)
#: All 10 vote columns of ``fer2013new.csv`` in file order.
VOTE_COLUMNS: tuple[str, ...] = EMOTIONS + ("unknown", "NF")
#: Usage values; ``RawDataset.usage`` holds indices into this tuple.
USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
#: FERPlus folder name for each usage.
USAGE_FOLDERS: dict[str, str] = {
    "Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test",
}
IMAGE_SIZE = 48


@dataclass
class LoadReport:
    """What a loader found in the source files (defects included), for ``data stats``."""

    source_format: str               # "folder" | "kaggle" | "synthetic"
    label_snapshot: str              # "fer2013new" | "folder" | "synthetic"
    path: str                        # the data path as given
    rows: int = 0                    # rows of the vote file
    unnamed_rows: int = 0            # rows with an empty image name (skipped)
    duplicate_names: list[str] = field(default_factory=list)  # names seen twice (later row wins)
    votes_differ: int | None = None  # images whose votes differ between the two snapshots
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GroundTruth:
    """The hidden distribution each image's emotion votes were drawn from: known only for
    generated data (``fer_bench.data.synthetic``), never for real data.

    ``dist`` float32 [N, 8] (rows sum to 1, ``EMOTIONS`` order), one row per image of the
    data set it belongs to, same order; ``taggers``: simulated taggers per image.
    """

    dist: np.ndarray
    taggers: int

    def take(self, indices: np.ndarray) -> GroundTruth:
        """The rows ``indices`` (int indices or a bool mask), as the data's own rows are taken."""
        return GroundTruth(self.dist[indices], self.taggers)


@dataclass
class RawDataset:
    """One loaded source, before cleaning, in canonical order (fer2013new.csv row order).

    images uint8 [N, 48, 48]; votes int32 [N, 10] (``VOTE_COLUMNS``);
    usage int8 [N] (index into ``USAGES``); names object [N] (e.g. ``fer0000000.png``).
    ``fingerprint`` is a hex digest of the source files this came from.
    ``truth``: the distributions the votes were drawn from (synthetic data only), else None.
    """

    images: np.ndarray
    votes: np.ndarray
    usage: np.ndarray
    names: np.ndarray
    fingerprint: str
    report: LoadReport
    truth: GroundTruth | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def is_synthetic(self) -> bool:
        return self.report.source_format == "synthetic"


@dataclass
class CleanDataset:
    """The cleaned data set every split is drawn from (SPEC "Data", report 3.3.1).

    images uint8 [M, 48, 48]; dist float32 [M, 8] (rows sum to 1, ``EMOTIONS`` order);
    complexity int8 [M] in 1..8 (emotions with a positive share); usage int8 [M];
    names object [M]. ``fingerprint`` hashes the cleaned votes (and names).
    ``label`` is what reports call this data: "ferplus" or "synthetic".
    ``votes`` int32 [M, 10] (``VOTE_COLUMNS``): the raw votes of the kept images, same
    order (Microsoft's label modes need unknown and NF); ``cleaning`` the rule that kept
    them ("study" or "ferplus-ms", see ``fer_bench.data.clean.CLEANING_RULES``).
    ``alignment``: an aligner's output for these rows (``fer_bench.data.align.axis.
    CleanAlignment``: aligned images, flags, inclination) when attached by
    ``with_alignment``, else None; ``images`` stay the source images.
    ``truth``: the hidden distributions of the kept images, same order (``GroundTruth``;
    synthetic data only, else None). Not hashed: the generated votes already identify it.
    """

    images: np.ndarray
    dist: np.ndarray
    complexity: np.ndarray
    usage: np.ndarray
    names: np.ndarray
    fingerprint: str
    label: str
    raw_report: LoadReport
    votes: np.ndarray | None = None
    cleaning: str = "study"
    alignment: Any = None
    truth: GroundTruth | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class Split:
    """Indices into a ``CleanDataset``: train / validation / test, all sorted int64, disjoint.

    ``name`` is "ordinary" | "complex" | "official"; ``fingerprint`` hashes the indices.
    """

    name: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    fingerprint: str

"""The alignment section's split (issue 11, report 4.3.2 and 5.2.3): honest accuracy on the
test images an aligner aligned, and on those it could not.

A cell with an aligner (``Cell.alignment`` not ``none``) records per test image whether the
aligner found usable landmarks (``CellRecord.test_aligned``); with its tie-aware
correctness per test image (``test_correct``, at the best-validation epoch) the honest
accuracy splits into the two groups. A row without flags of its own (``none``: the Base
and Base+Flip+Rotate rows) is split by the flags of another record on the same test images
(same dataset and split fingerprint, the default landmark aligner's first), so every row of
the section is split by the same faces; the "aligned flags" column names whose flags split
the row. Means over seeds; ``n`` is the test images per group (of the first seed). The
columns are entries of the registry (``columns.ALIGNED_COLUMN`` ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.rows import MISSING, RowSummary

if TYPE_CHECKING:
    from fer_bench.data.align.axis import AlignmentUse


def _use(record: CellRecord) -> AlignmentUse | None:
    """The parsed ``alignment`` of ``record``'s cell (``data.alignment.AlignmentUse``)."""
    from fer_bench.data.align.axis import parse_cell_alignment

    return parse_cell_alignment(record.cell.alignment)


def record_flags(record: CellRecord, context: Sequence[CellRecord]) -> tuple[np.ndarray, str, bool] | None:
    """(bool [n_test] aligned per test image, the aligner's token, borrowed?) for ``record``:
    its own flags, else those of a record of ``context`` on the same test images (same
    dataset and split fingerprints and test size), preferring the default landmark
    aligner; None when there is none."""
    from fer_bench.data.align.axis import DEFAULT_LANDMARK_ALIGNER

    own = record.aligned()
    if own is not None:
        return own, _use(record).token, False
    same = [(use, r) for r in context if r.test_aligned and r.n_test == record.n_test
            and r.split_fingerprint == record.split_fingerprint
            and r.dataset_fingerprint == record.dataset_fingerprint
            for use in [_use(r)] if use is not None]
    if not same:
        return None
    use, lender = min(same, key=lambda pair: (pair[0].aligner != DEFAULT_LANDMARK_ALIGNER,
                                              pair[0].token))
    return lender.aligned(), use.token, True


@dataclass(frozen=True)
class AlignmentSplit:
    """One row's honest accuracy on aligned / unaligned test faces (fractions, means over
    seeds; None for an empty group), group sizes, whose flags, borrowed or own."""

    aligned: float | None
    unaligned: float | None
    n_aligned: int
    n_unaligned: int
    tokens: tuple[str, ...]
    borrowed: bool
    seeds: int


def _cell_of(row: RowSummary):
    return row.at(8) or next(iter(row.cells.values()), None)


def split_accuracy(row: RowSummary) -> AlignmentSplit | None:
    """The split of ``row``'s cell (its 8-hot cell, else its first), None without flags;
    computed once per row (``row.memo``), as every split column and ``has_flags`` read it."""
    if "alignment_split" not in row.memo:
        row.memo["alignment_split"] = _split_accuracy(row)
    return row.memo["alignment_split"]


def _split_accuracy(row: RowSummary) -> AlignmentSplit | None:
    cell = _cell_of(row)
    if cell is None or not cell.ok:
        return None
    context = row.context or row.records
    hits, misses, sizes, tokens, borrowed = [], [], None, set(), False
    for _, record in sorted(cell.ok.items()):
        found = record_flags(record, context)
        if found is None or not record.test_correct:
            continue
        flags, token, lent = found
        correct = record.correct()
        hits.append(float(correct[flags].mean()) if flags.any() else np.nan)
        misses.append(float(correct[~flags].mean()) if (~flags).any() else np.nan)
        sizes = sizes or (int(flags.sum()), int((~flags).sum()))
        tokens.add(token)
        borrowed |= lent
    if sizes is None:
        return None

    def mean(values: list[float]) -> float | None:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else None

    return AlignmentSplit(mean(hits), mean(misses), sizes[0], sizes[1], tuple(sorted(tokens)),
                          borrowed, len(hits))


def _text(value: float | None, n: int) -> str:
    return MISSING if value is None else f"{100 * value:.2f} (n={n})"


def aligned_text(row: RowSummary) -> str:
    split = split_accuracy(row)
    return MISSING if split is None else _text(split.aligned, split.n_aligned)


def unaligned_text(row: RowSummary) -> str:
    split = split_accuracy(row)
    return MISSING if split is None else _text(split.unaligned, split.n_unaligned)


def flags_text(row: RowSummary) -> str:
    split = split_accuracy(row)
    if split is None:
        return MISSING
    return ", ".join(split.tokens) + (" (another row's)" if split.borrowed else "")


def has_flags(rows: Sequence[RowSummary]) -> bool:
    """The split columns show when some row of the table can be split."""
    return any(split_accuracy(row) is not None for row in rows)

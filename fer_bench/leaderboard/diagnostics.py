"""What a row's cells are, read from their records (issue 22 part 2, issue 21 part 4).

* **Convergence** (``still_improving``): in how many of the row's cells the best validation
  epoch was the last one trained. There the selection did nothing (honest = last epoch) and
  the recipe may have stopped before the model converged.
* **Coinciding training data** (``coincidences``): groups of a row's cells of one seed that
  trained on identical data. Read from ``CellRecord.train_targets_sha256`` (sha256 of the
  split fingerprint and the treated targets): on FERPlus 7-hot = 8-hot everywhere (no
  cleaned image has votes on all 8 emotions), and 6-hot = 8-hot in a seed whose training
  part holds no X = 7 image. A record without the fingerprint (written before it existed)
  falls back to the outcome: the same per-image test predictions and honest accuracy
  (deterministic training on identical data repeats the cell); such a group is labelled
  ``OUTCOME_BASIS``, since equal outcomes do not prove equal data.
* **Where a cell's time goes** (``time_split``): mean seconds per cell of data set-up,
  training epochs, evaluation, FLOP counting and store writes, and the overhead share
  (everything but the training epochs, over the cell's wall time), over the records that
  measured it (``CellRecord.wall_s`` etc.; None in older records).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.rows import MISSING, RowSummary, variant_column, variant_sort_key

#: The basis of a coincidence: identical training-target fingerprints (the data itself).
FINGERPRINT_BASIS = "fingerprint"
#: The fallback for records without fingerprints: identical test predictions (outcome).
OUTCOME_BASIS = "outcome"
OUTCOME_NOTE = "by outcome (same test predictions): no fingerprints in these records"


def ok_records(row: RowSummary) -> list[CellRecord]:
    """The row's ok records (every variant, every seed), in variant then seed order."""
    return [cell.ok[seed] for cell in row.cells.values() for seed in sorted(cell.ok)]


# ----------------------------------------------------------------------------- convergence
def still_improving(row: RowSummary) -> tuple[int, int]:
    """(cells whose best validation epoch is the last trained one, cells with a best
    validation epoch) over the row's ok records."""
    judged = [r for r in ok_records(row) if r.best_val_epoch is not None and r.val_acc]
    last = sum(r.best_val_epoch == len(r.val_acc) for r in judged)
    return last, len(judged)


def convergence_text(row: RowSummary) -> str:
    """"24 of 24" (cells still improving at the end, of the row's cells); "—" without any."""
    last, judged = still_improving(row)
    return MISSING if not judged else f"{last} of {judged}"


# ----------------------------------------------------------------------------- coincidences
@dataclass(frozen=True)
class Coincidence:
    """Variants of one row that trained on identical data in each of ``seeds``.

    ``variants``: in display order (``nhot-6``, ``nhot-8``); ``basis``: ``FINGERPRINT_BASIS``
    or ``OUTCOME_BASIS`` (at least one pair of the group was judged by its outcome)."""

    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    basis: str

    def text(self) -> str:
        """"6-hot = 7-hot = 8-hot (seeds 0, 1)", with the outcome caveat when it applies."""
        seeds = ", ".join(map(str, self.seeds))
        names = " = ".join(variant_column(v) for v in self.variants)
        caveat = f"; {OUTCOME_NOTE}" if self.basis == OUTCOME_BASIS else ""
        return f"{names} (seed{'s' if len(self.seeds) > 1 else ''} {seeds}{caveat})"


def _same(a: CellRecord, b: CellRecord) -> str | None:
    """The basis on which ``a`` and ``b`` trained on identical data, else None."""
    if a.train_targets_sha256 and b.train_targets_sha256:
        return FINGERPRINT_BASIS if a.train_targets_sha256 == b.train_targets_sha256 else None
    if a.test_predictions and a.test_predictions == b.test_predictions \
            and a.acc_honest == b.acc_honest:
        return OUTCOME_BASIS
    return None


def _groups_of_seed(records: Sequence[CellRecord]) -> list[tuple[tuple[str, ...], str]]:
    """Connected groups (>= 2 variants) of one seed's records under ``_same``, with the
    weakest basis of their links."""
    parent = list(range(len(records)))
    outcome = [False] * len(records)

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(records)):
        for j in range(i + 1, len(records)):
            basis = _same(records[i], records[j])
            if basis is not None:
                ri, rj = root(i), root(j)
                parent[rj] = ri
                outcome[ri] = outcome[ri] or outcome[rj] or basis == OUTCOME_BASIS
    members: dict[int, list[int]] = {}
    for i in range(len(records)):
        members.setdefault(root(i), []).append(i)
    groups = []
    for top, indices in members.items():
        if len(indices) > 1:
            variants = tuple(sorted((records[i].variant for i in indices), key=variant_sort_key))
            groups.append((variants, OUTCOME_BASIS if outcome[top] else FINGERPRINT_BASIS))
    return groups


def coincidences(row: RowSummary) -> list[Coincidence]:
    """Every group of the row's cells that trained on identical data, seeds with the same
    group merged; ordered by the group's first variant, then its seeds."""
    by_seed: dict[int, list[CellRecord]] = {}
    for record in ok_records(row):
        by_seed.setdefault(record.seed, []).append(record)
    seeds_of: dict[tuple[tuple[str, ...], str], list[int]] = {}
    for seed in sorted(by_seed):
        for key in _groups_of_seed(by_seed[seed]):
            seeds_of.setdefault(key, []).append(seed)
    found = [Coincidence(variants, tuple(seeds), basis)
             for (variants, basis), seeds in seeds_of.items()]
    return sorted(found, key=lambda c: ([variant_sort_key(v) for v in c.variants], c.seeds))


def coincidence_text(row: RowSummary) -> str:
    """The row's coincidences joined with "; " (``Coincidence.text``); "none" when the row
    has several variants and none coincide; "—" for a one-variant row."""
    found = coincidences(row)
    if found:
        return "; ".join(c.text() for c in found)
    return "none" if len(row.cells) > 1 else MISSING


def coinciding_with(row: RowSummary, variant: str) -> list[str]:
    """The other variants that trained on ``variant``'s data in every seed ``variant`` has."""
    cell = row.cells.get(variant)
    if cell is None or not cell.ok:
        return []
    seeds = set(cell.ok)
    partners: dict[str, set[int]] = {}
    for found in coincidences(row):
        if variant in found.variants:
            for other in found.variants:
                if other != variant:
                    partners.setdefault(other, set()).update(found.seeds)
    return sorted((v for v, covered in partners.items() if covered >= seeds), key=variant_sort_key)


# ----------------------------------------------------------------------------- time split
#: (label, CellRecord attribute) of the parts of a cell's wall time; "training" is
#: ``sum(epoch_times_s)``.
TIME_PARTS = (("setup", "setup_s"), ("training", None), ("evaluation", "eval_s"),
              ("FLOP counting", "flops_s"), ("store", "store_s"))


@dataclass(frozen=True)
class TimeSplit:
    """Mean seconds per cell over ``n`` records that measured their wall time: ``parts``
    (label -> seconds, None where no record of them has it), ``wall``, and ``overhead``:
    sum over the records of (wall - training epochs) / sum of wall, a fraction."""

    n: int
    parts: dict[str, float | None]
    wall: float
    overhead: float


def time_split(row: RowSummary) -> TimeSplit | None:
    """The row's ``TimeSplit``; None when no ok record has ``wall_s``."""
    timed = [r for r in ok_records(row) if r.wall_s]
    if not timed:
        return None
    parts: dict[str, float | None] = {}
    for label, attribute in TIME_PARTS:
        if attribute is None:
            values = [sum(r.epoch_times_s) for r in timed]
        else:
            values = [getattr(r, attribute) for r in timed if getattr(r, attribute) is not None]
        parts[label] = sum(values) / len(values) if values else None
    wall = sum(r.wall_s for r in timed)
    overhead = sum(r.wall_s - sum(r.epoch_times_s) for r in timed) / wall
    return TimeSplit(len(timed), parts, wall / len(timed), overhead)


def seconds_text(row: RowSummary) -> str:
    """Mean wall seconds per cell of the row, "1616.4"; "—" when no record measured it."""
    split = time_split(row)
    return MISSING if split is None else f"{split.wall:.1f}"


def split_text(row: RowSummary) -> str:
    """Mean seconds per cell of each ``TIME_PARTS`` part, in that order, joined with " / "
    ("12.0 / 1566.4 / 35.0 / 2.0 / 0.01"; "—" for a part no record measured)."""
    split = time_split(row)
    if split is None:
        return MISSING
    return " / ".join(MISSING if v is None else (f"{v:.2f}" if v < 1 else f"{v:.1f}")
                      for v in split.parts.values())


def overhead_text(row: RowSummary) -> str:
    """Overhead share of the row's cells, "12.3%"; "—" when no record measured it."""
    split = time_split(row)
    return MISSING if split is None else f"{100 * split.overhead:.1f}%"


def has_time_split(rows: Sequence[RowSummary]) -> bool:
    return any(time_split(row) is not None for row in rows)

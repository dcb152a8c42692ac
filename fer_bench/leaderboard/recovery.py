"""Recovery of the hidden distribution (``benchmarks/test_recovery.py``): the leaderboard's
"recovery" section, per tagger count (one row each) and per N.

On synthetic data every cell records the selected epoch's mean KL(true || predicted)
against the hidden mixture its votes were drawn from (``CellRecord.kl_true_mean``, nats)
and its accuracy against the true top emotion (``acc_true_top``). This module turns them
into the section's registry columns (``columns.COLUMNS``: per N, "KL→truth" and "acc vs
true top", mean ± 95% t interval over seeds; the tagger count; a per-row reading) and the
section's reading, a note under its table (``recovery_notes``).

A contrast is N-hot minus 1-hot, paired over the seeds both cells share. Its verdict:
**recovers better** when the KL is lower (with 3 or more paired seeds: its 95% interval
lies below 0), **adds noise** when it is higher (interval above 0), **unclear** when the
interval holds 0; with fewer than 3 seeds only the direction is read, and said so. Two
cells whose training targets are identical (``train_targets_sha256``, e.g. 3-hot = 8-hot
with 3 taggers, where no image has more than 3 voted emotions) are named, not judged
twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fer_bench.leaderboard.rows import MISSING, RowSummary
from fer_bench.leaderboard.stats import CellSummary, gain_interval, mean_ci

#: The leaderboard section (``fer_experiment`` name) of the recovery experiment.
SECTION = "recovery"
KL = "kl_true_mean"
ACC = "acc_true_top"
BETTER = "recovers better"
NOISE = "adds noise"
UNCLEAR = "unclear"
TAGGERS_COLUMN = "taggers"
READING_COLUMN = "reading (N-hot vs 1-hot, KL to truth)"
#: With fewer paired seeds no interval is computed (``stats.gain_interval``).
MIN_SEEDS_FOR_INTERVAL = 3


def kl_column(n: int) -> str:
    return f"KL→truth {n}-hot"


def acc_column(n: int) -> str:
    return f"acc vs true top {n}-hot"


def truth_by_seed(cell: CellSummary | None, metric: str) -> dict[int, float]:
    """seed -> the ``metric`` (``KL`` or ``ACC``) of the cell's ok records that have it."""
    if cell is None:
        return {}
    return {seed: float(getattr(r, metric)) for seed, r in cell.ok.items()
            if getattr(r, metric) is not None}


def has_truth_at(n: int) -> Callable[[Sequence[RowSummary]], bool]:
    """``when`` of the per-N columns: some row's ``nhot-n`` cell carries the truth metrics."""
    def when(rows: Sequence[RowSummary]) -> bool:
        return any(truth_by_seed(row.at(n), KL) for row in rows)
    return when


def has_truth(rows: Sequence[RowSummary]) -> bool:
    """Some row of the table carries the truth metrics at some N."""
    return any(has_truth_at(n)(rows) for n in range(1, 9))


def _mean_text(values: Sequence[float], scale: float, spec: str) -> str:
    if not values:
        return MISSING
    mean, half = mean_ci(values)
    text = format(scale * mean, spec)
    return text if half is None else f"{text} ± {format(scale * half, spec)}"


def kl_text(n: int) -> Callable[[RowSummary], str]:
    """Column text: mean KL(true || predicted) of the ``nhot-n`` cell, nats, "0.848 ± 0.012"."""
    return lambda row: _mean_text(list(truth_by_seed(row.at(n), KL).values()), 1.0, ".3f")


def acc_text(n: int) -> Callable[[RowSummary], str]:
    """Column text: accuracy against the true top emotion of the ``nhot-n`` cell, percent."""
    return lambda row: _mean_text(list(truth_by_seed(row.at(n), ACC).values()), 100.0, ".2f")


def row_taggers(row: RowSummary) -> int | None:
    """The simulated taggers per image of the row's data (one value), else None."""
    counts = {r.synthetic_taggers for r in row.records}
    return counts.pop() if len(counts) == 1 else None


def taggers_text(row: RowSummary) -> str:
    taggers = row_taggers(row)
    return MISSING if taggers is None else str(taggers)


@dataclass(frozen=True)
class Contrast:
    """``nhot-n`` minus 1-hot of one row, paired over ``n_seeds`` shared seeds: KL to the
    truth (nats; negative = closer) and accuracy vs the true top emotion (fraction), with
    95% intervals (None below ``MIN_SEEDS_FOR_INTERVAL`` seeds). ``same_as``: the smaller
    N whose cells trained on identical targets (every shared seed), else None."""

    n: int
    n_seeds: int
    kl: float
    acc: float
    kl_ci: tuple[float, float] | None
    acc_ci: tuple[float, float] | None
    same_as: int | None = None

    @property
    def verdict(self) -> str:
        if self.kl_ci is not None:
            return BETTER if self.kl_ci[1] < 0 else NOISE if self.kl_ci[0] > 0 else UNCLEAR
        return BETTER if self.kl < 0 else NOISE if self.kl > 0 else UNCLEAR


def _same_targets(a: CellSummary, b: CellSummary) -> bool:
    seeds = sorted(set(a.ok) & set(b.ok))
    return bool(seeds) and all(a.ok[s].train_targets_sha256 != "" and
                               a.ok[s].train_targets_sha256 == b.ok[s].train_targets_sha256
                               for s in seeds)


def contrasts(row: RowSummary) -> list[Contrast]:
    """One ``Contrast`` per N > 1 of the row that pairs with 1-hot on some seed, by N."""
    base = row.at(1)
    base_kl, base_acc = truth_by_seed(base, KL), truth_by_seed(base, ACC)
    found: list[Contrast] = []
    for n in sorted(row.nhot_cells()):
        cell = row.at(n)
        if n == 1 or cell is None:
            continue
        kl, acc = truth_by_seed(cell, KL), truth_by_seed(cell, ACC)
        seeds = sorted(set(kl) & set(base_kl) & set(acc) & set(base_acc))
        if not seeds:
            continue
        kl_diff = np.array([kl[s] - base_kl[s] for s in seeds])
        acc_diff = np.array([acc[s] - base_acc[s] for s in seeds])
        same_as = next((m for m in sorted(row.nhot_cells()) if m < n
                        and _same_targets(cell, row.at(m))), None)
        found.append(Contrast(n, len(seeds), float(kl_diff.mean()), float(acc_diff.mean()),
                              gain_interval(kl_diff), gain_interval(acc_diff), same_as))
    return found


def reading_text(row: RowSummary) -> str:
    """Per-row reading: "2-hot −0.007 (recovers better), ...; acc vs true top +0.50, ...
    pts; 8-hot = 3-hot (same targets); 1 seed: direction only"."""
    found = contrasts(row)
    if not found:
        return MISSING
    judged = [c for c in found if c.same_as is None]
    parts = []
    if judged:
        parts += [", ".join(f"{c.n}-hot {c.kl:+.3f} ({c.verdict})" for c in judged),
                  "acc vs true top " + ", ".join(f"{c.n}-hot {100 * c.acc:+.2f}" for c in judged)
                  + " pts"]
    parts += [f"{c.n}-hot = {c.same_as}-hot (same targets)" for c in found if c.same_as is not None]
    seeds = min(c.n_seeds for c in found)
    if seeds < MIN_SEEDS_FOR_INTERVAL:
        parts.append(f"{seeds} seed{'s' if seeds > 1 else ''}: direction only, no interval")
    return "; ".join(parts)


def _where(rows: Sequence[RowSummary], verdict: str) -> list[str]:
    """"3 taggers (N = 2, 3)" per row with contrasts of ``verdict``, by tagger count."""
    texts = []
    for row in sorted(rows, key=lambda r: (row_taggers(r) or 0, r.label)):
        ns = [str(c.n) for c in contrasts(row) if c.same_as is None and c.verdict == verdict]
        taggers = row_taggers(row)
        who = f"{taggers} taggers" if taggers is not None else row.label
        if ns:
            texts.append(f"{who} (N = {', '.join(ns)})")
    return texts


def recovery_notes(rows: Sequence[RowSummary]) -> list[str]:
    """The section's reading, a note under the table of the recovery section's rows:
    where N-hot recovers the hidden distribution better than 1-hot and where it only
    adds noise, from the rows' contrasts (empty for another section's rows)."""
    if not rows or rows[0].experiment != SECTION or not has_truth(rows):
        return []
    better, noise = _where(rows, BETTER), _where(rows, NOISE)
    unclear = _where(rows, UNCLEAR)
    text = ("Reading (KL from the hidden true distribution to the prediction, N-hot minus "
            "1-hot, paired by seed): N-hot recovers the hidden distribution better than "
            f"1-hot with {'; '.join(better) or 'no tagger count'}; it only adds noise with "
            f"{'; '.join(noise) or 'no tagger count'}")
    text += f"; unclear (interval holds 0) with {'; '.join(unclear)}." if unclear else "."
    eight = [(row_taggers(row), c.kl) for row in rows for c in contrasts(row) if c.n == 8]
    eight = sorted((t, kl) for t, kl in eight if t is not None)
    if len(eight) > 1:
        text += (" 8-hot minus 1-hot in KL by tagger count: "
                 + ", ".join(f"{kl:+.3f} ({t})" for t, kl in eight) + ".")
    seeds = min((c.n_seeds for row in rows for c in contrasts(row)), default=0)
    if 0 < seeds < MIN_SEEDS_FOR_INTERVAL:
        text += (f" With {seeds} seed{'s' if seeds > 1 else ''} only the direction is read "
                 "(--fer-seeds 0-2 gives intervals).")
    return [text]

"""Honest statistics for the leaderboard: confidence intervals, paired tests, best N.

Rules (documented choices):

* A cell (model x N x split) is summarised over its seeds: mean honest accuracy and the
  half-width of a two-sided t confidence interval (``mean_ci``). One seed: no interval.
* Failed seeds are never averaged; a cell whose seeds all failed is "failed".
* "Best N" of a row = the N with the highest mean honest accuracy (ties: the smaller N).
* Gain = best N's mean minus 1-hot's mean (the numbers shown in the table). Its p-value
  pairs the two cells by seed, over the seeds both have:
  - n >= 3 seeds: paired t-test (``scipy.stats.ttest_rel``, two-sided);
  - n == 2: no test, shown as "n<3" (a t-test with 1 degree of freedom is too weak to mean
    much, and pooling two seeds' images into one McNemar test would treat seeds as images);
  - n == 1: McNemar's test on the per-image tie-aware correctness of the two cells, which
    must share the split fingerprint (``mcnemar_cells``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as scipy_stats

from fer_bench.errors import DataError
from fer_bench.record import CellRecord

#: Below this many discordant pairs McNemar uses the exact binomial test.
MCNEMAR_EXACT_BELOW = 25
#: Display order of splits; others follow alphabetically.
SPLIT_ORDER = ("ordinary", "complex", "official")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """Mean of ``values`` [n] and the half-width of its two-sided t confidence interval.

    half_width = t_{(1+confidence)/2, n-1} * s / sqrt(n) with s the sample std (ddof=1);
    ``None`` when n == 1. Raises ValueError for n == 0. Units are those of ``values``.
    """
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(array.mean())
    if array.size == 1:
        return mean, None
    sem = float(array.std(ddof=1)) / math.sqrt(array.size)
    return mean, float(scipy_stats.t.ppf((1.0 + confidence) / 2.0, array.size - 1)) * sem


def paired_gain(best_by_seed: Mapping[int, float],
                base_by_seed: Mapping[int, float]) -> tuple[float, float | None]:
    """Mean paired difference (best - base) over the seeds both have, and its p-value.

    p-value: two-sided paired t-test when n >= 3 common seeds, else ``None``; also
    ``None`` when every difference is equal (zero variance: the t statistic is undefined).
    Raises ValueError when the two have no seed in common.
    """
    seeds = sorted(set(best_by_seed) & set(base_by_seed))
    if not seeds:
        raise ValueError("paired_gain: the two cells share no seed")
    best = np.array([best_by_seed[s] for s in seeds], dtype=float)
    base = np.array([base_by_seed[s] for s in seeds], dtype=float)
    differences = best - base
    gain = float(differences.mean())
    # equal differences up to float noise (e.g. 0.9-0.8 vs 1.0-0.9) have no variance
    if len(seeds) < 3 or np.ptp(differences) <= 1e-12:
        return gain, None
    return gain, float(scipy_stats.ttest_rel(best, base).pvalue)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided McNemar p-value for two classifiers on the same test images.

    ``correct_a``, ``correct_b``: bool [n_test], per-image correctness in the same order.
    b = images only A gets right, c = images only B gets right. With b + c < 25 the exact
    binomial test of b ~ Binomial(b + c, 1/2); otherwise the chi-square statistic with
    continuity correction (|b - c| - 1)^2 / (b + c) on 1 degree of freedom. No discordant
    pair -> 1.0.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_arr = np.asarray(correct_b, dtype=bool)
    if a.shape != b_arr.shape:
        raise ValueError(f"mcnemar: correctness arrays differ in shape {a.shape} vs {b_arr.shape}")
    only_a = int(np.count_nonzero(a & ~b_arr))
    only_b = int(np.count_nonzero(~a & b_arr))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    if discordant < MCNEMAR_EXACT_BELOW:
        return float(scipy_stats.binomtest(only_a, discordant, 0.5).pvalue)
    statistic = max(abs(only_a - only_b) - 1.0, 0.0) ** 2 / discordant
    return float(scipy_stats.chi2.sf(statistic, 1))


def mcnemar_method(correct_a: np.ndarray, correct_b: np.ndarray) -> str:
    """Which McNemar variant ``mcnemar`` uses for these arrays: "exact" or "chi2"."""
    discordant = int(np.count_nonzero(np.asarray(correct_a, bool) != np.asarray(correct_b, bool)))
    return "exact" if discordant < MCNEMAR_EXACT_BELOW else "chi2"


def mcnemar_cells(a: CellRecord, b: CellRecord) -> float:
    """``mcnemar`` on two cells' per-image correctness; they must share the split fingerprint."""
    if a.split_fingerprint != b.split_fingerprint or a.n_test != b.n_test:
        raise DataError(
            f"McNemar needs the same test images: {a.cell_id} (split {a.split_fingerprint}, "
            f"n_test {a.n_test}) vs {b.cell_id} (split {b.split_fingerprint}, n_test {b.n_test})"
        )
    return mcnemar(a.correct(), b.correct())


@dataclass
class CellSummary:
    """One model x N x split over its seeds. Accuracies are fractions in [0, 1]."""

    nhot: int
    ok: dict[int, CellRecord] = field(default_factory=dict)     # seed -> ok record
    n_failed: int = 0
    mean: float | None = None
    half_width: float | None = None
    optimistic_mean: float | None = None

    @property
    def failed(self) -> bool:
        """True when no seed of the cell succeeded."""
        return not self.ok

    def honest_by_seed(self) -> dict[int, float]:
        return {seed: float(r.acc_honest) for seed, r in self.ok.items()}


@dataclass
class GainSummary:
    """Best N versus 1-hot. ``gain`` is a fraction (best mean - 1-hot mean)."""

    gain: float
    p_value: float | None  # Bonferroni-adjusted: raw p x ``comparisons``, capped at 1
    method: str          # "paired t", "McNemar exact", "McNemar chi2", "n<3", "none"
    n_seeds: int
    comparisons: int = 1  # N values best N was picked from, besides 1-hot


@dataclass
class RowSummary:
    """One leaderboard row: a model (and config, when a model ran under several) on a split."""

    label: str
    model: str
    config_hash: str
    split: str
    cells: dict[int, CellSummary]
    best_n: int | None = None
    gain: GainSummary | None = None
    median_epoch_s: float | None = None
    train_images_per_s: float | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    params: int | None = None


def _summarise_cell(nhot: int, records: Iterable[CellRecord], confidence: float) -> CellSummary:
    cell = CellSummary(nhot=nhot)
    for record in records:
        if record.status == "ok" and record.acc_honest is not None:
            cell.ok[record.seed] = record
        else:
            cell.n_failed += 1
    if cell.ok:
        cell.mean, cell.half_width = mean_ci([r.acc_honest for r in cell.ok.values()], confidence)
        optimistic = [r.acc_optimistic for r in cell.ok.values() if r.acc_optimistic is not None]
        cell.optimistic_mean = float(np.mean(optimistic)) if optimistic else None
    return cell


def _gain(best: CellSummary, base: CellSummary, comparisons: int) -> GainSummary:
    """Best N against 1-hot. Best N was picked after looking at ``comparisons`` candidates,
    so the raw p-value is Bonferroni-adjusted (x ``comparisons``, capped at 1); without it
    the maximum of several noisy gains would look significant too often."""
    gain = float(best.mean) - float(base.mean)
    if best.nhot == base.nhot:
        return GainSummary(0.0, None, "none", len(best.ok), comparisons)

    def adjusted(p_value: float | None) -> float | None:
        return None if p_value is None else min(1.0, p_value * comparisons)

    seeds = sorted(set(best.ok) & set(base.ok))
    if len(seeds) >= 3:
        _, p_value = paired_gain(best.honest_by_seed(), base.honest_by_seed())
        return GainSummary(gain, adjusted(p_value), "paired t", len(seeds), comparisons)
    if len(seeds) == 1:
        a, b = best.ok[seeds[0]], base.ok[seeds[0]]
        if not a.test_correct or not b.test_correct:
            return GainSummary(gain, None, "none", 1, comparisons)
        p_value = mcnemar_cells(a, b)
        method = f"McNemar {mcnemar_method(a.correct(), b.correct())}"
        return GainSummary(gain, adjusted(p_value), method, 1, comparisons)
    return GainSummary(gain, None, "n<3" if seeds else "none", len(seeds), comparisons)


def _costs(row: RowSummary) -> None:
    ok_records = [r for cell in row.cells.values() for r in cell.ok.values()]
    epoch_times = [t for r in ok_records for t in r.epoch_times_s]
    row.median_epoch_s = float(np.median(epoch_times)) if epoch_times else None
    rates = [r.train_images_per_s for r in ok_records if r.train_images_per_s is not None]
    row.train_images_per_s = float(np.median(rates)) if rates else None
    with_memory = [r for r in ok_records if r.peak_memory_bytes is not None]
    if with_memory:
        peak = max(with_memory, key=lambda r: r.peak_memory_bytes)
        kinds = {r.memory_kind for r in with_memory}
        row.peak_memory_bytes = int(peak.peak_memory_bytes)
        row.memory_kind = peak.memory_kind if len(kinds) == 1 else "mixed"
    params = [r.params for r in ok_records if r.params is not None]
    row.params = max(params) if params else None


def summarize(records: Sequence[CellRecord],
              confidence: float = 0.95) -> dict[str, list[RowSummary]]:
    """Group records into leaderboard rows: split -> rows sorted by label.

    A row is one model on one split; when a model ran under several configs on a split,
    each config is its own row labelled ``model [config_hash[:8]]``. Raises DataError when
    records mix data sets (e.g. synthetic and ferplus), which must never share a table.
    """
    labels = sorted({r.dataset_label for r in records})
    if len(labels) > 1:
        raise DataError(f"results mix data sets {labels}; render each data set separately")
    groups: dict[tuple[str, str, str], list[CellRecord]] = {}
    seen: dict[tuple[str, str, str, int, int], CellRecord] = {}
    for record in records:
        key = (record.split, record.model, record.config_hash, record.nhot, record.seed)
        if key in seen:  # e.g. two data sets with one label: never average them as seeds
            raise DataError(
                f"cell {record.cell_id} (config {record.config_hash}) appears twice, with dataset "
                f"fingerprints {seen[key].dataset_fingerprint} and {record.dataset_fingerprint}; "
                "render each data set separately"
            )
        seen[key] = record
        groups.setdefault((record.split, record.model, record.config_hash), []).append(record)
    configs_per_model: dict[tuple[str, str], set[str]] = {}
    for split, model, config_hash in groups:
        configs_per_model.setdefault((split, model), set()).add(config_hash)

    tables: dict[str, list[RowSummary]] = {}
    for (split, model, config_hash), group in groups.items():
        several = len(configs_per_model[(split, model)]) > 1
        label = f"{model} [{config_hash[:8]}]" if several else model
        by_n: dict[int, list[CellRecord]] = {}
        for record in group:
            by_n.setdefault(record.nhot, []).append(record)
        cells = {n: _summarise_cell(n, by_n[n], confidence) for n in sorted(by_n)}
        row = RowSummary(label=label, model=model, config_hash=config_hash, split=split, cells=cells)
        candidates = [c for c in cells.values() if not c.failed]
        if candidates:
            # rounded so that float noise cannot split a tie; ties go to the smaller N
            best = max(candidates, key=lambda c: (round(c.mean, 9), -c.nhot))
            row.best_n = best.nhot
            base = cells.get(1)
            if base is not None and not base.failed:
                row.gain = _gain(best, base, comparisons=max(1, len(candidates) - 1))
        _costs(row)
        tables.setdefault(split, []).append(row)
    ordered = sorted(tables, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    return {split: sorted(tables[split], key=lambda row: row.label) for split in ordered}

"""Honest statistics for the leaderboard: confidence intervals, paired tests, gains.

Rules (documented choices):

* A cell (one identity but the seed: model x variant x split x recipe x data x device ...)
  is summarised over its seeds: mean honest accuracy and the half-width of a two-sided t
  confidence interval (``mean_ci``). One seed: no interval.
* Failed seeds are never averaged; a cell whose seeds all failed is "failed".
* Every gain compares two cells of one row and is the mean of the paired differences over
  the seeds *both* cells have (``compare_cells``), never a difference of means over two
  different seed sets. Its p-value pairs the same seeds:
  - n >= 3 seeds: paired t-test (``scipy.stats.ttest_rel``, two-sided);
  - n == 2: no test, shown as "n<3" (a t-test with 1 degree of freedom is too weak to mean
    much, and pooling two seeds' images into one McNemar test would treat seeds as images);
  - n == 1: McNemar's test on the per-image tie-aware correctness of the two cells, which
    must share the split fingerprint (``mcnemar_cells``). It treats the two trained networks
    as fixed, so it is labelled ``SINGLE_RUN``: training variance is not included.
* Two accuracies are compared the same way: ``TIE_AWARE`` (``acc_honest``, SPEC's metric)
  and ``TOP1`` (``acc_top1_honest``: the prediction against the first top-share emotion,
  as a single-label benchmark scores; None in records written before it was recorded, which
  then simply do not pair up). McNemar needs per-image correctness, stored for tie-aware
  accuracy only, so a one-seed top-1 comparison has no test.
* The augmentation experiment's report Table 2 statistics (``epoch_statistics``) are read
  from the per-epoch test accuracies: highest, 75th percentile, epochs above a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as scipy_stats

from fer_bench.data.labels.treatments import nhot_of
from fer_bench.errors import DataError
from fer_bench.identity.record import CellRecord, Status

#: Below this many discordant pairs McNemar uses the exact binomial test.
MCNEMAR_EXACT_BELOW = 25
#: Label of a one-seed McNemar p-value (the test column and the notes say it).
SINGLE_RUN = "single run: training variance not included"
#: Report Table 2 (4.3.1): "epochs with test accuracy above" this fraction.
TABLE2_THRESHOLD = 0.85
#: The two accuracies a gain can be measured in (``CellSummary.by_seed``).
TIE_AWARE = "tie-aware"
TOP1 = "top-1"
METRICS = (TIE_AWARE, TOP1)


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


def _paired_differences(a_by_seed: Mapping[int, float],
                        b_by_seed: Mapping[int, float]) -> np.ndarray:
    """a - b over the seeds both have, in seed order [n]; ValueError when they share none."""
    seeds = sorted(set(a_by_seed) & set(b_by_seed))
    if not seeds:
        raise ValueError("paired_gain: the two cells share no seed")
    return np.array([a_by_seed[s] - b_by_seed[s] for s in seeds], dtype=float)


def _t_testable(differences: np.ndarray) -> bool:
    """The paired t-test (and its interval) needs n >= 3 and some spread: equal differences
    up to float noise (e.g. 0.9-0.8 vs 1.0-0.9) leave the t statistic undefined."""
    return differences.size >= 3 and float(np.ptp(differences)) > 1e-12


def _paired_t_pvalue(differences: np.ndarray) -> float | None:
    """Two-sided paired t-test p-value of ``differences`` [n] (None unless ``_t_testable``)."""
    if not _t_testable(differences):
        return None
    return float(scipy_stats.ttest_1samp(differences, 0.0).pvalue)


def paired_gain(best_by_seed: Mapping[int, float],
                base_by_seed: Mapping[int, float]) -> tuple[float, float | None]:
    """Mean paired difference (best - base) over the seeds both have, and its p-value.

    p-value: two-sided paired t-test when n >= 3 common seeds, else ``None``; also
    ``None`` when every difference is equal (zero variance: the t statistic is undefined).
    Raises ValueError when the two have no seed in common.
    """
    differences = _paired_differences(best_by_seed, base_by_seed)
    return float(differences.mean()), _paired_t_pvalue(differences)


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
    """One row's cell of one variant (e.g. ``nhot-3``) over its seeds. Fractions in [0, 1]."""

    variant: str
    ok: dict[int, CellRecord] = field(default_factory=dict)     # seed -> ok record
    n_failed: int = 0
    mean: float | None = None
    half_width: float | None = None
    optimistic_mean: float | None = None
    #: Honest top-1 accuracy over the ok seeds that recorded it (``n_top1`` of them).
    top1_mean: float | None = None
    top1_half_width: float | None = None
    n_top1: int = 0

    @property
    def nhot(self) -> int | None:
        """N of an N-hot label treatment (``LabelTreatment.nhot``), else None."""
        return nhot_of(self.variant)

    @property
    def failed(self) -> bool:
        """True when no seed succeeded (every seed failed)."""
        return not self.ok

    def honest_by_seed(self) -> dict[int, float]:
        return {seed: float(r.acc_honest) for seed, r in self.ok.items()}

    def top1_by_seed(self) -> dict[int, float]:
        """seed -> honest top-1 accuracy, for the ok seeds whose record has it."""
        return {seed: float(r.acc_top1_honest) for seed, r in self.ok.items()
                if r.acc_top1_honest is not None}

    def by_seed(self, metric: str = TIE_AWARE) -> dict[int, float]:
        """seed -> honest accuracy in ``metric`` (``TIE_AWARE`` or ``TOP1``)."""
        if metric not in METRICS:
            raise ValueError(f"unknown accuracy metric {metric!r} (one of {', '.join(METRICS)})")
        return self.honest_by_seed() if metric == TIE_AWARE else self.top1_by_seed()


@dataclass
class GainSummary:
    """Cell ``a`` against cell ``b`` of one row, paired by seed.

    ``gain``: mean of a - b over the shared seeds (fraction; None when they share none).
    ``p_value``: Bonferroni-adjusted (raw p x ``comparisons``, capped at 1); None when no
    test ran. ``method``: "paired t", "McNemar exact", "McNemar chi2", "n<3", "none"
    (a cell against itself, or no per-image correctness), "no shared seed".
    ``seeds``: the shared seeds the gain and p are computed over.
    ``ci``: (low, high) of the two-sided t confidence interval of the mean paired difference
    (fractions), at 95% or, after a post-hoc choice, at the Bonferroni-matched level
    1 - 0.05 / ``comparisons``; like the t-test, only with 3 or more shared seeds (None
    otherwise, and when every difference is the same: zero variance).
    """

    gain: float | None
    p_value: float | None
    method: str
    n_seeds: int
    comparisons: int = 1
    seeds: tuple[int, ...] = ()
    ci: tuple[float, float] | None = None

    @property
    def single_run(self) -> bool:
        """A one-seed McNemar test: training variance is not included (``SINGLE_RUN``)."""
        return self.method.startswith("McNemar")


def succeeded(record: CellRecord) -> bool:
    """The cell trained to its end (``Status.OK``; any other status: it failed)."""
    return record.status == Status.OK


def summarise_cell(variant: str, records: Iterable[CellRecord],
                   confidence: float = 0.95) -> CellSummary:
    """Summarise one variant's records (one per seed) of a row."""
    cell = CellSummary(variant=variant)
    for record in records:
        if succeeded(record) and record.acc_honest is not None:
            cell.ok[record.seed] = record
        else:
            cell.n_failed += 1
    if cell.ok:
        cell.mean, cell.half_width = mean_ci([r.acc_honest for r in cell.ok.values()], confidence)
        optimistic = [r.acc_optimistic for r in cell.ok.values() if r.acc_optimistic is not None]
        cell.optimistic_mean = float(np.mean(optimistic)) if optimistic else None
        top1 = list(cell.top1_by_seed().values())
        cell.n_top1 = len(top1)
        if top1:
            cell.top1_mean, cell.top1_half_width = mean_ci(top1, confidence)
    return cell


def gain_interval(differences: Sequence[float], comparisons: int = 1) -> tuple[float, float] | None:
    """(low, high) t interval of the mean of ``differences`` [n] at 95%, Bonferroni-matched
    for ``comparisons`` (level 1 - 0.05 / comparisons); None when the t-test could not run
    (n < 3, or no spread: ``_t_testable``)."""
    array = np.asarray(differences, dtype=float)
    if not _t_testable(array):
        return None
    mean, half = mean_ci(array, 1.0 - 0.05 / comparisons)
    return mean - half, mean + half


def compare_cells(a: CellSummary, b: CellSummary, comparisons: int = 1,
                  metric: str = TIE_AWARE) -> GainSummary:
    """Cell ``a`` minus cell ``b`` over the seeds both have (see the module docstring), in
    honest ``metric`` accuracy (``TIE_AWARE`` or ``TOP1``).

    ``comparisons`` > 1 when ``a`` was picked after looking at that many candidates (best
    N): the raw p-value is then Bonferroni-adjusted (x ``comparisons``, capped at 1), since
    the maximum of several noisy gains would look significant too often.
    """
    a_values, b_values = a.by_seed(metric), b.by_seed(metric)
    seeds = tuple(sorted(set(a_values) & set(b_values)))
    if a.variant == b.variant:
        return GainSummary(0.0, None, "none", len(seeds), comparisons, seeds)
    if not seeds:
        return GainSummary(None, None, "no shared seed", 0, comparisons, seeds)

    def adjusted(p_value: float | None) -> float | None:
        return None if p_value is None else min(1.0, p_value * comparisons)

    differences = _paired_differences(a_values, b_values)
    gain = float(differences.mean())
    if len(seeds) >= 3:
        return GainSummary(gain, adjusted(_paired_t_pvalue(differences)), "paired t", len(seeds),
                           comparisons, seeds, gain_interval(differences, comparisons))
    if len(seeds) == 1:
        ra, rb = a.ok[seeds[0]], b.ok[seeds[0]]
        if metric != TIE_AWARE or not ra.test_correct or not rb.test_correct:
            return GainSummary(gain, None, "none", 1, comparisons, seeds)
        p_value = mcnemar_cells(ra, rb)
        method = f"McNemar {mcnemar_method(ra.correct(), rb.correct())}"
        return GainSummary(gain, adjusted(p_value), method, 1, comparisons, seeds)
    return GainSummary(gain, None, "n<3", len(seeds), comparisons, seeds)


def epoch_statistics(test_acc: Sequence[float],
                     threshold: float = TABLE2_THRESHOLD) -> tuple[float, float, int] | None:
    """Report Table 2 for one run: (highest test accuracy, 75th percentile of the per-epoch
    test accuracy (numpy's linear interpolation), number of epochs with test accuracy
    strictly above ``threshold``). Fractions in, fractions out; None without epochs."""
    values = np.asarray([v for v in test_acc if v is not None], dtype=float)
    if values.size == 0:
        return None
    return float(values.max()), float(np.percentile(values, 75)), int(np.sum(values > threshold))


def mean_epoch_statistics(records: Iterable[CellRecord],
                          threshold: float = TABLE2_THRESHOLD) -> tuple[float, float, float] | None:
    """``epoch_statistics`` of each record, averaged over them (seeds); None when none has epochs."""
    per_seed = [s for s in (epoch_statistics(r.test_acc, threshold) for r in records) if s]
    if not per_seed:
        return None
    highest, p75, above = (float(np.mean(column)) for column in zip(*per_seed, strict=True))
    return highest, p75, above

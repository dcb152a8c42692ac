"""The leaderboard's columns: the display texts, and fer_bench's own columns.

Every table has a column per variant present (``nhot-3`` -> "3-hot", mean ± 95% t-CI of
honest accuracy over seeds), then the columns of the column registry (``COLUMNS``, a
``fer_bench.registry.Registry``, group ``fer_bench.columns``: ``column_registry.py``) that
apply to it, in registry order. **A new leaderboard column is one registry entry**: here
for fer_bench's own, ``register_column`` in an experiment module, or an entry point of an
installed package::

    register_column(Column("median KL", lambda row: ..., experiments=("losses",), part=COST))

``fn(row)`` returns the display text of one ``RowSummary``; ``experiments`` limits the
column to those sections (empty: every section); ``part`` picks the drawn table (accuracy,
top-1, comparison or cost); ``when(rows)`` hides the column from a table where it means nothing (e.g. best N
without two N-hot variants); ``text`` columns are left-aligned and may wrap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fer_bench.leaderboard.alignment import aligned_text, flags_text, has_flags, unaligned_text
from fer_bench.leaderboard.column_registry import (  # noqa: F401  (re-exported)
    ACCURACY,
    COLUMNS,
    COMPARISON,
    COST,
    PARTS,
    TOP1_PART,
    Column,
    register_builtin,
    register_column,
    registered_columns,
    unregister_column,
)
from fer_bench.leaderboard.diagnostics import (
    TIME_PARTS,
    coincidence_text,
    convergence_text,
    has_time_split,
    overhead_text,
    seconds_text,
    split_text,
)
from fer_bench.leaderboard.literature import has_literature, literature_accuracy_text
from fer_bench.leaderboard.recovery import (
    READING_COLUMN,
    TAGGERS_COLUMN,
    acc_column,
    acc_text,
    has_truth,
    has_truth_at,
    kl_column,
    kl_text,
    reading_text,
    taggers_text,
)
from fer_bench.leaderboard.recovery import SECTION as RECOVERY_SECTION
from fer_bench.leaderboard.rows import MISSING, NHOT_SECTION, RowSummary
from fer_bench.leaderboard.stats import (
    SINGLE_RUN,
    TABLE2_THRESHOLD,
    CellSummary,
    GainSummary,
    mean_epoch_statistics,
)

FAILED = "failed"

SEEDS_COLUMN = "seeds"
BEST_COLUMN = "best N"
GAIN_COLUMN = "gain vs 1-hot (pts)"
P_COLUMN = "p"
TEST_COLUMN = "test"
EIGHT_GAIN_COLUMN = "8-hot vs 1-hot (pts)"
EIGHT_CI_COLUMN = "95% CI (8 vs 1, pts)"
EIGHT_P_COLUMN = "p (8 vs 1)"
EIGHT_TEST_COLUMN = "test (8 vs 1)"
EIGHT_TOP1_GAIN_COLUMN = "8-hot vs 1-hot, top-1 (pts)"
EIGHT_TOP1_CI_COLUMN = "95% CI (8 vs 1, top-1, pts)"
EIGHT_TOP1_P_COLUMN = "p (8 vs 1, top-1)"
#: Issue 22: in how many of the row's cells the best validation epoch was the last one.
CONVERGENCE_COLUMN = "best val epoch = last (still improving)"
#: Issue 22: groups of the row's cells that trained on identical data (by fingerprint).
COINCIDENCE_COLUMN = "identical training data"
#: Issue 21 part 4: mean seconds per cell of each part of its wall time, and the overhead.
TIME_COLUMN = f"time split, s/cell ({' / '.join(label for label, _ in TIME_PARTS)})"
WALL_COLUMN = "wall (s/cell)"
OVERHEAD_COLUMN = "overhead (not training)"
OPTIMISTIC_COLUMN = "optimistic @ best N"
#: The N-hot section: the model's literature-protocol accuracy (official-majority, top-1).
LITERATURE_COLUMN = "literature protocol (official-majority top-1)"
#: The alignment section (issue 11): split by the aligner's per-test-image flags.
ALIGNED_COLUMN = "acc aligned faces"
UNALIGNED_COLUMN = "acc unaligned faces"
ALIGNED_FLAGS_COLUMN = "aligned flags"
COST_COLUMNS = ("epoch time (s)", "train img/s", "peak mem (MiB)", "params (M)")
#: Report Table 2 (4.3.1), at the row's 8-hot cell, averaged over seeds.
TABLE2_COLUMNS = ("highest test acc (8-hot)", "p75 test acc (8-hot)",
                  f"epochs > {100 * TABLE2_THRESHOLD:g}% (8-hot)")


# ----------------------------------------------------------------------------- texts
def format_accuracy(mean: float | None, half_width: float | None) -> str:
    """Fractions -> "86.06 ± 0.42" (percent, 2 decimals); "86.06" without an interval."""
    if mean is None:
        return MISSING
    if half_width is None:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * half_width:.2f}"


def format_p(p_value: float | None) -> str:
    """p-value -> "0.0123"; "<0.0001" below 1e-4; "—" when there is no test."""
    if p_value is None:
        return MISSING
    return "<0.0001" if p_value < 1e-4 else f"{p_value:.4f}"


def format_cell(cell: CellSummary | None) -> str:
    """One variant cell: "mean ± half-width", "failed", plus " (k failed)"; "—" when absent."""
    if cell is None:
        return MISSING
    if cell.failed:
        return FAILED
    text = format_accuracy(cell.mean, cell.half_width)
    return f"{text} ({cell.n_failed} failed)" if cell.n_failed else text


def gain_text(gain: GainSummary | None) -> str:
    """Paired gain in percentage points, "+1.23"; "—" when there is none."""
    return MISSING if gain is None or gain.gain is None else f"{100 * gain.gain:+.2f}"


def interval_text(gain: GainSummary | None) -> str:
    """The gain's confidence interval in points, "[-0.52, +1.80]"; "—" without one."""
    if gain is None or gain.ci is None:
        return MISSING
    return f"[{100 * gain.ci[0]:+.2f}, {100 * gain.ci[1]:+.2f}]"


def test_text(gain: GainSummary | None) -> str:
    """Which test gave the p-value: "paired t, n=3", "n<3", "McNemar exact (single run:
    training variance not included)", with ", Bonferroni xK" when adjusted."""
    if gain is None or gain.method == "none":
        return MISSING
    if gain.method == "paired t":
        text = f"paired t, n={gain.n_seeds}"
    elif gain.single_run:
        text = f"{gain.method} ({SINGLE_RUN})"
    else:
        text = gain.method
    if gain.p_value is not None and gain.comparisons > 1:
        text += f", Bonferroni x{gain.comparisons}"
    return text


def _seeds(row: RowSummary) -> str:
    counts = [len(cell.ok) for cell in row.cells.values()]
    low, high = min(counts, default=0), max(counts, default=0)
    return str(high) if low == high else f"{low}–{high}"


def _table2(index: int) -> Callable[[RowSummary], str]:
    def value(row: RowSummary) -> str:
        cell = row.at(8)
        stats = mean_epoch_statistics(cell.ok.values()) if cell is not None else None
        if stats is None:
            return MISSING
        return f"{stats[index]:.1f}" if index == 2 else f"{100 * stats[index]:.2f}"
    return value


def _optimistic(row: RowSummary) -> str:
    best = row.best_cell
    return format_accuracy(best.optimistic_mean if best else None, None)


def _memory(row: RowSummary) -> str:
    if row.peak_memory_bytes is None:
        return MISSING
    kind = f" ({row.memory_kind})" if row.memory_kind else ""
    return f"{row.peak_memory_bytes / 2**20:.1f}{kind}"


def _number(attribute: str, spec: str, scale: float = 1.0) -> Callable[[RowSummary], str]:
    def value(row: RowSummary) -> str:
        number = getattr(row, attribute)
        return MISSING if number is None else format(number / scale, spec)
    return value


def has_best_n(rows: Sequence[RowSummary]) -> bool:
    """Best N means something when the table holds at least two N-hot variants."""
    return len({n for row in rows for n in row.nhot_cells()}) >= 2


def has_eight_vs_one(rows: Sequence[RowSummary]) -> bool:
    """The 8-hot vs 1-hot columns show when some row has both cells."""
    return any(row.at(1) is not None and row.at(8) is not None for row in rows)


def has_eight_vs_one_top1(rows: Sequence[RowSummary]) -> bool:
    """The top-1 8-hot vs 1-hot columns show when some row's cells recorded top-1."""
    return any(row.eight_vs_one_top1 is not None for row in rows)


def has_variants(rows: Sequence[RowSummary]) -> bool:
    """Coinciding training data can only be named between two or more variants of a row."""
    return any(len(row.cells) > 1 for row in rows)


# ----------------------------------------------------------------------------- built-ins
BUILTIN_COLUMNS: tuple[Column, ...] = (
    *(Column(name, _table2(i), experiments=("augmentation",))
      for i, name in enumerate(TABLE2_COLUMNS)),
    Column(SEEDS_COLUMN, _seeds),
    Column(CONVERGENCE_COLUMN, convergence_text),
    Column(COINCIDENCE_COLUMN, coincidence_text, when=has_variants, text=True),
    # issue 11: honest accuracy on the test faces the aligner aligned / could not align
    Column(ALIGNED_COLUMN, aligned_text, experiments=("alignment",), when=has_flags),
    Column(UNALIGNED_COLUMN, unaligned_text, experiments=("alignment",), when=has_flags),
    Column(ALIGNED_FLAGS_COLUMN, flags_text, experiments=("alignment",), when=has_flags,
           text=True),
    # issue 22: recovery of the hidden distribution (synthetic ground truth), per N
    Column(TAGGERS_COLUMN, taggers_text, experiments=(RECOVERY_SECTION,), when=has_truth),
    *(Column(kl_column(n), kl_text(n), experiments=(RECOVERY_SECTION,), when=has_truth_at(n))
      for n in range(1, 9)),
    *(Column(acc_column(n), acc_text(n), experiments=(RECOVERY_SECTION,), when=has_truth_at(n))
      for n in range(1, 9)),
    Column(READING_COLUMN, reading_text, experiments=(RECOVERY_SECTION,), when=has_truth,
           text=True, part=COMPARISON),
    Column(LITERATURE_COLUMN, literature_accuracy_text, experiments=(NHOT_SECTION,), when=has_literature,
           text=True),
    Column(BEST_COLUMN, lambda row: MISSING if row.best_n is None else str(row.best_n),
           when=has_best_n, part=COMPARISON),
    Column(GAIN_COLUMN, lambda row: gain_text(row.gain), when=has_best_n, part=COMPARISON),
    Column(P_COLUMN, lambda row: format_p(row.gain.p_value if row.gain else None), when=has_best_n, part=COMPARISON),
    Column(TEST_COLUMN, lambda row: test_text(row.gain), when=has_best_n, text=True, part=COMPARISON),
    Column(EIGHT_GAIN_COLUMN, lambda row: gain_text(row.eight_vs_one), when=has_eight_vs_one, part=COMPARISON),
    Column(EIGHT_CI_COLUMN, lambda row: interval_text(row.eight_vs_one), when=has_eight_vs_one,
           part=COMPARISON),
    Column(EIGHT_P_COLUMN, lambda row: format_p(row.eight_vs_one.p_value if row.eight_vs_one else None),
           when=has_eight_vs_one, part=COMPARISON),
    Column(EIGHT_TEST_COLUMN, lambda row: test_text(row.eight_vs_one), when=has_eight_vs_one,
           text=True, part=COMPARISON),
    Column(EIGHT_TOP1_GAIN_COLUMN, lambda row: gain_text(row.eight_vs_one_top1),
           when=has_eight_vs_one_top1, part=COMPARISON),
    Column(EIGHT_TOP1_CI_COLUMN, lambda row: interval_text(row.eight_vs_one_top1),
           when=has_eight_vs_one_top1, part=COMPARISON),
    Column(EIGHT_TOP1_P_COLUMN, lambda row: format_p(row.eight_vs_one_top1.p_value
                                                     if row.eight_vs_one_top1 else None),
           when=has_eight_vs_one_top1, part=COMPARISON),
    Column(OPTIMISTIC_COLUMN, _optimistic, part=COST),
    Column(COST_COLUMNS[0], _number("median_epoch_s", ".2f"), part=COST),
    Column(COST_COLUMNS[1], _number("train_images_per_s", ".0f"), part=COST),
    Column(COST_COLUMNS[2], _memory, part=COST),
    Column(COST_COLUMNS[3], _number("params", ".2f", 1e6), part=COST),
    Column(WALL_COLUMN, seconds_text, when=has_time_split, part=COST),
    Column(TIME_COLUMN, split_text, when=has_time_split, part=COST, text=True),
    Column(OVERHEAD_COLUMN, overhead_text, when=has_time_split, part=COST),
)
for _column in BUILTIN_COLUMNS:
    register_builtin(_column)


def columns_for(experiment: str, rows: Sequence[RowSummary]) -> list[Column]:
    """The registry columns a table of ``experiment`` shows, in registry order
    (``column_registry.registered_columns``)."""
    return [column for column in registered_columns() if column.applies(experiment, rows)]

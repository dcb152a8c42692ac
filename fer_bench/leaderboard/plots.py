"""Leaderboard plots (matplotlib, Agg backend: no display needed).

``plot_gain_vs_n`` draws the answer itself: one panel per split, the paired gain of each
N-hot cell over the row's 1-hot cell (points, mean of the differences paired by seed) with
its 95% t interval, filled markers tie-aware and hollow ones top-1, the study's claimed band
for that split and model shaded behind (``study_claims.gain_claim``).

Every plot draws the N-hot experiment's rows when the records have any
(``benchmarks/test_nhot.py``; other experiments, such as the synthetic recovery study, have
their own tables), else every row; a cell reported for two experiments counts once, and rows
are labelled as in the tables, by the axes that vary among the drawn rows. Legends stand
below their panel, so long labels never cover data.

* ``plot_accuracy_vs_n``: honest accuracy against N per row that has at least two N-hot
  variants (a row of one variant is a point, not a curve), ordinary solid, complex dashed,
  official dotted, with 95% CI bands where a cell has >= 2 seeds (report Fig. 28/29).
* ``plot_accuracy_by_complexity``: one panel per split; grouped bars of honest accuracy by
  complexity level X (number of emotions holding votes), each row at its best N on that
  split, error bars = 95% CI over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from fer_bench.identity.record import CellRecord  # noqa: E402
from fer_bench.leaderboard.rows import (  # noqa: E402
    NHOT_SECTION,
    RowSummary,
    label_rows,
    section_name,
    summarize,
)
from fer_bench.leaderboard.stats import TIE_AWARE, TOP1, GainSummary, mean_ci  # noqa: E402
from fer_bench.leaderboard.study_claims import gain_claim  # noqa: E402
from fer_bench.leaderboard.table import data_text, profile_text, run_labels  # noqa: E402

SPLIT_STYLES = {"ordinary": "-", "complex": "--", "official": ":"}


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(sorted(set(labels)))}


def nhot_records(records: Sequence[CellRecord]) -> list[CellRecord]:
    """The N-hot experiment's records when there are any, else all of ``records``."""
    nhot = [r for r in records if section_name(r.experiment) == NHOT_SECTION]
    return nhot or list(records)


def _label_across_splits(tables: Mapping[str, Sequence[RowSummary]]) -> None:
    """Label the drawn rows of every split together (by the axes that vary among them, not
    among every row), so one identity has one label, and with it one colour, in all panels."""
    by_identity: dict[tuple[tuple[str, Any], ...], list[RowSummary]] = {}
    for rows in tables.values():
        for row in rows:   # a row per split: the same identity in two panels is one row here
            by_identity.setdefault(tuple(row.identity.items()), []).append(row)
    label_rows([same[0] for same in by_identity.values()])
    for first, *others in by_identity.values():
        for row in others:
            row.label, row.short_budget = first.label, first.short_budget


def _legend_below(fig: Any, fontsize: int) -> None:
    """One legend for the whole figure, below its panels: each label once (panels share
    rows), so long row labels never cover data or one another."""
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        legend = fig.legend(list(handles.values()), list(handles), fontsize=fontsize,
                            loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1,
                            frameon=False)
        legend.set_in_layout(False)   # tight_layout sizes the panels; _save adds the legend


def _subtitle(records: Sequence[CellRecord], provenance: Sequence[Mapping[str, Any]]) -> str:
    labels = run_labels(records, provenance)
    return f"data: {data_text(labels)}, profile: {profile_text(labels)}"


def plot_accuracy_vs_n(records: Sequence[CellRecord], path: str | Path,
                       provenance: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write a PNG of mean honest accuracy (%) against N per row and split; return its path."""
    records = nhot_records(records)
    tables = {split: [row for row in rows if len(row.nhot_cells()) >= 2]
              for split, rows in summarize(records).items()}
    _label_across_splits(tables)
    colors = _colors([row.label for rows in tables.values() for row in rows])
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=100)
    drawn = 0
    for split, rows in tables.items():
        style = SPLIT_STYLES.get(split, "-.")
        for row in rows:
            cells = [c for _, c in sorted(row.nhot_cells().items()) if not c.failed]
            if not cells:
                continue
            drawn += 1
            n_values = np.array([c.nhot for c in cells])
            means = np.array([100 * c.mean for c in cells])
            ax.plot(n_values, means, style, marker="o", color=colors[row.label],
                    label=f"{row.label} ({split})")
            half = np.array([np.nan if c.half_width is None else 100 * c.half_width for c in cells])
            if np.isfinite(half).any():
                ax.fill_between(n_values, means - half, means + half, color=colors[row.label],
                                alpha=0.15, linewidth=0)
    ax.set_xlabel("N (N-hot training labels)")
    ax.set_ylabel("honest test accuracy (%)")
    all_n = [n for rows in tables.values() for row in rows for n in row.nhot_cells()]
    ax.set_xticks(range(min(all_n, default=1), max(all_n, default=8) + 1))
    ax.grid(alpha=0.3)
    ax.set_title("Honest test accuracy vs N (solid: ordinary, dashed: complex; "
                 "bands: 95% CI over seeds)\n" + _subtitle(records, provenance), fontsize=10)
    if not drawn:
        ax.text(0.5, 0.5, "no row with two or more N-hot variants", ha="center",
                va="center", transform=ax.transAxes)
    fig.tight_layout()
    _legend_below(fig, 8)
    return _save(fig, path)


def _count_range(counts: Sequence[int]) -> str:
    """The test images at one complexity level over the drawn cells: "40", or "0-1" where
    seeds' splits differ (a median would print n=0 under a bar measured on one image)."""
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def plot_accuracy_by_complexity(records: Sequence[CellRecord], path: str | Path,
                                provenance: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write a PNG of honest accuracy (%) by complexity level X, each row at its best N."""
    records = nhot_records(records)
    tables = {split: [row for row in rows if row.best_n is not None]
              for split, rows in summarize(records).items()}
    _label_across_splits(tables)
    colors = _colors([row.label for rows in tables.values() for row in rows])
    n_panels = max(len(tables), 1)
    fig, axes = plt.subplots(1, n_panels, figsize=(max(9, 6 * n_panels), 5.5), dpi=100,
                             squeeze=False)
    for ax, (split, best_rows) in zip(axes[0], tables.items(), strict=False):
        counts: dict[int, list[int]] = {}
        for row in best_rows:
            for record in row.best_cell.ok.values():
                for level, count in record.count_by_complexity.items():
                    counts.setdefault(int(level), []).append(int(count))
        levels = sorted(level for level, values in counts.items() if max(values) > 0)
        width = 0.8 / max(len(best_rows), 1)
        for i, row in enumerate(best_rows):
            ok = row.best_cell.ok.values()
            heights, errors = [], []
            for level in levels:
                values = [r.acc_by_complexity.get(str(level)) for r in ok]
                values = [100 * v for v in values if v is not None]
                mean, half = mean_ci(values) if values else (np.nan, None)
                heights.append(mean)
                errors.append(0.0 if half is None else half)
            offsets = np.arange(len(levels)) + (i - (len(best_rows) - 1) / 2) * width
            ax.bar(offsets, heights, width, yerr=errors if any(errors) else None, capsize=2, color=colors[row.label],
                   label=f"{row.label} ({split}: N={row.best_n})")
        ax.set_xticks(np.arange(len(levels)),
                      [f"X={lv}\nn={_count_range(counts[lv])}" for lv in levels], fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel("honest test accuracy (%)")
        ax.set_title(f"{split} split", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Honest test accuracy by complexity X (number of emotions with votes)\n"
                 "each row at its best N on the split; error bars: 95% CI over seeds; "
                 "n = test images (a range where the drawn cells' test sets differ)\n"
                 + _subtitle(records, provenance), fontsize=10)
    fig.tight_layout()
    _legend_below(fig, 8)
    return _save(fig, path)


def gain_points(row: RowSummary, metric: str = TIE_AWARE) -> list[tuple[int, GainSummary]]:
    """(N, gain over 1-hot in ``metric``) for every N > 1 of the row with a gain (ordered by N)."""
    found = []
    for n in sorted(row.nhot_cells()):
        gain = row.versus_one(n, metric) if n != 1 else None
        if gain is not None and gain.gain is not None:
            found.append((n, gain))
    return found


def _draw_gains(ax: Any, row: RowSummary, offset: float, color: Any) -> bool:
    drawn = False
    for metric, face, shift in ((TIE_AWARE, color, 0.0), (TOP1, "white", 0.1)):
        points = gain_points(row, metric)
        if not points:
            continue
        x = np.array([n for n, _ in points], dtype=float) + offset + shift
        y = np.array([100 * g.gain for _, g in points])
        low = np.array([np.nan if g.ci is None else 100 * g.ci[0] for _, g in points])
        high = np.array([np.nan if g.ci is None else 100 * g.ci[1] for _, g in points])
        errors = np.vstack([np.nan_to_num(y - low), np.nan_to_num(high - y)])
        ax.errorbar(x, y, yerr=errors, fmt="o", color=color, markerfacecolor=face, capsize=3,
                    label=f"{row.label} ({metric})")
        drawn = True
    return drawn


def plot_gain_vs_n(records: Sequence[CellRecord], path: str | Path,
                   provenance: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write a PNG of the paired gain over 1-hot (points) against N with 95% intervals, one
    panel per split, the study's claimed band shaded; return its path."""
    records = nhot_records(records)
    tables = {split: with_gains for split, rows in summarize(records).items()
              if (with_gains := [row for row in rows if gain_points(row)])}
    _label_across_splits(tables)
    n_panels = max(len(tables), 1)
    fig, axes = plt.subplots(1, n_panels, figsize=(max(9, 6.5 * n_panels), 5.5), dpi=100,
                             squeeze=False)
    colors = _colors([row.label for rows in tables.values() for row in rows])
    for ax, (split, rows) in zip(axes[0], tables.items(), strict=False):
        claims = {}
        for row in rows:
            claim = gain_claim(row.model, split)
            if claim is not None:
                claims.setdefault(claim.band, claim)
        for (low, high), claim in claims.items():
            label = f"study: {claim.band_text} points ({claim.source})"
            if claim.note:   # a general claim standing in for one the report does not give
                label = f"study's general claim: {claim.band_text} points ({claim.source})"
            if low == high:
                ax.axhline(low, color="tab:red", linestyle=":", linewidth=2, label=label)
            else:
                ax.axhspan(low, high, color="tab:red", alpha=0.12, label=label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        width = 0.5 / max(len(rows), 1)
        for i, row in enumerate(rows):
            _draw_gains(ax, row, (i - (len(rows) - 1) / 2) * width, colors[row.label])
        all_n = sorted({n for row in rows for n, _ in gain_points(row)})
        ax.set_xticks(all_n)
        ax.set_xlabel("N (N-hot training labels)")
        ax.set_ylabel("gain over 1-hot, percentage points")
        ax.set_title(f"{split} split", fontsize=10)
        ax.grid(alpha=0.3)
    if not tables:
        axes[0][0].text(0.5, 0.5, "no row with a 1-hot cell and another N", ha="center",
                        va="center", transform=axes[0][0].transAxes)
    fig.suptitle("The answer: paired gain of N-hot over 1-hot (honest accuracy; filled: "
                 "tie-aware, hollow: top-1; bars: 95% t interval over seeds)\n"
                 "shaded / dotted: the study's claim for that split and model\n"
                 + _subtitle(records, provenance), fontsize=10)
    fig.tight_layout()
    _legend_below(fig, 8)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the legend below the panels is out of tight_layout but inside the saved picture
    fig.savefig(out, format="png", bbox_inches="tight",
                bbox_extra_artists=[*fig.get_default_bbox_extra_artists(), *fig.legends])
    plt.close(fig)
    return out

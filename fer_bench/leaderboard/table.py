"""Leaderboard tables: one pandas DataFrame of display strings per split, drawn with rich.

The DataFrame is the one place where numbers become text; ``markdown.py`` renders the
same frames. Accuracy cells are honest test accuracy in percent, "mean ± half-width" of
the 95% t interval over seeds (2 decimals), "mean" alone for one seed, "failed" when every
seed failed, with " (k failed)" appended when some seeds failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fer_bench.console import wide_console
from fer_bench.leaderboard.stats import CellSummary, RowSummary, summarize
from fer_bench.record import CellRecord

#: Column names of the cost / test part of each table, in order.
BEST_COLUMN = "best N"
GAIN_COLUMN = "gain vs 1-hot (pts)"
P_COLUMN = "p"
TEST_COLUMN = "test"
SEEDS_COLUMN = "seeds"
OPTIMISTIC_COLUMN = "optimistic @ best N"
COST_COLUMNS = ("epoch time (s)", "train img/s", "peak mem (MiB)", "params (M)")
FAILED = "failed"
MISSING = "—"


def nhot_column(nhot: int) -> str:
    """Column name of an N-hot cell, e.g. "3-hot"."""
    return f"{nhot}-hot"


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
    """Display text of one N-hot cell (see the module docstring)."""
    if cell is None:
        return MISSING
    if cell.failed:
        return FAILED
    text = format_accuracy(cell.mean, cell.half_width)
    return f"{text} ({cell.n_failed} failed)" if cell.n_failed else text


def _test_text(row: RowSummary) -> str:
    if row.gain is None:
        return MISSING
    if row.gain.method == "none":
        return MISSING
    text = f"paired t, n={row.gain.n_seeds}" if row.gain.method == "paired t" else row.gain.method
    if row.gain.p_value is not None and row.gain.comparisons > 1:
        text += f", Bonferroni x{row.gain.comparisons}"
    return text


def _row_values(row: RowSummary, columns_n: Sequence[int]) -> dict[str, str]:
    values = {nhot_column(n): format_cell(row.cells.get(n)) for n in columns_n}
    values[SEEDS_COLUMN] = str(max((len(c.ok) for c in row.cells.values()), default=0))
    values[BEST_COLUMN] = MISSING if row.best_n is None else str(row.best_n)
    values[GAIN_COLUMN] = MISSING if row.gain is None else f"{100 * row.gain.gain:+.2f}"
    values[P_COLUMN] = MISSING if row.gain is None else format_p(row.gain.p_value)
    values[TEST_COLUMN] = _test_text(row)
    best = row.cells.get(row.best_n) if row.best_n is not None else None
    values[OPTIMISTIC_COLUMN] = format_accuracy(best.optimistic_mean if best else None, None)
    epoch, rate, memory, params = COST_COLUMNS
    values[epoch] = MISSING if row.median_epoch_s is None else f"{row.median_epoch_s:.2f}"
    values[rate] = MISSING if row.train_images_per_s is None else f"{row.train_images_per_s:.0f}"
    kind = f" ({row.memory_kind})" if row.memory_kind else ""
    values[memory] = (MISSING if row.peak_memory_bytes is None
                      else f"{row.peak_memory_bytes / 2**20:.1f}{kind}")
    values[params] = MISSING if row.params is None else f"{row.params / 1e6:.2f}"
    return values


def build_tables(records: Sequence[CellRecord]) -> dict[str, pd.DataFrame]:
    """split -> DataFrame of display strings; index = row label (model), named "model".

    Columns: "<N>-hot" for every N present on that split (ascending), "seeds" (most ok
    seeds of any cell), "best N", "gain vs 1-hot (pts)" (percentage points), "p", "test"
    (which test gave p), "optimistic @ best N" (%), then the cost columns: median epoch time
    (s, over every epoch of every ok cell of the row), training images/s (median over cells),
    peak memory (MiB, max over cells, with its kind), parameters (millions).
    """
    frames: dict[str, pd.DataFrame] = {}
    for split, rows in summarize(records).items():
        columns_n = sorted({n for row in rows for n in row.cells})
        columns = [nhot_column(n) for n in columns_n] + [
            SEEDS_COLUMN, BEST_COLUMN, GAIN_COLUMN, P_COLUMN, TEST_COLUMN, OPTIMISTIC_COLUMN,
            *COST_COLUMNS]
        frame = pd.DataFrame([_row_values(row, columns_n) for row in rows], columns=columns,
                             index=pd.Index([row.label for row in rows], name="model"))
        frames[split] = frame
    return frames


def _distinct(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")})


def run_labels(records: Sequence[CellRecord],
               provenance: Sequence[Mapping[str, Any]] = ()) -> tuple[str, str]:
    """(data label, profile) of a run, e.g. ("synthetic", "smoke"); "unknown" when absent.

    Taken from the records, else from each file's top-level ``fer_bench`` block; several
    distinct values are joined with "+".
    """
    blocks = [p.get("fer_bench") or {} for p in provenance]
    data = _distinct(r.dataset_label for r in records) or _distinct(b.get("data_label") for b in blocks)
    profile = _distinct(r.profile for r in records) or _distinct(b.get("profile") for b in blocks)
    return "+".join(data) or "unknown", "+".join(profile) or "unknown"


def table_title(split: str, data_label: str, profile: str) -> str:
    """Title of one split's table; warns loudly for synthetic data and the smoke profile."""
    title = f"{split} split: honest test accuracy, % (mean ± 95% CI over seeds)"
    if "ferplus" not in data_label:
        title += f"; data: {data_label.upper()} (not FERPlus)"
    else:
        title += f"; data: {data_label}"
    title += f"; profile: {profile.upper() if 'smoke' in profile else profile}"
    if "smoke" in profile:
        title += " (few epochs, not comparable to the study)"
    return title


def split_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(accuracy columns, cost columns) of a ``build_tables`` frame: drawn as two tables."""
    cost = [SEEDS_COLUMN, OPTIMISTIC_COLUMN, *COST_COLUMNS]
    return [c for c in frame.columns if c not in cost], cost


def _rich_table(frame: pd.DataFrame, columns: Sequence[str], title: str) -> Table:
    table = Table(title=Text(title), title_justify="left")
    table.add_column(Text("model"), style="bold", overflow="fold")
    for column in columns:
        table.add_column(Text(column), justify="left" if column == TEST_COLUMN else "right",
                         no_wrap=True)
    for label, row in frame.iterrows():
        best_column = nhot_column(int(row[BEST_COLUMN])) if row[BEST_COLUMN] != MISSING else None
        cells = [Text(str(label))]
        for column in columns:
            text = str(row[column])
            if column == best_column:
                cells.append(Text(text + " *", style="bold green"))
            else:
                cells.append(Text(text, style="red" if text == FAILED else ""))
        table.add_row(*cells)
    return table


def print_terminal_tables(records: Sequence[CellRecord], console: Console | None = None,
                          provenance: Sequence[Mapping[str, Any]] = ()) -> None:
    """Draw two rich tables per split (accuracy, then cost); the best N cell is bold green
    and starred, failed cells red.

    Every text that comes from a record is wrapped in ``rich.text.Text`` so a model name
    such as "[bold]x" is printed as-is, never parsed as rich markup.
    """
    console = console or wide_console()
    data_label, profile = run_labels(records, provenance)
    for split, frame in build_tables(records).items():
        accuracy_columns, cost_columns = split_columns(frame)
        console.print(_rich_table(frame, accuracy_columns, table_title(split, data_label, profile)))
        console.print(_rich_table(frame, cost_columns, f"{split} split: cost"))
    console.print(Text("* best N of the row (highest mean honest accuracy). "
                       "gain = best N mean - 1-hot mean, percentage points; "
                       "p from the test named in 'test'."))

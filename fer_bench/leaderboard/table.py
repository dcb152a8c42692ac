"""Leaderboard tables: one pandas DataFrame of display strings per section and split, drawn
with rich.

The DataFrame is the one place where numbers become text; ``markdown.py`` renders the same
frames. Variant cells are honest test accuracy in percent, "mean ± half-width" of the 95% t
interval over seeds (2 decimals), "mean" alone for one seed, "failed" when every seed
failed, with " (k failed)" appended when some seeds failed. The other columns come from the
registry in ``columns.py``. Top-1 accuracy stands beside the tie-aware one: the same variant
columns in honest top-1 accuracy ("1-hot (top-1)", ...), drawn as the split's second table
when a record of the table recorded it (older records did not: a note says so). Each frame's
``attrs`` hold what the renderers need besides the cells: ``parts`` (accuracy / top-1 /
comparison / cost -> its columns: drawn as separate tables, as one terminal line cannot hold
them all), ``text_columns``, ``best`` (row label -> column of
its best N), ``failed`` (row label -> the columns of its cells whose every seed failed:
drawn red) and ``notes`` (the lines printed under the table). Nothing a renderer decides
is read back from a cell's text.

What data and profile a section's cells come from is a ``RunLabels`` (the distinct labels
as tuples), turned into text only by the titles (``data_text``, ``profile_text``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fer_bench.console import wide_console
from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.column_registry import load_declared_columns
from fer_bench.leaderboard.columns import (
    ACCURACY,
    COMPARISON,
    COST,
    FAILED,
    MISSING,
    TOP1_PART,
    columns_for,
    format_accuracy,
    format_cell,
    has_best_n,
)
from fer_bench.leaderboard.recovery import recovery_notes
from fer_bench.leaderboard.rows import (
    RowSummary,
    split_note,
    summarize,
    summarize_sections,
    variant_column,
    variant_sort_key,
)
from fer_bench.leaderboard.speedrun import SECTION as SPEEDRUN_SECTION
from fer_bench.leaderboard.speedrun import speedrun_tables
from fer_bench.leaderboard.stats import SINGLE_RUN, CellSummary
from fer_bench.planning.profiles import ProfileName, profile_named

TOP1_MISSING_NOTE = ("top-1 accuracy is not recorded in these cells (written before records "
                     "carried it); benchmarks/backfill_records.py fills it from their stored "
                     "test predictions.")
SINGLE_RUN_NOTE = (f"p-values marked \"{SINGLE_RUN}\" come from one seed: McNemar's test on the "
                   "per-image correctness of the two trained networks; another seed could give "
                   "another answer.")


def nhot_column(nhot: int) -> str:
    """Column name of an N-hot cell, e.g. "3-hot"."""
    return variant_column(f"nhot-{nhot}")


def top1_column(variant: str) -> str:
    """Column name of a variant's top-1 accuracy, e.g. "3-hot (top-1)"."""
    return f"{variant_column(variant)} (top-1)"


def format_top1(cell: CellSummary | None) -> str:
    """A cell's honest top-1 accuracy, "mean ± half-width" over the seeds that recorded it
    (" (k of n seeds)" when some did not); "failed"; "—" when absent or not recorded."""
    if cell is None:
        return MISSING
    if cell.failed:
        return FAILED
    if not cell.n_top1:
        return MISSING
    text = format_accuracy(cell.top1_mean, cell.top1_half_width)
    return text if cell.n_top1 == len(cell.ok) else f"{text} ({cell.n_top1} of {len(cell.ok)} seeds)"


def has_top1(rows: Sequence[RowSummary]) -> bool:
    """Some cell of the table recorded top-1 accuracy."""
    return any(cell.n_top1 for row in rows for cell in row.cells.values())


def table_notes(split: str, rows: Sequence[RowSummary]) -> list[str]:
    """Lines shown under a split's table: the split kind's note; the single-run caveat when
    a p-value in the table comes from one seed."""
    notes = [note for note in (split_note(split),) if note]
    if rows and not has_top1(rows) and any(row.cells for row in rows):
        notes.append(TOP1_MISSING_NOTE)
    if any(g is not None and g.single_run and g.p_value is not None
           for row in rows for g in (row.gain, row.eight_vs_one)):
        notes.append(SINGLE_RUN_NOTE)
    return notes + recovery_notes(rows)   # the recovery section's reading (issue 22)


def frame_of(rows: Sequence[RowSummary], experiment: str = "") -> pd.DataFrame:
    """The display frame of one table (see the module docstring); index = row labels."""
    variants = sorted({v for row in rows for v in row.cells}, key=variant_sort_key)
    registered = columns_for(experiment, rows)
    top1 = [top1_column(v) for v in variants] if has_top1(rows) else []
    names = [variant_column(v) for v in variants] + [c.name for c in registered] + top1
    values = []
    for row in rows:
        entry = {variant_column(v): format_cell(row.cells.get(v)) for v in variants}
        entry.update({column.name: column.fn(row) for column in registered})
        if top1:
            entry.update({top1_column(v): format_top1(row.cells.get(v)) for v in variants})
        values.append(entry)
    failed = {row.label: [name for v in variants if (cell := row.cells.get(v)) is not None
                          and cell.failed
                          for name in (variant_column(v), *([top1_column(v)] if top1 else []))]
              for row in rows}
    frame = pd.DataFrame(values, columns=names,
                         index=pd.Index([row.label for row in rows], name="model"))
    show_best = has_best_n(rows)
    parts = {part: [c.name for c in registered if c.part == part] for part in (COMPARISON, COST)}
    parts[TOP1_PART] = top1 + [c.name for c in registered if c.part == TOP1_PART]
    accuracy = [n for n in names if not any(n in cols for cols in parts.values())]
    parts = {ACCURACY: accuracy, TOP1_PART: parts[TOP1_PART],
             COMPARISON: parts[COMPARISON], COST: parts[COST]}
    frame.attrs.update(
        parts=parts,
        text_columns=[c.name for c in registered if c.text],
        best={row.label: nhot_column(row.best_n) for row in rows
              if show_best and row.best_n is not None},
        failed={label: columns for label, columns in failed.items() if columns},
        notes=table_notes(rows[0].split, rows) if rows else [],
    )
    return frame


def build_tables(records: Sequence[CellRecord], experiment: str = "") -> dict[str, pd.DataFrame]:
    """split -> display frame for ``records`` taken as one section (``experiment`` selects
    experiment-specific columns). Columns: one per variant present, then the registry's
    (``columns.COLUMNS``): seeds, best N, gain vs 1-hot, p, test, 8-hot vs 1-hot, its p and
    test, optimistic @ best N, the cost columns, and each experiment's own."""
    return {split: frame_of(rows, experiment)
            for split, rows in summarize(records, experiment=experiment).items()}


@dataclass
class SectionTables:
    """The frames of one section: ``name`` (experiment), ``title``, split -> frame, and the
    section's records."""

    name: str
    title: str
    frames: dict[str, pd.DataFrame]
    records: list[CellRecord]

    @property
    def heading(self) -> str:
        return self.name if self.title == self.name else f"{self.name} — {self.title}"


def build_sections(records: Sequence[CellRecord],
                   provenance: Sequence[Mapping[str, Any]] = ()) -> list[SectionTables]:
    """One ``SectionTables`` per experiment (see ``rows.summarize_sections``); the columns
    the results files declare (``fer_bench.columns``) are registered first
    (``column_registry.load_declared_columns``)."""
    load_declared_columns(provenance)
    return [SectionTables(s.name, s.title,
                          {split: frame_of(rows, s.name) for split, rows in s.tables.items()},
                          s.records)
            for s in summarize_sections(records, provenance)]


#: The data label of the real FERPlus data (``CleanDataset.label``); any other is not FERPlus.
FERPLUS_LABEL = "ferplus"
#: The text of a run label that no record and no file recorded.
UNKNOWN_LABEL = "unknown"


@dataclass(frozen=True)
class RunLabels:
    """What data and profiles a run's cells come from: the distinct labels, sorted
    (empty when none was recorded)."""

    data: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()

    @property
    def not_comparable(self) -> tuple[str, ...]:
        """The profiles whose numbers cannot stand beside the study's (``Profile.comparable``
        False: smoke, few epochs on a small slice); a profile this version does not know
        is not judged."""
        return tuple(p for p in self.profiles
                     if (profile := profile_named(p)) is not None and not profile.comparable)

    @property
    def ferplus_only(self) -> bool:
        """Every cell ran on FERPlus."""
        return self.data == (FERPLUS_LABEL,)

    @property
    def some_ferplus(self) -> bool:
        return FERPLUS_LABEL in self.data


def _distinct(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in values if v not in (None, "")}))


def run_labels(records: Sequence[CellRecord],
               provenance: Sequence[Mapping[str, Any]] = ()) -> RunLabels:
    """The data labels and profiles of a run, e.g. (("synthetic",), ("smoke",)).

    Taken from the records (a record run without ``--fer-profile`` has profile "" and counts
    as "default"), else, where there are no records or they predate ``dataset_label``, from
    each file's top-level ``fer_bench`` block. A section's labels are its own records': the
    files' blocks cover every section of a merged page.
    """
    blocks = [p.get("fer_bench") or {} for p in provenance]
    from_files = RunLabels(_distinct(b.get("data_label") for b in blocks),
                           _distinct(b.get("profile") for b in blocks))
    if not records:
        return from_files
    return RunLabels(_distinct(r.dataset_label for r in records) or from_files.data,
                     _distinct(r.profile or ProfileName.DEFAULT.value for r in records))


def data_label_text(labels: RunLabels) -> str:
    """The data labels as recorded, "+"-joined: "ferplus+synthetic"; "unknown" when none."""
    return "+".join(labels.data) or UNKNOWN_LABEL


def data_text(labels: RunLabels) -> str:
    """"ferplus"; any other data set in capitals with "(not FERPlus)"; " + " between labels."""
    return " + ".join(p if p == FERPLUS_LABEL else f"{p.upper()} (not FERPlus)"
                      for p in labels.data or (UNKNOWN_LABEL,))


def profile_text(labels: RunLabels) -> str:
    """The profiles, "+"-joined: "smoke", "cpu+paper"; "unknown" when none."""
    return "+".join(labels.profiles) or UNKNOWN_LABEL


def table_title(split: str, labels: RunLabels) -> str:
    """Title of one split's table; warns loudly for synthetic data and the smoke profile."""
    title = f"{split} split: honest test accuracy, % (mean ± 95% CI over seeds)"
    title += f"; data: {data_text(labels)}"
    profile = profile_text(labels)
    title += f"; profile: {profile.upper() if labels.not_comparable else profile}"
    if labels.not_comparable:
        title += " (few epochs, not comparable to the study)"
    return title


def frame_parts(frame: pd.DataFrame) -> dict[str, list[str]]:
    """part -> columns of a display frame, in drawing order, empty parts left out."""
    parts = frame.attrs.get("parts") or {ACCURACY: list(frame.columns)}
    return {part: list(columns) for part, columns in parts.items() if columns}


def part_title(part: str, split: str, labels: RunLabels) -> str:
    """Title of one drawn table of a split."""
    if part == ACCURACY:
        return table_title(split, labels)
    if part == TOP1_PART:
        return (f"{split} split: honest top-1 test accuracy, % (the prediction against the "
                "first top-share emotion, as single-label benchmarks score; mean ± 95% CI)")
    if part == COMPARISON:
        return f"{split} split: comparisons (paired over the seeds both cells share)"
    return f"{split} split: {part}"


def _rich_table(frame: pd.DataFrame, columns: Sequence[str]) -> Table:
    table = Table()
    table.add_column(Text(str(frame.index.name or "")), style="bold", overflow="fold",
                     min_width=min(24, max((len(str(label)) for label in frame.index), default=5)))
    text_columns = set(frame.attrs.get("text_columns", ()))
    for column in columns:
        if column in text_columns:
            table.add_column(Text(column), justify="left", overflow="fold")
        else:
            table.add_column(Text(column), justify="right", no_wrap=True)
    best = frame.attrs.get("best", {})
    failed = frame.attrs.get("failed", {})
    for label, row in frame.iterrows():
        cells = [Text(str(label))]
        for column in columns:
            text = str(row[column])
            if column == best.get(label):
                cells.append(Text(text + " *", style="bold green"))
            else:
                cells.append(Text(text, style="red" if column in failed.get(label, ()) else ""))
        table.add_row(*cells)
    return table


def _print_literature(records: Sequence[CellRecord], console: Console) -> None:
    """Our literature-protocol cells beside Barsoum et al. 2016 (their figures labelled)."""
    from fer_bench.leaderboard.literature import TITLE, literature_frame

    frame = literature_frame(records)
    if frame is None:
        return
    console.rule(Text("literature — beside Barsoum et al. 2016"))
    console.print(Text(TITLE, style="italic"))
    console.print(_rich_table(frame, list(frame.columns)))
    for note in frame.attrs["notes"]:
        console.print(Text(f"note: {note}"))


def _print_speedrun(records: Sequence[CellRecord], console: Console) -> None:
    """The speedrun section's time-to-accuracy tables (``leaderboard/speedrun.py``)."""
    for title, frame in speedrun_tables(records):
        console.print(Text(title, style="italic"))
        console.print(_rich_table(frame, list(frame.columns)))
        for note in frame.attrs["notes"]:
            console.print(Text(f"note: {note}"))


def _print_summary(records: Sequence[CellRecord], console: Console) -> None:
    """The page's summary (``summary.summary_lines``) as plain text: the verdicts of both
    accuracies against the study's claims, coinciding cells, convergence."""
    from fer_bench.leaderboard.summary import summary_lines

    lines = summary_lines(records)
    if not lines:
        return
    console.rule(Text(lines[0].lstrip("# ")))
    for line in lines[1:]:
        if line:
            console.print(Text(line.replace("**", "").replace("*", "")))


def print_terminal_tables(records: Sequence[CellRecord], console: Console | None = None,
                          provenance: Sequence[Mapping[str, Any]] = ()) -> None:
    """Per section (experiment), per split: the accuracy table and its notes, the top-1
    table, the comparisons, the cost table; then the summary's verdicts. The best N cell is bold green and starred, failed cells red.

    Every text that comes from a record is wrapped in ``rich.text.Text`` so a model name
    such as "[bold]x" is printed as-is, never parsed as rich markup.
    """
    console = console or wide_console()
    sections = build_sections(records, provenance)
    if not sections:
        return
    for section in sections:
        console.rule(Text(section.heading))
        labels = run_labels(section.records, provenance)
        for split, frame in section.frames.items():
            for part, columns in frame_parts(frame).items():
                # the title on its own line: a narrow table would fold it into its width
                console.print(Text(part_title(part, split, labels), style="italic"))
                console.print(_rich_table(frame, columns))
                if part == ACCURACY:
                    for note in frame.attrs.get("notes", ()):
                        console.print(Text(f"note: {note}"))
        if section.name == SPEEDRUN_SECTION:
            _print_speedrun(section.records, console)
    _print_literature(records, console)
    _print_summary(records, console)
    console.print(Text("* best N of the row (highest mean honest accuracy). Every gain is the "
                       "mean paired difference over the seeds both cells share, in percentage "
                       "points; p from the test named beside it. 8-hot vs 1-hot is the "
                       "pre-specified comparison (not adjusted); best N's p is "
                       "Bonferroni-adjusted."))

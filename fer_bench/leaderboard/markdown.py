"""The published leaderboard: ``<out>/README.md`` rendered from the same tables as the terminal.

One ``##`` section per experiment, one table per split (accuracy, its notes, cost), then the
plots, the study's own numbers beside ours, and the provenance.

Safety: every text that comes from a results file (model names, commands, versions,
device names, ...) goes through ``escape_markdown`` so it can neither break a table row
nor inject HTML or markdown links/emphasis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from fer_bench.fileio import atomic_write_text
from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.preregistered import contrast_table_lines
from fer_bench.leaderboard.rows import RowSummary, section_name, section_sort_key, summarize
from fer_bench.leaderboard.speedrun import SECTION as SPEEDRUN_SECTION
from fer_bench.leaderboard.speedrun import speedrun_tables
from fer_bench.leaderboard.stats import SINGLE_RUN, TABLE2_THRESHOLD, mean_ci, succeeded
from fer_bench.leaderboard.summary import summary_lines
from fer_bench.leaderboard.table import (
    ACCURACY,
    MISSING,
    RunLabels,
    SectionTables,
    build_sections,
    data_label_text,
    format_accuracy,
    format_cell,
    format_top1,
    frame_parts,
    part_title,
    run_labels,
)

_ESCAPES = {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "`": "&#96;", "*": "&#42;",
    "_": "&#95;", "[": "&#91;", "]": "&#93;", "\\": "&#92;", "\r": " ", "\n": " ",
    "~": "&#126;",  # strikethrough
    ":": "&#58;",   # breaks "https://..." autolinks
}

#: SPEC "Numbers the study reports" (report sections 4-5; Barsoum et al. 2016).
STUDY_8HOT_ORDINARY = {"vgg16": 86.06, "ran": 86.82, "dan": 88.51, "mten": 88.60}
STUDY_ROWS = (
    ("ordinary test, 8-hot, VGG16 (Base+Flip+Rotate ±20, MSE)", "86.06%"),
    ("ordinary test, 8-hot, RAN", "86.82%"),
    ("ordinary test, 8-hot, DAN", "88.51%"),
    ("ordinary test, 8-hot, MTEN", "88.60%"),
    ("multi-label (N-hot) vs 1-hot", "+2 to +4 points per model; gains mostly from N=1 to 3, flat above 3"),
    ("complex test vs ordinary test", "about 20 points lower"),
    ("complex test, 1-hot, VGG16", "~55%"),
    ("complex test, N-hot vs 1-hot, VGG16 (abstract)", "about +10 points"),
    ("complex test, 1-hot, RAN / DAN / MTEN", "65-70%"),
    ("Barsoum et al. 2016, VGG13, official split, 5 runs: majority voting", "83.85 ± 0.63%"),
    ("Barsoum et al. 2016: multi-label", "83.97 ± 0.36%"),
    ("Barsoum et al. 2016: probabilistic label drawing", "84.99 ± 0.37%"),
    ("Barsoum et al. 2016: cross-entropy loss", "84.72 ± 0.24%"),
    ("best published official-split accuracy found (POSTER, 2023)", "91.62%"),
)

HONEST_NOTE = (
    "**Honest vs optimistic.** *Honest* accuracy is the test accuracy at the epoch with the "
    "best accuracy on a validation slice carved from the training set, so the test set never "
    "chooses the model. *Optimistic* accuracy is the highest test accuracy over all epochs, the "
    "figure the study reports; it is biased upwards and is shown only for comparison with the "
    "study. Accuracy is tie-aware: a prediction is correct when it is one of the emotions holding "
    "the largest vote share."
)

STATS_NOTE = (
    "Sections: one per experiment. Rows: one per identity (model, recipe, data, device and "
    "precision, protocol, model release); seeds are the only thing a row averages over, and a "
    "row's label names every axis that varies among the rows of its table. Cells: mean ± "
    "half-width of the two-sided 95% t confidence interval over seeds (no interval with one "
    "seed). **Bold** = best N of the row (highest mean honest accuracy; ties go to the smaller "
    "N). Every gain is the mean of the paired differences over the seeds both cells share, in "
    "percentage points. p: paired t-test over those seeds when 3 or more pair up; with 2 seeds "
    "no test is run (shown as n<3); with one seed McNemar's test on the per-image correctness "
    "of the two cells (exact binomial test when fewer than 25 images disagree, chi-square with "
    f"continuity correction otherwise), labelled \"{SINGLE_RUN}\": it compares two trained "
    "networks, not two training procedures. Because best N is chosen after seeing every N, its "
    "p-value is Bonferroni-adjusted: multiplied by the number of N values it was chosen from "
    "besides 1-hot (capped at 1). *8-hot vs 1-hot* is the study's pre-specified question and "
    "is not adjusted. Failed cells are shown as failed and never averaged. Augmentation rows "
    "also show the report's Table 2 statistics at 8-hot, averaged over seeds: highest test "
    "accuracy over epochs, 75th percentile of the per-epoch test accuracy, and the number of "
    f"epochs with test accuracy above {100 * TABLE2_THRESHOLD:g}%. Costs: median epoch time over "
    "every epoch of the row, median training images/s, peak memory (cuda = accelerator, "
    "host_rss_cell_delta = the cell's growth of host resident memory), parameters in millions, "
    "and, where records measured it, the mean seconds per cell of its wall time, data set-up, "
    "training epochs, evaluation (validation + test, every epoch), FLOP counting and store "
    "writes, with the overhead share: everything but the training epochs, over the wall time."
)

CELLS_NOTE = (
    "**What the cells are.** *Top-1* accuracy (the prediction against the first emotion, in "
    "SPEC order, with the largest vote share, as single-label benchmarks and the literature "
    "score) stands beside the tie-aware accuracy in its own table under each accuracy table, "
    "and in the comparisons. *Best val epoch = last* counts the row's cells whose best "
    "validation epoch was the last one trained: there the model was still improving when "
    "training stopped, and honest equals last-epoch accuracy. *Identical training data* names "
    "every group of a row's cells (one seed each) that trained on the same images with the "
    "same targets, read from the sha256 fingerprint of their training targets: on FERPlus "
    "7-hot equals 8-hot (no cleaned image has votes on all 8 emotions), and 6-hot equals 8-hot "
    "in a seed whose training part holds no image with votes on 7 emotions. Records written "
    "before the fingerprint existed are matched by identical test predictions instead, and "
    "say so. A row trained for fewer epochs than another row of its model is labelled "
    "*short-budget result*; both are shown."
)

STUDY_CAVEAT = (
    "The study trained with its own set-up: VGG16 on Base+Flip+Rotate ±20 with MSE, DAN at "
    "224x224 input, ImageNet pre-training where a model had it, 40 epochs (DAN 60). Our rows "
    "may use other input sizes, pre-training, epochs and augmentation (see *our recipe*), so "
    "the numbers agree in meaning only where the recipes agree."
)


def escape_markdown(text: Any) -> str:
    """Text -> markdown-inert text: HTML entities for ``& < > | ` * _ [ ] \\``, newlines -> spaces."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def frame_to_markdown(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """``columns`` (default all) of a display frame -> a GitHub markdown table, the best N
    cell in bold."""
    columns = list(frame.columns if columns is None else columns)
    header = [escape_markdown(frame.index.name or "")] + [escape_markdown(c) for c in columns]
    text_columns = set(frame.attrs.get("text_columns", ()))
    align = ["---" if column in text_columns else "---:" for column in columns]
    lines = [_markdown_row(header), _markdown_row(["---", *align])]
    best = frame.attrs.get("best", {})
    for label, row in frame.iterrows():
        cells = [escape_markdown(label)]
        for column in columns:
            text = escape_markdown(row[column])
            cells.append(f"**{text}**" if column == best.get(label) else text)
        lines.append(_markdown_row(cells))
    return "\n".join(lines)


def _recipe_text(row: RowSummary) -> str:
    identity = row.identity
    return (f"aug={identity['augmentation']}, loss={identity['loss']}, init={identity['init']}, "
            f"{identity['epochs']} epochs, input {identity['input_size']} px, "
            f"{identity['device_type']}/{identity['precision']}")


def _study_comparison(records: Sequence[CellRecord]) -> str:
    """The study's 8-hot ordinary figures beside each of our ordinary rows with an 8-hot cell
    of the models both have (by name); one line per row, rows never pooled."""
    lines = [_markdown_row(["model", "study: ordinary, 8-hot (optimistic)",
                            "fer_bench: ordinary, 8-hot, optimistic",
                            "fer_bench: ordinary, 8-hot, honest",
                            "fer_bench: ordinary, 8-hot, honest top-1", "our recipe"]),
             _markdown_row(["---", "---:", "---:", "---:", "---:", "---"])]
    rows = summarize(records).get("ordinary", [])
    for model, study in STUDY_8HOT_ORDINARY.items():
        ours = [row for row in rows if row.model.lower() == model
                and row.at(8) is not None and not row.at(8).failed]
        if not ours:
            lines.append(_markdown_row([model.upper(), f"{study:.2f}", "not run", "not run",
                                        "not run", MISSING]))
        for row in ours:
            cell = row.at(8)
            optimistic = [r.acc_optimistic for r in cell.ok.values() if r.acc_optimistic is not None]
            ours_optimistic = format_accuracy(*mean_ci(optimistic)) if optimistic else MISSING
            lines.append(_markdown_row([escape_markdown(row.label), f"{study:.2f}", ours_optimistic,
                                        escape_markdown(format_cell(cell)),
                                        escape_markdown(format_top1(cell)),
                                        escape_markdown(_recipe_text(row))]))
    return "\n".join(lines)


def cell_count_text(records: Sequence[CellRecord]) -> str:
    """"50 distinct (0 failed); per experiment: nhot 48 (3 epochs), speedrun 2 (9, 40
    epochs)". A cell reported for two experiments counts once in the total and once in each
    experiment."""
    distinct = {r.cell.digest(): r for r in records}
    failed = sum(not succeeded(r) for r in distinct.values())
    by_experiment: dict[str, list[CellRecord]] = {}
    for record in records:
        by_experiment.setdefault(section_name(record.experiment), []).append(record)
    parts = []
    for name in sorted(by_experiment, key=section_sort_key):
        mine = {r.cell.digest(): r for r in by_experiment[name]}.values()
        epochs = ", ".join(str(e) for e in sorted({r.epochs for r in mine}))
        failed_here = sum(not succeeded(r) for r in mine)
        extra = f", {failed_here} failed" if failed_here else ""
        parts.append(f"{name} {len(mine)} ({epochs} epoch{'' if epochs == '1' else 's'}{extra})")
    return f"{len(distinct)} distinct ({failed} failed); per experiment: {', '.join(parts)}"


def _provenance_lines(records: Sequence[CellRecord],
                      provenance: Sequence[Mapping[str, Any]]) -> list[str]:
    epochs = sorted({r.epochs for r in records})
    devices = sorted({f"{r.device} {r.device_name}".strip() + (f" (heap {r.heap})" if r.heap else "")
                      for r in records})
    lines = [f"- epochs per cell: {escape_markdown(', '.join(map(str, epochs)) or MISSING)}",
             f"- devices of the cells: {escape_markdown('; '.join(devices) or MISSING)}",
             f"- cells: {escape_markdown(cell_count_text(records))}"]
    for source in provenance:
        block = source.get("fer_bench") or {}
        versions = block.get("versions") or {}
        version_text = ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if isinstance(versions, dict) else str(versions)
        commit = (source.get("commit_info") or {}).get("id", "")
        lines += [
            f"- results file: {escape_markdown(Path(str(source.get('path', ''))).name)}",
            f"  - data: {escape_markdown(block.get('data_label', MISSING))}, fingerprint "
            f"{escape_markdown(block.get('dataset_fingerprint', MISSING))}",
            f"  - profile: {escape_markdown(block.get('profile', MISSING))}; "
            f"shard: {escape_markdown(block.get('shard') or 'all')}; "
            f"device: {escape_markdown(block.get('device', MISSING))}; "
            f"date: {escape_markdown(block.get('date') or source.get('datetime') or MISSING)}",
            f"  - command: {escape_markdown(block.get('command', MISSING))}",
            f"  - versions: {escape_markdown(version_text or MISSING)}; pytest-benchmark "
            f"{escape_markdown(source.get('version') or MISSING)}; commit {escape_markdown(commit or MISSING)}",
            f"  - cells: {source.get('n_cells', 0)} ({source.get('n_from_store', 0)} reused from the result store)",
        ]
    return lines


def _run_label_banners(labels: RunLabels, sections: Sequence[SectionTables],
                       provenance: Sequence[Mapping[str, Any]]) -> list[str]:
    """The page's warnings about data other than FERPlus and profiles not comparable with
    the study; where only some sections are concerned, the banner names them (a synthetic
    ground-truth section beside the real-data grid does not make the grid a pipeline test)."""
    section_labels = {section.name: run_labels(section.records, provenance) for section in sections}
    other_data = [name for name, found in section_labels.items() if not found.ferplus_only]
    short = [name for name, found in section_labels.items() if found.not_comparable]
    parts: list[str] = []
    if not labels.ferplus_only:
        only = "not only" if labels.some_ferplus else "not"
        where = (f" Section{'s' if len(other_data) > 1 else ''} "
                 f"{', '.join(other_data)} ran on other data; every other section is FERPlus."
                 if labels.some_ferplus and 0 < len(other_data) < len(sections) else "")
        parts += [f"> **Data: {escape_markdown(data_label_text(labels))}, {only} FERPlus.** "
                  "Numbers on other data say nothing about how the models do on real "
                  f"faces.{escape_markdown(where)}", ""]
    if labels.not_comparable:
        where = (f" Section{'s' if len(short) > 1 else ''} {', '.join(short)} only; every other "
                 "section is comparable." if 0 < len(short) < len(sections) else "")
        parts += [f"> **Profile: {escape_markdown(', '.join(labels.not_comparable))}.** Few "
                  f"epochs on a small slice; not comparable with the study.{escape_markdown(where)}",
                  ""]
    return parts


def _section_parts(sections: Sequence[SectionTables],
                   provenance: Sequence[Mapping[str, Any]]) -> list[str]:
    parts: list[str] = []
    for section in sections:
        parts += [f"## {escape_markdown(section.heading)}", ""]
        labels = run_labels(section.records, provenance)
        for split, frame in section.frames.items():
            for part, columns in frame_parts(frame).items():
                level = "###" if part == ACCURACY else "####"
                parts += [f"{level} {escape_markdown(part_title(part, split, labels))}",
                          "", frame_to_markdown(frame, columns), ""]
                notes = list(frame.attrs.get("notes", ())) if part == ACCURACY else []
                for note in notes:
                    parts += [f"> Note: {escape_markdown(note)}", ""]
        if section.name == SPEEDRUN_SECTION:
            parts += _speedrun_part(section.records)
    return parts


def _speedrun_part(records: Sequence[CellRecord]) -> list[str]:
    """The speedrun section's time-to-accuracy tables (``leaderboard/speedrun.py``)."""
    parts: list[str] = []
    for title, frame in speedrun_tables(records):
        parts += [f"### {escape_markdown(title)}", "", frame_to_markdown(frame), ""]
        parts += [f"> Note: {escape_markdown(note)}" for note in frame.attrs["notes"]] + [""]
    return parts


def _literature_part(records: Sequence[CellRecord]) -> list[str]:
    """Our literature-protocol cells beside Barsoum et al. 2016's table (theirs, labelled)."""
    from fer_bench.leaderboard.literature import TITLE, literature_frame

    frame = literature_frame(records)
    if frame is None:
        return []
    parts = [f"## {escape_markdown(TITLE)}", "", frame_to_markdown(frame), ""]
    return parts + [f"> Note: {escape_markdown(note)}" for note in frame.attrs["notes"]] + [""]


CONTRASTS_TITLE = "The pre-registered answer: the converged grid's contrasts"
CONTRASTS_INTRO = (
    "Computed from the committed cells of the converged grid by the plan above (block cells "
    "chosen by identity: model, split, loss, epochs, bf16, full FERPlus). Mean paired "
    "difference in points over the seeds both sides have (n), the unadjusted 95% t interval, "
    "the two-sided paired t-test p and, for the secondary family S1-S5, Holm's adjusted p; "
    "the verdict follows the plan's rules. A contrast with fewer cells than planned is "
    "an interim reading. An interval that includes 0 does not show that there is no effect "
    "smaller than the detectable size the plan states.")


def render_markdown(records: Sequence[CellRecord], provenance: Sequence[Mapping[str, Any]],
                    study_numbers: bool = True, plots: Sequence[str] = (),
                    preface: str = "") -> str:
    """The whole leaderboard page as markdown text.

    ``preface``: markdown placed right under the title, before anything computed (the
    pre-registered analysis plan, ``PREREGISTRATION_FILE``).
    ``provenance``: the per-file dicts of ``LoadedResults.provenance``; ``plots``: file
    names (relative to the page) of images to embed; ``study_numbers``: add the study's own
    figures in a separate, labelled section.
    """
    labels = run_labels(records, provenance)
    sections = build_sections(records, provenance)
    parts = ["# fer_bench leaderboard", ""]
    if preface.strip():
        parts += [preface.strip(), ""]
    parts += _run_label_banners(labels, sections, provenance)
    contrasts = contrast_table_lines(records, escape=escape_markdown)
    if contrasts:
        parts += [f"## {CONTRASTS_TITLE}", "", CONTRASTS_INTRO, "", *contrasts, ""]
    parts += summary_lines(records, escape=escape_markdown)
    parts += [HONEST_NOTE, "", STATS_NOTE, "", CELLS_NOTE, ""]
    parts += _section_parts(sections, provenance)
    parts += _literature_part(records)
    for name in plots:
        parts += [f"![{escape_markdown(Path(name).stem.replace('_', ' '))}]({quote(name)})", ""]
    if study_numbers:
        parts += ["## The study's numbers (reported by the study, not measured here)", "",
                  "From the N-hot FER report (sections 4-5) and Barsoum et al. 2016. The study "
                  "reports the highest test accuracy over epochs (our *optimistic* figure), with "
                  "its own training set-up; our runs may differ in epochs, augmentation and data.", "",
                  _markdown_row(["what (the study)", "reported"]), _markdown_row(["---", "---"])]
        parts += [_markdown_row([escape_markdown(what), escape_markdown(value)]) for what, value in STUDY_ROWS]
        parts += ["", "### The study beside fer_bench (ordinary split, 8-hot)", "",
                  STUDY_CAVEAT, "", _study_comparison(records), ""]
    parts += ["## Provenance", "", *_provenance_lines(records, provenance), ""]
    return "\n".join(parts)


#: A leaderboard folder's pre-registered plan: when present, the page opens with it.
PREREGISTRATION_FILE = "PREREGISTRATION.md"


def write_markdown(records: Sequence[CellRecord], provenance: Sequence[Mapping[str, Any]],
                   out_dir: str | Path, plots: Sequence[str] = ()) -> Path:
    """Write ``<out_dir>/README.md`` atomically (creating the folder) and return its path;
    the page opens with ``<out_dir>/PREREGISTRATION.md`` when that file exists."""
    plan = Path(out_dir) / PREREGISTRATION_FILE
    preface = plan.read_text(encoding="utf-8") if plan.is_file() else ""
    path = Path(out_dir) / "README.md"
    return atomic_write_text(path, render_markdown(records, provenance, plots=plots,
                                                   preface=preface))

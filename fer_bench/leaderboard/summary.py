"""The leaderboard's plain-words answer to the study's question, computed from the rows.

For every row of the N-hot section that has a 1-hot and an 8-hot cell, one block per split:
the pre-specified 8-hot vs 1-hot paired gain with its 95% t interval and p-value, in honest
tie-aware accuracy and in honest top-1 accuracy, each with its verdict against the claim of
the study that applies to that model and split (``study_claims``: +2 to +4 points on
ordinary faces; VGG16 about +10 on complex faces), the best N, the cells that trained on
identical data, how many cells were still improving at their last epoch, and on complex
faces the 1-hot level beside the study's figure. Nothing here is typed by hand: a rerun
rewrites it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.columns import format_accuracy, gain_text, interval_text, test_text
from fer_bench.leaderboard.diagnostics import (
    coincidence_text,
    coincidences,
    coinciding_with,
    still_improving,
)
from fer_bench.leaderboard.rows import (
    NHOT_SECTION,
    RowSummary,
    section_name,
    summarize,
    variant_column,
)
from fer_bench.leaderboard.stats import TIE_AWARE, TOP1, GainSummary
from fer_bench.leaderboard.study_claims import (
    OTHERS_COMPLEX_ONE_HOT,
    VGG16_COMPLEX_ONE_HOT,
    gain_claim,
    level_verdict,
    one_hot_level_claim,
    verdict,
)

TITLE = "Summary: does N-hot training beat 1-hot? (computed from the rows below)"
INTRO = (
    "The study's claims, as the report gives them: on ordinary faces N-hot training beats "
    "1-hot by +2 to +4 points depending on the model, mostly from N = 1 to 3 (report 4.4); on "
    "complex faces the gain rises to about +10 points for VGG16, which reaches only about 55% "
    "when trained on 1-hot, while RAN, DAN and MTEN keep 65-70% at 1-hot (abstract, 4.5). "
    "Decision rules (pre-registered): *gain confirmed* only when the 95% interval excludes 0; "
    "*consistent with the study's claim* when the interval overlaps the claimed band; *rules "
    "out the claim* when the whole interval lies below the band's lower end (\"about +10\" is "
    "the point +10). Each gain is the mean of the differences paired by seed, honest test "
    "accuracy, tie-aware (SPEC) and top-1 (the first top-share emotion, as the literature "
    "scores), each with its own verdict. These per-row verdicts use the unadjusted 95% "
    "interval; in the pre-registered converged grid a secondary contrast (complex split, "
    "3-hot, the loss interaction, VGG16) counts as confirmed only after Holm's correction:")


def _metric_line(row: RowSummary, metric: str, gain: GainSummary | None) -> str:
    """The sub-bullet of one accuracy metric: gain, interval, p, means, verdict."""
    one, eight = row.at(1), row.at(8)
    if gain is None or gain.gain is None:
        return (f"  - {metric}: not recorded in these cells (written before records carried "
                "it; benchmarks/backfill_records.py fills it)")
    ci = "" if gain.ci is None else f", 95% CI {interval_text(gain)}"
    p = "" if gain.p_value is None else f", p = {gain.p_value:.3g} ({test_text(gain)})"
    if metric == TIE_AWARE:
        means = (f"1-hot {100 * one.mean:.2f}%, 8-hot {100 * eight.mean:.2f}% "
                 f"(means over {len(one.ok)} / {len(eight.ok)} seeds)")
    else:
        means = (f"1-hot {100 * one.top1_mean:.2f}%, 8-hot {100 * eight.top1_mean:.2f}% "
                 f"(means over {one.n_top1} / {eight.n_top1} seeds)")
    claim = gain_claim(row.model, row.split)
    return (f"  - {metric}: 8-hot vs 1-hot **{gain_text(gain)} points**{ci}{p}, "
            f"{gain.n_seeds} paired seeds; {means}. *Verdict: {verdict(gain, claim)}.*")


def _best_line(row: RowSummary) -> str | None:
    if row.best_n is None or row.gain is None or row.gain.gain is None:
        return None
    tested = "" if row.gain.p_value is None else f", p = {row.gain.p_value:.3g} ({test_text(row.gain)})"
    same = coinciding_with(row, f"nhot-{row.best_n}")
    twins = (f"; {variant_column(f'nhot-{row.best_n}')} trained on the same data as "
             f"{' and '.join(variant_column(v) for v in same)} in every seed" if same else "")
    return f"  - best N = {row.best_n} ({gain_text(row.gain)} points{tested}){twins}."


def _level_line(row: RowSummary, escape: Callable[[str], str]) -> str | None:
    """Complex faces: the row's 1-hot accuracy beside the study's figure for its model (a
    verdict for the study's models; the figures as context for any other)."""
    one = row.at(1)
    if row.split != "complex" or one is None or one.failed:
        return None
    measured = f"{format_accuracy(one.mean, one.half_width)}%"
    if one.n_top1:
        measured += f" (top-1 {format_accuracy(one.top1_mean, one.top1_half_width)}%)"
    claim = one_hot_level_claim(row.model, row.split)
    if claim is None:
        return (f"  - 1-hot on complex faces: {measured}. The study's figures are for its own "
                f"models ({VGG16_COMPLEX_ONE_HOT.text()}; {OTHERS_COMPLEX_ONE_HOT.text()}); "
                f"{escape(row.model)} is not one of them, so they are context, not a verdict.")
    said = f"tie-aware: {level_verdict(one.mean, one.half_width, claim)}"
    if one.n_top1:
        said += f"; top-1: {level_verdict(one.top1_mean, one.top1_half_width, claim)}"
    return f"  - 1-hot on complex faces: {measured}, against {claim.text()}: *{said}.*"


def row_lines(row: RowSummary, escape: Callable[[str], str] = str) -> list[str]:
    """The markdown block (a bullet and its sub-bullets) of a row with 1-hot and 8-hot
    cells; [] otherwise. ``escape`` makes a text from the records (row label, model name)
    safe for the output (``markdown.escape_markdown`` on the page)."""
    one, eight, gain = row.at(1), row.at(8), row.eight_vs_one
    if one is None or eight is None or gain is None or gain.gain is None:
        return []
    epochs = row.identity.get("epochs")
    trained = f", {epochs} epochs" if epochs else ""
    claim = gain_claim(row.model, row.split)
    against = "" if claim is None else f" Measured against: {claim.text()}."
    lines = [f"- **{escape(row.label)}{trained}, {escape(row.split)} split**.{against}",
             _metric_line(row, TIE_AWARE, gain),
             _metric_line(row, TOP1, row.eight_vs_one_top1)]
    best = _best_line(row)
    if best:
        lines.append(best)
    present = ", ".join(str(n) for n in sorted(row.nhot_cells()))
    same = escape(coincidence_text(row)) if coincidences(row) else "none"
    lines.append(f"  - N present: {present}. Cells that trained on identical data: {same}.")
    last, judged = still_improving(row)
    if judged:
        lines.append(f"  - Still improving at the end: the best validation epoch is the last "
                     f"one in {last} of {judged} cells"
                     + (" (there honest = last epoch; longer training may move the answer)."
                        if last else "."))
    level = _level_line(row, escape)
    if level:
        lines.append(level)
    return lines


def summary_lines(records: Sequence[CellRecord],
                  escape: Callable[[str], str] = str) -> list[str]:
    """The summary block (markdown lines) for the N-hot section's records; [] without any
    row holding both 1-hot and 8-hot. ``escape``: see ``row_lines``."""
    nhot = [r for r in records if section_name(r.experiment) == NHOT_SECTION]
    lines = [line for rows in summarize(nhot, experiment=NHOT_SECTION).values()
             for row in rows for line in row_lines(row, escape)]
    if not lines:
        return []
    return [f"## {TITLE}", "", INTRO, "", *lines, ""]

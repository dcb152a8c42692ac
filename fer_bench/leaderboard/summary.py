"""The leaderboard's plain-words answer to the study's question, computed from the rows.

For every row of the N-hot section that has a 1-hot and an 8-hot cell, one line per split:
the pre-specified 8-hot vs 1-hot paired gain with its 95% t interval and p-value, both
means, the best N with its Bonferroni-adjusted gain, and a verdict read off the interval
(helps / hurts / no difference detectable at this precision), set beside the study's claim
of +2 to +4 points (report 4.4). Nothing here is typed by hand: a rerun rewrites it.
"""

from __future__ import annotations

from collections.abc import Sequence

from fer_bench.leaderboard.columns import gain_text, interval_text, test_text
from fer_bench.leaderboard.rows import NHOT_SECTION, RowSummary, section_name, summarize
from fer_bench.leaderboard.stats import GainSummary
from fer_bench.record import CellRecord

#: The study's claimed N-hot gain over 1-hot, in points (report 4.4).
STUDY_CLAIM_POINTS = (2.0, 4.0)
TITLE = "Summary: does N-hot training beat 1-hot? (computed from the rows below)"


def verdict(gain: GainSummary) -> str:
    """Plain words for a gain from its interval (or, without one, that there is none)."""
    if gain.ci is None:
        if gain.n_seeds < 3:
            return f"no interval ({gain.n_seeds} paired seeds; 3 are needed): not an answer yet"
        return "every paired difference is the same: no interval"
    low, high = (round(100 * bound, 2) for bound in gain.ci)
    estimate = round(100 * gain.gain, 2)       # compared as printed
    claim_low, claim_high = STUDY_CLAIM_POINTS
    if low > 0:
        where = ("inside" if claim_low <= estimate <= claim_high else
                 "below" if estimate < claim_low else "above")
        return f"8-hot helps; the estimate is {where} the study's +{claim_low:g} to +{claim_high:g}"
    if high < 0:
        return "8-hot hurts, against the study's claim"
    reach = (f"the interval reaches the study's +{claim_low:g}" if high >= claim_low else
             f"the interval excludes the study's +{claim_low:g} to +{claim_high:g}")
    return f"no difference detectable at this precision; {reach}"


def same_as_eight_hot(row: RowSummary) -> list[int]:
    """The N < 8 whose cells reproduce the 8-hot cell exactly: the same seeds, and in each
    the same honest accuracy and the same per-image test predictions. Seen on FERPlus for
    N = 7: no cleaned image has votes on all 8 emotions, so 7-hot targets are the 8-hot
    ones and deterministic training repeats the cell. [] without per-image predictions."""
    eight = row.at(8)
    if eight is None or not eight.ok:
        return []
    same = []
    for n, cell in sorted(row.nhot_cells().items()):
        if n == 8 or set(cell.ok) != set(eight.ok):
            continue
        if all(cell.ok[s].test_predictions and cell.ok[s].test_predictions == eight.ok[s].test_predictions
               and cell.ok[s].acc_honest == eight.ok[s].acc_honest for s in eight.ok):
            same.append(n)
    return same


def row_line(row: RowSummary) -> str | None:
    """One markdown bullet for a row with 1-hot and 8-hot cells, else None."""
    one, eight, gain = row.at(1), row.at(8), row.eight_vs_one
    if one is None or eight is None or gain is None or gain.gain is None:
        return None
    ci = "" if gain.ci is None else f", 95% CI {interval_text(gain)}"
    p = "" if gain.p_value is None else f", p = {gain.p_value:.3g} ({test_text(gain)})"
    means = (f"1-hot {100 * one.mean:.2f}%, 8-hot {100 * eight.mean:.2f}% "
             f"(means over {len(one.ok)} / {len(eight.ok)} seeds)")
    best = ""
    if row.best_n is not None and row.gain is not None and row.gain.gain is not None:
        tested = "" if row.gain.p_value is None else f", p = {row.gain.p_value:.3g} ({test_text(row.gain)})"
        best = f"; best N = {row.best_n} ({gain_text(row.gain)} points{tested})"
    present = ", ".join(str(n) for n in sorted(row.nhot_cells()))
    same = same_as_eight_hot(row)
    if same:
        present += (f" ({', '.join(f'{n}-hot' for n in same)} reproduced 8-hot exactly in every seed: "
                    "same test predictions, so the training targets coincide on this data)")
    epochs = row.identity.get("epochs")
    trained = f", {epochs} epochs" if epochs else ""
    return (f"- **{row.label}{trained}, {row.split} split**: 8-hot vs 1-hot **{gain_text(gain)} points**"
            f"{ci}{p}, {gain.n_seeds} paired seeds; {means}{best}. N present: {present}. "
            f"*{verdict(gain)}.*")


def summary_lines(records: Sequence[CellRecord]) -> list[str]:
    """The summary block (markdown lines) for the N-hot section's records; [] without any
    row holding both 1-hot and 8-hot."""
    nhot = [r for r in records if section_name(r.experiment) == NHOT_SECTION]
    lines = [line for rows in summarize(nhot, experiment=NHOT_SECTION).values()
             for row in rows if (line := row_line(row)) is not None]
    if not lines:
        return []
    claim_low, claim_high = STUDY_CLAIM_POINTS
    return [f"## {TITLE}", "",
            f"The study claims N-hot training gains +{claim_low:g} to +{claim_high:g} points of "
            "accuracy over 1-hot, mostly from N = 1 to 3 (report 4.4). Measured here, honest "
            "test accuracy, each gain the mean of the differences paired by seed:", "",
            *lines, ""]

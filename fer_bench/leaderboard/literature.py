"""The literature protocol in the leaderboard: our cells beside Barsoum et al. 2016.

Cells of split ``official-majority`` in Microsoft's label modes (``ms-*``,
``fer_bench.data.labels.ferplus_ms``) are grouped by identity minus seed, mode and loss (the loss
follows the mode), one group per model and recipe. ``literature_frame`` is the comparison
table (one line per group and mode: Barsoum et al.'s published figure, clearly theirs,
then our honest top-1 accuracy against the majority label, the tie-aware accuracy of the
same predictions (equal by construction on these images, shown as a check), the
optimistic figure and the seeds). ``literature_accuracy_text`` is the
N-hot section's column: a model's literature-protocol accuracy, per mode, where it has run
with the same recipe (but loss) on the same data source and profile.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fer_bench.data.labels.ferplus_ms import BARSOUM_2016, PAPER_NAME, SPLIT_NAME
from fer_bench.identity.config import DEFAULT_LOSS
from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.rows import MISSING, RowSummary, label_rows, row_identity
from fer_bench.leaderboard.stats import mean_ci, succeeded

#: Barsoum et al.'s table order (majority, multi-label, probability, cross-entropy).
MODE_ORDER = ("ms-majority", "ms-multitarget", "ms-probability", "ms-crossentropy")
SHORT_NAME = {"ms-majority": "maj", "ms-multitarget": "multi", "ms-probability": "prob",
              "ms-crossentropy": "ce"}
THEIRS_COLUMN = "Barsoum et al. 2016 (theirs)"
COLUMNS = ("mode", THEIRS_COLUMN, "top-1 vs majority (honest)", "tie-aware (same predictions)",
           "optimistic", "seeds")
TITLE = ("Literature protocol beside Barsoum et al. 2016: official PrivateTest, majority-voted, "
         "top-1 accuracy, %")
CAVEAT = (
    "Barsoum et al.'s figures are theirs, as published (their VGG13-like network of "
    "microsoft/FERPlus src/models.py at 64x64, their augmentation and schedule; 5 runs), not "
    "measured here. Ours: the same four label modes (microsoft/FERPlus src/ferplus.py), the "
    "same majority-voted PublicTest (model selection) and PrivateTest (test), the same metric "
    "(top-1 against the majority label), with fer_bench's models (timm VGG13 at 48x48; "
    "vgg13_64 upsampled to 64x64) and recipe, from scratch. Honest = test accuracy at the "
    "epoch with the best PublicTest accuracy; tie-aware = the same predictions scored "
    "against the full vote shares (a prediction of any top-voted emotion counts). On the "
    "majority-voted images the two agree by construction: an emotion with more than half of "
    "the votes left after outlier removal is the one top vote share of the raw votes, so the "
    "column checks the scoring rather than adding information."
)


def _ok_literature(records: Sequence[CellRecord]) -> list[CellRecord]:
    """One ok record per cell identity of split official-majority in an ms-* mode."""
    seen: dict[str, CellRecord] = {}
    for record in records:
        if (succeeded(record) and record.split == SPLIT_NAME and record.variant in PAPER_NAME
                and record.acc_honest is not None):
            seen.setdefault(record.cell.digest(), record)
    return list(seen.values())


def _group_key(record: CellRecord) -> tuple:
    return tuple(item for item in row_identity(record.cell) if item[0] != "loss")


def _percent(values: Sequence[float]) -> str:
    if not values:
        return MISSING
    mean, half = mean_ci(values)
    return f"{100 * mean:.2f}" if half is None else f"{100 * mean:.2f} ± {100 * half:.2f}"


def literature_groups(records: Sequence[CellRecord]) -> list[tuple[str, dict[str, list[CellRecord]]]]:
    """(row label, mode -> ok records over seeds) per group, sorted by label. Labels name the
    model and every axis (but loss) that varies among the groups, as the tables do."""
    groups: dict[tuple, list[CellRecord]] = {}
    for record in _ok_literature(records):
        groups.setdefault(_group_key(record), []).append(record)
    rows = []
    for key, members in groups.items():
        identity = {**dict(key), "loss": DEFAULT_LOSS}   # the loss follows the mode
        rows.append(RowSummary(
            label="", model=str(identity["model"]), split=SPLIT_NAME, identity=identity, cells={},
            dataset_label=members[0].dataset_label,
            n_images=max(r.n_train + r.n_val + r.n_test for r in members), records=members))
    label_rows(rows)
    result = []
    for row in sorted(rows, key=lambda r: r.label):
        by_mode: dict[str, list[CellRecord]] = {}
        for record in sorted(row.records, key=lambda r: r.seed):
            by_mode.setdefault(record.variant, []).append(record)
        result.append((row.label, by_mode))
    return result


def literature_frame(records: Sequence[CellRecord]) -> pd.DataFrame | None:
    """The comparison table (columns ``COLUMNS``, index = our row label), or None when no
    literature cell succeeded. Every mode of Barsoum et al.'s table gets a line per group
    ("not run" where the group lacks it)."""
    groups = literature_groups(records)
    if not groups:
        return None
    index, values = [], []
    for label, by_mode in groups:
        for variant in MODE_ORDER:
            runs = by_mode.get(variant, [])
            index.append(label)
            values.append({
                "mode": f"{PAPER_NAME[variant]} ({variant})",
                THEIRS_COLUMN: BARSOUM_2016[variant],
                COLUMNS[2]: _percent([r.acc_honest for r in runs]) if runs else "not run",
                COLUMNS[3]: _percent([r.acc_tie_aware for r in runs if r.acc_tie_aware is not None]),
                COLUMNS[4]: _percent([r.acc_optimistic for r in runs if r.acc_optimistic is not None]),
                COLUMNS[5]: str(len(runs)),
            })
    frame = pd.DataFrame(values, columns=list(COLUMNS),
                         index=pd.Index(index, name="fer_bench row"))
    frame.attrs.update(text_columns=["mode"], best={}, notes=[CAVEAT])
    return frame


# ----------------------------------------------------------------------------- columns
#: Identity axes that may differ between a row of another section and its literature cells.
_FREE = {"loss", "dataset"}


def _comparable(row: RowSummary, record: CellRecord) -> bool:
    mine = dict(row_identity(record.cell))
    same_axes = all(mine.get(axis) == value for axis, value in row.identity.items()
                    if axis not in _FREE)
    profiles = {r.profile for r in row.records}
    return (same_axes and record.dataset_label == row.dataset_label
            and (not profiles or record.profile in profiles))


def literature_accuracy_text(row: RowSummary) -> str:
    """A row's literature-protocol accuracy per mode, e.g. "maj 83.10 · prob 84.20" (mean
    honest top-1 over seeds, %), from the leaderboard's literature cells of the same model
    and recipe (but loss) on the same data source and profile; "—" where none ran."""
    matches = [r for r in _ok_literature(row.context) if _comparable(row, r)]
    parts = []
    for variant in MODE_ORDER:
        values = [r.acc_honest for r in matches if r.variant == variant]
        if values:
            parts.append(f"{SHORT_NAME[variant]} {100 * sum(values) / len(values):.2f}")
    return " · ".join(parts) or MISSING


def has_literature(rows: Sequence[RowSummary]) -> bool:
    """The N-hot column shows when some row's leaderboard holds literature cells."""
    return any(_ok_literature(row.context) for row in rows[:1])

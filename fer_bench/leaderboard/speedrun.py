"""Time to accuracy (the speedrun track, ``benchmarks/test_speedrun.py``).

For one cell and a ladder of validation accuracies (``LADDER``: 60/70/75/80/85%),
``time_to_accuracy`` gives, per rung, the first epoch whose validation accuracy reaches it,
the wall seconds of training up to the end of that epoch (the cumulative sum of the
record's ``epoch_times_s``: training passes only, evaluation excluded), the training FLOPs
spent by then (``train_flops_per_image`` x images trained per epoch x epochs) and the
test accuracy at that epoch. The rung, i.e. the validation set, picks the epoch, never the
test set. Resolution is one epoch: a rung reached early in an epoch is charged the whole
epoch.

Images trained per epoch are the record's own figure: the runner defines
``train_images_per_s`` as (full batches x batch size) / median epoch time, so their
product is that integer (no augmentation registry, hence no torch, is needed here).

``speedrun_frame`` is the leaderboard's table of the "speedrun" section (one line per
cell); ``seeds_frame`` sums it up per recipe over its seeds (honest accuracy per seed, and
per rung the mean and range of the seconds and PFLOPs to reach it); ``speedrun_tables``
gives both, titled, to the markdown page and the terminal. FLOPs are in PFLOP (1e15), the
device of the wall time is named.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import pandas as pd

from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.rows import (
    MISSING,
    RowSummary,
    label_rows,
    row_identity,
    variant_column,
)
from fer_bench.leaderboard.stats import succeeded

#: Validation accuracies (fractions) of the ladder.
LADDER = (0.60, 0.70, 0.75, 0.80, 0.85)
#: The leaderboard section (``fer_experiment`` name) that gets the table.
SECTION = "speedrun"
NOT_REACHED = "not reached"
#: Accuracies are ratios of counts; a rung "reached" allows for their float rounding.
_TOLERANCE = 1e-9
TITLE = ("time to validation accuracy: training seconds (evaluation excluded) and training "
         "PFLOPs (forward + backward) at the first epoch whose validation accuracy reaches "
         "each rung; test accuracy (%) at that epoch")
SEEDS_TITLE = ("over seeds, per recipe: honest test accuracy (%) per seed and its mean; per "
               "rung, the mean [min, max] over seeds of the training seconds and PFLOPs to reach "
               "it (seeds that reached it of all)")
SEEDS_NOTES = (
    "A recipe's seeds are its cells that differ only in seed (same identity otherwise, same "
    "device). The whole run is every epoch's training pass: its seconds are the recipe's "
    "budget, its PFLOPs the work done. Honest: the test accuracy at the best validation "
    "epoch (tie-aware); top-1 beside it.",
)
NOTES = (
    "Seconds: cumulative wall time of the training passes up to the end of the epoch, on "
    "the device named (other processes on a shared machine slow it down: compare rows of one "
    "run). PFLOPs: matrix-multiply and convolution FLOPs of forward + backward counted with "
    "torch.utils.flop_counter on one batch, x images trained per epoch x epochs; they do not "
    "depend on the machine. Resolution is one epoch. The rung (validation accuracy) picks "
    "the epoch; the test accuracy is read there, so it is honest.",
)


@dataclass(frozen=True)
class Rung:
    """One rung of one cell. ``epoch`` is 1-based; None fields: not reached (or, for
    ``flops``, not counted in this record)."""

    target: float
    epoch: int | None = None
    seconds: float | None = None
    flops: float | None = None
    val_acc: float | None = None
    test_acc: float | None = None

    @property
    def reached(self) -> bool:
        return self.epoch is not None


def images_per_epoch(record: CellRecord) -> int | None:
    """Images trained per epoch (full batches x batch size), from the record's throughput."""
    if not record.epoch_times_s or not record.train_images_per_s:
        return None
    return round(record.train_images_per_s * statistics.median(record.epoch_times_s))


def time_to_accuracy(record: CellRecord, ladder: Sequence[float] = LADDER) -> list[Rung]:
    """One ``Rung`` per ladder value (see the module docstring), in ladder order."""
    epochs = min(len(record.val_acc), len(record.epoch_times_s))
    elapsed = list(accumulate(record.epoch_times_s[:epochs]))
    per_image, per_epoch = record.train_flops_per_image, images_per_epoch(record)
    rungs = []
    for target in ladder:
        first = next((i for i in range(epochs) if record.val_acc[i] >= target - _TOLERANCE), None)
        if first is None:
            rungs.append(Rung(target))
            continue
        flops = (None if per_image is None or per_epoch is None
                 else float(per_image) * per_epoch * (first + 1))
        test = record.test_acc[first] if first < len(record.test_acc) else None
        rungs.append(Rung(target, first + 1, elapsed[first], flops, record.val_acc[first], test))
    return rungs


# ----------------------------------------------------------------------------- texts
def rung_column(target: float) -> str:
    return f"val ≥ {100 * target:g}%"


def format_seconds(seconds: float | None, *, minutes: bool | None = None) -> str:
    """"41.2 s", or "11.4 min" from 10 minutes on (``minutes`` forces the unit)."""
    if seconds is None:
        return MISSING
    if minutes is None:
        minutes = seconds >= 600
    return f"{seconds / 60:.1f} min" if minutes else f"{seconds:.1f} s"


def format_pflops(flops: float | None) -> str:
    return MISSING if flops is None else f"{flops / 1e15:.3g} PF"


def rung_text(rung: Rung) -> str:
    """"41.2 s · 0.125 PF · test 71.30 (e2)"; "not reached"."""
    if not rung.reached:
        return NOT_REACHED
    test = MISSING if rung.test_acc is None else f"{100 * rung.test_acc:.2f}"
    return f"{format_seconds(rung.seconds)} · {format_pflops(rung.flops)} · test {test} (e{rung.epoch})"


def device_text(record: CellRecord) -> str:
    """"cpu x86_64 fp32", "cuda NVIDIA H200 bf16": the device the seconds were measured on."""
    parts = [record.cell.device_type, record.device_name, record.cell.precision]
    return " ".join(p for p in parts if p)


def _labels(records: Sequence[CellRecord],
            extra_axes: Sequence[str] = ("variant", "split", "seed")) -> list[str]:
    """Row labels as the tables make them (model + the identity axes that vary), plus each
    of ``extra_axes`` (variant / split / seed) where the records differ in it."""
    rows: dict[tuple, RowSummary] = {}
    for record in records:
        key = row_identity(record.cell)
        if key not in rows:
            rows[key] = RowSummary(label="", model=record.model, split=record.split,
                                   identity=dict(key), cells={},
                                   dataset_label=record.dataset_label,
                                   n_images=record.n_train + record.n_val + record.n_test,
                                   records=[record])
    label_rows(list(rows.values()))
    extra = [axis for axis in extra_axes
             if len({getattr(r, axis) for r in records}) > 1]
    labels = []
    for record in records:
        label = rows[row_identity(record.cell)].label
        for axis in extra:
            value = getattr(record, axis)
            label += {"variant": f" {variant_column(str(value))}", "split": f" {value}",
                      "seed": f" s{value}"}[axis]
        labels.append(label)
    return labels


def speedrun_frame(records: Sequence[CellRecord], ladder: Sequence[float] = LADDER) -> pd.DataFrame | None:
    """The speedrun table of ``records`` (their ok cells, one line each), or None when none.

    Columns: device, epochs, GFLOP per training image, the whole run (seconds, PFLOPs,
    best validation accuracy), then one column per rung (``rung_text``)."""
    ok = sorted({r.cell.digest(): r for r in records if succeeded(r) and r.val_acc}.values(),
                key=lambda r: (r.model, r.cell.id))
    if not ok:
        return None
    columns = ["device", "epochs", "GFLOP/img (train)", "whole run", *map(rung_column, ladder)]
    values = []
    for record in ok:
        total_flops = whole_run_flops(record)
        entry = {
            "device": device_text(record),
            "epochs": str(len(record.epoch_times_s)),
            "GFLOP/img (train)": (MISSING if record.train_flops_per_image is None
                                  else f"{record.train_flops_per_image / 1e9:.4g}"),
            "whole run": (f"{format_seconds(sum(record.epoch_times_s))} · {format_pflops(total_flops)}"
                          f" · best val {100 * max(record.val_acc):.2f}"),
        }
        entry.update({rung_column(r.target): rung_text(r) for r in time_to_accuracy(record, ladder)})
        values.append(entry)
    frame = pd.DataFrame(values, columns=columns, index=pd.Index(_labels(ok), name="model"))
    frame.attrs.update(parts={"accuracy": columns}, text_columns=["device"], best={},
                       notes=list(NOTES))
    return frame


def _spread(values: Sequence[float], text) -> str:
    """"mean [min, max]" of ``values`` (each formatted by ``text``); one value alone."""
    if len(values) == 1:
        return text(values[0])
    return f"{text(statistics.fmean(values))} [{text(min(values))}, {text(max(values))}]"


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def seeds_frame(records: Sequence[CellRecord], ladder: Sequence[float] = LADDER) -> pd.DataFrame | None:
    """Per recipe (a row of the accuracy tables: model + identity axes but the seed), over
    its ok cells' seeds: honest accuracy per seed and mean, the whole run and each rung as
    mean [min, max]. None when no cell succeeded."""
    ok = sorted({r.cell.digest(): r for r in records if succeeded(r) and r.val_acc}.values(),
                key=lambda r: (r.model, r.cell.id, r.seed))
    if not ok:
        return None
    recipes: dict[tuple, list[CellRecord]] = {}
    for record in ok:
        recipes.setdefault(row_identity(record.cell), []).append(record)
    firsts = [cells[0] for cells in recipes.values()]
    labels = dict(zip(recipes, _labels(firsts, extra_axes=("variant", "split")), strict=True))
    columns = ["device", "seeds", "honest per seed", "honest (mean [min, max])",
               "top-1 honest (mean)", "whole run", *map(rung_column, ladder)]
    values, index = [], []
    for key, cells in recipes.items():
        honest = [r.acc_honest for r in cells if r.acc_honest is not None]
        top1 = [r.acc_top1_honest for r in cells if r.acc_top1_honest is not None]
        runs = [(sum(r.epoch_times_s), whole_run_flops(r)) for r in cells]
        entry = {
            "device": "; ".join(sorted({device_text(r) for r in cells})),
            "seeds": ", ".join(str(r.seed) for r in cells),
            "honest per seed": " / ".join(_percent(v) for v in honest) or MISSING,
            "honest (mean [min, max])": _spread(honest, _percent) if honest else MISSING,
            "top-1 honest (mean)": _percent(statistics.fmean(top1)) if top1 else MISSING,
            "whole run": _time_and_flops([s for s, _ in runs], [f for _, f in runs]),
        }
        per_cell = [time_to_accuracy(r, ladder) for r in cells]
        for position, target in enumerate(ladder):
            reached = [rungs[position] for rungs in per_cell if rungs[position].reached]
            if not reached:
                entry[rung_column(target)] = NOT_REACHED
                continue
            entry[rung_column(target)] = (
                _time_and_flops([r.seconds for r in reached], [r.flops for r in reached])
                + f" ({len(reached)} of {len(cells)})")
        values.append(entry)
        index.append(labels[key])
    frame = pd.DataFrame(values, columns=columns, index=pd.Index(index, name="recipe"))
    frame.attrs.update(parts={"accuracy": columns}, text_columns=["device"], best={},
                       notes=list(SEEDS_NOTES))
    return frame


def _time_and_flops(seconds: Sequence[float], flops: Sequence[float | None]) -> str:
    """"12.1 min [11.9 min, 12.4 min] · 0.21 PF [...]"; PFLOPs left out when not counted."""
    in_minutes = max(seconds) >= 600       # one unit across mean, min and max
    text = _spread(list(seconds), lambda value: format_seconds(value, minutes=in_minutes))
    counted = [f for f in flops if f is not None]
    if len(counted) == len(flops) and counted:
        text += f" · {_spread(counted, format_pflops)}"
    return text


def whole_run_flops(record: CellRecord) -> float | None:
    """Training FLOPs of every epoch of ``record``; None when not counted."""
    per_epoch = images_per_epoch(record)
    if record.train_flops_per_image is None or per_epoch is None:
        return None
    return float(record.train_flops_per_image) * per_epoch * len(record.epoch_times_s)


def speedrun_tables(records: Sequence[CellRecord]) -> list[tuple[str, pd.DataFrame]]:
    """The section's tables with their titles: per cell, then over seeds per recipe."""
    tables = [(TITLE, speedrun_frame(records)), (SEEDS_TITLE, seeds_frame(records))]
    return [(title, frame) for title, frame in tables if frame is not None]

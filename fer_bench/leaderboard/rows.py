"""Leaderboard structure: records -> sections (one per experiment) -> tables (one per split)
-> rows -> cells (one per variant) -> seeds.

A **row** holds every record that shares one identity but (seed, variant, split): every
field of ``fer_bench.identity.cell.Cell`` and of its recipe (``TrainConfig``) except those three.
Records that differ in anything else (dataset fingerprint, device type, precision,
protocol, model release, loss, augmentation, epochs, lr, ...) are never pooled: they are
separate rows. Seeds are the only thing a row averages over (SPEC "Cell identity").

A row's **label** is the model name plus ``axis=value`` for every identity axis whose value
varies among the rows of its table (``small_cnn loss=pld``, ``vgg16 aug=flip_rot20``,
``small_cnn device=cuda/bf16``, ``vgg16 data=ferplus 4000 images``), plus the optional axes
of the readable cell id (loss, augmentation, init, alignment) where they are not at their
default; never a hash. A plug-in's release (``plugin_releases``) mostly follows from the
loss or augmentation already named, so it is added (``plugins=loss:pkg==0.2``) only to rows
whose labels would otherwise be equal (``TIEBREAK_AXES``). A row trained for fewer epochs
than another row of the same model in its table is labelled ``SHORT_BUDGET`` (the 3-epoch
``cpu``-profile grid beside the converged 9-epoch one): both stay, side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from fer_bench.errors import DataError, FerBenchError
from fer_bench.identity.cell import OPTIONAL_AXES, Cell, axis_token
from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.stats import (
    TIE_AWARE,
    TOP1,
    CellSummary,
    GainSummary,
    compare_cells,
    summarise_cell,
)

#: The text of an empty table cell (no value, no record), in every leaderboard table.
MISSING = "—"
#: The axes a row does not hold fixed: it averages over seeds, and shows variants as
#: columns and splits as separate tables.
ROW_FREE_AXES = ("seed", "variant", "split")
#: The N-hot experiment's section (report 4.4/4.5; ``benchmarks/test_nhot.py``).
NHOT_SECTION = "nhot"
#: Section order: the study's experiments first (report 4.2 to 4.5); others alphabetically.
EXPERIMENT_ORDER = ("models", "augmentation", "losses", "pretraining", NHOT_SECTION)
#: Section name of records without an experiment.
DEFAULT_SECTION = "results"
#: Display order of splits; others follow alphabetically.
SPLIT_ORDER = ("ordinary", "complex", "official")
#: Order of the ``axis=value`` parts of a row label (axes not named here follow, in
#: identity order). "device" stands for device_type and precision together.
LABEL_ORDER = ("loss", "augmentation", "init", "alignment", "epochs", "lr", "batch_size",
               "weight_decay", "input_size", "val_fraction", "model_release", "dataset",
               "device", "protocol")
#: Appended to the label of a row with fewer epochs than another row of its model and table.
SHORT_BUDGET = "short-budget result"
_PREFIX = {"model_release": "release", "batch_size": "batch", "weight_decay": "wd",
           "input_size": "input", "val_fraction": "val"}
#: Axes that mostly follow from others (a plug-in's release from the loss or augmentation
#: already named): in a label only to tell apart rows whose labels would otherwise be equal.
TIEBREAK_AXES = {"plugin_releases": "plugins"}


def identity_axes() -> tuple[str, ...]:
    """Every axis of a row's identity: the Cell fields (recipe expanded into its fields)
    except ``ROW_FREE_AXES``; ``model`` first."""
    own = [f.name for f in fields(Cell) if f.name not in (*ROW_FREE_AXES, "recipe")]
    return (*own, *(f.name for f in fields(TrainConfig)))


def row_identity(cell: Cell) -> tuple[tuple[str, Any], ...]:
    """The grouping key of a row: (axis, value) for every ``identity_axes`` axis."""
    return tuple((axis, cell.axis(axis)) for axis in identity_axes())


def variant_column(variant: str) -> str:
    """Column name of a variant: ``nhot-3`` -> "3-hot"; other variants as they are."""
    n = CellSummary(variant).nhot
    return f"{n}-hot" if n is not None else variant


def variant_sort_key(variant: str) -> tuple[int, int, str]:
    """N-hot variants by N, then every other variant alphabetically."""
    n = CellSummary(variant).nhot
    return (0, n, "") if n is not None else (1, 0, variant)


def split_sort_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def section_name(experiment: str) -> str:
    """The section of a record's experiment ("" -> ``DEFAULT_SECTION``)."""
    return experiment or DEFAULT_SECTION


def section_sort_key(name: str) -> tuple[int, str]:
    order = EXPERIMENT_ORDER
    return (order.index(name) if name in order else len(order), name)


def split_note(split: str) -> str:
    """The registered split kind's note (``SPLITS.get(split).note``), "" when it has none or
    the split is not registered here (e.g. a third-party split kind not installed)."""
    from fer_bench.data.splits import SPLITS

    try:
        return str(SPLITS.get(split).note or "")
    except FerBenchError:
        return ""


def experiment_titles(provenance: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """experiment name -> title from each file's ``fer_bench.experiments`` (first wins)."""
    titles: dict[str, str] = {}
    for source in provenance:
        block = source.get("fer_bench") if isinstance(source, Mapping) else None
        experiments = block.get("experiments") if isinstance(block, Mapping) else None
        if isinstance(experiments, Mapping):
            for name, title in experiments.items():
                if title not in (None, ""):
                    titles.setdefault(section_name(str(name)), str(title))
    return titles


@dataclass
class RowSummary:
    """One leaderboard row: one identity (all but seed, variant, split) on one split.

    ``cells``: variant -> CellSummary, in display order. ``best_n``: the N-hot variant with
    the highest mean honest accuracy (ties: the smaller N). ``gain``: best N against 1-hot,
    Bonferroni-adjusted for the post-hoc choice. ``eight_vs_one``: the pre-specified 8-hot
    against 1-hot (the study's question; not adjusted); ``eight_vs_one_top1`` the same in
    honest top-1 accuracy (None when the cells did not record top-1). All paired over
    shared seeds. ``short_budget``: the row has fewer epochs than another row of its model
    in its table (then its label says ``SHORT_BUDGET``).
    """

    label: str
    model: str
    split: str
    identity: dict[str, Any]
    cells: dict[str, CellSummary]
    experiment: str = ""
    dataset_label: str = ""
    n_images: int = 0
    best_n: int | None = None
    gain: GainSummary | None = None
    eight_vs_one: GainSummary | None = None
    eight_vs_one_top1: GainSummary | None = None
    short_budget: bool = False
    median_epoch_s: float | None = None
    train_images_per_s: float | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    params: int | None = None
    records: list[CellRecord] = field(default_factory=list, repr=False)
    #: Every record of the leaderboard (all sections), for columns that set a row beside
    #: another experiment (e.g. the literature protocol); empty outside ``summarize_sections``.
    context: list[CellRecord] = field(default_factory=list, repr=False)
    #: Values several columns derive from the finished row, computed once on first use
    #: (e.g. ``leaderboard.alignment.split_accuracy``).
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def nhot_cells(self) -> dict[int, CellSummary]:
        """N -> cell for the row's ``nhot-N`` variants."""
        return {c.nhot: c for c in self.cells.values() if c.nhot is not None}

    def at(self, n: int) -> CellSummary | None:
        """The ``nhot-n`` cell, if the row has one."""
        return self.cells.get(f"nhot-{n}")

    @property
    def best_cell(self) -> CellSummary | None:
        return None if self.best_n is None else self.at(self.best_n)

    def versus_one(self, n: int, metric: str = TIE_AWARE) -> GainSummary | None:
        """``nhot-n`` minus 1-hot in honest ``metric`` accuracy, paired by seed, 95% interval
        (not adjusted); None when either cell is missing or failed, or for top-1 when
        neither cell recorded it."""
        cell, base = self.at(n), self.at(1)
        if cell is None or base is None or cell.failed or base.failed:
            return None
        if metric == TOP1 and not (cell.n_top1 and base.n_top1):
            return None
        return compare_cells(cell, base, metric=metric)


@dataclass
class Section:
    """One experiment: ``name`` (record.experiment, "" -> "results"), ``title`` (from the
    provenance, else the name), ``tables``: split -> rows in display order; ``records``:
    the section's records."""

    name: str
    title: str
    tables: dict[str, list[RowSummary]]
    records: list[CellRecord] = field(default_factory=list, repr=False)


def _unique(records: Iterable[CellRecord]) -> list[CellRecord]:
    """One record per cell identity (first seen). The same cell in one experiment twice
    with different results is a conflict; across experiments it is the same result."""
    seen: dict[str, CellRecord] = {}
    for record in records:
        digest = record.cell.digest()
        first = seen.get(digest)
        if first is None:
            seen[digest] = record
        elif first.experiment == record.experiment and first.to_dict() != record.to_dict():
            raise DataError(f"cell {record.cell_id} (experiment {record.experiment!r}) "
                            "appears twice with different results")
    return list(seen.values())


def _costs(row: RowSummary) -> None:
    ok_records = [r for cell in row.cells.values() for r in cell.ok.values()]
    epoch_times = [t for r in ok_records for t in r.epoch_times_s]
    row.median_epoch_s = float(np.median(epoch_times)) if epoch_times else None
    rates = [r.train_images_per_s for r in ok_records if r.train_images_per_s is not None]
    row.train_images_per_s = float(np.median(rates)) if rates else None
    with_memory = [r for r in ok_records if r.peak_memory_bytes is not None]
    if with_memory:
        peak = max(with_memory, key=lambda r: r.peak_memory_bytes)
        kinds = {r.memory_kind for r in with_memory}
        row.peak_memory_bytes = int(peak.peak_memory_bytes)
        row.memory_kind = peak.memory_kind if len(kinds) == 1 else "mixed"
    params = [r.params for r in ok_records if r.params is not None]
    row.params = max(params) if params else None


def _compare(row: RowSummary) -> None:
    candidates = [c for c in row.nhot_cells().values() if not c.failed]
    base = row.at(1)
    if candidates:
        # rounded so that float noise cannot split a tie; ties go to the smaller N
        best = max(candidates, key=lambda c: (round(c.mean, 9), -c.nhot))
        row.best_n = best.nhot
        if base is not None and not base.failed:
            row.gain = compare_cells(best, base, comparisons=max(1, len(candidates) - 1))
    row.eight_vs_one = row.versus_one(8)
    row.eight_vs_one_top1 = row.versus_one(8, TOP1)


def _axis_text(axis: str, value: Any) -> str:
    if axis in TIEBREAK_AXES:   # (axis, release) pairs
        pairs = ",".join(f"{a}:{release}" for a, release in value) or "none"
        return f"{TIEBREAK_AXES[axis]}={pairs}"
    if axis in OPTIONAL_AXES:
        return axis_token(axis, value)
    if axis == "model_release" and not value:
        value = "unknown"
    return f"{_PREFIX.get(axis, axis)}={value}"


def _data_texts(rows: Sequence[RowSummary]) -> dict[str, str]:
    """dataset fingerprint -> "data=<label> <N> images"; "#1", "#2" when texts collide."""
    texts: dict[str, str] = {}
    taggers = {r.synthetic_taggers for row in rows for r in row.records}
    for fingerprint in sorted({row.identity["dataset"] for row in rows}):
        mine = [row for row in rows if row.identity["dataset"] == fingerprint]
        label = next((r.dataset_label for r in mine if r.dataset_label), "") or "unlabelled"
        texts[fingerprint] = f"data={label} {max(r.n_images for r in mine)} images"
        if len(taggers) > 1:   # synthetic sets that differ in their simulated taggers
            texts[fingerprint] += ", " + "/".join(
                f"{t} taggers" for t in sorted({r.synthetic_taggers for row in mine
                                               for r in row.records} - {None}))
    for text in set(texts.values()):
        clashing = [fp for fp in sorted(texts) if texts[fp] == text]
        if len(clashing) > 1:
            for i, fingerprint in enumerate(clashing, start=1):
                texts[fingerprint] = f"{text} #{i}"
    return texts


def label_rows(rows: Sequence[RowSummary]) -> None:
    """Set each row's label: model + ``axis=value`` for every axis that varies among ``rows``,
    and, as in the readable cell id, every optional axis (loss, augmentation, init,
    alignment) that is not at its default in some row (a one-row table of a custom loss
    still says which loss)."""
    varying = {a for a in identity_axes() if len({row.identity[a] for row in rows}) > 1
               and a not in TIEBREAK_AXES}
    varying |= {a for a, (_, default) in OPTIONAL_AXES.items()
                if any(row.identity.get(a, default) != default for row in rows)}
    if varying & {"device_type", "precision"}:
        varying = (varying - {"device_type", "precision"}) | {"device"}
    order = [*LABEL_ORDER, *(a for a in identity_axes() if a not in LABEL_ORDER)]
    data = _data_texts(rows) if "dataset" in varying else {}
    for row in rows:
        parts = [row.model]
        for axis in order:
            if axis not in varying or axis == "model":
                continue
            if axis == "device":
                parts.append(f"device={row.identity['device_type']}/{row.identity['precision']}")
            elif axis == "dataset":
                parts.append(data[row.identity["dataset"]])
            elif axis in row.identity:
                parts.append(_axis_text(axis, row.identity[axis]))
        row.label = " ".join(parts)
    for row in rows:
        longest = max(int(other.identity.get("epochs") or 0) for other in rows
                      if other.model == row.model)
        epochs = int(row.identity.get("epochs") or 0)
        row.short_budget = epochs < longest
        if row.short_budget:
            row.label += f" ({SHORT_BUDGET}: {epochs} of {longest} epochs)"
    for axis in TIEBREAK_AXES:
        _tell_apart(rows, axis)
    counts: dict[str, int] = {}
    for row in rows:   # cannot happen with distinct identities; never two rows with one label
        counts[row.label] = counts.get(row.label, 0) + 1
    for label in [lab for lab, n in counts.items() if n > 1]:
        for i, row in enumerate(r for r in rows if r.label == label):
            row.label = f"{label} #{i + 1}"


def _tell_apart(rows: Sequence[RowSummary], axis: str) -> None:
    """Append ``axis``'s text to the labels of rows that share a label but not ``axis``."""
    by_label: dict[str, list[RowSummary]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    for same in by_label.values():
        if len({row.identity.get(axis) for row in same}) > 1:
            for row in same:
                row.label += " " + _axis_text(axis, row.identity.get(axis))


def summarize(records: Sequence[CellRecord], confidence: float = 0.95,
              experiment: str = "") -> dict[str, list[RowSummary]]:
    """Group records into one table per split: split -> rows sorted by label.

    ``experiment`` is recorded on the rows (it selects experiment-specific columns). A cell
    given twice (same ``Cell.digest``) counts once; see ``_unique``.
    """
    groups: dict[tuple[str, tuple], list[CellRecord]] = {}
    for record in _unique(records):
        groups.setdefault((record.split, row_identity(record.cell)), []).append(record)
    tables: dict[str, list[RowSummary]] = {}
    for (split, key), group in groups.items():
        by_variant: dict[str, list[CellRecord]] = {}
        for record in group:
            by_variant.setdefault(record.variant, []).append(record)
        cells = {v: summarise_cell(v, by_variant[v], confidence)
                 for v in sorted(by_variant, key=variant_sort_key)}
        identity = dict(key)
        row = RowSummary(
            label="", model=str(identity["model"]), split=split, identity=identity, cells=cells,
            experiment=experiment, records=group,
            dataset_label=next((r.dataset_label for r in group if r.dataset_label), ""),
            n_images=max(r.n_train + r.n_val + r.n_test for r in group))
        _compare(row)
        _costs(row)
        tables.setdefault(split, []).append(row)
    for rows in tables.values():
        label_rows(rows)
        rows.sort(key=lambda row: row.label)
    return {split: tables[split] for split in sorted(tables, key=split_sort_key)}


def summarize_sections(records: Sequence[CellRecord],
                       provenance: Sequence[Mapping[str, Any]] = (),
                       confidence: float = 0.95) -> list[Section]:
    """One ``Section`` per experiment (``record.experiment``; "" -> "results"), in
    ``EXPERIMENT_ORDER`` then alphabetically, titled by the provenance's
    ``fer_bench.experiments[name]``. A cell run for two experiments shows in both."""
    by_section: dict[str, list[CellRecord]] = {}
    for record in records:
        by_section.setdefault(section_name(record.experiment), []).append(record)
    titles = experiment_titles(provenance)
    sections = [Section(name, titles.get(name, name),
                        summarize(by_section[name], confidence, experiment=name), by_section[name])
                for name in sorted(by_section, key=section_sort_key)]
    everything = list(records)
    for section in sections:
        for rows in section.tables.values():
            for row in rows:
                row.context = everything
    return sections

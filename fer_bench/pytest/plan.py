"""What a pytest run of fer_bench cells is about to do, printed before its first cell.

``resolve_test_cell`` turns one test's axis values into its cell's complete identity
through ``fer_bench.planning.cells`` (the ``fer_cell`` fixture and the plan share it, so the
plan names exactly the cells that will run). ``build_plan`` resolves every collected cell of this process, asks the result store
which it already holds, and (``--fer-plan cost``, the default) estimates the rest with
``fer_bench.training.estimate``: each model's counted FLOPs and a few training steps timed
on this device, once per model and precision. ``plan_lines`` is what the terminal shows::

    fer_bench plan: 68 cells on cpu, synthetic data (4,000 images), profile smoke: 67 to train, 0 from the store (results), 1 will not run
      model            precision cells train epochs  GFLOP/img train  GFLOP/s here  per cell     total
      small_cnn        fp32         66    66      2           0.0341          21.8      20 s    22 min
      fast_resnet      fp32          1     1      2            0.176          13.4      89 s      89 s
      will not run (1 cell): skipped: model 'small_cnn' has no ImageNet weights (init=imagenet); ...
      estimated time: about 24 min on this device (...)

On a CPU an estimate over an hour says so and names the profiles that fit; the run goes on.
Imported by the plugin only once a run has collected a fer_bench cell.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from fer_bench.pytest.settings import AXES, experiment_epochs

CELL_FIXTURE = "fer_cell"
#: Above this many estimated seconds on a CPU, the plan names the profiles that fit one.
LONG_FOR_A_CPU_S = 3600.0
PLAN_PREFIX = "fer_bench plan:"


# --------------------------------------------------------------------------- identities
@dataclass(frozen=True)
class TestCell:
    """One test's cell: its identity, model, weights file, the data it runs on, its device."""

    __test__ = False   # not a test class, whatever pytest's collection pattern says

    cell: Any          # identity.cell.Cell
    spec: Any          # models.ModelSpec
    init_path: Any     # Path of a local weights file, or None
    dataset: Any       # CleanDataset (with the aligner's output attached when ``align``)
    device: str = "cpu"


#: The plugin's run-wide options in a cell's error messages. The axis values (model,
#: variant, ...) may come from an option, a ``fer_axes`` marker or a test's own
#: parametrize, so their messages name the value and its kind only.
PLUGIN_OPTIONS = {"epochs": "--fer-epochs", "precision": "--fer-precision",
                  "device": "--fer-device"}


def cell_request(settings: Any, axes: dict[str, Any], marker_epochs: int | None = None) -> Any:
    """The ``planning.cells.CellRequest`` of a test whose axis fixtures hold ``axes`` (axis
    name -> value, ``AXES``) under the run's ``settings`` (``RunSettings``);
    ``marker_epochs`` (the test's ``fer_experiment(epochs=N)``, ``settings.experiment_epochs``)
    when neither ``--fer-epochs`` nor the profile sets the epochs."""
    from fer_bench.planning.cells import CellRequest

    epochs = settings.epochs if settings.epochs is not None else marker_epochs
    return CellRequest(model=axes["model"], variant=axes["variant"], split=axes["split"],
                       seed=axes["seed"], loss=axes["loss"], augmentation=axes["augmentation"],
                       init=axes["init"], alignment=str(axes["alignment"]),
                       epochs=epochs, compile=settings.compile,
                       precision=settings.precision, device=settings.device)


def resolve_test_cell(state: Any, axes: dict[str, Any], datasets: Any, *,
                      source: str | None = None, align: bool = True,
                      marker_epochs: int | None = None) -> TestCell:
    """The cell of a test whose axis fixtures hold ``axes`` (``fer_bench.planning.cells``:
    the one path from axis values to a cell).

    ``state``: the plugin's ``FerBenchSession``; ``datasets``: its ``SessionData``;
    ``source``: the test's data source (None: the session's). ``align=False`` leaves the
    aligner unrun (the identity does not need its images: aligned data keeps the cleaned
    fingerprint). ``marker_epochs``: the test's ``fer_experiment(epochs=N)`` (``cell_request``).
    Raises ``CellSkipped`` (a model without the asked ImageNet weights) and
    other ``FerBenchError``s: a label treatment and split that need different cleaning
    (``ConfigError``), dlib or a model file missing (``AlignError``), an unknown model."""
    from fer_bench.identity.cell import DEFAULT_ALIGNMENT
    from fer_bench.planning.cells import OptionNames, plan_cell

    plan = plan_cell(cell_request(state.settings, axes, marker_epochs),
                     OptionNames(PLUGIN_OPTIONS))
    dataset = datasets(plan.cleaning, plan.aligner if align else DEFAULT_ALIGNMENT,
                       source=source)
    return TestCell(plan.cell(dataset.fingerprint), plan.spec, plan.init_path, dataset,
                    plan.device)


def item_axes(state: Any, item: pytest.Item) -> tuple[dict[str, Any], str | None]:
    """(axis -> value, data source) of a collected test, as its fixtures will see them."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    axes = {axis: params[f"fer_{axis}"] if f"fer_{axis}" in params
            else state.axis_values(axis, item)[0] for axis in AXES}
    return axes, params.get("fer_data", state.settings.data)


# --------------------------------------------------------------------------- the plan
@dataclass
class PlannedCell:
    """One collected cell in the plan: ``state`` "train", "stored" or "blocked"."""

    nodeid: str
    state: str
    cell_id: str = ""
    model: str = ""
    precision: str = ""
    epochs: int = 0
    seconds: float | None = None    # estimated wall seconds (cells to train, when timed)
    reason: str = ""                # why a blocked cell will not run


@dataclass
class Plan:
    """What this process will run. ``rates``: ``estimate.Rate.to_dict()`` per model timed."""

    cells: list[PlannedCell]
    device: str
    profile: str
    data: str = ""                  # e.g. "synthetic data (4,000 images)"
    store: str = ""
    cost: bool = True               # --fer-plan cost: the estimate was asked for
    rates: list[dict[str, Any]] = field(default_factory=list)
    probe_s: float = 0.0            # seconds spent timing models
    errors: list[str] = field(default_factory=list)   # models that could not be timed
    load: float | None = None       # the 1-minute load average when the models were timed
    cores: int = 0                  # CPU cores of this machine

    def count(self, state: str) -> int:
        return sum(1 for c in self.cells if c.state == state)

    @property
    def seconds(self) -> float | None:
        """Estimated seconds of the cells to train (None when none was estimated)."""
        known = [c.seconds for c in self.cells if c.state == "train" and c.seconds is not None]
        return sum(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}


def build_plan(state: Any, items: list[pytest.Item], *, cost: bool = True) -> Plan:
    """The plan of the fer_bench cells among ``items`` (``state``: the ``FerBenchSession``).

    Every cell is resolved as its fixture will resolve it; a cell that cannot be (dlib
    missing, a split this data cannot build ...) is "blocked" with the reason its test will
    fail or skip with. With ``cost``, each cell to train gets estimated seconds."""
    from fer_bench.data.splits import make_split
    from fer_bench.errors import CellSkipped, FerBenchError
    from fer_bench.results.store import ResultStore
    from fer_bench.training.device import default_device
    from fer_bench.training.estimate import RateCache, cell_work, estimate_seconds

    settings = state.settings
    store = ResultStore(settings.results)
    rates = RateCache()
    sizes: dict[tuple, tuple[int, int, int]] = {}
    failed_models: dict[tuple[str, str], str] = {}
    plan = Plan(cells=[], device=settings.device or default_device(),
                profile=settings.profile.name, store=str(store.root), cost=cost)
    for item in items:
        if CELL_FIXTURE not in getattr(item, "fixturenames", ()):
            continue
        planned = PlannedCell(nodeid=item.nodeid, state="blocked")
        plan.cells.append(planned)
        try:
            axes, source = item_axes(state, item)
            test = resolve_test_cell(state, axes, state.datasets, source=source, align=False,
                                     marker_epochs=experiment_epochs(item))
        except CellSkipped as exc:
            planned.reason = f"skipped: {exc}"
            continue
        except FerBenchError as exc:
            planned.reason = str(exc)
            continue
        cell = test.cell
        planned.cell_id, planned.model, planned.precision = cell.id, cell.model, cell.precision
        planned.epochs = cell.recipe.epochs
        if not plan.data:
            plan.data = f"{test.dataset.label} data ({len(test.dataset):,} images)"
        stored = None if settings.rerun else store.get(cell)
        if stored is not None and stored.status == "ok":
            planned.state = "stored"
            continue
        key = (test.dataset.fingerprint, cell.split, cell.seed, cell.recipe.val_fraction)
        try:
            if key not in sizes:
                split = make_split(test.dataset, cell.split, cell.seed, cell.recipe.val_fraction)
                sizes[key] = (len(split.train), len(split.val), len(split.test))
        except FerBenchError as exc:     # e.g. SplitUnavailable: the cell fails the same way
            planned.reason = str(exc)
            continue
        planned.state = "train"
        if not cost or (cell.model, cell.precision) in failed_models:
            continue
        try:
            rate = rates.get(test.spec, cell.recipe, plan.device, cell.precision)
        except Exception as exc:   # model code: its cells will report it; the plan goes on
            failed_models[(cell.model, cell.precision)] = f"{type(exc).__name__}: {exc}"
            continue
        n_train, n_val, n_test = sizes[key]
        planned.seconds = estimate_seconds(
            cell_work(cell.recipe, n_train=n_train, n_val=n_val, n_test=n_test), rate)
    plan.rates = [rate.to_dict() for rate in rates.rates.values()]
    plan.probe_s = rates.seconds
    plan.cores = os.cpu_count() or 0
    if hasattr(os, "getloadavg"):
        plan.load = os.getloadavg()[0]
    plan.errors = [f"{model} ({precision}) not timed: {error}"
                   for (model, precision), error in failed_models.items()]
    return plan


# --------------------------------------------------------------------------- the text
def _gflop(flops: float | None) -> str:
    return "-" if flops is None else f"{flops / 1e9:.3g}"


def plan_lines(plan: Plan) -> list[str]:
    """The plan as terminal lines (module docstring): the headline, one row per model and
    precision, cells that will not run with their reasons, the estimate and, on a CPU when
    it exceeds ``LONG_FOR_A_CPU_S``, the profiles that fit."""
    from fer_bench.planning.profiles import PROFILES
    from fer_bench.training.estimate import format_long

    where = ", ".join(p for p in (plan.data, f"profile {plan.profile}"
                                  if plan.profile != "default" else "") if p)
    count = len(plan.cells)
    lines = [f"{PLAN_PREFIX} {count} cell{'' if count == 1 else 's'} on {plan.device}"
             + (f", {where}" if where else "")
             + f": {plan.count('train')} to train, {plan.count('stored')} from the store "
             f"({plan.store})" + (f", {plan.count('blocked')} will not run"
                                  if plan.count("blocked") else "")]
    rows: dict[tuple[str, str], list[PlannedCell]] = {}
    for cell in plan.cells:
        if cell.state != "blocked":
            rows.setdefault((cell.model, cell.precision), []).append(cell)
    rates = {(r["model"], r["precision"]): r for r in plan.rates}
    if rows:
        lines.append(f"  {'model':<16} {'precision':<9} {'cells':>5} {'train':>5} {'epochs':>6}"
                     + ("  GFLOP/img train  GFLOP/s here  per cell     total" if plan.cost else ""))
    for (model, precision), cells in rows.items():
        to_train = [c for c in cells if c.state == "train"]
        epochs = "/".join(str(e) for e in sorted({c.epochs for c in cells}))
        row = (f"  {model:<16} {precision:<9} {len(cells):>5} {len(to_train):>5} {epochs:>6}")
        rate = rates.get((model, precision))
        if plan.cost and rate is not None:
            timed = [c.seconds for c in to_train if c.seconds is not None]
            per_cell = format_long(sum(timed) / len(timed)) if timed else "-"
            row += (f"  {_gflop(rate['train_flops_per_image']):>15}  "
                    f"{_gflop(rate['train_flops_per_s']):>12}  {per_cell:>8}  "
                    f"{format_long(sum(timed)) if timed else '-':>8}")
        lines.append(row)
    reasons = Counter(c.reason for c in plan.cells if c.state == "blocked")
    lines += [f"  will not run ({count} cell{'s' if count > 1 else ''}): {reason}"
              for reason, count in reasons.items()]
    lines += [f"  {error}" for error in plan.errors]
    if not plan.count("train"):
        return lines
    if not plan.cost:
        lines.append("  time not estimated (--fer-plan cells)")
        return lines
    seconds = plan.seconds
    if seconds is None:
        return lines
    lines.append(f"  estimated time: about {format_long(seconds)} on this device (each model's "
                 f"counted FLOPs at the rate a few training steps reached here, "
                 f"{plan.probe_s:.1f} s of timing; data loading not included)")
    if plan.device.startswith("cpu") and plan.load is not None and plan.load > plan.cores > 0:
        lines.append(f"  this machine is busy (load {plan.load:.1f} on {plan.cores} cores): "
                     "the rates, and the cells, depend on what else runs")
    if plan.device.startswith("cpu") and seconds > LONG_FOR_A_CPU_S:
        fits = LIGHTER_PROFILES.get(plan.profile, ("smoke", "cpu"))
        fewer = "select fewer cells (-k, --fer-seeds, --fer-nhot, --fer-models)"
        lines.append("  that is long for a CPU; the run goes on. " + (
            "Profiles that fit one: " + "; ".join(
                f"--fer-profile {name} ({PROFILES[name].description})" for name in fits)
            + f"; or {fewer}" if fits else f"To shorten it, {fewer}"))
    return lines


#: The profiles lighter than each profile (what a too-long CPU run is pointed to).
LIGHTER_PROFILES: dict[str, tuple[str, ...]] = {"cpu": ("smoke",), "smoke": ()}


# --------------------------------------------------------------------------- in the run
def announce_plan(state: Any, items: list[pytest.Item]) -> Plan | None:
    """Build the plan of this process's cells (``--fer-plan``) and write it through the
    terminal reporter (``state.progress.announce``); returns it. Never stops the run: a
    plan that cannot be made is one line saying why (the cells then report it themselves)."""
    mode = state.settings.plan
    if mode == "off":
        return None
    try:
        plan = build_plan(state, items, cost=mode == "cost")
    except Exception as exc:
        state.progress.announce([f"{PLAN_PREFIX} not available ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())})"])
        return None
    state.progress.announce(plan_lines(plan))
    return plan


#: pytest-benchmark columns of its condensed tables: an epoch's training seconds, and epochs.
CONDENSED_COLUMNS = ["min", "mean", "max", "rounds"]
CONDENSED_NOTE = ("pytest-benchmark's tables above: each cell's epoch training seconds (min, "
                  "mean, max; rounds = epochs); --fer-benchmark-tables full shows all columns")


def condense_benchmark_tables(config: pytest.Config, settings: Any) -> bool:
    """Cut pytest-benchmark's tables to ``CONDENSED_COLUMNS`` (``--fer-benchmark-tables
    condensed``, the default) unless the user chose columns (``--benchmark-columns``).
    Returns True when they were condensed. Sets the benchmark session's ``columns``, the
    list its ``display`` reads (``tests/test_plugin_output.py`` breaks if that changes)."""
    session = getattr(config, "_benchmarksession", None)
    if (settings.benchmark_tables != "condensed" or session is None
            or config.getoption("benchmark_columns", default=None)
            or not hasattr(session, "columns")):
        return False
    session.columns = list(CONDENSED_COLUMNS)
    return True


def draw_results(state: Any, terminalreporter: Any) -> None:
    """The run's answer, last on screen (the plugin's ``pytest_terminal_summary`` runs after
    pytest-benchmark's): fer_bench's tables of the cells reported, and what the condensed
    pytest-benchmark tables above them hold."""
    import sys

    try:
        from fer_bench.console import wide_console
        from fer_bench.leaderboard.table import print_terminal_tables
    except ImportError:
        return
    terminalreporter.section("fer_bench results")
    # Capturing is suspended at summary time, so sys.stdout is where pytest writes.
    print_terminal_tables(state.records, console=wide_console(sys.stdout),
                          provenance=[{"fer_bench": state.provenance()}])
    if state.condensed_tables:
        terminalreporter.write_line(CONDENSED_NOTE)

"""The fer_bench pytest plugin (entry point ``pytest11``): grid options, fixtures, timing.

Loaded in every pytest run of the environment, it only adds options, ini settings and
fixtures; it imports torch, the data and the registry, and writes anything, only when a
test requests ``fer_cell``. A benchmark module asks for the grid like this::

    def test_nhot(fer_cell, benchmark):
        record = fer_cell.run(benchmark)

``fer_cell`` is parametrised over models x splits x N-hot x seeds (ids like
``vgg16-n3-complex-s0``, sorted by model, split, N, seed); ``run`` trains the cell (or takes
it from the result store), feeds each epoch's training time to pytest-benchmark as one
round, puts the record in ``extra_info``, and fails the test when the cell failed.

Every option ``--fer-<name>`` is also the ini setting ``fer_<name>`` and the environment
variable ``FER_BENCH_<NAME>``; precedence CLI > env > ini > profile > default.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest

from fer_bench.profiles import (
    CLASSICAL_MODELS,
    DEFAULT_NHOT,
    DEFAULT_SEEDS,
    DEFAULT_SPLITS,
    PROFILES,
    STUDY_MODELS,
    GridCell,
    Profile,
    build_grid,
    get_profile,
    parse_int_list,
    parse_name_list,
    parse_shard,
    select_shard,
)
from fer_bench.progress import GridProgress

CELL_FIXTURE = "fer_cell"
#: name -> (help, is_flag). Each is ``--fer-<name>``, ini ``fer_<name>``, env ``FER_BENCH_<NAME>``.
OPTIONS: dict[str, tuple[str, bool]] = {
    "data": ("FERPlus folder or Kaggle fer2013.csv (default: the embedded synthetic set)", False),
    "models": ("comma list of registered models (default: vgg16,ran,dan,mten when all are "
               "registered, else vgg16,resnet18,densenet121,mobilenetv2)", False),
    "nhot": (f"N-hot variants, e.g. 1,3,8 or 1-8 (default {DEFAULT_NHOT})", False),
    "splits": (f"test splits (default {DEFAULT_SPLITS})", False),
    "seeds": (f"seeds, e.g. 0,1,2 or 0-4 (default {DEFAULT_SEEDS})", False),
    "epochs": ("epochs per cell (default: the profile's, else the model's, else 40)", False),
    "device": ("cpu, cuda, cuda:1 ... (default: cuda when available)", False),
    "results": ("result store folder (default: $FER_BENCH_RESULTS, else ./results)", False),
    "rerun": ("train every cell even when the result store has it", True),
    "profile": (f"run profile: {', '.join(p for p in PROFILES if p != 'default')}", False),
    "shard": ("run shard i of n (i/n): keeps the grid cells at positions p with p %% n == i-1", False),
}
_TRUE = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RunSettings:
    """The plugin's options after precedence and parsing. ``models`` None = the default rule."""

    profile: Profile
    profile_chosen: bool
    data: str | None
    models: tuple[str, ...] | None
    nhots: tuple[int, ...]
    splits: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int | None
    device: str | None
    results: str | None
    rerun: bool
    shard: tuple[int, int] | None
    models_given: bool = False


def raw_option(config: pytest.Config, name: str) -> str | None:
    """The user's value of option ``name`` as text: CLI, else env, else ini, else None."""
    cli = config.getoption(f"fer_{name}", default=None)
    if cli not in (None, False, ""):
        return "1" if cli is True else str(cli)
    env = os.environ.get(f"FER_BENCH_{name.upper()}")
    if env:
        return env
    ini = config.getini(f"fer_{name}")
    return str(ini) if ini not in (None, "", False, []) else None


def read_settings(config: pytest.Config) -> RunSettings:
    """Parse every option; ValueError with a message naming the option on bad input."""
    profile_name = raw_option(config, "profile")
    profile = get_profile(profile_name)
    models_text = raw_option(config, "models")
    epochs_text = raw_option(config, "epochs")
    epochs = profile.epochs
    if epochs_text:
        if not epochs_text.strip().isdigit() or int(epochs_text) < 1:
            raise ValueError(f"--fer-epochs: expected one whole number >= 1, got {epochs_text!r}")
        epochs = int(epochs_text)
    splits_text = raw_option(config, "splits")
    splits = parse_name_list(splits_text or DEFAULT_SPLITS, what="--fer-splits")
    if splits_text:  # imported only when given: the plugin loads in every pytest run
        from fer_bench.data.splits import SPLIT_NAMES

        unknown = [name for name in splits if name not in SPLIT_NAMES]
        if unknown:
            raise ValueError(f"--fer-splits: unknown split(s) {unknown}; valid: {', '.join(SPLIT_NAMES)}")
    shard_text = raw_option(config, "shard")
    return RunSettings(
        profile=profile,
        profile_chosen=bool(profile_name),
        data=raw_option(config, "data"),
        models=parse_name_list(models_text, what="--fer-models") if models_text else profile.models,
        models_given=bool(models_text),
        nhots=parse_int_list(raw_option(config, "nhot") or DEFAULT_NHOT, what="--fer-nhot", low=1, high=8),
        splits=splits,
        seeds=parse_int_list(raw_option(config, "seeds") or DEFAULT_SEEDS, what="--fer-seeds", low=0),
        epochs=epochs,
        device=raw_option(config, "device"),
        results=raw_option(config, "results"),
        rerun=(raw_option(config, "rerun") or "").lower() in _TRUE,
        shard=parse_shard(shard_text) if shard_text else None,
    )


def default_models() -> tuple[str, ...]:
    """The study's four models when all are registered, else the classical four."""
    from fer_bench.registry import list_models

    # Import-checked: one broken study-model plugin must not take the default grid down.
    registered = set(list_models(loadable_only=True))
    return STUDY_MODELS if set(STUDY_MODELS) <= registered else CLASSICAL_MODELS


def check_models(names: tuple[str, ...]) -> None:
    """Raise the registry's ``ModelError`` (with suggestions) for the first unknown name."""
    from fer_bench.registry import get_model

    for name in names:
        get_model(name)


# --------------------------------------------------------------------------- session state
class FerBenchSession:
    """What one pytest process knows about its fer_bench run, and the hooks that use it.

    Registered as a plugin object by ``pytest_configure``; stays silent unless a test of
    this run used ``fer_cell``.
    """

    def __init__(self, config: pytest.Config, settings: RunSettings) -> None:
        self.config = config
        self.settings = settings
        self.progress = GridProgress(config)
        self.cells: list[GridCell] | None = None
        self.records: list[Any] = []                   # CellRecord of every cell reported
        self.untimed: list[dict[str, Any]] = []        # failed before their first epoch
        self.data_label = ""
        self.dataset_fingerprint = ""
        self.device = ""

    def grid(self) -> list[GridCell]:
        """This process's cells (after ``--fer-shard``); models validated on first use."""
        if self.cells is None:
            models = self.settings.models or default_models()
            try:
                check_models(models)
            except Exception as exc:
                raise pytest.UsageError(f"fer_bench: {exc}") from None
            s = self.settings
            self.cells = select_shard(build_grid(models, s.nhots, s.splits, s.seeds), s.shard)
        return self.cells

    def provenance(self) -> dict[str, Any]:
        """Top-level facts of the run for the benchmark JSON (``output_json["fer_bench"]``)."""
        from fer_bench.training.device import package_versions

        args = [str(a) for a in self.config.invocation_params.args]
        shard = self.settings.shard
        return {
            "profile": self.settings.profile.name,
            "data_label": self.data_label,
            "dataset_fingerprint": self.dataset_fingerprint,
            "command": shlex.join(["pytest", *args]),
            "versions": package_versions(),
            "device": self.device,
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    # ---------------------------------------------------------------- hooks
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.progress.total = sum(
            1 for item in session.items
            if CELL_FIXTURE in getattr(getattr(item, "callspec", None), "params", {})
        )

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self) -> None:
        self.progress.flush()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "fer_bench_record", None)
        if record is not None:
            from fer_bench.record import CellRecord

            self.records.append(CellRecord.from_dict(record))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        try:
            from fer_bench.console import wide_console
            from fer_bench.leaderboard.table import print_terminal_tables
        except ImportError:
            return
        terminalreporter.section("fer_bench results")
        # Capturing is suspended at summary time, so sys.stdout is where pytest writes.
        print_terminal_tables(self.records, console=wide_console(sys.stdout),
                              provenance=[{"fer_bench": self.provenance()}])

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: Any,
                                     output_json: dict) -> None:
        if self.cells is None:
            return
        block = self.provenance()
        if self.untimed:
            block["untimed_failures"] = self.untimed
        output_json["fer_bench"] = block


SESSION = pytest.StashKey[FerBenchSession]()
RECORD = pytest.StashKey[tuple[Any, bool]]()


def session_of(config: pytest.Config) -> FerBenchSession:
    return config.stash[SESSION]


# --------------------------------------------------------------------------- hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fer_bench", "fer_bench grid (also ini fer_<name> / env FER_BENCH_<NAME>)")
    for name, (help_text, is_flag) in OPTIONS.items():
        flag = f"--fer-{name}"
        if is_flag:
            group.addoption(flag, action="store_true", default=None, dest=f"fer_{name}", help=help_text)
            parser.addini(f"fer_{name}", help_text, type="bool", default=False)
        else:
            group.addoption(flag, action="store", default=None, dest=f"fer_{name}", help=help_text)
            parser.addini(f"fer_{name}", help_text, default="")


def pytest_configure(config: pytest.Config) -> None:
    try:
        settings = read_settings(config)
        if settings.models_given:  # explicit names: a typo is a usage error before collection
            check_models(settings.models or ())
    except Exception as exc:  # ValueError from parsing, ModelError from the registry
        raise pytest.UsageError(f"fer_bench: {exc}") from None
    session = FerBenchSession(config, settings)
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "fer_bench_session")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CELL_FIXTURE not in metafunc.fixturenames:
        return
    cells = session_of(metafunc.config).grid()
    metafunc.parametrize(CELL_FIXTURE, cells, ids=[cell.id for cell in cells], indirect=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    stored = item.stash.get(RECORD, None)
    if call.when == "call" and stored is not None:
        # Travels with the report (xdist serialises report attributes), so the process that
        # draws the final table sees every cell.
        outcome.get_result().fer_bench_record = stored[0].to_dict()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def fer_settings(pytestconfig: pytest.Config) -> RunSettings:
    """The parsed fer_bench options of this run."""
    return session_of(pytestconfig).settings


@pytest.fixture(scope="session")
def fer_dataset(pytestconfig: pytest.Config) -> Any:
    """The cleaned data set (``CleanDataset``), loaded once per session; the profile's
    fixed seeded subset when it has one."""
    from fer_bench.data.cache import load_dataset
    from fer_bench.data.clean import clean, subset

    state = session_of(pytestconfig)
    data = clean(load_dataset(state.settings.data))
    profile = state.settings.profile
    if profile.subset is not None and profile.subset < len(data):
        data = subset(data, profile.subset, seed=profile.subset_seed)
    state.data_label, state.dataset_fingerprint = data.label, data.fingerprint
    return data


@pytest.fixture(scope="session")
def fer_store(pytestconfig: pytest.Config) -> Any:
    """The ``ResultStore`` (``--fer-results``, else ``$FER_BENCH_RESULTS``, else ./results)."""
    from fer_bench.store import ResultStore

    return ResultStore(session_of(pytestconfig).settings.results)


@pytest.fixture
def fer_cell(request: pytest.FixtureRequest, fer_dataset: Any, fer_store: Any) -> FerCell:
    """One grid cell, ready to ``run(benchmark)``."""
    from fer_bench.registry import get_model
    from fer_bench.tasks import Task
    from fer_bench.training.runner import default_device, resolve_config

    state = session_of(request.config)
    cell: GridCell = request.param
    settings = state.settings
    spec = get_model(cell.model)
    config = resolve_config(spec, epochs=settings.epochs, augmentation=settings.profile.augmentation)
    state.device = settings.device or default_device()
    return FerCell(cell, spec, Task(cell.nhot, cell.split, cell.seed), config, fer_dataset,
                   fer_store, state, request.node)


# --------------------------------------------------------------------------- one cell
def feed_epoch_times(benchmark: Any, epoch_times_s: list[float]) -> bool:
    """Make each epoch's training time (seconds) one pytest-benchmark round.

    pytest-benchmark 5.x has no public way to hand it durations measured elsewhere, and its
    ``pedantic`` calls the target only once when benchmarking is disabled (and under
    xdist), which would change how many epochs train. So the cell is trained first and its
    epoch times are fed here, the ONE place that touches private API:
    ``_make_stats(iterations)`` creates and registers the stats that go into the JSON,
    ``Metadata.update(seconds)`` adds a round, ``_mode`` marks the fixture as used (else it
    warns "not used at all" and would accept a second use).
    ``tests/test_plugin.py::test_feed_epoch_times_uses_pytest_benchmark_internals`` breaks
    if pytest-benchmark changes them. Returns True when rounds were recorded.
    """
    benchmark._mode = "fer_bench.feed_epoch_times"
    if not benchmark.enabled or not epoch_times_s:
        return False
    stats = benchmark._make_stats(1)
    for seconds in epoch_times_s:
        stats.update(float(seconds))
    return True


@dataclass
class FerCell:
    """One grid cell as a test sees it: ``model``/``task``/``config`` and ``run``."""

    cell: GridCell
    spec: Any                 # registry.ModelSpec
    task: Any                 # tasks.Task
    config: Any               # config.TrainConfig
    dataset: Any              # CleanDataset
    store: Any                # ResultStore
    state: FerBenchSession
    node: pytest.Item

    @property
    def id(self) -> str:
        return self.cell.id

    def run(self, benchmark: Any | None = None) -> Any:
        """Train (or load) the cell and report it; returns its ``CellRecord``.

        Timing: each epoch's training seconds become one benchmark round, so
        ``stats.rounds == epochs``. A cell taken from the store feeds its *stored* epoch
        times (``extra_info["from_store"] is True``, ``"timing": "stored"``): the JSON keeps
        one entry per cell, clearly not re-measured. A failed cell is recorded, then its
        test fails with the error; the grid goes on.
        """
        from fer_bench.training.runner import get_or_run_cell

        settings, progress = self.state.settings, self.state.progress
        progress.start_cell(self.id)
        record, from_store = get_or_run_cell(
            self.store, self.spec, self.dataset, self.task, self.config,
            device=self.state.device, rerun=settings.rerun, on_epoch=progress.on_epoch,
            profile=settings.profile.name if settings.profile_chosen else "",
        )
        self.node.stash[RECORD] = (record, from_store)
        if benchmark is not None:
            benchmark.group = f"{self.cell.split}-{self.cell.model}"
            benchmark.extra_info.update({
                "fer_bench": record.to_dict(), "from_store": from_store, "cell_id": record.cell_id,
                "profile": settings.profile.name, "timing": "stored" if from_store else "measured",
            })
            fed = feed_epoch_times(benchmark, record.epoch_times_s)
            if benchmark.enabled and not fed:
                self.state.untimed.append(record.to_dict())
        progress.finish_cell(record, from_store)
        if record.status != "ok":
            pytest.fail(f"{record.cell_id} failed: {record.error}", pytrace=False)
        return record

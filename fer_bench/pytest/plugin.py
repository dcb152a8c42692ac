"""The fer_bench pytest plugin (entry point ``pytest11``): axes, fixtures, timing.

Loaded in every pytest run of the environment, it only adds options, ini settings, markers
and fixtures; it imports torch, the data and the registries, and writes anything, only when
a test requests ``fer_cell``. A benchmark module asks for cells like this::

    def test_nhot(fer_cell, benchmark):
        record = fer_cell.run(benchmark)

**Axes.** A cell's axes are fixtures: ``fer_model``, ``fer_variant`` (label treatment,
``nhot-N``), ``fer_split``, ``fer_seed``, ``fer_loss``, ``fer_augmentation``, ``fer_init``,
``fer_alignment`` (``none`` or an aligner, ``dlib-hog`` / ``dlib-cnn``: the cell trains and
tests on its aligned images; the aligner runs, or reads its cache, once per session).
``fer_cell`` depends on all of them, so every test that uses it is parametrised over them.
Each axis's values come from, first to last:

1. the test's own ``@pytest.mark.parametrize("fer_loss", [...])`` (pytest's own means:
   fixed, no option changes it);
2. the option the user gave (``--fer-models``, ``--fer-nhot`` / ``--fer-variant``,
   ``--fer-splits``, ``--fer-seeds``, ``--fer-loss``, ``--fer-augmentation``, ``--fer-init``,
   ``--fer-alignment``, or their ini/env forms): the user narrows or widens any experiment;
3. the module's (or class's, or function's) ``fer_axes`` marker, e.g.
   ``pytestmark = pytest.mark.fer_axes(loss=["mse", "pld"], nhot=[8], split=["ordinary"])``:
   the experiment's own design;
4. the profile, then the default (loss and augmentation: the model's own preference).

Model, variant, split and seed are always parametrised; loss, augmentation, init and
alignment only when they take more than one value or a non-default one, so the test id is
the cell's readable id
(``vgg16-n3-complex-s0``, then ``loss=pld`` ... for the varying optional axes: the same
``fer_bench.identity.cell.axis_token`` names both). ``fer_experiment("name", title=...)`` names the
leaderboard section (default: the module name without ``test_``); its ``epochs=N`` is the
experiment's own budget, used when neither ``--fer-epochs`` nor the profile sets one.

Every option ``--fer-<name>`` is also the ini setting ``fer_<name>`` and the environment
variable ``FER_BENCH_<NAME>``; precedence CLI > env > ini > profile > default.
``--fer-shard i/n`` keeps every n-th of all collected fer_bench cells, in collection order.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from fer_bench.planning.profiles import (
    DEFAULT_NHOT,
    DEFAULT_SEEDS,
    DEFAULT_SPLITS,
    parse_int_list,
    parse_name_list,
    select_shard,
)
from fer_bench.pytest.keys import RECORD
from fer_bench.pytest.progress import GridProgress
from fer_bench.pytest.settings import (
    ALWAYS_PARAMETRISED,
    AXES,
    AXES_MARKER,
    EXPERIMENT_MARKER,
    OPTIONS,
    RunSettings,
    default_models,
    experiment_epochs,
    experiment_of,
    marker_axes,
    parametrized_names,
    parse_axis,
    read_settings,
)

if TYPE_CHECKING:
    from fer_bench.pytest.fixture import FerCell

CELL_FIXTURE = "fer_cell"


# --------------------------------------------------------------------------- session state
class FerBenchSession:
    """What one pytest process knows about its fer_bench run, and the hooks that use it.

    Registered by ``pytest_configure``; settings are parsed on first use by a fer_bench
    test, never in a run that collects none.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._settings: RunSettings | None = None
        self._default_models: tuple[str, ...] | None = None
        self.progress = GridProgress(config)
        self.used = False
        self.errors: list[str] = []                    # bad options / markers found in collection
        self.records: list[Any] = []                   # CellRecord of every cell reported
        self.untimed: list[dict[str, Any]] = []        # failed before their first epoch
        self.experiments: dict[str, str] = {}          # experiment name -> title
        self.condensed_tables = False                  # pytest-benchmark's tables cut down
        self._datasets: Any = None                     # plugin_cell.SessionData, on first use
        self.data_label = ""
        self.dataset_fingerprint = ""
        self.device = ""

    @property
    def settings(self) -> RunSettings:
        if self._settings is None:
            try:
                self._settings = read_settings(self.config)
            except Exception as exc:   # ValueError/ConfigError from parsing, ModelError
                raise pytest.UsageError(f"fer_bench: {exc}") from None
        return self._settings

    def axis_values(self, axis: str, node: Any) -> tuple[Any, ...]:
        """The values of ``axis`` for a test (see the module docstring for the order)."""
        settings = self.settings
        if axis in settings.axes:
            return settings.axes[axis]
        declared = marker_axes(node)
        if axis in declared:
            return declared[axis]
        if axis == "model":
            if settings.profile.models:
                return settings.profile.models
            if self._default_models is None:
                self._default_models = default_models()
            return self._default_models
        if axis == "variant":
            return parse_axis("nhot", DEFAULT_NHOT, what="default N-hot")
        if axis == "split":
            return parse_name_list(DEFAULT_SPLITS, what="default splits")
        if axis == "seed":
            return parse_int_list(DEFAULT_SEEDS, what="default seeds", low=0)
        if axis == "augmentation":
            return (settings.profile.augmentation,)   # None = the model's preference
        if axis == "init":
            from fer_bench.identity.cell import resolve_init

            return (resolve_init("scratch"),)
        if axis == "alignment":
            from fer_bench.identity.cell import DEFAULT_ALIGNMENT

            return (DEFAULT_ALIGNMENT,)
        return (None,)   # loss: the model's preference

    def provenance(self) -> dict[str, Any]:
        """Top-level facts of the run for the benchmark JSON (``output_json["fer_bench"]``);
        ``columns``: the leaderboard columns this run's modules registered for its
        experiments (``leaderboard.column_registry.declared_columns``), when there are any."""
        from fer_bench.leaderboard.column_registry import DECLARATIONS_KEY, declared_columns
        from fer_bench.training.device import package_versions

        args = [str(a) for a in self.config.invocation_params.args]
        shard = self.settings.shard
        columns = declared_columns(self.experiments, self.config.rootpath)
        return {
            "profile": self.settings.profile.name,
            "data_label": self.data_label,
            "dataset_fingerprint": self.dataset_fingerprint,
            "command": shlex.join(["pytest", *args]),
            "versions": package_versions(),
            "device": self.device,
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "experiments": dict(self.experiments),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **({DECLARATIONS_KEY: columns} if columns else {}),
        }

    # ---------------------------------------------------------------- hooks
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if self.errors:
            raise pytest.UsageError("fer_bench: " + "; ".join(dict.fromkeys(self.errors)))
        cells = [item for item in items if CELL_FIXTURE in getattr(item, "fixturenames", ())]
        if not cells:
            return
        self.used = True
        shard = self.settings.shard
        if shard is not None:
            kept = {id(item) for item in select_shard(cells, shard)}
            deselected = [item for item in cells if id(item) not in kept]
            items[:] = [item for item in items if id(item) not in {id(d) for d in deselected}]
            config.hook.pytest_deselected(items=deselected)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.progress.total = sum(1 for item in session.items
                                  if CELL_FIXTURE in getattr(item, "fixturenames", ()))

    @property
    def datasets(self) -> Any:
        """The session's data (``plugin_cell.SessionData``), shared by the plan and fixtures."""
        if self._datasets is None:
            from fer_bench.pytest.fixture import SessionData

            self._datasets = SessionData(self)
        return self._datasets

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Before the first cell: the plan (``plugin_plan``), and pytest-benchmark's tables
        condensed unless asked otherwise."""
        if (not self.used or session.config.option.collectonly
                or hasattr(session.config, "workerinput")):
            return
        from fer_bench.pytest.plan import announce_plan, condense_benchmark_tables

        self.condensed_tables = condense_benchmark_tables(self.config, self.settings)
        announce_plan(self, session.items)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self) -> None:
        self.progress.flush()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "fer_bench_record", None)
        if record is not None:
            from fer_bench.identity.record import CellRecord

            self.records.append(CellRecord.from_dict(record))

    @pytest.hookimpl(trylast=True)   # after pytest-benchmark's tables: the answer comes last
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.records:
            from fer_bench.pytest.plan import draw_results

            draw_results(self, terminalreporter)

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: Any,
                                     output_json: dict) -> None:
        if not self.used:
            return
        block = self.provenance()
        if self.untimed:
            block["untimed_failures"] = self.untimed
        output_json["fer_bench"] = block


SESSION = pytest.StashKey[FerBenchSession]()


def session_of(config: pytest.Config) -> FerBenchSession:
    return config.stash[SESSION]


def use_models_unless_profile(metafunc: pytest.Metafunc, models: Sequence[str]) -> None:
    """Make ``models`` the model axis of ``metafunc``'s module unless the run's profile names
    its own models (smoke: ``small_cnn``). For a module's ``pytest_generate_tests``: pytest
    calls a module's hook before the plugin's, so the marker added here is what it reads."""
    if session_of(metafunc.config).settings.profile.models is None:
        metafunc.definition.add_marker(getattr(pytest.mark, AXES_MARKER)(models=list(models)))

# --------------------------------------------------------------------------- hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fer_bench", "fer_bench grid (also ini fer_<name> / env FER_BENCH_<NAME>)")
    for name, (help_text, is_flag) in OPTIONS.items():
        flag = f"--fer-{name.replace('_', '-')}"
        if is_flag:
            group.addoption(flag, action="store_true", default=None, dest=f"fer_{name}", help=help_text)
            parser.addini(f"fer_{name}", help_text, type="bool", default=False)
        else:
            group.addoption(flag, action="store", default=None, dest=f"fer_{name}", help=help_text)
            parser.addini(f"fer_{name}", help_text, default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{AXES_MARKER}(**axes): an experiment's own axis values, "
                            "e.g. fer_axes(loss=['mse', 'pld'], nhot=[8]) (fer_bench)")
    config.addinivalue_line("markers", f"{EXPERIMENT_MARKER}(name, title=..., epochs=N): the "
                            "leaderboard section of a fer_bench benchmark module (epochs: its "
                            "cells' own, below --fer-epochs and the profile's)")
    session = FerBenchSession(config)
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "fer_bench_session")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CELL_FIXTURE not in metafunc.fixturenames:
        return
    from fer_bench.identity.cell import axis_token

    state = session_of(metafunc.config)
    own = parametrized_names(metafunc.definition)
    for axis in AXES:
        fixture = f"fer_{axis}"
        if fixture in own:
            continue
        try:
            values = state.axis_values(axis, metafunc.definition)
        except Exception as exc:
            # Raised inside a collector it would become a collection traceback; reported
            # once collection ends as one usage error instead.
            message = str(exc).removeprefix("fer_bench: ")
            state.errors.append(message if isinstance(exc, pytest.UsageError)
                                else f"{metafunc.definition.nodeid}: {message}")
            return
        if axis in ALWAYS_PARAMETRISED or len(values) > 1 or not _is_default(axis, values[0]):
            ids = [axis_token(axis, getattr(v, "name", v)) for v in values]
            metafunc.parametrize(fixture, values, ids=ids)


def _is_default(axis: str, value: Any) -> bool:
    """True when ``value`` leaves the readable id unchanged (None = the model's own choice)."""
    from fer_bench.identity.cell import OPTIONAL_AXES

    value = getattr(value, "name", value)
    return value is None or value == OPTIONAL_AXES.get(axis, (None, None))[1]


# --------------------------------------------------------------------------- fixtures
def _axis_fixture(axis: str):
    def fixture(request: pytest.FixtureRequest) -> Any:
        if hasattr(request, "param"):
            return request.param
        return session_of(request.config).axis_values(axis, request.node)[0]
    fixture.__name__ = f"fer_{axis}"
    fixture.__doc__ = (f"The cell's {axis} axis value (parametrised from --fer-{AXES[axis]}, "
                       f"a fer_axes marker, or the test's own parametrize).")
    return pytest.fixture(name=f"fer_{axis}")(fixture)


fer_model = _axis_fixture("model")
fer_variant = _axis_fixture("variant")
fer_split = _axis_fixture("split")
fer_seed = _axis_fixture("seed")
fer_loss = _axis_fixture("loss")
fer_augmentation = _axis_fixture("augmentation")
fer_init = _axis_fixture("init")
fer_alignment = _axis_fixture("alignment")


@pytest.fixture(scope="session")
def fer_settings(pytestconfig: pytest.Config) -> RunSettings:
    """The parsed fer_bench options of this run."""
    return session_of(pytestconfig).settings


@pytest.fixture(scope="session")
def fer_datasets(pytestconfig: pytest.Config) -> Any:
    """``fer_datasets(rule="study", aligner="none", source=None)``: the data cleaned by one
    cleaning rule ("study", "ferplus-ms": ``fer_bench.data.clean.CLEANING_RULES``) as a
    ``CleanDataset``, of ``source`` (a ``--fer-data`` value; None: the session's); each
    source is loaded once per session and each rule cleaned once; the profile's fixed
    seeded subset when it has one (a subset has its own fingerprint). ``aligner`` (a name
    of ``fer_bench.data.align.axis.ALIGNERS``) attaches that aligner's output
    (``clean.alignment``): it runs, or reads its cache, once per session (on a profile
    subset, only that subset's rows when the whole source has no cache); a failure (e.g.
    dlib missing: ``AlignError`` with the install hint) is raised again for every later
    cell of the same data without trying again (``fer_bench.pytest.fixture.SessionData``)."""
    return session_of(pytestconfig).datasets


@pytest.fixture(scope="session")
def fer_data(pytestconfig: pytest.Config) -> str | None:
    """The data source of the cells (``--fer-data``; None: $FER_BENCH_DATA, else the embedded
    synthetic set). A module fixes its own with ``@pytest.mark.parametrize("fer_data",
    ["synthetic:taggers=3", ...])``, e.g. ``benchmarks/test_recovery.py``."""
    return session_of(pytestconfig).settings.data


@pytest.fixture(scope="session")
def fer_dataset(fer_datasets: Any) -> Any:
    """The data cleaned by the study's rule (``CleanDataset``), loaded once per session;
    the profile's fixed seeded subset when it has one."""
    return fer_datasets("study")


@pytest.fixture(scope="session")
def fer_store(pytestconfig: pytest.Config) -> Any:
    """The ``ResultStore`` (``--fer-results``, else ``$FER_BENCH_RESULTS``, else ./results)."""
    from fer_bench.results.store import ResultStore

    return ResultStore(session_of(pytestconfig).settings.results)


@pytest.fixture
def fer_cell(request: pytest.FixtureRequest, fer_model: str, fer_variant: str, fer_split: str,
             fer_seed: int, fer_loss: str | None, fer_augmentation: str | None, fer_init: Any,
             fer_alignment: str, fer_data: str | None, fer_datasets: Any, fer_store: Any) -> FerCell:
    """One cell (``fer_bench.pytest.fixture.FerCell``), ready to ``run(benchmark)``, on the
    ``fer_data`` source cleaned by the rule its label treatment and split need (with its aligner's output
    when it has one); skipped when its model cannot take an axis value (e.g.
    ``init=imagenet`` for a model without ImageNet weights). A cell that cannot be set up
    (an ms-* label mode on the ordinary split, dlib or a model file missing, a data source
    that cannot be loaded) fails with one line saying why."""
    from fer_bench.errors import CellSkipped, FerBenchError
    from fer_bench.pytest.fixture import FerCell, fail_line, skip_line
    from fer_bench.pytest.plan import resolve_test_cell

    state = session_of(request.config)
    axes = {"model": fer_model, "variant": fer_variant, "split": fer_split, "seed": fer_seed,
            "loss": fer_loss, "augmentation": fer_augmentation, "init": fer_init,
            "alignment": fer_alignment}
    try:
        test = resolve_test_cell(state, axes, fer_datasets, source=fer_data,
                                 marker_epochs=experiment_epochs(request.node))
    except CellSkipped as exc:
        skip_line(str(exc))
    except FerBenchError as exc:
        fail_line(f"fer_bench: {exc}")
    state.device = test.device
    experiment, title = experiment_of(request.node)
    state.experiments.setdefault(experiment, title)
    return FerCell(test.cell, test.spec, test.init_path, test.dataset, fer_store, state,
                   request.node, experiment)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    stored = item.stash.get(RECORD, None)
    if call.when == "call" and stored is not None:
        # Travels with the report (xdist serialises report attributes), so the process that
        # draws the final table sees every cell.
        outcome.get_result().fer_bench_record = stored[0].to_dict()

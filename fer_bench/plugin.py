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
``fer_bench.cell.axis_token`` names both). ``fer_experiment("name", title=...)`` names the
leaderboard section (default: the module name without ``test_``).

Every option ``--fer-<name>`` is also the ini setting ``fer_<name>`` and the environment
variable ``FER_BENCH_<NAME>``; precedence CLI > env > ini > profile > default.
``--fer-shard i/n`` keeps every n-th of all collected fer_bench cells, in collection order.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
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
    Profile,
    get_profile,
    parse_int_list,
    parse_name_list,
    parse_shard,
    select_shard,
)
from fer_bench.progress import GridProgress

CELL_FIXTURE = "fer_cell"
AXES_MARKER = "fer_axes"
EXPERIMENT_MARKER = "fer_experiment"
#: Axis name -> option that sets it. Order = order of the parts of a test id.
AXES: dict[str, str] = {
    "model": "models", "variant": "variant", "split": "splits", "seed": "seeds",
    "loss": "loss", "augmentation": "augmentation", "init": "init", "alignment": "alignment",
}
ALWAYS_PARAMETRISED = ("model", "variant", "split", "seed")
#: name -> (help, is_flag). Each is ``--fer-<name>``, ini ``fer_<name>``, env ``FER_BENCH_<NAME>``.
OPTIONS: dict[str, tuple[str, bool]] = {
    "data": ("FERPlus folder or Kaggle fer2013.csv (default: the embedded synthetic set)", False),
    "models": ("comma list of registered models (default: vgg16,ran,dan,mten when all are "
               "registered, else vgg16,resnet18,densenet121,mobilenetv2)", False),
    "nhot": (f"N-hot variants, e.g. 1,3,8 or 1-8 (default {DEFAULT_NHOT})", False),
    "variant": ("label treatments, e.g. nhot-1,nhot-8 (overrides --fer-nhot; "
                "`fer-bench list labels`)", False),
    "splits": (f"test splits (default {DEFAULT_SPLITS}; `fer-bench list splits`)", False),
    "seeds": (f"seeds, e.g. 0,1,2 or 0-4 (default {DEFAULT_SEEDS})", False),
    "loss": ("losses, e.g. mse,pld (default: each model's, else mse; `fer-bench list losses`)", False),
    "augmentation": ("augmentation sets, e.g. none,flip_rot20 (default: the profile's, else the "
                     "model's, else none; `fer-bench list augmentations`)", False),
    "init": ("initialisations: scratch, imagenet, file:PATH (default scratch)", False),
    "alignment": ("face alignment: none, dlib-hog, dlib-cnn (default none; needs the align "
                  "extra; `fer-bench data align` fills the cache)", False),
    "epochs": ("epochs per cell (default: the profile's, else the model's, else 40)", False),
    "device": ("cpu, cuda, cuda:1 ... (default: cuda when available)", False),
    "results": ("result store folder (default: $FER_BENCH_RESULTS, else ./results)", False),
    "rerun": ("train every cell even when the result store has it", True),
    "compile": ("evaluate through torch.compile (inductor): compile=eval in each cell's "
                "identity, compile seconds recorded apart from epoch time", True),
    "profile": (f"run profile: {', '.join(p for p in PROFILES if p != 'default')}", False),
    "shard": ("run shard i of n (i/n): keeps the collected cells at positions p with "
              "p %% n == i-1", False),
}
_TRUE = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RunSettings:
    """The plugin's options after precedence and parsing.

    ``axes``: axis -> values the user gave explicitly (CLI/env/ini); absent axes fall back
    to a module's ``fer_axes`` marker, the profile, then the defaults (``axis_values``).
    """

    profile: Profile
    profile_chosen: bool
    data: str | None
    axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    epochs: int | None = None
    device: str | None = None
    results: str | None = None
    rerun: bool = False
    compile: bool = False
    shard: tuple[int, int] | None = None

    @property
    def models(self) -> tuple[str, ...] | None:
        return self.axes.get("model")


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


def parse_axis(axis: str, values: Any, *, what: str) -> tuple[Any, ...]:
    """Text ("1,3,8", "mse, pld") or a list -> validated axis values; ``ConfigError`` names
    ``what`` (the option or marker) and suggests close names for unknown ones."""
    from fer_bench.errors import ConfigError

    if isinstance(values, (list, tuple)):
        items = tuple(values)
        if not items:
            raise ConfigError(f"{what}: empty list")
    elif axis in ("seed", "nhot"):
        items = parse_int_list(str(values), what=what, low=0 if axis == "seed" else 1,
                               high=None if axis == "seed" else 8)
    else:
        items = parse_name_list(str(values), what=what)
    if axis == "nhot":
        from fer_bench.data.variants import nhot_variant

        axis, items = "variant", tuple(nhot_variant(int(n)) for n in items)
    validate_axis(axis, items, what=what)
    if axis == "init":
        from fer_bench.cell import resolve_init

        items = tuple(resolve_init(v) for v in items)
    return tuple(dict.fromkeys(int(v) if axis == "seed" else v for v in items))


def validate_axis(axis: str, values: tuple[Any, ...], *, what: str) -> None:
    """Raise ``ConfigError`` (or ``ModelError``) for a value no registry knows."""
    from fer_bench.errors import ConfigError

    if axis in _REGISTRY_OF_AXIS:
        from fer_bench.listing import registry_of

        registry = registry_of(_REGISTRY_OF_AXIS[axis])
        for value in values:
            try:
                registry.get(str(value))
            except ConfigError as exc:
                raise ConfigError(f"{what}: {exc}") from None
    elif axis == "alignment":
        from fer_bench.data.alignment import check_alignment

        for value in values:
            try:
                check_alignment(str(value))
            except ConfigError as exc:
                raise ConfigError(f"{what}: {exc}") from None
    elif axis == "seed":
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            raise ConfigError(f"{what}: seeds must be whole numbers >= 0, got {bad}")


_REGISTRY_OF_AXIS = {"model": "models", "variant": "labels", "split": "splits",
                     "loss": "losses", "augmentation": "augmentations"}


def read_settings(config: pytest.Config) -> RunSettings:
    """Parse every option; ``ConfigError``/ValueError naming the option on bad input.

    Only called when a test of this run uses ``fer_cell``: a pytest run of another project
    never has its environment validated.
    """
    profile_name = raw_option(config, "profile")
    profile = get_profile(profile_name)
    epochs_text = raw_option(config, "epochs")
    epochs = profile.epochs
    if epochs_text:
        if not epochs_text.strip().isdigit() or int(epochs_text) < 1:
            raise ValueError(f"--fer-epochs: expected one whole number >= 1, got {epochs_text!r}")
        epochs = int(epochs_text)
    axes: dict[str, tuple[Any, ...]] = {}
    for axis, option in AXES.items():
        text = raw_option(config, option)
        if axis == "variant" and not text and raw_option(config, "nhot"):
            axes["variant"] = parse_axis("nhot", raw_option(config, "nhot"), what="--fer-nhot")
        elif text:
            axes[axis] = parse_axis(axis, text, what=f"--fer-{option}")
    shard_text = raw_option(config, "shard")
    return RunSettings(
        profile=profile, profile_chosen=bool(profile_name), data=raw_option(config, "data"),
        axes=axes, epochs=epochs, device=raw_option(config, "device"),
        results=raw_option(config, "results"),
        rerun=(raw_option(config, "rerun") or "").lower() in _TRUE,
        compile=(raw_option(config, "compile") or "").lower() in _TRUE,
        shard=parse_shard(shard_text) if shard_text else None,
    )


def default_models() -> tuple[str, ...]:
    """The study's four models when all are registered, else the classical four."""
    from fer_bench.registry import list_models

    # Import-checked: one broken study-model plugin must not take the default grid down.
    registered = set(list_models(loadable_only=True))
    return STUDY_MODELS if set(STUDY_MODELS) <= registered else CLASSICAL_MODELS


def marker_axes(node: Any) -> dict[str, tuple[Any, ...]]:
    """Axis values declared by ``fer_axes`` markers on ``node`` (closest marker wins per axis).

    Keys: an axis name or its option name (``models``, ``splits``, ``seeds``), or ``nhot``
    (numbers, sugar for ``variant``).
    """
    aliases = {option: axis for axis, option in AXES.items()}
    declared: dict[str, tuple[Any, ...]] = {}
    for marker in node.iter_markers(AXES_MARKER):
        for key, values in marker.kwargs.items():
            axis = aliases.get(key, key)
            if axis not in AXES and axis != "nhot":
                raise ValueError(f"@pytest.mark.{AXES_MARKER}: unknown axis {key!r}; valid: "
                                 f"{', '.join([*AXES, 'nhot'])}")
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            parsed = parse_axis(axis, values, what=f"@pytest.mark.{AXES_MARKER}({key}=...)")
            declared.setdefault("variant" if axis == "nhot" else axis, parsed)
    return declared


def experiment_of(node: Any) -> tuple[str, str]:
    """(experiment name, title) of a test: its ``fer_experiment`` marker, else the module's
    name without ``test_`` and the module docstring's first line."""
    marker = node.get_closest_marker(EXPERIMENT_MARKER)
    module = getattr(node, "module", None)
    doc = (getattr(module, "__doc__", None) or "").strip().splitlines()
    default = getattr(module, "__name__", "").rsplit(".", 1)[-1].removeprefix("test_")
    if marker is not None:
        name = marker.args[0] if marker.args else marker.kwargs.get("name", default)
        return str(name), str(marker.kwargs.get("title", doc[0] if doc else name))
    return default, doc[0] if doc else default


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
            from fer_bench.cell import resolve_init

            return (resolve_init("scratch"),)
        if axis == "alignment":
            from fer_bench.cell import DEFAULT_ALIGNMENT

            return (DEFAULT_ALIGNMENT,)
        return (None,)   # loss: the model's preference

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
            "experiments": dict(self.experiments),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
        if not self.used:
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
    config.addinivalue_line("markers", f"{AXES_MARKER}(**axes): an experiment's own axis values, "
                            "e.g. fer_axes(loss=['mse', 'pld'], nhot=[8]) (fer_bench)")
    config.addinivalue_line("markers", f"{EXPERIMENT_MARKER}(name, title=...): the leaderboard "
                            "section of a fer_bench benchmark module")
    session = FerBenchSession(config)
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "fer_bench_session")


def _parametrized_names(metafunc: pytest.Metafunc) -> set[str]:
    names: set[str] = set()
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",")]
        names.update(argnames)
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CELL_FIXTURE not in metafunc.fixturenames:
        return
    from fer_bench.cell import axis_token

    state = session_of(metafunc.config)
    own = _parametrized_names(metafunc)
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
    from fer_bench.cell import OPTIONAL_AXES

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
    """``fer_datasets(rule="study", aligner="none")``: the data cleaned by one cleaning rule
    ("study", "ferplus-ms": ``fer_bench.data.clean.CLEANING_RULES``) as a ``CleanDataset``;
    the source is loaded once per session and each rule cleaned once; the profile's fixed
    seeded subset when it has one (a subset has its own fingerprint). ``aligner`` (a name
    of ``fer_bench.data.alignment.ALIGNERS``) attaches that aligner's output
    (``clean.alignment``): it runs, or reads its cache, once per session (on a profile
    subset, only that subset's rows when the whole source has no cache); a failure (e.g.
    dlib missing: ``AlignError`` with the install hint) is raised again for every later
    cell without trying again."""
    from fer_bench.data.alignment import NO_ALIGNMENT, align_clean, align_source, with_alignment
    from fer_bench.data.cache import load_dataset
    from fer_bench.data.clean import clean, subset

    state = session_of(pytestconfig)
    loaded: list[Any] = []
    by_rule: dict[str, Any] = {}
    subsetted: set[str] = set()
    sources: dict[str, Any] = {}                  # aligner -> AlignResult of the whole source
    aligned: dict[tuple[str, str], Any] = {}      # (rule, aligner) -> CleanDataset
    failed: dict[str, BaseException] = {}         # aligner -> its error

    def dataset(rule: str = "study", aligner: str = NO_ALIGNMENT) -> Any:
        if rule not in by_rule:
            if not loaded:
                loaded.append(load_dataset(state.settings.data))
            data = clean(loaded[0], rule)
            profile = state.settings.profile
            if profile.subset is not None and profile.subset < len(data):
                data = subset(data, profile.subset, seed=profile.subset_seed)
                subsetted.add(rule)
            by_rule[rule] = data
            state.data_label = data.label
            if rule == "study" or not state.dataset_fingerprint:
                state.dataset_fingerprint = data.fingerprint
        if aligner == NO_ALIGNMENT:
            return by_rule[rule]
        if (rule, aligner) not in aligned:
            if aligner in failed:
                raise failed[aligner]
            try:
                if aligner not in sources and rule not in subsetted:
                    sources[aligner] = align_source(loaded[0], aligner)
                result = align_clean(loaded[0], by_rule[rule], aligner,
                                     result=sources.get(aligner), rows_only=True)
            except Exception as exc:
                failed[aligner] = exc
                raise
            aligned[(rule, aligner)] = with_alignment(by_rule[rule], result)
        return aligned[(rule, aligner)]
    return dataset


@pytest.fixture(scope="session")
def fer_dataset(fer_datasets: Any) -> Any:
    """The data cleaned by the study's rule (``CleanDataset``), loaded once per session;
    the profile's fixed seeded subset when it has one."""
    return fer_datasets("study")


@pytest.fixture(scope="session")
def fer_store(pytestconfig: pytest.Config) -> Any:
    """The ``ResultStore`` (``--fer-results``, else ``$FER_BENCH_RESULTS``, else ./results)."""
    from fer_bench.store import ResultStore

    return ResultStore(session_of(pytestconfig).settings.results)


@pytest.fixture
def fer_cell(request: pytest.FixtureRequest, fer_model: str, fer_variant: str, fer_split: str,
             fer_seed: int, fer_loss: str | None, fer_augmentation: str | None, fer_init: Any,
             fer_alignment: str, fer_datasets: Any, fer_store: Any) -> FerCell:
    """One cell, ready to ``run(benchmark)``, on the data cleaned by the rule its label
    treatment and split need (with its aligner's output when it has one); skipped when its
    model cannot take an axis value (e.g. ``init=imagenet`` for a model without ImageNet
    weights). An aligner that cannot run (dlib or a model file missing) fails the cell
    with the install hint."""
    from fer_bench.cell import resolve_init
    from fer_bench.data.alignment import cell_alignment, parse_cell_alignment
    from fer_bench.errors import CellSkipped, ConfigError, FerBenchError
    from fer_bench.registry import get_model
    from fer_bench.tasks import cleaning_rule
    from fer_bench.training.augment import AUGMENTATIONS
    from fer_bench.training.runner import check_init, default_device, resolve_cell, resolve_config

    state = session_of(request.config)
    settings = state.settings
    try:
        rule = cleaning_rule(fer_variant, fer_split)
    except ConfigError as exc:   # e.g. an ms-* label mode on the ordinary split
        pytest.fail(f"fer_bench: {exc}", pytrace=False)
    init = fer_init if hasattr(fer_init, "name") else resolve_init(str(fer_init))
    spec = get_model(fer_model)
    try:
        check_init(spec, init)
    except CellSkipped as exc:
        pytest.skip(str(exc))
    config = resolve_config(spec, epochs=settings.epochs, loss=fer_loss,
                            augmentation=fer_augmentation, init=init.name,
                            compile="eval" if settings.compile else None)
    try:
        alignment = cell_alignment(str(fer_alignment),
                                   landmarks=bool(AUGMENTATIONS.get(config.augmentation).needs))
        use = parse_cell_alignment(alignment)
        fer_dataset = fer_datasets(rule, use.aligner if use is not None else "none")
    except FerBenchError as exc:   # AlignError: dlib or a model file missing
        pytest.fail(f"fer_bench: {exc}", pytrace=False)
    state.device = settings.device or default_device()
    cell = resolve_cell(spec, variant=fer_variant, split=fer_split, seed=fer_seed, config=config,
                        dataset_fingerprint=fer_dataset.fingerprint, device=state.device,
                        alignment=alignment)
    experiment, title = experiment_of(request.node)
    state.experiments.setdefault(experiment, title)
    return FerCell(cell, spec, init.path, fer_dataset, fer_store, state, request.node, experiment)


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
    """One cell as a test sees it: its identity ``cell`` (``fer_bench.cell.Cell``) and ``run``."""

    cell: Any                 # cell.Cell
    spec: Any                 # registry.ModelSpec
    init_path: Any            # Path of a local weights file, or None
    dataset: Any              # CleanDataset
    store: Any                # ResultStore
    state: FerBenchSession
    node: pytest.Item
    experiment: str = ""

    @property
    def id(self) -> str:
        return self.cell.id

    @property
    def config(self) -> Any:
        """The cell's recipe (``TrainConfig``)."""
        return self.cell.recipe

    def run(self, benchmark: Any | None = None) -> Any:
        """Train (or load) the cell and report it; returns its ``CellRecord``.

        Timing: each epoch's training seconds become one benchmark round, so
        ``stats.rounds == epochs``. A cell taken from the store feeds its *stored* epoch
        times (``extra_info["from_store"] is True``, ``"timing": "stored"``); the store only
        serves a record of the same device type and precision. A failed cell is recorded,
        then its test fails with the error; the grid goes on.
        """
        from fer_bench.errors import CellSkipped, FerBenchError
        from fer_bench.training.runner import get_or_run_cell

        settings, progress = self.state.settings, self.state.progress
        progress.start_cell(self.id)
        try:
            record, from_store = get_or_run_cell(
                self.store, self.spec, self.dataset, self.cell, device=self.state.device,
                rerun=settings.rerun, on_epoch=progress.on_epoch,
                profile=settings.profile.name if settings.profile_chosen else "",
                init_path=self.init_path, experiment=self.experiment)
        except CellSkipped as exc:
            pytest.skip(str(exc))
        except FerBenchError as exc:   # e.g. a split this data cannot build: one line, no traceback
            pytest.fail(f"{self.id}: {exc}", pytrace=False)
        record.experiment = self.experiment   # the same cell may serve several experiments
        self.node.stash[RECORD] = (record, from_store)
        if benchmark is not None:
            benchmark.group = f"{self.experiment}-{self.cell.split}-{self.cell.model}"
            benchmark.extra_info.update({
                "fer_bench": record.to_dict(), "from_store": from_store, "cell_id": record.cell_id,
                "experiment": self.experiment, "profile": settings.profile.name,
                "timing": "stored" if from_store else "measured",
            })
            fed = feed_epoch_times(benchmark, record.epoch_times_s)
            if benchmark.enabled and not fed:
                self.state.untimed.append(record.to_dict())
        progress.finish_cell(record, from_store)
        if record.status != "ok":
            pytest.fail(f"{record.cell_id} failed: {record.error}", pytrace=False)
        return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    stored = item.stash.get(RECORD, None)
    if call.when == "call" and stored is not None:
        # Travels with the report (xdist serialises report attributes), so the process that
        # draws the final table sees every cell.
        outcome.get_result().fer_bench_record = stored[0].to_dict()

"""Axis values -> a checked plan -> the ``Cell``: the one path from what a user asks for to
a cell's identity. The pytest plugin (``fer_bench.pytest.plan.resolve_test_cell``),
``fer-bench run`` (``fer_bench.cli.run.plan_run``) and scripts (``benchmarks/*.py``) all
build their cells here, so one set of axis values names one cell whichever front end asks::

    plan = plan_cell(CellRequest(model="small_cnn", split="ordinary", variant="nhot-3"))
    data = clean(raw, plan.cleaning)                 # the cleaning rule the cell needs
    if plan.aligner != "none":                       # an aligner's output it reads
        data = align_clean(raw, data, plan.aligner)
    cell = plan.cell(data.fingerprint)               # Cell, its digest the store's key

``plan_cell`` checks every value before any data is loaded: an unknown name (with close
names), a label treatment and split that need differently cleaned data, a seed, epochs,
precision or device that cannot be, a recipe override that is no ``TrainConfig`` field or
not of its type, a model that cannot take the init (``CellSkipped``). A script that needs
only the recipe reads ``plan.config``; one holding a cell read from a store asks
``cleaning_of(cell)`` for the cleaning rule of its data.
Each error is one line; ``OptionNames`` lets a front end put its own option in it
(``fer-bench run``: "argument --loss: unknown loss 'msee'; did you mean: mse?").

**The variant axis has three names.** ``variant`` is the axis: the ``Cell`` field, the
``CellRequest`` field, the plugin's ``fer_variant`` fixture and ``fer-bench run --variant``.
Its values are the names of the label-treatment registry ``LABELS``
(``fer_bench.data.labels.treatments``), which third parties extend through the entry-point
group ``fer_bench.labels`` (``fer-bench list labels``). ``--fer-variant`` is the pytest
plugin's option for it (ini ``fer_variant``, env ``FER_BENCH_VARIANT``). ``--fer-nhot`` /
``--nhot`` (numbers N) are shorthand for the variants ``nhot-N``; the front ends turn
them into variant names before they reach this module.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import torch

from fer_bench.data.align.axis import DEFAULT_ALIGNMENT, check_alignment, resolve_alignment
from fer_bench.data.labels.treatments import LABELS, nhot_variant
from fer_bench.data.splits import SPLITS
from fer_bench.errors import CellSkipped, ConfigError, FerBenchError
from fer_bench.identity.cell import PRECISION_CHOICES, Cell, InitChoice, resolve_init
from fer_bench.identity.config import COMPILE_EVAL, TrainConfig
from fer_bench.models import MODELS, ModelSpec, get_model
from fer_bench.training.augment import check_augmentation, needs_landmarks
from fer_bench.training.device import default_device
from fer_bench.training.losses import get_loss
from fer_bench.training.resolve import check_init, resolve_cell, resolve_config
from fer_bench.training.tasks import cleaning_rule

#: The variant of a request that names none: 8-hot training targets.
DEFAULT_VARIANT = nhot_variant(8)
T = TypeVar("T")
#: ``TrainConfig`` fields a ``CellRequest`` carries as fields of its own (not in ``recipe``).
REQUEST_FIELDS = ("epochs", "loss", "augmentation", "init", "compile")
#: How a recipe field's type is named in an error.
_KINDS = {int: "a whole number", float: "a number", str: "a string"}


@dataclass(frozen=True, kw_only=True)
class CellRequest:
    """The axis values of one cell, as a front end was asked for them.

    ``variant``: a ``LABELS`` name (module docstring). ``seed``: a whole number >= 0 (the
    split and the label treatment draw from it). ``loss`` / ``augmentation`` / ``epochs``:
    None = the model's own choice, else SPEC's. ``init``: "scratch", "imagenet",
    "file:PATH" or an already resolved ``InitChoice``; None = the recipe's. ``alignment``:
    the axis value, "none" or an aligner name (``ALIGNERS``). ``compile``: evaluate through
    ``torch.compile`` (``compile=eval`` in the recipe). ``precision``: "auto", "fp32" or
    "bf16" as asked; the cell holds the effective one. ``device``: "cpu", "cuda", "cuda:N",
    "mps"; None = cuda when available, else cpu. ``recipe``: further ``TrainConfig`` fields
    a script sets (``{"batch_size": 64}``), applied over the model's recipe as the fields
    above are (a None value leaves the model's); the request keeps its own copy.
    """

    model: str
    split: str
    variant: str = DEFAULT_VARIANT
    seed: int = 0
    loss: str | None = None
    augmentation: str | None = None
    init: str | InitChoice | None = None
    alignment: str = DEFAULT_ALIGNMENT
    epochs: int | None = None
    compile: bool = False
    precision: str = "auto"
    device: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", dict(self.recipe))


@dataclass(frozen=True)
class OptionNames:
    """How a front end names a ``CellRequest`` field in its error messages.

    ``options``: field -> the option that set it (``{"loss": "--loss"}``). An error about a
    field with an option says it: the plugin's spelling ``--fer-<field>`` inside the message
    becomes the option, and a message that still does not name it is prefixed
    ``<prefix><option>: ``. A field without an option keeps the message as raised: each
    names its kind and value already ("unknown loss 'msee'; did you mean: mse?").
    """

    options: Mapping[str, str] = field(default_factory=dict)
    prefix: str = ""

    def named(self, name: str, exc: FerBenchError) -> FerBenchError:
        """``exc`` (same type) with its message naming ``name``'s option, if it has one."""
        option = self.options.get(name)
        if option is None:
            return exc
        message = str(exc).replace(f"--fer-{name}", option)
        return type(exc)(message if option in message else f"{self.prefix}{option}: {message}")

    def check(self, name: str, check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``check(*args, **kwargs)``; a ``ConfigError`` / ``CellSkipped`` it raises names
        ``name``."""
        try:
            return check(*args, **kwargs)
        except (ConfigError, CellSkipped) as exc:
            raise self.named(name, exc) from None


@dataclass(frozen=True)
class CellPlan:
    """A checked ``CellRequest`` and what its data must be, before any data is loaded.

    ``cleaning``: the cleaning rule (``fer_bench.data.clean.CLEANING_RULES``) the label
    treatment and split need; ``aligner``: the aligner whose output the data must carry
    (``data.align.axis.align_clean``), "none" for none; ``alignment``: the cell's
    ``alignment`` field; ``config``: the recipe (SPEC < model < request); ``init``: the
    resolved initialisation (``init.path``: a local weights file to load, or None);
    ``device``: the device the cell runs on.
    """

    request: CellRequest
    spec: ModelSpec
    config: TrainConfig
    init: InitChoice
    cleaning: str
    aligner: str
    alignment: str
    device: str
    seed: int

    @property
    def init_path(self) -> Any:
        """The local weights file the model starts from (``Path``), or None."""
        return self.init.path

    def cell(self, dataset_fingerprint: str) -> Cell:
        """The cell's complete identity on the data whose fingerprint is given: that data
        is cleaned by ``cleaning`` (an aligner's output keeps its fingerprint)."""
        return resolve_cell(self.spec, variant=self.request.variant, split=self.request.split,
                            seed=self.seed, config=self.config,
                            dataset_fingerprint=dataset_fingerprint, device=self.device,
                            precision=self.request.precision, alignment=self.alignment)


def plan_cell(request: CellRequest, names: OptionNames | None = None) -> CellPlan:
    """Check every value of ``request`` and resolve what its cell needs (``CellPlan``).

    Raises, naming the field's option through ``names``: ``ConfigError`` for a value that
    cannot be (unknown name, a label treatment and split needing different cleaning rules,
    a bad seed, epochs, precision, device or recipe override); ``CellSkipped`` when the
    model cannot take the init (ImageNet weights it has not), after every value is checked;
    ``ModelError`` for a model plug-in that fails to load; ``AlignError`` when the
    aligner's dlib or model files are missing (the alignment field hashes them).
    """
    names = names or OptionNames()
    if request.model not in MODELS:
        raise names.named("model", ConfigError(MODELS.unknown_message(request.model,
                                                                        MODELS.names())))
    spec = get_model(request.model)
    init = request.init
    if init is not None and not isinstance(init, InitChoice):
        init = names.check("init", resolve_init, init)
    if request.loss is not None:
        names.check("loss", get_loss, request.loss)
    if request.augmentation is not None:
        names.check("augmentation", check_augmentation, request.augmentation)
    names.check("epochs", _whole, "epochs", request.epochs, 1)
    names.check("variant", LABELS.get, request.variant)
    names.check("split", SPLITS.get, request.split)
    cleaning = names.check("split", cleaning_rule, request.variant, request.split)
    seed = names.check("seed", _whole, "seed", request.seed, 0)
    names.check("precision", _precision, request.precision)
    device = request.device or default_device()
    names.check("device", check_device, device)
    names.check("alignment", check_alignment, request.alignment)
    recipe = names.check("recipe", check_recipe_overrides, request.recipe)
    config = names.check("recipe", resolve_config, spec, epochs=request.epochs,
                         loss=request.loss, augmentation=request.augmentation,
                         init=None if init is None else init.name,
                         compile=COMPILE_EVAL if request.compile else None, **recipe)
    if init is None:
        init = resolve_init(config.init)
    names.check("init", check_init, spec, init)
    alignment, use = resolve_alignment(request.alignment,
                                       landmarks=needs_landmarks(config.augmentation))
    return CellPlan(request=request, spec=spec, config=config, init=init, cleaning=cleaning,
                    aligner=DEFAULT_ALIGNMENT if use is None else use.aligner,
                    alignment=alignment, device=device, seed=seed)


def cleaning_of(cell: Cell) -> str:
    """The cleaning rule (``fer_bench.data.clean.CLEANING_RULES``) the data of an already
    built ``cell`` (e.g. one read from a store) was cleaned by: its label treatment's and
    split's, as ``CellPlan.cleaning`` is for a request. ``ConfigError`` when they differ."""
    return cleaning_rule(cell.variant, cell.split)


def check_recipe_overrides(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``recipe`` as ``resolve_config`` overrides, each name a ``TrainConfig`` field that a
    ``CellRequest`` does not carry itself, each value None or of the field's type (an int
    passes for a float); else ``ConfigError`` naming the first bad field."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name, value in recipe.items():
        if name in REQUEST_FIELDS:
            raise ConfigError(f"recipe field {name!r} is a CellRequest field of its own: "
                              f"set CellRequest({name}=...), not recipe[{name!r}]")
        if name not in defaults:
            close = difflib.get_close_matches(str(name), list(defaults), n=3)
            hint = f"; did you mean: {', '.join(close)}" if close else ""
            raise ConfigError(f"unknown recipe field {name!r}: not a TrainConfig field{hint}")
        kind = type(defaults[name])
        fits = (value is None or (isinstance(value, kind) and not isinstance(value, bool))
                or (kind is float and isinstance(value, int) and not isinstance(value, bool)))
        if not fits:
            wanted = _KINDS.get(kind, kind.__name__)
            raise ConfigError(f"recipe field {name!r} must be {wanted}, got {value!r}")
    return dict(recipe)



def _whole(what: str, value: Any, low: int) -> int | None:
    """``value`` as an int when it is a whole number >= ``low`` (None passes); else
    ``ConfigError``."""
    if value is None and what == "epochs":
        return None
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low:
        raise ConfigError(f"{what} must be a whole number >= {low}, got {value!r}")
    return number


def _precision(precision: str) -> None:
    if precision not in PRECISION_CHOICES:
        raise ConfigError(f"unknown precision {precision!r}; valid: "
                          f"{', '.join(PRECISION_CHOICES)}")


def check_device(device: str) -> None:
    """``ConfigError`` when ``device`` is no device name (cpu, cuda, cuda:N, mps) or names
    an accelerator this machine lacks."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    index = str(device).partition(":")[2]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{device!r} asked for, but CUDA is not available on this "
                              f"machine; use cpu")
        if index and int(index) >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ConfigError(f"{device!r}: this machine has {count} CUDA device(s), "
                              f"cuda:0..cuda:{count - 1}")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None)
                                and torch.backends.mps.is_available()):
        raise ConfigError(f"{device!r} asked for, but MPS is not available on this machine; "
                          f"use cpu")
    elif kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")

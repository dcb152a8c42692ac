"""The fer_bench pytest plugin's settings: its options, the axes, and what the user, the
markers and the profile ask for (``fer_bench.pytest.plugin`` holds the hooks and fixtures).

Imported by the plugin in every pytest run of the environment, so it imports nothing of
the data layer, the registries or torch until a fer_bench test asks for a value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from fer_bench.planning.profiles import (
    CLASSICAL_MODELS,
    DEFAULT_NHOT,
    DEFAULT_SEEDS,
    DEFAULT_SPLITS,
    PROFILES,
    STUDY_MODELS,
    Profile,
    ProfileName,
    get_profile,
    parse_int_list,
    parse_name_list,
    parse_shard,
)

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
    "alignment": ("face alignment: none, dlib-hog, dlib-cnn (default none; "
                  "`fer-bench data align` fills the cache)", False),
    "epochs": ("epochs per cell (default: the profile's, else the model's, else 40)", False),
    "device": ("cpu, cuda, cuda:1 ... (default: cuda when available)", False),
    "precision": ("auto, fp32 or bf16: bf16 autocast over fp32 weights, part of each cell's "
                  "identity (default auto: bf16 on CUDA; on a CPU with bf16 units the "
                  "model's cpu_precision, else fp32)", False),
    "results": ("result store folder (default: $FER_BENCH_RESULTS, else ./results)", False),
    "rerun": ("train every cell even when the result store has it", True),
    "compile": ("evaluate through torch.compile (inductor): compile=eval in each cell's "
                "identity, compile seconds recorded apart from epoch time", True),
    "profile": (f"run profile: {', '.join(p for p in PROFILES if p is not ProfileName.DEFAULT)}", False),
    "shard": ("run shard i of n (i/n): keeps the collected cells at positions p with "
              "p %% n == i-1", False),
    "plan": ("what to print before the first cell: cost (default: cells to train and from "
             "the store, epochs, device, precision, and the estimated time from each model's "
             "FLOPs and a few timed training steps here), cells (the same, nothing timed), off",
             False),
    "benchmark_tables": ("pytest-benchmark's per-epoch timing tables: condensed (default: "
                         "min/mean/max epoch seconds and rounds) or full (all its columns; an "
                         "explicit --benchmark-columns wins)", False),
}
#: Values of the options that take one of a few words (the first is the default).
CHOICES: dict[str, tuple[str, ...]] = {"plan": ("cost", "cells", "off"),
                                       "benchmark_tables": ("condensed", "full")}
_TRUE = {"1", "true", "yes", "on"}


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
    precision: str = "auto"
    results: str | None = None
    rerun: bool = False
    compile: bool = False
    shard: tuple[int, int] | None = None
    plan: str = "cost"                        # CHOICES["plan"]
    benchmark_tables: str = "condensed"       # CHOICES["benchmark_tables"]

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
        from fer_bench.data.labels.treatments import nhot_variant

        axis, items = "variant", tuple(nhot_variant(int(n)) for n in items)
    validate_axis(axis, items, what=what)
    if axis == "init":
        from fer_bench.identity.cell import resolve_init

        items = tuple(resolve_init(v) for v in items)
    return tuple(dict.fromkeys(int(v) if axis == "seed" else v for v in items))


def validate_axis(axis: str, values: tuple[Any, ...], *, what: str) -> None:
    """Raise ``ConfigError`` (or ``ModelError``) for a value no registry knows."""
    from fer_bench.errors import ConfigError

    check = _checker(axis)
    if check is not None:
        for value in values:
            try:
                check(str(value))
            except ConfigError as exc:
                raise ConfigError(f"{what}: {exc}") from None
    elif axis == "seed":
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            raise ConfigError(f"{what}: seeds must be whole numbers >= 0, got {bad}")


_REGISTRY_OF_AXIS = {"model": "models", "variant": "labels", "split": "splits",
                     "loss": "losses", "augmentation": "augmentations"}


def _checker(axis: str) -> Callable[[str], Any] | None:
    """What validates one value of ``axis`` (raising ``ConfigError``), None for no check:
    the axis's registry's ``get``, or ``check_alignment`` (imported only when asked for)."""
    if axis in _REGISTRY_OF_AXIS:
        from fer_bench.planning.catalog import registry_of

        return registry_of(_REGISTRY_OF_AXIS[axis]).get
    if axis == "alignment":
        from fer_bench.data.align.axis import check_alignment

        return check_alignment
    return None

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
        precision=_precision(raw_option(config, "precision")),
        results=raw_option(config, "results"),
        rerun=(raw_option(config, "rerun") or "").lower() in _TRUE,
        compile=(raw_option(config, "compile") or "").lower() in _TRUE,
        shard=parse_shard(shard_text) if shard_text else None,
        plan=_choice(config, "plan"), benchmark_tables=_choice(config, "benchmark_tables"),
    )


def _choice(config: pytest.Config, name: str) -> str:
    """The value of a ``CHOICES`` option (its first word when unset); ``ConfigError`` naming
    the option and the valid words else."""
    from fer_bench.errors import ConfigError

    text = raw_option(config, name)
    value = (text or CHOICES[name][0]).strip().lower()
    if value not in CHOICES[name]:
        raise ConfigError(f"--fer-{name.replace('_', '-')}: unknown value {text!r}; valid: "
                          f"{', '.join(CHOICES[name])}")
    return value


def _precision(text: str | None) -> str:
    """``--fer-precision`` checked: "auto" (unset), "fp32" or "bf16"; ``ConfigError`` else."""
    from fer_bench.errors import ConfigError
    from fer_bench.identity.cell import PRECISION_CHOICES

    value = (text or "auto").strip().lower()
    if value not in PRECISION_CHOICES:
        raise ConfigError(f"--fer-precision: unknown precision {text!r}; valid: "
                          f"{', '.join(PRECISION_CHOICES)}")
    return value


def default_models() -> tuple[str, ...]:
    """The study's four models when all are registered, else the classical four."""
    from fer_bench.models import list_models

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


def parametrized_names(node: Any) -> set[str]:
    """The argument names a test's own ``@pytest.mark.parametrize`` markers set."""
    names: set[str] = set()
    for marker in node.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",")]
        names.update(argnames)
    return names


def experiment_epochs(node: Any) -> int | None:
    """The epochs a test's ``fer_experiment(..., epochs=N)`` marker gives its cells (the
    experiment's own budget), None when it names none. They stand below ``--fer-epochs``
    and the profile's epochs, above the model's own; ``ConfigError`` unless N is a whole
    number >= 1."""
    marker = node.get_closest_marker(EXPERIMENT_MARKER)
    epochs = marker.kwargs.get("epochs") if marker is not None else None
    if epochs is None:
        return None
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        from fer_bench.errors import ConfigError

        raise ConfigError(f"@pytest.mark.{EXPERIMENT_MARKER}(epochs=...): expected a whole "
                          f"number >= 1, got {epochs!r}")
    return epochs


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

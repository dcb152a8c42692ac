"""Model registry: entry-point group ``fer_bench.models``, loaded lazily.

A distribution registers models in its ``pyproject.toml``::

    [project.entry-points."fer_bench.models"]
    my_net = "my_pkg.models:my_net"

The entry point's name is the model's name. Its target is either

(a) a plain factory ``factory(num_classes=8, in_chans=1)`` returning a ``torch.nn.Module``
    that maps float [B, in_chans, 48, 48] (pixels in [0, 1]) to logits [B, num_classes];
    it may also accept ``pretrained``; nothing else is required, or
(b) a ``ModelSpec`` object, for a model with its own training preferences.

Nothing else (e.g. a zero-argument callable returning a spec) is accepted: a callable that
is not a ``ModelSpec`` is always treated as case (a).

Listing names reads package metadata only; a plugin module is imported when a model is
asked for (``get_model``) or when loadable models are listed. A plugin whose import fails
is reported with a warning and skipped; the others go on. ``register_model`` adds models
in-process (tests, notebooks); an in-process model shadows an entry point of that name.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from fer_bench.errors import ModelError

ENTRY_POINT_GROUP = "fer_bench.models"


@dataclass(frozen=True)
class ModelSpec:
    """A model and its training preferences. ``None`` means "use the SPEC default".

    ``factory(num_classes=8, in_chans=1, pretrained=False)`` returns a ``torch.nn.Module``
    mapping float [B, in_chans, input_size, input_size] (pixels in [0, 1]) to logits
    [B, num_classes]. A plain third-party factory that does not accept ``pretrained`` is
    called without it.
    ``extra_loss(model, outputs, logits, targets) -> Tensor | None`` adds a model-specific
    term (e.g. an attention regulariser) to the training loss.
    """

    name: str
    factory: Callable[..., torch.nn.Module]
    input_size: int = 48
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    loss: str | None = None
    augmentation: str | None = None
    pretrained_available: bool = False
    extra_loss: Callable[..., Any] | None = None
    description: str = ""
    source: str = ""   # filled by the registry: distribution name + entry point value
    tags: tuple[str, ...] = field(default_factory=tuple)   # e.g. ("classical", "small")


IN_PROCESS = "in-process"   # the distribution column of a model added by register_model


@dataclass(frozen=True)
class ModelEntry:
    """One registered model as the registry sees it.

    ``value`` is the entry point target "pkg.module:attr"; ``distribution``/``version`` the
    installed distribution that declares it (``IN_PROCESS`` for ``register_model``).
    ``loaded`` is True when the target was imported and accepted in this listing; ``error``
    holds the import/validation error message when it was tried and failed.
    """

    name: str
    value: str
    distribution: str
    version: str
    loaded: bool = False
    error: str | None = None
    spec: ModelSpec | None = None

    @property
    def source(self) -> str:
        """"dist==version (module:attr)", or "in-process (module:qualname)"."""
        if self.distribution == IN_PROCESS:
            return f"{IN_PROCESS} ({self.value})"
        return f"{self.distribution}=={self.version} ({self.value})"


_IN_PROCESS: dict[str, ModelSpec] = {}


def _normalized(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _discover() -> dict[str, tuple[ModelEntry, importlib.metadata.EntryPoint | None]]:
    """Every registered name -> (entry, entry point). Reads metadata only, imports nothing.

    Duplicate names across distributions: the first by normalised distribution name wins
    (deterministic whatever the install order), with a warning naming both.
    """
    found: list[tuple[str, str, importlib.metadata.EntryPoint]] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = (dist.metadata["Name"] if dist is not None else None) or "<unknown>"
        version = dist.version if dist is not None else ""
        found.append((dist_name, version, ep))
    found.sort(key=lambda item: (_normalized(item[0]), item[2].name, item[2].value))

    table: dict[str, tuple[ModelEntry, importlib.metadata.EntryPoint | None]] = {}
    for dist_name, version, ep in found:
        entry = ModelEntry(ep.name, ep.value, dist_name, version)
        if ep.name in table:
            kept = table[ep.name][0]
            warnings.warn(
                f"model name {ep.name!r} is registered twice in entry-point group "
                f"{ENTRY_POINT_GROUP!r}: keeping {kept.source}, ignoring {entry.source}",
                stacklevel=3,
            )
            continue
        table[ep.name] = (entry, ep)
    for name, spec in _IN_PROCESS.items():
        entry = ModelEntry(name, _qualified_name(spec.factory), IN_PROCESS, "", True, None, spec)
        if name in table:
            warnings.warn(f"in-process model {name!r} shadows {table[name][0].source}",
                          stacklevel=3)
        table[name] = (entry, None)
    return table


def _qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qualname}"


def _as_spec(name: str, obj: Any, source: str) -> ModelSpec:
    """Case (a) plain factory or (b) ModelSpec -> a ModelSpec named ``name``, source filled."""
    if isinstance(obj, ModelSpec):
        if obj.name != name:
            warnings.warn(f"model {name!r} ({source}) carries ModelSpec name {obj.name!r}; "
                          f"the entry point name {name!r} is used", stacklevel=3)
        return replace(obj, name=name, source=source)
    if callable(obj):
        doc = inspect.getdoc(obj) or ""
        return ModelSpec(name=name, factory=obj, source=source,
                         description=doc.splitlines()[0] if doc else "")
    raise ModelError(f"model {name!r} ({source}): entry point target is a "
                     f"{type(obj).__name__}, not a ModelSpec or a factory callable")


def _load(entry: ModelEntry, ep: importlib.metadata.EntryPoint | None) -> ModelEntry:
    """Import the entry point target; the returned entry has ``spec`` or ``error`` set."""
    if ep is None:   # in-process, already a spec
        return entry
    try:
        spec = _as_spec(entry.name, ep.load(), entry.source)
    except Exception as exc:   # any import-time failure of a third-party plugin
        message = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"{ENTRY_POINT_GROUP} entry point '{entry.name} = {entry.value}' from distribution "
            f"{entry.distribution} {entry.version} failed to load and is skipped: {message}",
            stacklevel=3,
        )
        return replace(entry, loaded=False, error=message)
    return replace(entry, loaded=True, error=None, spec=spec)


def list_models(*, loadable_only: bool = False) -> list[str]:
    """Sorted names of every registered model.

    Reads package metadata only (no plugin import) unless ``loadable_only``: then each
    plugin is imported, and those that fail are warned about and left out.
    """
    table = _discover()
    if not loadable_only:
        return sorted(table)
    return sorted(name for name, (entry, ep) in table.items() if _load(entry, ep).loaded)


def list_entries(*, load: bool = False) -> list[ModelEntry]:
    """Every registered model as a ``ModelEntry``, sorted by name.

    With ``load=False`` nothing is imported (``loaded`` False, ``error`` None for entry
    points); with ``load=True`` each target is imported and ``loaded``/``error``/``spec`` set.
    """
    table = _discover()
    entries = []
    for name in sorted(table):
        entry, ep = table[name]
        entries.append(_load(entry, ep) if load else entry)
    return entries


def get_model(name: str) -> ModelSpec:
    """The ``ModelSpec`` registered as ``name``, its plugin imported now.

    ``spec.source`` is "dist==version (module:attr)". Raises ``ModelError`` for an unknown
    name (with close-name suggestions) or a plugin that fails to import (with its error).
    """
    table = _discover()
    if name not in table:
        close = sorted(difflib.get_close_matches(name, list(table), n=3, cutoff=0.6),
                       key=lambda c: (-difflib.SequenceMatcher(None, name, c).ratio(), c))
        if close:
            raise ModelError(f"unknown model {name!r}; did you mean: {', '.join(close)}?")
        available = ", ".join(sorted(table)) or "none (install fer-baselines or a plugin)"
        raise ModelError(f"unknown model {name!r}; available models: {available}")
    entry, ep = table[name]
    if ep is None:
        assert entry.spec is not None
        return entry.spec
    try:
        return _as_spec(name, ep.load(), entry.source)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model {name!r} ({entry.source}) failed to load: "
                         f"{type(exc).__name__}: {exc}") from exc


def register_model(spec_or_factory: Any = None, name: str | None = None) -> Any:
    """Register a ModelSpec or a plain factory in this process (tests, notebooks).

    Use as a function, ``register_model(spec)`` / ``register_model(factory, name="x")``, or
    as a decorator, ``@register_model`` / ``@register_model(name="x")``, on a factory. A
    factory's name defaults to its ``__name__``. Returns its argument unchanged.
    Re-registering a name replaces the earlier in-process model with a warning.
    """
    if spec_or_factory is None:   # @register_model(name="x")
        return lambda target: register_model(target, name=name)
    if isinstance(spec_or_factory, ModelSpec):
        model_name = name or spec_or_factory.name
    else:
        model_name = name or getattr(spec_or_factory, "__name__", None)
    if not model_name:
        raise ModelError(f"register_model: cannot tell the name of {spec_or_factory!r}; "
                         f"pass name=")
    source = f"{IN_PROCESS} ({_qualified_name(getattr(spec_or_factory, 'factory', spec_or_factory))})"
    spec = _as_spec(model_name, spec_or_factory, source)
    if model_name in _IN_PROCESS:
        warnings.warn(f"register_model: replacing in-process model {model_name!r}", stacklevel=2)
    _IN_PROCESS[model_name] = spec
    return spec_or_factory


def unregister_model(name: str) -> None:
    """Remove an in-process model added by ``register_model`` (no-op if absent)."""
    _IN_PROCESS.pop(name, None)


def _accepts(func: Callable[..., Any], param: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):   # builtins / C callables without a signature
        return False
    return param in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                  for p in params.values())


def build_model(spec: ModelSpec, num_classes: int = 8, in_chans: int = 1,
                pretrained: bool = False) -> torch.nn.Module:
    """Instantiate ``spec``'s network: [B, in_chans, S, S] in [0, 1] -> logits [B, num_classes].

    ``pretrained`` is passed only to factories that accept it; asking for pretrained weights
    of a spec with ``pretrained_available=False`` raises ``ModelError``, as does a factory
    that raises or returns something other than an ``nn.Module``.
    """
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if pretrained:
        if not spec.pretrained_available:
            raise ModelError(f"model {spec.name!r} ({spec.source}) has no pretrained weights")
        if not _accepts(spec.factory, "pretrained"):
            raise ModelError(f"model {spec.name!r} ({spec.source}) says pretrained weights "
                             f"exist but its factory takes no 'pretrained' argument")
        kwargs["pretrained"] = True
    elif _accepts(spec.factory, "pretrained"):
        kwargs["pretrained"] = False
    try:
        model = spec.factory(**kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model {spec.name!r} ({spec.source}) failed to build: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model {spec.name!r} ({spec.source}): factory returned a "
                         f"{type(model).__name__}, not a torch.nn.Module")
    return model


def logits_of(outputs: Any) -> torch.Tensor:
    """The logits in a forward output: the tensor itself, the first item of a tuple/list
    (e.g. ``(logits, attention)``), or ``outputs["logits"]`` of a dict."""
    if isinstance(outputs, (tuple, list)) and outputs:
        return outputs[0]
    if isinstance(outputs, dict) and "logits" in outputs:
        return outputs["logits"]
    return outputs


def check_model_output(model: torch.nn.Module, spec: ModelSpec, device: torch.device | str,
                       num_classes: int = 8, in_chans: int = 1,
                       input_size: int | None = None) -> None:
    """Run a 2-image forward pass (seeded uniform pixels, ``input_size`` or the spec's) on
    ``device``.

    Moves ``model`` to ``device``; runs in eval mode under ``no_grad`` (the training flag is
    restored). Raises ``ModelError`` naming the model when forward raises, or the logits
    (see ``logits_of``) are not a finite float tensor of shape [2, num_classes].
    """
    batch = 2
    size = input_size or spec.input_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, in_chans, size, size, generator=generator)
    was_training = model.training
    try:
        model.to(device).eval()
        with torch.no_grad():
            logits = logits_of(model(images.to(device)))
    except Exception as exc:
        raise ModelError(f"model {spec.name!r} ({spec.source}): forward pass on "
                         f"[{batch}, {in_chans}, {size}, {size}] "
                         f"raised {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    expected = (batch, num_classes)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"model {spec.name!r} ({spec.source}): output shape {got}, "
                         f"expected {list(expected)} (batch, classes)")
    if not logits.is_floating_point() or not torch.isfinite(logits).all():
        raise ModelError(f"model {spec.name!r} ({spec.source}): output is not finite floats "
                         f"(dtype {logits.dtype})")


def models_command(args: Any = None) -> int:
    """``fer-bench models``: a rich table of every registered model and its status.

    Imports each plugin to read its spec. Returns 0 when every model loads (also when
    none is installed), 1 when any fails to import.
    """
    from rich.markup import escape
    from rich.table import Table

    from fer_bench.console import wide_console

    with warnings.catch_warnings():   # failures are shown in the status column instead
        warnings.simplefilter("ignore")
        entries = list_entries(load=True)
    console = wide_console()
    table = Table(title=f"fer_bench models (entry-point group {ENTRY_POINT_GROUP!r})")
    for column in ("name", "distribution", "entry point", "input", "pretrained", "status"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        spec = entry.spec
        size = f"{spec.input_size}x{spec.input_size}" if spec else "?"
        pretrained = ("yes" if spec.pretrained_available else "no") if spec else "?"
        status = "ok" if entry.loaded else f"[red]import error: {escape(str(entry.error))}[/red]"
        distribution = entry.distribution + (f" {entry.version}" if entry.version else "")
        table.add_row(escape(entry.name), escape(distribution), escape(entry.value), size,
                      pretrained, status)
    console.print(table)
    if not entries:
        console.print(f"no models installed: install fer-baselines "
                      f"(pip install -e baselines) or a package with a "
                      f"{ENTRY_POINT_GROUP!r} entry point")
    return 0 if all(entry.loaded for entry in entries) else 1

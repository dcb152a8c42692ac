"""One generic, lazy registry type, and the model registry built on it.

Every extensible concept of fer_bench (models, losses, augmentation sets, split kinds,
label treatments) is a ``Registry``: names come from entry points of one group, read from
package metadata without importing anything, plus objects registered in-process (the
built-ins and tests/notebooks). An entry point's target is imported only when its name is
asked for. Unknown names get close-name suggestions; a plugin whose import fails is warned
about and skipped by listings, and asking for it by name raises with its error.
The design follows lm-evaluation-harness ``api/registry.py`` (one registry type, entry-point
placeholders, suggestions) and timm ``models/_registry.py`` (lazy listing).

**Families.** A registry may also hold *families*: a name pattern and a builder, for sets
of entries indexed by parameters written into the name (``adaptive_x1=5_x2=15``). A
well-formed name that is not registered yet is built on first lookup and registered then
(``Registry.register_family``); listings show the materialised names and the family's
template.

A distribution registers a model in its ``pyproject.toml``::

    [project.entry-points."fer_bench.models"]
    my_net = "my_pkg.models:my_net"

and a loss the same way in group ``fer_bench.losses`` (see ``training/losses.py``).

Model targets are either (a) a plain factory ``factory(num_classes=8, in_chans=1)``
returning a ``torch.nn.Module`` that maps float [B, in_chans, 48, 48] (pixels in [0, 1]) to
logits [B, num_classes] (it may also accept ``pretrained``), or (b) a ``ModelSpec``, for a
model with its own training preferences. Anything callable that is not a ``ModelSpec`` is
case (a).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from fer_bench.errors import ConfigError, FerBenchError, ModelError

T = TypeVar("T")
IN_PROCESS = "in-process"   # the distribution column of an in-process registration
BUILTIN = "fer-bench"       # the distribution column of fer_bench's own built-ins


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name as a registry sees it.

    ``value``: the entry point target "pkg.module:attr" (or the qualified name of an
    in-process object); ``distribution``/``version``: the installed distribution that
    declares it (``IN_PROCESS`` / ``BUILTIN`` otherwise). ``loaded`` is True when the
    target was imported and accepted; ``error`` holds the failure message when it was
    tried and failed; ``item`` the coerced object.
    """

    name: str
    value: str
    distribution: str
    version: str
    loaded: bool = False
    error: str | None = None
    item: Any = None

    @property
    def source(self) -> str:
        """"dist==version (module:attr)", or "in-process (module:qualname)"."""
        if self.distribution in (IN_PROCESS, BUILTIN) and not self.version:
            return f"{self.distribution} ({self.value})"
        return f"{self.distribution}=={self.version} ({self.value})"

    @property
    def spec(self) -> Any:
        """The loaded item (a ``ModelSpec`` for models); None until loaded."""
        return self.item

    @property
    def release(self) -> str:
        """"dist==version" of the declaring distribution, "in-process" for in-process ones:
        part of a cell's identity (a new model release is another model)."""
        return self.distribution if not self.version else f"{self.distribution}=={self.version}"


def _normalized(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qualname}"


def instances_of(cls: type, kind: str) -> Callable[[str, Any, Entry], Any]:
    """A ``coerce`` for registries whose targets must be ``cls`` objects."""
    def coerce(name: str, obj: Any, entry: Entry) -> Any:
        if isinstance(obj, cls):
            return obj
        raise ConfigError(f"{kind} {name!r} ({entry.source}): target is a {type(obj).__name__}, "
                          f"not a {cls.__name__}")
    return coerce


@dataclass(frozen=True)
class Family:
    """A parametric family of a registry (``Registry.register_family``)."""

    template: str
    pattern: re.Pattern[str]
    build: Callable[[str, re.Match[str]], Any]
    description: str = ""
    builtin: bool = False


class Registry(Generic[T]):
    """Names -> objects of one kind, from entry-point group ``group`` and in-process.

    ``coerce(name, obj, entry) -> T`` validates/wraps an imported target (raise to reject
    it); ``error`` is the exception type for unknown or broken names (a ``FerBenchError``).
    In-process registrations shadow entry points of the same name (with a warning).
    """

    def __init__(self, kind: str, group: str, coerce: Callable[[str, Any, Entry], T],
                 error: type[FerBenchError] = ConfigError, option: str = "") -> None:
        self.kind = kind
        self.group = group
        self.option = option or kind
        self._coerce = coerce
        self._error = error
        self._in_process: dict[str, Entry] = {}
        self._families: dict[str, Family] = {}

    # ------------------------------------------------------------ registration
    def register(self, name: str, obj: Any, *, builtin: bool = False) -> T:
        """Add ``obj`` under ``name`` in this process; returns the coerced item.

        ``builtin`` marks fer_bench's own entries (no warning on import-time registration).
        Re-registering an in-process name replaces it with a warning.
        """
        if not name or not isinstance(name, str):
            raise self._error(f"{self.kind}: cannot register {obj!r} without a name")
        value = (qualified_name(obj) if inspect.isfunction(obj) or inspect.isclass(obj)
                 else f"{type(obj).__module__}:{name}")
        entry = Entry(name, value, BUILTIN if builtin else IN_PROCESS, "", True)
        item = self._coerce(name, obj, entry)
        if name in self._in_process and not builtin:
            warnings.warn(f"{self.kind} {name!r}: replacing the in-process registration",
                          stacklevel=2)
        self._in_process[name] = replace(entry, item=item)
        return item

    def unregister(self, name: str) -> None:
        """Remove an in-process registration (no-op if absent)."""
        self._in_process.pop(name, None)

    def register_family(self, template: str, pattern: str,
                        build: Callable[[str, re.Match[str]], Any], *,
                        description: str = "", builtin: bool = False) -> None:
        """A parametric family of names: any name that ``re.fullmatch``-es ``pattern`` and
        is not registered otherwise is built by ``build(name, match)`` on first lookup
        (``get``/``entry``) and registered then (``builtin`` as in ``register``), so
        ``names()`` lists it from then on. ``template`` is the family's display form
        (``adaptive_x1=<X1>_x2=<X2>``), shown in listings and unknown-name messages.
        ``build`` raises this registry's error type for well-formed names with bad
        parameters (e.g. X1 > X2)."""
        self._families[template] = Family(template, re.compile(pattern), build, description,
                                          builtin)

    def families(self) -> list[Family]:
        """The registered families, by template."""
        return [self._families[t] for t in sorted(self._families)]

    def _family_of(self, name: str) -> Family | None:
        return next((f for f in self._families.values() if f.pattern.fullmatch(name)), None)

    # ------------------------------------------------------------ discovery
    def _discover(self) -> dict[str, tuple[Entry, importlib.metadata.EntryPoint | None]]:
        """Every name -> (entry, entry point). Reads metadata only, imports nothing.

        A name declared by two distributions: the first by normalised distribution name
        wins (deterministic whatever the install order), with a warning naming both.
        """
        found = []
        for ep in importlib.metadata.entry_points(group=self.group):
            dist = ep.dist
            dist_name = (dist.metadata["Name"] if dist is not None else None) or "<unknown>"
            found.append((dist_name, dist.version if dist is not None else "", ep))
        found.sort(key=lambda item: (_normalized(item[0]), item[2].name, item[2].value))
        table: dict[str, tuple[Entry, importlib.metadata.EntryPoint | None]] = {}
        for dist_name, version, ep in found:
            entry = Entry(ep.name, ep.value, dist_name, version)
            if ep.name in table:
                warnings.warn(f"{self.kind} name {ep.name!r} is registered twice in entry-point "
                              f"group {self.group!r}: keeping {table[ep.name][0].source}, "
                              f"ignoring {entry.source}", stacklevel=3)
                continue
            table[ep.name] = (entry, ep)
        for name, entry in self._in_process.items():
            if name in table and entry.distribution == IN_PROCESS:
                warnings.warn(f"in-process {self.kind} {name!r} shadows {table[name][0].source}",
                              stacklevel=3)
            table[name] = (entry, None)
        return table

    def _load(self, entry: Entry, ep: importlib.metadata.EntryPoint | None) -> Entry:
        if ep is None:   # in-process: already coerced
            return entry
        try:
            item = self._coerce(entry.name, ep.load(), entry)
        except Exception as exc:   # any import-time failure of a third-party plugin
            return replace(entry, loaded=False, error=f"{type(exc).__name__}: {exc}")
        return replace(entry, loaded=True, error=None, item=item)

    def names(self, *, loadable_only: bool = False) -> list[str]:
        """Sorted names. Imports nothing unless ``loadable_only`` (then failing plugins are
        warned about and left out)."""
        table = self._discover()
        if not loadable_only:
            return sorted(table)
        return [entry.name for entry in self.entries(load=True, warn=True) if entry.loaded]

    def entries(self, *, load: bool = False, warn: bool = False) -> list[Entry]:
        """Every name as an ``Entry``, sorted; ``load`` imports each target."""
        result = []
        for name, (entry, ep) in sorted(self._discover().items()):
            loaded = self._load(entry, ep) if load else entry
            if warn and loaded.error:
                warnings.warn(f"{self.group} entry point '{name} = {entry.value}' from "
                              f"distribution {entry.distribution} {entry.version} failed to "
                              f"load and is skipped: {loaded.error}", stacklevel=2)
            result.append(loaded)
        return result

    def __iter__(self):
        """Iterates over the sorted names (nothing imported)."""
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._discover())

    def __contains__(self, name: object) -> bool:
        """True for a registered name and for a well-formed name of a family."""
        return isinstance(name, str) and (name in self._discover()
                                          or self._family_of(name) is not None)

    def entry(self, name: str) -> Entry:
        """The loaded ``Entry`` of ``name``; raises ``error`` for an unknown or broken name."""
        table = self._discover()
        if name not in table:
            family = self._family_of(name) if isinstance(name, str) else None
            if family is None:
                raise self._error(self.unknown_message(name, list(table)))
            self.register(name, family.build(name, family.pattern.fullmatch(name)),
                          builtin=family.builtin)
            return self._in_process[name]
        entry, ep = table[name]
        if ep is None:
            return entry
        try:
            item = self._coerce(name, ep.load(), entry)
        except FerBenchError:
            raise
        except Exception as exc:
            raise self._error(f"{self.kind} {name!r} ({entry.source}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        return replace(entry, loaded=True, error=None, item=item)

    def get(self, name: str) -> T:
        """The object registered as ``name`` (its plugin imported now)."""
        return self.entry(name).item

    def unknown_message(self, name: str, known: list[str]) -> str:
        """"unknown <kind> 'x' (<option>); did you mean: a, b?" or the list of valid names
        (family templates included)."""
        known = [*known, *self._families]
        close = sorted(difflib.get_close_matches(str(name), known, n=3, cutoff=0.6),
                       key=lambda c: (-difflib.SequenceMatcher(None, str(name), c).ratio(), c))
        if close:
            return f"unknown {self.kind} {name!r}; did you mean: {', '.join(close)}?"
        return (f"unknown {self.kind} {name!r}; valid: "
                f"{', '.join(sorted(known)) or 'none registered'}")


# =========================================================================== models
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
    ``recipe``: further ``TrainConfig`` preferences (e.g. ``{"optimizer": "sgd",
    "schedule": "onecycle", "ema": 0.99}``), applied after the named fields above.
    ``cpu_precision``: "fp32" or "bf16", the CPU default (see the field).
    ``source`` ("dist==version (module:attr)") and ``release`` ("dist==version") are filled
    by the registry; ``release`` is part of every cell's identity.
    """

    name: str
    factory: Callable[..., Any]
    input_size: int = 48
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    loss: str | None = None
    augmentation: str | None = None
    pretrained_available: bool = False
    extra_loss: Callable[..., Any] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    release: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)   # e.g. ("classical", "small")
    #: What ``--fer-precision auto`` trains in on a CPU with bf16 units: "bf16" where bf16
    #: autocast was measured faster at no accuracy cost (``benchmarks/precision_probe.py``).
    cpu_precision: str = "fp32"


def _as_spec(name: str, obj: Any, entry: Entry) -> ModelSpec:
    """Case (a) plain factory or (b) ModelSpec -> a ModelSpec named ``name``, source filled."""
    if isinstance(obj, ModelSpec):
        if obj.name != name:
            warnings.warn(f"model {name!r} ({entry.source}) carries ModelSpec name {obj.name!r}; "
                          f"the entry point name {name!r} is used", stacklevel=3)
        return replace(obj, name=name, source=entry.source, release=entry.release)
    if callable(obj):
        doc = inspect.getdoc(obj) or ""
        return ModelSpec(name=name, factory=obj, source=entry.source, release=entry.release,
                         description=doc.splitlines()[0] if doc else "")
    raise ModelError(f"model {name!r} ({entry.source}): entry point target is a "
                     f"{type(obj).__name__}, not a ModelSpec or a factory callable")


MODELS: Registry[ModelSpec] = Registry("model", ENTRY_POINT_GROUP, _as_spec, ModelError,
                                       option="--fer-models")

ModelEntry = Entry   # a model's Entry; ``entry.spec`` is its ModelSpec once loaded


def list_models(*, loadable_only: bool = False) -> list[str]:
    """Sorted names of every registered model (metadata only unless ``loadable_only``)."""
    return MODELS.names(loadable_only=loadable_only)


def list_entries(*, load: bool = False) -> list[Entry]:
    """Every registered model as an ``Entry`` sorted by name (``entry.spec`` when loaded)."""
    return MODELS.entries(load=load, warn=load)


def get_model(name: str) -> ModelSpec:
    """The ``ModelSpec`` registered as ``name``; ``ModelError`` for an unknown name (with
    suggestions) or a plugin that fails to import (with its error)."""
    return MODELS.get(name)


def register_model(spec_or_factory: Any = None, name: str | None = None) -> Any:
    """Register a ModelSpec or a plain factory in this process (tests, notebooks).

    ``register_model(spec)``, ``register_model(factory, name="x")``, or as a decorator
    ``@register_model`` / ``@register_model(name="x")``. Returns its argument unchanged.
    """
    if spec_or_factory is None:   # @register_model(name="x")
        return lambda target: register_model(target, name=name)
    if isinstance(spec_or_factory, ModelSpec):
        model_name = name or spec_or_factory.name
    else:
        model_name = name or getattr(spec_or_factory, "__name__", None)
    if not model_name:
        raise ModelError(f"register_model: cannot tell the name of {spec_or_factory!r}; pass name=")
    MODELS.register(model_name, spec_or_factory)
    return spec_or_factory


def unregister_model(name: str) -> None:
    """Remove an in-process model added by ``register_model`` (no-op if absent)."""
    MODELS.unregister(name)


def _accepts(func: Callable[..., Any], param: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):   # builtins / C callables without a signature
        return False
    return param in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def build_model(spec: ModelSpec, num_classes: int = 8, in_chans: int = 1,
                pretrained: bool = False) -> Any:
    """Instantiate ``spec``'s network: [B, in_chans, S, S] in [0, 1] -> logits [B, num_classes].

    ``pretrained`` is passed only to factories that accept it; asking for pretrained weights
    of a spec with ``pretrained_available=False`` raises ``ModelError``, as does a factory
    that raises or returns something other than an ``nn.Module``.
    """
    import torch

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


def logits_of(outputs: Any) -> Any:
    """The logits in a forward output: the tensor itself, the first item of a tuple/list
    (e.g. ``(logits, attention)``), or ``outputs["logits"]`` of a dict."""
    if isinstance(outputs, (tuple, list)) and outputs:
        return outputs[0]
    if isinstance(outputs, dict) and "logits" in outputs:
        return outputs["logits"]
    return outputs


def check_model_output(model: Any, spec: ModelSpec, device: Any, num_classes: int = 8,
                       in_chans: int = 1, input_size: int | None = None) -> None:
    """Run a 2-image forward pass (seeded uniform pixels, ``input_size`` or the spec's) on
    ``device`` in eval mode under ``no_grad`` (the training flag is restored).

    Raises ``ModelError`` naming the model when forward raises, or the logits (see
    ``logits_of``) are not a finite float tensor of shape [2, num_classes].
    """
    import torch

    batch = 2
    size = input_size or spec.input_size
    images = torch.rand(batch, in_chans, size, size, generator=torch.Generator().manual_seed(0))
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


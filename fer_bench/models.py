"""The model registry (``MODELS``, entry-point group ``fer_bench.models``), ``ModelSpec`` and
building a model from it.

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

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fer_bench.errors import ModelError
from fer_bench.registry import Entry, Registry

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


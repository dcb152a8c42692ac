"""Every registry of fer_bench by the kind it lists (``fer-bench list KIND``, the axis options'
error messages): models, losses, augmentations, splits, labels, aligners."""

from __future__ import annotations

from typing import Any

KINDS = ("models", "losses", "augmentations", "splits", "labels", "aligners")


def registry_of(kind: str) -> Any:
    """The ``Registry`` listed as ``kind`` (one of ``KINDS``)."""
    if kind == "models":
        from fer_bench.models import MODELS as registry
    elif kind == "losses":
        from fer_bench.training.losses import LOSSES as registry
    elif kind == "augmentations":
        from fer_bench.training.augment.sets import AUGMENTATIONS as registry
    elif kind == "splits":
        from fer_bench.data.splits import SPLITS as registry
    elif kind == "labels":
        from fer_bench.data.labels.treatments import LABELS as registry
    elif kind == "aligners":
        from fer_bench.data.align.axis import ALIGNERS as registry
    else:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    return registry

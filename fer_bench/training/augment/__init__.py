"""Augmentation sets (registry ``AUGMENTATIONS``, entry-point group
``fer_bench.augmentations``) as batched tensor ops on the device.

Modules: ``base`` (the registry, ``AugmentationSet``, the ops ``hflip`` / ``rotate``),
``sets`` (the study's static sets and the online ones, ``to_model_input``),
``adaptive`` (the adaptive family of report 5.3.2). ``AUGMENTATIONS`` imports ``sets`` and
``adaptive`` (its built-in modules) on its first lookup or listing; the names below are
re-exported lazily, so importing this package registers nothing.
"""

from __future__ import annotations

from fer_bench.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "AUGMENTATIONS": "fer_bench.training.augment.base",
    "AugmentationSet": "fer_bench.training.augment.base",
    "check_augmentation": "fer_bench.training.augment.base",
    "needs_landmarks": "fer_bench.training.augment.sets",
    "to_model_input": "fer_bench.training.augment.sets",
}

__all__ = ["AUGMENTATIONS", "AugmentationSet", "check_augmentation", "needs_landmarks",
           "to_model_input"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

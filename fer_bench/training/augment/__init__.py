"""Augmentation sets (registry ``AUGMENTATIONS``, entry-point group
``fer_bench.augmentations``) as batched tensor ops on the device.

Modules: ``base`` (the registry, ``AugmentationSet``, the ops ``hflip`` / ``rotate``),
``sets`` (the study's static sets and the online ones, ``to_model_input``),
``adaptive`` (the adaptive family of report 5.3.2, registered when ``sets`` is imported).
"""

from fer_bench.training.augment.base import AUGMENTATIONS, AugmentationSet
from fer_bench.training.augment.sets import check_augmentation, needs_landmarks, to_model_input

__all__ = ["AUGMENTATIONS", "AugmentationSet", "check_augmentation", "needs_landmarks",
           "to_model_input"]

"""fer_bench.data: source -> clean -> split -> N-hot, one module per stage.

Public names are re-exported here lazily (module ``__getattr__``): importing this package,
which every import of a ``fer_bench.data`` module does first, imports only ``clean``
(numpy) and registers nothing. Registries import their own built-in modules on first use
(``fer_bench.registry.Registry(builtins=...)``).
"""

from __future__ import annotations

from typing import Any

# Eager, and light (numpy only): the function ``clean`` shares its name with the submodule
# ``clean``, whose import would otherwise leave the module under this name.
from fer_bench.data.clean import clean, subset
from fer_bench.lazy import lazy_exports

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "EMOTIONS": "fer_bench.data.schema",
    "USAGES": "fer_bench.data.schema",
    "RawDataset": "fer_bench.data.schema",
    "CleanDataset": "fer_bench.data.schema",
    "Split": "fer_bench.data.schema",
    "make_split": "fer_bench.data.splits",
    "SPLIT_NAMES": "fer_bench.data.splits",
    "reduce_to_nhot": "fer_bench.data.labels.nhot",
    "make_synthetic": "fer_bench.data.synthetic",
}

__all__ = ["CleanDataset", "EMOTIONS", "RawDataset", "SPLIT_NAMES", "Split", "USAGES", "clean",
           "load_dataset", "make_split", "make_synthetic", "reduce_to_nhot", "subset"]


def load_dataset(*args: Any, **kwargs: Any) -> Any:
    """The one data entry point (a ``RawDataset``); see ``fer_bench.data.cache.load_dataset``.
    Imports the source readers only when called."""
    from fer_bench.data.cache import load_dataset as _load_dataset

    return _load_dataset(*args, **kwargs)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

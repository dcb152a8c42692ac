"""fer_bench.data: source -> clean -> split -> N-hot, one module per stage.

Public names are re-exported here; ``load_dataset`` imports ``fer_bench.data.cache``
only when called, so this package imports without the source readers.
"""

from __future__ import annotations

from typing import Any

from fer_bench.data.clean import clean, subset
from fer_bench.data.labels.nhot import reduce_to_nhot
from fer_bench.data.schema import EMOTIONS, USAGES, CleanDataset, RawDataset, Split
from fer_bench.data.splits import SPLIT_NAMES, make_split
from fer_bench.data.synthetic import make_synthetic

# Registers Microsoft's FERPlus label modes (ms-*) and split official-majority in LABELS /
# SPLITS; every import of a fer_bench.data module runs this package first.
from fer_bench.data.labels import ferplus_ms as _ferplus_ms  # noqa: E402,F401  isort: skip


def load_dataset(*args: Any, **kwargs: Any) -> RawDataset:
    """The one data entry point; see ``fer_bench.data.cache.load_dataset``."""
    from fer_bench.data.cache import load_dataset as _load_dataset

    return _load_dataset(*args, **kwargs)


__all__ = [
    "EMOTIONS", "USAGES", "RawDataset", "CleanDataset", "Split", "clean", "subset",
    "make_split", "SPLIT_NAMES", "reduce_to_nhot", "make_synthetic", "load_dataset",
]

"""Lazy re-exports for a package ``__init__`` (PEP 562): a public name's module is imported
on first access, so importing the package imports (and registers) nothing else.

    __getattr__, __dir__ = lazy_exports(__name__, {"AUGMENTATIONS": "fer_bench.training.augment.base"},
                                        __all__)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], public: Sequence[str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of package ``package``: ``exports`` maps a public
    name to the module defining it; a name is cached in the package after its first access."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__

"""Column-registry hygiene for the leaderboard tests.

Rendering results that declare an experiment's columns (the committed board declares
``benchmarks/test_sanity.py``'s) imports that module, which registers its columns for the
whole process. Without cleaning up, a later test would see them among the built-in ones.
"""

from __future__ import annotations

import sys

import pytest

from fer_bench.leaderboard.column_registry import (
    IMPORTED_MODULE_PREFIX,
    registered_columns,
    unregister_column,
)


def _imported_column_modules() -> set[str]:
    return {name for name in sys.modules if name.startswith(IMPORTED_MODULE_PREFIX)}


@pytest.fixture(autouse=True)
def restore_column_registry():
    """Unregister the columns a test added and forget the modules it imported for them, so
    the next load of the same results imports them again."""
    columns = {column.name for column in registered_columns()}
    modules = _imported_column_modules()
    yield
    for column in registered_columns():
        if column.name not in columns:
            unregister_column(column.name)
    for name in _imported_column_modules() - modules:
        del sys.modules[name]

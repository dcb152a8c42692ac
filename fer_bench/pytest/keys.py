"""The pytest stash keys the plugin's modules share: a leaf (it imports only pytest), so
``plugin``, ``plugin_cell`` and ``launch.probe`` read and write them without importing
each other."""

from __future__ import annotations

from typing import Any

import pytest

#: (CellRecord, from_store) of a test's cell, set by ``plugin_cell.FerCell.run``.
RECORD = pytest.StashKey[tuple[Any, bool]]()

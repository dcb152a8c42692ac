"""Every committed result keeps its identity: each record under ``leaderboard/cells/`` (the
published grids' result store) is re-read with today's code, and the store file name it
would get now (readable id + digest of the complete identity, ``Cell.file_name``) must be
the name it was committed under. A change to ``Cell``, ``TrainConfig`` or the digest that
would orphan committed cells (the store would then miss them and train them again) fails
here, naming the first cells it would orphan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_bench.identity.record import CellRecord

CELLS = Path(__file__).resolve().parents[2] / "leaderboard" / "cells"
COMMITTED = sorted(CELLS.glob("*/*.json"))


@pytest.mark.skipif(not COMMITTED, reason="no committed cells under leaderboard/cells/")
def test_every_committed_cell_re_derives_its_file_name():
    orphaned = []
    for path in COMMITTED:
        record = CellRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        cell = record.cell
        if (cell.folder_name(), cell.file_name()) != (path.parent.name, path.name):
            orphaned.append(f"{path.relative_to(CELLS)} -> {cell.folder_name()}/{cell.file_name()}")
    assert not orphaned, f"{len(orphaned)} of {len(COMMITTED)} committed cells would be orphaned: {orphaned[:5]}"
    assert len(COMMITTED) >= 50   # the 48-cell 3-epoch grid and the speedrun cells at least

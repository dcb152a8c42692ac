"""A label treatment's N of N-hot is a typed field (``LabelTreatment.nhot``): cells, ids and
the leaderboard read it, never a name parsed back with a pattern."""

from __future__ import annotations

import re

import pytest

from fer_bench.data.labels.treatments import LABELS, LabelTreatment, nhot_of, nhot_variant
from fer_bench.identity.cell import Cell, axis_token
from fer_bench.leaderboard.stats import CellSummary
from tests.core.test_import_graph import PACKAGE


@pytest.fixture
def top3_treatment():
    """A third-party treatment that is N-hot training with N=3 under its own name."""
    LABELS.register("acme-top3", LabelTreatment(
        "acme-top3", lambda data, train, seed: (train, data.dist[train]), nhot=3))
    yield "acme-top3"
    LABELS.unregister("acme-top3")


def test_builtin_treatments_carry_their_n():
    for n in range(1, 9):
        treatment = LABELS.get(nhot_variant(n))
        assert treatment.nhot == n and treatment.token == f"n{n}"
        cell = Cell(model="m", variant=nhot_variant(n), split="ordinary", seed=0)
        assert cell.nhot == n and cell.id == f"m-n{n}-ordinary-s0"
        assert CellSummary(nhot_variant(n)).nhot == n
    for mode in ("ms-majority", "ms-probability", "ms-crossentropy", "ms-multitarget"):
        assert LABELS.get(mode).nhot is None
        assert Cell(model="m", variant=mode, split="official-majority", seed=1).nhot is None
        assert axis_token("variant", mode) == mode


def test_a_plugin_treatment_declares_its_n(top3_treatment):
    cell = Cell(model="m", variant=top3_treatment, split="ordinary", seed=0)
    assert cell.nhot == 3 and CellSummary(top3_treatment).nhot == 3
    # Only the canonical name is shortened: the plug-in never takes an N-hot cell's id.
    assert cell.id == "m-acme-top3-ordinary-s0"


def test_unregistered_names_are_not_guessed():
    # A name that looks N-hot but is no registered treatment (e.g. a record of a plug-in not
    # installed here) has no N and keeps its name in ids.
    for name in ("nhot-9", "nhot-03", "my-nhot-3"):
        assert nhot_of(name) is None and CellSummary(name).nhot is None
        assert axis_token("variant", name) == name


def test_no_pattern_reads_n_back_from_a_name():
    pattern = re.compile(r"nhot-\(\\d")
    found = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
             if pattern.search(p.read_text(encoding="utf-8"))]
    assert found == []
    assert pattern.search(r're.fullmatch(r"nhot-(\d+)", variant)')   # the check can fail

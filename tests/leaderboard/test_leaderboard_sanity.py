"""The sanity section (issue 22 part 3, ``benchmarks/test_sanity.py``): its own columns
(majority-class rate, loss falling, extra loss finite) and the verdict per model, from
hand-made records."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from fer_bench.leaderboard.column_registry import (
    declared_columns,
    registered_columns,
    unregister_column,
)
from fer_bench.leaderboard.markdown import render_markdown
from fer_bench.leaderboard.table import build_tables
from tests.helpers.leaderboard_support import document_of, make_record

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "benchmarks" / "test_sanity.py"


@pytest.fixture(scope="module")
def sanity():
    """``benchmarks/test_sanity.py`` imported (registering its columns), unregistered after."""
    before = {column.name for column in registered_columns()}
    spec = importlib.util.spec_from_file_location("_bench_test_sanity", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for column in registered_columns():
        if column.name not in before:
            unregister_column(column.name)


def _record(model, acc=0.60, majority=0.30, loss=(0.09, 0.07), extra=(), **fields):
    return make_record(model=model, nhot=8, acc=acc, experiment="sanity",
                       majority_acc=majority, train_loss=list(loss),
                       train_extra_loss=list(extra), **fields)


def _records():
    return [
        _record("vgg16"),                                            # learns, no extra term
        _record("ran", acc=0.25, extra=(0.2, 0.1)),                  # below the chance level
        _record("dan", loss=(0.07, 0.0712), extra=(1.5, 1.25)),      # loss rising
        _record("mten", extra=(0.3, float("nan"))),                  # extra term blew up
        _record("mten_old", majority=None),                          # record older than the field
        _record("mten_failed", acc=None, loss=(0.09,)),              # the cell failed
        _record("vgg16_one_epoch", loss=(0.09,)),                    # no trend to see
    ]


def test_the_sanity_section_shows_the_rate_the_trend_the_extra_terms_and_the_verdict(sanity):
    frame = build_tables(_records(), experiment="sanity")["ordinary"]
    columns = [sanity.MAJORITY_COLUMN, sanity.LOSS_COLUMN, sanity.EXTRA_COLUMN, sanity.VERDICT_COLUMN]
    assert set(columns) <= set(frame.columns)
    table = {model: [frame.loc[model, c] for c in columns] for model in frame.index}
    assert table["vgg16"] == ["30.00", "yes (0.09 → 0.07)", "none", "learns"]
    assert table["ran"] == ["30.00", "yes (0.09 → 0.07)", "yes (0.2 → 0.1)",
                            "does not learn (honest 25.00% is not above the majority-class "
                            "rate 30.00%)"]
    assert table["dan"] == ["30.00", "no (0.07 → 0.0712)", "yes (1.5 → 1.25)",
                            "does not learn (loss does not fall (0.07 → 0.0712))"]
    assert table["mten"] == ["30.00", "yes (0.09 → 0.07)", "no (0.3 → nan)",
                             "does not learn (extra loss not finite)"]
    assert table["mten_old"][0] == "—"
    assert table["mten_old"][3] == "unknown (no majority-class rate in the record)"
    assert table["mten_failed"][3] == "unknown (the cell failed: CellFailed: loss is NaN)"
    assert table["vgg16_one_epoch"][1] == "—"
    assert table["vgg16_one_epoch"][3] == "unknown (1 epoch: no loss trend)"


def _wilson(right, n, z=1.959963984540054):
    """The 95% Wilson score interval of right / n, by its formula."""
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_above_the_rate_means_beyond_the_test_sets_sampling_noise(sanity):
    """The margin over the majority-class rate carries the Wilson interval of the honest
    accuracy over n_test images; a margin inside the noise is not "learns"."""
    records = [_record("vgg16"),                                       # 24 of 40 right
               _record("mten", acc=0.35, majority=0.30),                # 14 of 40: in the noise
               _record("mten_many", acc=0.35, majority=0.30, sizes=(324, 36, 4000))]
    frame = build_tables(records, experiment="sanity")["ordinary"]
    low, high = _wilson(24, 40)
    assert frame.loc["vgg16", sanity.MARGIN_COLUMN] == (
        f"+30.00 [{100 * (low - 0.30):+.2f}, {100 * (high - 0.30):+.2f}]")
    assert frame.loc["vgg16", sanity.VERDICT_COLUMN] == "learns"
    low, high = _wilson(14, 40)
    assert low < 0.30
    assert frame.loc["mten", sanity.VERDICT_COLUMN] == (
        "does not learn (honest 35.00% is above the majority-class rate 30.00% only within "
        f"sampling noise (95% CI of the margin [{100 * (low - 0.30):+.2f}, "
        f"{100 * (high - 0.30):+.2f}] points))")
    assert frame.loc["mten_many", sanity.VERDICT_COLUMN] == "learns"   # 1400 of 4000 right


def test_several_seeds_are_shown_one_by_one(sanity):
    records = [_record("vgg16"), _record("vgg16", seed=1, acc=0.2)]
    frame = build_tables(records, experiment="sanity")["ordinary"]
    verdict = frame.loc["vgg16", sanity.VERDICT_COLUMN]
    assert verdict.startswith("s0: learns; s1: does not learn (honest 20.00%")


def test_the_columns_belong_to_the_sanity_section_only_and_reach_the_page(sanity):
    assert sanity.VERDICT_COLUMN not in build_tables([make_record(nhot=8)], experiment="nhot")["ordinary"]
    records = _records()[:4]
    page = render_markdown(records, [document_of(records, {"sanity": "Sanity check"})])
    assert "Sanity check" in page
    for header in (sanity.MAJORITY_COLUMN, sanity.LOSS_COLUMN, sanity.EXTRA_COLUMN,
                   sanity.VERDICT_COLUMN):
        assert f" {header} |" in page
    assert "| learns |" in page and page.count("does not learn (") == 3
    declared = {d["name"]: d for d in declared_columns(["sanity"], root=REPO)}
    assert declared[sanity.VERDICT_COLUMN] == {"name": sanity.VERDICT_COLUMN,
                                               "experiments": ["sanity"],
                                               "module": "benchmarks/test_sanity.py"}

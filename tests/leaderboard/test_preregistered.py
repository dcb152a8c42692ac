"""The pre-registered contrasts (leaderboard/PREREGISTRATION.md): the cells each contrast
takes (by identity), the paired statistics recomputed independently, Holm's correction, the
interaction contrast and the verdict rules; and on the committed converged cells, the
primary contrast recomputed from the JSON files by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.preregistered import (
    CONTRASTS,
    contrast_results,
    contrast_table_lines,
    holm,
)
from fer_bench.leaderboard.stats import TIE_AWARE, TOP1
from tests.helpers.leaderboard_support import make_record

CELLS = Path(__file__).resolve().parents[2] / "leaderboard" / "cells"


def grid_record(nhot: int, seed: int, acc: float, *, loss: str = "cce", split: str = "ordinary",
                epochs: int = 9, precision: str = "bf16", model: str = "fast_resnet",
                top1: float | None = None, dataset_label: str = "ferplus") -> CellRecord:
    return make_record(model, nhot, seed, acc, split=split,
                       recipe=TrainConfig(epochs=epochs, loss=loss), precision=precision,
                       dataset_label=dataset_label,
                       acc_top1_honest=acc - 0.01 if top1 is None else top1)


def by_key(results):
    return {r.contrast.key: r for r in results}


def test_holm_step_down():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adjusted["d"] is None                     # no p: not counted in m = 3
    assert adjusted["a"] == pytest.approx(0.03)      # 3 x 0.01
    assert adjusted["c"] == pytest.approx(0.06)      # 2 x 0.03
    assert adjusted["b"] == pytest.approx(0.06)      # max(0.06, 1 x 0.04): monotone
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


def test_primary_takes_only_its_block_and_matches_a_hand_paired_t():
    one = [0.830, 0.825, 0.846, 0.835, 0.828]
    eight = [0.838, 0.835, 0.849, 0.836, 0.826]
    records = [grid_record(1, s, a) for s, a in enumerate(one)]
    records += [grid_record(8, s, a) for s, a in enumerate(eight)]
    # cells another block or recipe owns must not enter P
    records += [grid_record(8, 0, 0.99, epochs=3), grid_record(8, 1, 0.99, precision="fp32"),
                grid_record(8, 2, 0.99, loss="mse"), grid_record(8, 3, 0.99, split="complex"),
                grid_record(8, 4, 0.99, dataset_label="synthetic")]
    result = by_key(contrast_results(records))["P"]
    differences = np.array(eight) - np.array(one)
    t = scipy_stats.ttest_1samp(differences, 0.0)
    half = scipy_stats.t.ppf(0.975, 4) * differences.std(ddof=1) / np.sqrt(5)
    assert result.n == 5
    assert result.mean == pytest.approx(100 * differences.mean())
    assert result.p == pytest.approx(t.pvalue)
    assert result.ci == pytest.approx((100 * (differences.mean() - half),
                                       100 * (differences.mean() + half)))
    assert result.p_holm is None
    assert "rules out the study's claim (+2 to +4 points)" in result.verdict()
    assert result.verdict().startswith("no effect confirmed")


def test_a_synthetic_cell_never_counts():
    records = [grid_record(n, s, 0.8 + 0.01 * n, dataset_label="synthetic")
               for n in (1, 8) for s in range(5)]
    assert by_key(contrast_results(records))["P"].n == 0
    assert contrast_table_lines(records) == []


def test_interaction_and_holm_over_the_secondaries():
    rng = np.random.default_rng(0)
    records = []
    gain_cce = [0.002, 0.004, -0.001, 0.003, 0.001]
    gain_mse = [0.031, 0.027, 0.035, 0.030, 0.026]
    for s in range(5):
        base = 0.83 + 0.005 * rng.standard_normal()
        records += [grid_record(1, s, base), grid_record(8, s, base + gain_cce[s]),
                    grid_record(1, s, base - 0.02, loss="mse"),
                    grid_record(8, s, base - 0.02 + gain_mse[s], loss="mse")]
    results = by_key(contrast_results(records))
    s4 = results["S4"]
    expected = np.array(gain_mse) - np.array(gain_cce)
    assert s4.n == 5 and s4.mean == pytest.approx(100 * expected.mean())
    # only S4 has a p among the secondaries: Holm over one test leaves it as it is
    assert s4.p_holm == pytest.approx(s4.p)
    # an interaction has no claimed band
    assert s4.verdict() == "the gain is larger under mse than under cce, confirmed after Holm"
    assert results["S1"].verdict() == "no paired cells yet"


def test_top1_is_its_own_metric():
    records = [grid_record(n, s, 0.83 + (0.03 if n == 8 else 0.0) + 0.001 * s,
                           top1=0.80 + 0.001 * s) for n in (1, 8) for s in range(3)]
    tie_aware = by_key(contrast_results(records, TIE_AWARE))["P"]
    top1 = by_key(contrast_results(records, TOP1))["P"]
    assert tie_aware.mean == pytest.approx(3.0)
    assert top1.n == 3 and top1.ci is None   # identical top-1 on both sides: no spread


def test_every_contrast_of_the_plan_is_there():
    assert [c.key for c in CONTRASTS] == ["P", "S1", "S2", "S3", "S4", "S5"]


@pytest.mark.skipif(not CELLS.is_dir(), reason="no committed cells")
def test_the_committed_primary_cells_recompute_by_hand():
    records = [CellRecord.from_dict(json.loads(p.read_text())) for p in CELLS.glob("*/*.json")]
    hand: dict[int, dict[int, float]] = {1: {}, 8: {}}
    for path in sorted((CELLS / "fast_resnet").glob("*.json")):
        raw = json.loads(path.read_text())
        cell = raw["cell"]
        if (cell["split"] == "ordinary" and cell["precision"] == "bf16"
                and cell["recipe"]["epochs"] == 9 and cell["recipe"]["loss"] == "cce"
                and cell["variant"] in ("nhot-1", "nhot-8") and raw["status"] == "ok"):
            hand[int(cell["variant"][5:])][cell["seed"]] = raw["acc_honest"]
    seeds = sorted(hand[1].keys() & hand[8].keys())
    if len(seeds) < 3:
        pytest.skip("fewer than 3 paired primary cells committed")
    result = by_key(contrast_results(records))["P"]
    differences = np.array([hand[8][s] - hand[1][s] for s in seeds])
    assert result.n == len(seeds)
    assert result.mean == pytest.approx(100 * differences.mean())
    assert result.p == pytest.approx(scipy_stats.ttest_1samp(differences, 0.0).pvalue)


def test_the_page_carries_the_contrast_table_only_with_grid_cells():
    from fer_bench.leaderboard.markdown import CONTRASTS_TITLE, render_markdown

    grid = [grid_record(n, s, 0.83 + 0.002 * s + ((0.004 + 0.001 * s * s) if n == 8 else 0.0))
            for n in (1, 8) for s in range(3)]
    page = render_markdown(grid, [], study_numbers=False)
    assert CONTRASTS_TITLE in page
    primary = [line for line in page.splitlines()
               if line.startswith("| P: fast&#95;resnet") and "| tie-aware | 3 | +0.57 |" in line]
    assert len(primary) == 1 and "| 0.042 | - | gain confirmed; rules out" in primary[0]
    short = [make_record("small_cnn", n, s, 0.8) for n in (1, 8) for s in range(3)]
    assert CONTRASTS_TITLE not in render_markdown(short, [], study_numbers=False)

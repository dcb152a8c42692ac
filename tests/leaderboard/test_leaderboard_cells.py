"""A leaderboard that says what its cells are (issue 22 part 2; issue 21 part 4): convergence
count, coinciding training data by fingerprint (outcome fallback labelled), top-1 beside
tie-aware with a verdict each, the study's claim per split and model, short-budget rows,
provenance per experiment, the time split, and the answer plot. Expected numbers are
computed here by hand from the records."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats as scipy_stats

from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import encode_uint8
from fer_bench.leaderboard.cli import leaderboard_command
from fer_bench.leaderboard.columns import (
    COINCIDENCE_COLUMN,
    CONVERGENCE_COLUMN,
    EIGHT_TOP1_CI_COLUMN,
    EIGHT_TOP1_GAIN_COLUMN,
    OVERHEAD_COLUMN,
    TIME_COLUMN,
    WALL_COLUMN,
)
from fer_bench.leaderboard.diagnostics import OUTCOME_NOTE, coincidences
from fer_bench.leaderboard.load import load_results
from fer_bench.leaderboard.markdown import cell_count_text, render_markdown
from fer_bench.leaderboard.plots import gain_points, plot_gain_vs_n
from fer_bench.leaderboard.rows import summarize
from fer_bench.leaderboard.study_claims import (
    GENERAL_GAIN_ON_COMPLEX,
    ORDINARY_GAIN,
    VGG16_COMPLEX_GAIN,
    gain_claim,
    level_verdict,
    one_hot_level_claim,
)
from fer_bench.leaderboard.summary import summary_lines
from fer_bench.leaderboard.table import TOP1_PART, build_tables, print_terminal_tables
from tests.helpers.leaderboard_support import clone, make_record

COMMITTED = Path(__file__).resolve().parents[2] / "leaderboard" / "results.json"


def _t_interval(differences, confidence=0.95):
    d = np.asarray(differences, dtype=float)
    half = scipy_stats.t.ppf((1 + confidence) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean() - half, d.mean() + half


def _predictions(values):
    return encode_uint8(np.array(values, dtype=np.uint8))


# ----------------------------------------------------------------------------- convergence
def test_convergence_counts_cells_whose_best_validation_epoch_is_the_last():
    records = []
    for n in (1, 8):
        for seed in range(3):
            last = n == 8 or seed == 0       # 8-hot: all three; 1-hot: seed 0 only
            records.append(make_record(nhot=n, seed=seed, acc=0.6 + seed / 100,
                                       val_acc=[0.5, 0.6, 0.7] if last else [0.5, 0.7, 0.6],
                                       best_val_epoch=3 if last else 2))
    frame = build_tables(records, experiment="nhot")["ordinary"]
    assert frame.loc["small_cnn", CONVERGENCE_COLUMN] == "4 of 6"
    assert CONVERGENCE_COLUMN in frame.attrs["parts"]["accuracy"]
    text = "\n".join(summary_lines(records))
    assert "the best validation epoch is the last one in 4 of 6 cells" in text


# ----------------------------------------------------------------------------- coincidences
def _fingerprinted_grid():
    """Complex-split-like: seeds 0, 1: 6 = 7 = 8-hot; seed 2: only 7 = 8; 1-hot apart.
    Predictions differ everywhere, so only the fingerprints can tell."""
    records = []
    for seed in range(3):
        for n in (1, 6, 7, 8):
            same_as_eight = n >= 7 or (n == 6 and seed < 2)
            sha = f"eight-{seed}" if same_as_eight else f"own-{n}-{seed}"
            records.append(make_record(nhot=n, seed=seed, acc=0.5 + n / 100 + seed / 1000,
                                       split="complex", train_targets_sha256=sha,
                                       test_predictions=_predictions([n, seed, 0])))
    return records


def test_coinciding_training_data_is_named_from_the_fingerprints():
    records = _fingerprinted_grid()
    row = summarize(records)["complex"][0]
    found = coincidences(row)
    assert [(c.variants, c.seeds, c.basis) for c in found] == [
        (("nhot-6", "nhot-7", "nhot-8"), (0, 1), "fingerprint"),
        (("nhot-7", "nhot-8"), (2,), "fingerprint")]
    expected = "6-hot = 7-hot = 8-hot (seeds 0, 1); 7-hot = 8-hot (seed 2)"
    assert build_tables(records)["complex"].loc["small_cnn", COINCIDENCE_COLUMN] == expected
    assert f"Cells that trained on identical data: {expected}." in "\n".join(summary_lines(records))


def test_equal_outcomes_do_not_count_when_the_fingerprints_differ():
    records = _fingerprinted_grid()
    for record in records:                       # every cell predicts the same now
        record.test_predictions = _predictions([1, 1, 1])
        record.acc_honest = 0.5
    found = coincidences(summarize(records)["complex"][0])
    assert {c.variants for c in found} == {("nhot-6", "nhot-7", "nhot-8"), ("nhot-7", "nhot-8")}


def test_without_fingerprints_the_outcome_fallback_is_used_and_labelled():
    records = []
    for seed in range(3):
        for n in (1, 7, 8):
            predictions = [0, 1, 2] if n >= 7 else [2, 2, 2]
            records.append(make_record(nhot=n, seed=seed, acc=0.7 if n >= 7 else 0.6,
                                       test_predictions=_predictions(predictions)))
    text = build_tables(records)["ordinary"].loc["small_cnn", COINCIDENCE_COLUMN]
    assert text == f"7-hot = 8-hot (seeds 0, 1, 2; {OUTCOME_NOTE})"
    # best N ties at 7 = 8: the summary says they trained on the same data
    assert "best N = 7 (+10.00 points" in "\n".join(summary_lines(records))
    assert "7-hot trained on the same data as 8-hot in every seed" in "\n".join(summary_lines(records))
    records[1].test_predictions = _predictions([0, 1, 1])       # seed 0, 7-hot differs now
    found = coincidences(summarize(records)["ordinary"][0])
    assert [(c.variants, c.seeds) for c in found] == [(("nhot-7", "nhot-8"), (1, 2))]


# ----------------------------------------------------------------------------- top-1
def _top1_grid(top1_one, top1_eight, split="ordinary", model="small_cnn"):
    records = []
    for n, values in ((1, top1_one), (8, top1_eight)):
        for seed, top1 in enumerate(values):
            records.append(make_record(model=model, nhot=n, seed=seed, split=split,
                                       acc=0.01 + (top1 if top1 is not None else 0.6),
                                       acc_top1_honest=top1))
    return records


def test_top1_stands_beside_tie_aware_in_the_tables_and_the_summary():
    one, eight = [0.60, 0.64, 0.62], [0.63, 0.67, 0.66]
    records = _top1_grid(one, eight)
    frame = build_tables(records)["ordinary"]
    mean, half = 100 * np.mean(one), 100 * scipy_stats.t.ppf(0.975, 2) * np.std(one, ddof=1) / np.sqrt(3)
    assert frame.loc["small_cnn", "1-hot (top-1)"] == f"{mean:.2f} ± {half:.2f}"
    assert frame.attrs["parts"][TOP1_PART] == ["1-hot (top-1)", "8-hot (top-1)"]
    low, high = _t_interval(np.subtract(eight, one))
    assert frame.loc["small_cnn", EIGHT_TOP1_GAIN_COLUMN] == f"{100 * np.mean(np.subtract(eight, one)):+.2f}"
    assert frame.loc["small_cnn", EIGHT_TOP1_CI_COLUMN] == f"[{100 * low:+.2f}, {100 * high:+.2f}]"
    lines = summary_lines(records)
    top1 = next(line for line in lines if line.startswith("  - top-1:"))
    p = scipy_stats.ttest_rel(eight, one).pvalue
    assert f"p = {p:.3g} (paired t, n=3)" in top1
    assert "*Verdict: gain confirmed (the 95% interval excludes 0); consistent with the study's claim" in top1
    tie_aware = next(line for line in lines if line.startswith("  - tie-aware:"))
    assert "*Verdict:" in tie_aware
    page = render_markdown(records, [])
    assert "### ordinary split&#58; honest test accuracy" in page
    assert "#### ordinary split&#58; honest top-1 test accuracy" in page
    console = Console(record=True, width=250)
    print_terminal_tables(records, console=console)
    terminal = console.export_text()
    assert "8-hot (top-1)" in terminal and "Verdict: gain confirmed" in terminal


def test_top1_pairs_only_the_seeds_that_recorded_it():
    records = _top1_grid([0.60, None, 0.62, 0.61], [0.63, 0.70, None, 0.65])
    row = summarize(records)["ordinary"][0]
    assert row.eight_vs_one_top1.seeds == (0, 3)
    assert row.eight_vs_one_top1.gain == pytest.approx(np.mean([0.03, 0.04]))
    assert row.eight_vs_one_top1.ci is None and row.eight_vs_one.n_seeds == 4
    assert build_tables(records)["ordinary"].loc["small_cnn", "1-hot (top-1)"].endswith("(3 of 4 seeds)")


# ----------------------------------------------------------------------------- claims
def test_each_split_and_model_is_measured_against_its_own_claim():
    assert gain_claim("fast_resnet", "ordinary") is ORDINARY_GAIN
    assert gain_claim("VGG16", "complex") is VGG16_COMPLEX_GAIN
    assert gain_claim("fast_resnet", "complex") is GENERAL_GAIN_ON_COMPLEX
    assert gain_claim("vgg16", "official") is None
    assert one_hot_level_claim("ran", "complex").band == (65.0, 70.0)
    assert one_hot_level_claim("vgg16", "complex").band == (55.0, 55.0)
    assert one_hot_level_claim("fast_resnet", "complex") is None
    # VGG16 on complex faces: about +10 points, a point claim
    near = _top1_grid([0.50, 0.55, 0.52], [0.58, 0.67, 0.61], split="complex", model="vgg16")
    far = _top1_grid([0.50, 0.55, 0.52], [0.51, 0.565, 0.53], split="complex", model="vgg16")
    near_text, far_text = "\n".join(summary_lines(near)), "\n".join(summary_lines(far))
    assert "about +10 points (report abstract and 4.5)" in near_text
    assert "consistent with the study's claim (+10 points)" in near_text
    assert "rules out the study's claim (+10 points)" in far_text
    # its 1-hot level beside the study's ~55% (top-1 52.33 ± 6.2 covers 55)
    assert "against VGG16 trained on 1-hot reaches only about 55%" in near_text
    assert "top-1: consistent with the study's 55%" in near_text
    other = "\n".join(summary_lines(_top1_grid([0.5, 0.55, 0.52], [0.51, 0.56, 0.53], split="complex")))
    assert "the report gives a complex-face gain only for VGG16" in other
    assert "small_cnn is not one of them, so they are context, not a verdict" in other


def test_level_verdicts_read_the_interval():
    band = one_hot_level_claim("dan", "complex")
    assert level_verdict(0.60, 0.01, band) == "the 95% interval lies below the study's 65-70%"
    assert level_verdict(0.64, 0.02, band) == "consistent with the study's 65-70%"
    assert level_verdict(0.75, None, band) == "the single seed lies above the study's 65-70%"


# ----------------------------------------------------------------------------- budgets
def test_the_short_budget_row_stays_beside_the_converged_one():
    short = [make_record(model="fast_resnet", nhot=n, seed=s, acc=0.78 + n / 1000 + s / 100,
                         recipe=TrainConfig(epochs=3)) for n in (1, 8) for s in range(3)]
    long = [clone(r, epochs=9) for r in short]
    for r in long:
        r.acc_honest += 0.05
    other_model = [make_record(model="small_cnn", nhot=1, seed=0, recipe=TrainConfig(epochs=2))]
    rows = summarize(short + long + other_model)["ordinary"]
    labels = {row.label: row.short_budget for row in rows}
    assert labels == {"fast_resnet epochs=3 (short-budget result: 3 of 9 epochs)": True,
                      "fast_resnet epochs=9": False, "small_cnn epochs=2": False}
    bullets = [line for line in summary_lines(short + long) if line.startswith("- ")]
    assert len(bullets) == 2 and "short-budget result: 3 of 9 epochs), 3 epochs" in bullets[0]


# ----------------------------------------------------------------------------- provenance, cost
def test_provenance_counts_cells_per_experiment():
    grid = [make_record(nhot=n, seed=s) for n in (1, 8) for s in range(3)]
    speedrun = [make_record(nhot=8, seed=0, experiment="speedrun", recipe=TrainConfig(epochs=9)),
                clone(grid[3])]                          # the grid's 8-hot seed 0, reported again
    speedrun[1].experiment = "speedrun"
    records = grid + speedrun
    assert cell_count_text(records) == "7 distinct (0 failed); per experiment: nhot 6 (3 epochs), speedrun 2 (3, 9 epochs)"
    assert "- cells: 7 distinct" in render_markdown(records, [])


def test_cost_table_splits_the_wall_time_and_states_the_overhead_share():
    timed = [make_record(nhot=n, seed=s, setup_s=10.0 + s, flops_s=2.0, eval_s=20.0 + n,
                         store_s=0.5, wall_s=100.0 + 10 * s) for n in (1, 8) for s in range(2)]
    frame = build_tables(timed)["ordinary"]
    train = 1.0 + 1.5 + 2.0                               # make_record's epoch times
    walls = [100.0, 110.0, 100.0, 110.0]
    assert frame.loc["small_cnn", WALL_COLUMN] == f"{np.mean(walls):.1f}"
    parts = [np.mean([10, 11, 10, 11]), train, np.mean([21, 21, 28, 28]), 2.0, 0.5]
    assert frame.loc["small_cnn", TIME_COLUMN] == " / ".join(
        f"{v:.2f}" if v < 1 else f"{v:.1f}" for v in parts)
    assert TIME_COLUMN == "time split, s/cell (setup / training / evaluation / FLOP counting / store)"
    overhead = sum(w - train for w in walls) / sum(walls)
    assert frame.loc["small_cnn", OVERHEAD_COLUMN] == f"{100 * overhead:.1f}%"
    assert OVERHEAD_COLUMN in frame.attrs["parts"]["cost"]
    assert OVERHEAD_COLUMN not in build_tables([make_record(nhot=1)])["ordinary"]   # older records


# ----------------------------------------------------------------------------- the answer plot
def test_answer_plot_draws_the_paired_gains_with_their_intervals(tmp_path):
    accs = {1: [0.60, 0.66, 0.62], 3: [0.62, 0.69, 0.63], 8: [0.63, 0.70, 0.65]}
    records = [make_record(nhot=n, seed=s, acc=a) for n, v in accs.items() for s, a in enumerate(v)]
    row = summarize(records)["ordinary"][0]
    points = gain_points(row)
    assert [n for n, _ in points] == [3, 8]
    for n, gain in points:
        assert gain.ci == pytest.approx(_t_interval(np.subtract(accs[n], accs[1])), rel=1e-12)
    path = plot_gain_vs_n(records, tmp_path / "gain.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    empty = plot_gain_vs_n([make_record(nhot=8)], tmp_path / "empty.png")
    assert empty.stat().st_size > 1000


# ----------------------------------------------------------------------------- the committed board
@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed leaderboard/results.json")
def test_the_committed_grid_renders_with_what_its_cells_are(tmp_path):
    import argparse

    out = tmp_path / "board"
    args = argparse.Namespace(results=[str(COMMITTED)], out=str(out), no_write=False)
    assert leaderboard_command(args, console=Console(record=True, width=250)) == 0
    page = (out / "README.md").read_text()
    assert (out / "gain_vs_n.png").read_bytes()[:4] == b"\x89PNG"
    loaded = load_results([COMMITTED])
    grid = [r for r in loaded.records if r.experiment == "nhot" and r.epochs == 3]
    # the provenance counts what the file holds, per experiment
    per_experiment = {}
    for record in loaded.records:
        per_experiment.setdefault(record.experiment, set()).add(record.cell.digest())
    for experiment, digests in per_experiment.items():
        assert re.search(rf"\b{experiment} {len(digests)} \(", page)
    # the 3-epoch grid: every cell's best validation epoch is its last
    for split in ("ordinary", "complex"):
        cells = [r for r in grid if r.split == split]
        last = sum(r.best_val_epoch == len(r.val_acc) for r in cells)
        assert f"in {last} of {len(cells)} cells" in page
    # 7-hot = 8-hot in every seed; on complex faces 6-hot too in seeds 0 and 1
    assert "7-hot = 8-hot (seeds 0, 1, 2" in page
    assert "6-hot = 7-hot = 8-hot (seeds 0, 1" in page and "7-hot = 8-hot (seed 2" in page
    assert "*Verdict: no gain confirmed (the 95% interval includes 0); rules out the study's claim (+2 to +4 points).*" in page

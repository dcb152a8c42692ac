"""Leaderboard statistics, tables and markdown on the hand-written golden JSON.

Every expected number is recomputed here, independently of fer_bench.leaderboard, from the
raw records with numpy and scipy.stats (t.ppf, ttest_rel, binomtest, norm).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fer_bench.errors import DataError
from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.load import load_results, records_frame
from fer_bench.leaderboard.markdown import escape_markdown, render_markdown
from fer_bench.leaderboard.rows import summarize
from fer_bench.leaderboard.stats import mcnemar, mcnemar_cells, mean_ci, paired_gain
from fer_bench.leaderboard.table import build_tables
from tests.helpers.leaderboard_support import write_golden


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    return load_results([write_golden(tmp_path_factory.mktemp("golden"))])


def _honest(records, model, nhot):
    """seed -> honest accuracy (fraction) of one cell, straight from the records."""
    return {r.seed: r.acc_honest for r in records if r.model == model and r.nhot == nhot}


def _expected_cell(values):
    """(mean %, half-width %) computed independently with numpy + scipy.stats.t."""
    array = 100 * np.array(values, dtype=float)
    half = scipy_stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array))
    return array.mean(), half


def _variant(records, edit):
    """Deep copies of ``records`` with ``edit(record)`` applied to each copy."""
    out = []
    for record in records:
        clone = copy.deepcopy(record)
        edit(clone)
        out.append(clone)
    return out


def _set_axes(record, **axes):
    """Replace identity axes of ``record`` in place (``Cell.with_axes``)."""
    record.cell = record.cell.with_axes(**axes)


def test_golden_fixture_is_self_consistent(golden):
    assert len(golden.records) == 12            # the throughput benchmark is ignored
    assert {r.seed for r in golden.records} == {0, 1, 2}
    for record in golden.records:
        correct = record.correct()
        assert correct.shape == (record.n_test,)
        assert record.acc_honest == pytest.approx(correct.mean())
        assert record.predictions().shape == (record.n_test,)


def test_records_frame_has_one_row_per_cell(golden):
    frame = records_frame(golden.records)
    assert len(frame) == 12
    assert frame["cell_id"].is_unique
    row = frame[frame.cell_id == "vgg16-n3-ordinary-s1"].iloc[0]
    record = next(r for r in golden.records if r.cell_id == "vgg16-n3-ordinary-s1")
    assert row.acc_honest == record.acc_honest
    assert np.isnan(row.acc_top1_honest) and row.train_targets_sha256 == ""   # not recorded
    assert row.median_epoch_s == pytest.approx(np.median(record.epoch_times_s))


def test_golden_means_and_ci_half_widths(golden):
    rows = {row.label: row for row in summarize(golden.records)["ordinary"]}
    assert set(rows) == {"vgg16", "small_cnn"}
    for model in ("vgg16", "small_cnn"):
        for nhot in (1, 3):
            expected_mean, expected_half = _expected_cell(list(_honest(golden.records, model, nhot).values()))
            cell = rows[model].at(nhot)
            assert 100 * cell.mean == pytest.approx(expected_mean, abs=1e-12)
            assert 100 * cell.half_width == pytest.approx(expected_half, abs=1e-12)


def test_golden_best_n_gain_and_paired_p(golden):
    rows = {row.label: row for row in summarize(golden.records)["ordinary"]}
    for model in ("vgg16", "small_cnn"):
        base = _honest(golden.records, model, 1)
        three = _honest(golden.records, model, 3)
        assert rows[model].best_n == (3 if np.mean(list(three.values())) > np.mean(list(base.values())) else 1)
        seeds = sorted(base)
        expected_p = scipy_stats.ttest_rel([three[s] for s in seeds], [base[s] for s in seeds]).pvalue
        gain = rows[model].gain
        assert gain.method == "paired t" and gain.n_seeds == 3
        assert gain.p_value == pytest.approx(expected_p, rel=1e-12)
        assert gain.gain == pytest.approx(np.mean([three[s] - base[s] for s in seeds]))
        assert gain.seeds == (0, 1, 2)
    # the golden data is built so that vgg16's gain is significant and small_cnn's is not
    assert rows["vgg16"].gain.p_value < 0.05 < rows["small_cnn"].gain.p_value


def test_golden_markdown_rows_exact(golden):
    text = render_markdown(golden.records, golden.provenance)
    for model, escaped in (("vgg16", "vgg16"), ("small_cnn", "small&#95;cnn")):
        base = _honest(golden.records, model, 1)
        three = _honest(golden.records, model, 3)
        m1, h1 = _expected_cell(list(base.values()))
        m3, h3 = _expected_cell(list(three.values()))
        p = scipy_stats.ttest_rel([three[s] for s in range(3)], [base[s] for s in range(3)]).pvalue
        rows = [r for r in golden.records if r.model == model]
        last = sum(r.best_val_epoch == len(r.val_acc) for r in rows)   # still improving
        accuracy = (f"| {escaped} | {m1:.2f} ± {h1:.2f} | **{m3:.2f} ± {h3:.2f}** | 3 "
                    f"| {last} of {len(rows)} | none |")
        comparison = f"| {escaped} | 3 | {m3 - m1:+.2f} | {p:.4f} | paired t, n=3 |"
        assert accuracy in text.splitlines(), accuracy
        assert comparison in text.splitlines(), comparison
    # hand-checked strings for the golden data (vgg16: 30/31/29 vs 33/33/32 of 40 correct)
    assert "| vgg16 | 75.00 ± 6.21 | **81.67 ± 3.59** | 3 | 0 of 6 | none |" in text
    assert "| vgg16 | 3 | +6.67 | 0.0153 | paired t, n=3 |" in text
    assert "## nhot — N-hot vs 1-hot (report 4.4, 4.5)" in text      # the experiment's section
    assert "8-hot vs 1-hot (pts)" not in text                      # no 8-hot cell: no column
    assert "SYNTHETIC (not FERPlus)" in text and "Profile: smoke" in text
    assert "86.06%" in text and "83.85 ± 0.63%" in text   # the study's own figures
    assert "synth-0a1b2c3d" in text and "--benchmark-json results.json" in text


def test_mean_ci_edge_cases():
    assert mean_ci([0.8]) == (0.8, None)
    mean, half = mean_ci([0.7, 0.9])
    assert mean == pytest.approx(0.8)
    assert half == pytest.approx(scipy_stats.t.ppf(0.975, 1) * np.std([0.7, 0.9], ddof=1) / math.sqrt(2))
    with pytest.raises(ValueError):
        mean_ci([])


def test_paired_gain_needs_three_seeds_and_variance():
    assert paired_gain({0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.7}) == (pytest.approx(0.15), None)
    assert paired_gain({0: 0.8, 1: 0.9, 2: 1.0}, {0: 0.7, 1: 0.8, 2: 0.9})[1] is None
    gain, p = paired_gain({0: 0.8, 1: 0.9, 2: 0.85, 7: 0.1}, {0: 0.7, 1: 0.85, 2: 0.8})
    assert gain == pytest.approx(np.mean([0.1, 0.05, 0.05]))     # seed 7 has no partner
    assert p == pytest.approx(scipy_stats.ttest_rel([0.8, 0.9, 0.85], [0.7, 0.85, 0.8]).pvalue)
    with pytest.raises(ValueError):
        paired_gain({0: 0.8}, {1: 0.7})


def test_mcnemar_exact_matches_binomtest():
    rng = np.random.default_rng(3)
    a = rng.random(60) < 0.8
    b = a.copy()
    flip = rng.choice(60, size=9, replace=False)
    b[flip] = ~b[flip]
    only_a = int(np.sum(a & ~b))
    discordant = int(np.sum(a != b))
    assert discordant == 9
    assert mcnemar(a, b) == pytest.approx(scipy_stats.binomtest(only_a, discordant, 0.5).pvalue)
    assert mcnemar(a, a) == 1.0
    with pytest.raises(ValueError):
        mcnemar(a, b[:-1])


def test_mcnemar_chi_square_matches_normal_approximation():
    a = np.array([True] * 30 + [False] * 10 + [True] * 50)
    b = np.array([False] * 30 + [True] * 10 + [True] * 50)   # b=30, c=10: 40 discordant
    z = (abs(30 - 10) - 1) / math.sqrt(40)
    assert mcnemar(a, b) == pytest.approx(2 * scipy_stats.norm.sf(z), rel=1e-9)


def test_one_seed_table_uses_mcnemar(golden):
    seed0 = [r for r in golden.records if r.seed == 0]
    rows = {row.label: row for row in summarize(seed0)["ordinary"]}
    best = next(r for r in seed0 if r.model == "vgg16" and r.nhot == rows["vgg16"].best_n)
    base = next(r for r in seed0 if r.model == "vgg16" and r.nhot == 1)
    a, b = best.correct(), base.correct()
    expected = scipy_stats.binomtest(int(np.sum(a & ~b)), int(np.sum(a != b)), 0.5).pvalue
    assert rows["vgg16"].gain.method == "McNemar exact"
    assert rows["vgg16"].gain.p_value == pytest.approx(expected)
    frame = build_tables(seed0)["ordinary"]
    assert frame.loc["vgg16", "test"] == "McNemar exact (single run: training variance not included)"
    assert frame.loc["vgg16", "1-hot"] == f"{100 * base.acc_honest:.2f}"   # no interval, n=1


def test_mcnemar_cells_refuses_different_test_sets(golden):
    a = next(r for r in golden.records if r.seed == 0)
    b = next(r for r in golden.records if r.seed == 1)
    with pytest.raises(DataError, match="same test images"):
        mcnemar_cells(a, b)


def test_two_seeds_report_no_test(golden):
    two = [r for r in golden.records if r.seed < 2]
    frame = build_tables(two)["ordinary"]
    assert frame.loc["vgg16", "p"] == "—"
    assert frame.loc["vgg16", "test"] == "n<3"


def _fail(record: CellRecord) -> None:
    record.status, record.error = "failed", "CellFailed: loss is NaN"
    record.acc_honest = record.acc_optimistic = None


def test_failed_cells_are_shown_and_never_averaged(golden):
    def edit(record):
        if record.model == "vgg16" and record.nhot == 3:
            _fail(record)
        if record.model == "small_cnn" and record.nhot == 3 and record.seed == 0:
            _fail(record)
    base = _honest(golden.records, "small_cnn", 1)
    three = _honest(golden.records, "small_cnn", 3)
    records = _variant(golden.records, edit)
    frame = build_tables(records)["ordinary"]
    assert frame.loc["vgg16", "3-hot"] == "failed"
    assert frame.loc["vgg16", "best N"] == "1"
    assert frame.loc["vgg16", "p"] == "—"
    m, h = _expected_cell([v for s, v in _honest(golden.records, "small_cnn", 3).items() if s != 0])
    assert frame.loc["small_cnn", "3-hot"] == f"{m:.2f} ± {h:.2f} (1 failed)"
    assert frame.loc["small_cnn", "best N"] == "3"          # 70.00 over seeds 1, 2 vs 67.50
    assert frame.loc["small_cnn", "test"] == "n<3"          # only seeds 1 and 2 pair up
    paired = np.mean([three[s] - base[s] for s in (1, 2)])   # not mean(1, 2) - mean(0, 1, 2)
    assert frame.loc["small_cnn", "gain vs 1-hot (pts)"] == f"{100 * paired:+.2f}"
    assert frame.loc["small_cnn", "seeds"] == "2–3"
    text = render_markdown(records, golden.provenance)
    assert "| vgg16 |" in text and "| failed |" in text


def test_models_with_several_recipes_get_separate_rows_labelled_by_the_axis(golden):
    def edit(record):
        if record.model == "vgg16" and record.seed == 0:
            _set_axes(record, lr=0.001)
    frame = build_tables(_variant(golden.records, edit))["ordinary"]
    assert set(frame.index) == {"vgg16 lr=0.0001", "vgg16 lr=0.001", "small_cnn lr=0.0001"}
    assert frame.loc["vgg16 lr=0.001", "seeds"] == "1"


def test_mixed_data_sets_are_separate_rows(golden):
    def edit(record):
        if record.model == "vgg16":
            record.dataset_label = "ferplus"
            _set_axes(record, dataset="ferplus-1234abcd")
    records = _variant(golden.records, edit)
    frame = build_tables(records)["ordinary"]
    assert set(frame.index) == {"vgg16 data=ferplus 400 images", "small_cnn data=synthetic 400 images"}
    text = render_markdown(records, golden.provenance)
    assert "ferplus + SYNTHETIC (not FERPlus)" in text


def test_evil_model_name_is_escaped(golden):
    evil = "evil|<script>alert(1)</script>`*_[x](y)\nz"
    def edit(record):
        if record.model == "vgg16":
            _set_axes(record, model=evil)
    records = _variant(golden.records, edit)
    provenance = copy.deepcopy(golden.provenance)
    provenance[0]["fer_bench"]["command"] = "run <img src=x onerror=alert(1)> | rm"
    text = render_markdown(records, provenance)
    assert "<script>" not in text and "<img" not in text and "](y)" not in text
    assert escape_markdown(evil) in text
    header = next(line for line in text.splitlines() if line.startswith("| model | 1-hot"))
    row = next(line for line in text.splitlines() if line.startswith("| evil"))
    assert row.count("|") == header.count("|")


def test_rich_table_prints_names_literally(golden):
    from rich.console import Console

    from fer_bench.leaderboard.table import print_terminal_tables

    def edit(record):
        if record.model == "vgg16":
            _set_axes(record, model="[bold red]x")
    console = Console(record=True, width=200)
    print_terminal_tables(_variant(golden.records, edit), console=console)
    output = console.export_text()
    assert "[bold red]x" in output and "SYNTHETIC" in output and "SMOKE" in output
    assert "81.67 ± 3.59 *" in output


def test_golden_json_round_trips_through_merged_document(golden, tmp_path):
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(golden.merged_document()))
    again = load_results([merged])
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in golden.records]
    names = [b["name"] for b in golden.merged_document()["benchmarks"]]
    assert "test_augment_throughput" in names


def test_same_cell_from_two_data_sets_is_not_averaged(golden):
    """A smoke subset and the full data set of the same cell: two rows, labelled by data."""
    other = _variant([r for r in golden.records if r.model == "vgg16"],
                     lambda r: (_set_axes(r, dataset="synth-ffffffff"),
                                setattr(r, "n_train", 3240), setattr(r, "acc_honest", 0.5)))
    rows = summarize(golden.records + other)["ordinary"]
    labels = {row.label for row in rows}
    assert labels == {"vgg16 data=synthetic 400 images", "vgg16 data=synthetic 3316 images",
                      "small_cnn data=synthetic 400 images"}
    small = next(row for row in rows if row.label == "vgg16 data=synthetic 400 images")
    assert small.at(1).mean == pytest.approx(np.mean(list(_honest(golden.records, "vgg16", 1).values())))
    assert len(small.at(1).ok) == 3


def test_best_n_p_value_is_bonferroni_adjusted_for_the_post_hoc_choice(golden):
    """With N in {1, 2, 3}, best N is picked from 2 candidates: p = min(1, 2 x raw p)."""
    records = golden.records
    two_hot = _variant([r for r in records if r.nhot == 3],
                       lambda r: (_set_axes(r, variant="nhot-2"), setattr(r, "acc_honest", r.acc_honest - 0.02)))
    rows = {row.model: row for row in summarize([*records, *two_hot])["ordinary"]}
    for model in ("vgg16", "small_cnn"):
        base, three = _honest(records, model, 1), _honest(records, model, 3)
        seeds = sorted(base)
        raw = scipy_stats.ttest_rel([three[s] for s in seeds], [base[s] for s in seeds]).pvalue
        gain = rows[model].gain
        assert rows[model].best_n == 3 and gain.comparisons == 2
        assert gain.p_value == pytest.approx(min(1.0, 2 * raw), rel=1e-12)
    text = render_markdown([*records, *two_hot], golden.provenance)
    assert "paired t, n=3, Bonferroni x2" in text


def test_mcnemar_chi2_with_equal_discordant_counts_is_one():
    a = np.array([True] * 15 + [False] * 15 + [True] * 10)
    b = np.array([False] * 15 + [True] * 15 + [True] * 10)
    assert mcnemar(a, b) == 1.0

"""Leaderboard on the complete cell identity (issue 8, section 6).

Rows never pool records that differ in anything but the seed; rows are labelled by the axes
that vary; one section per experiment; every gain is paired over shared seeds; the
pre-specified 8-hot vs 1-hot comparison; the single-run McNemar label; the augmentation
experiment's report Table 2 columns; split notes; the column registry. Every expected number
is computed here by hand from the records.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats as scipy_stats

from fer_bench.errors import DataError
from fer_bench.identity.config import TrainConfig
from fer_bench.leaderboard.columns import Column, register_column, unregister_column
from fer_bench.leaderboard.load import load_results
from fer_bench.leaderboard.markdown import escape_markdown, render_markdown
from fer_bench.leaderboard.plots import plot_accuracy_by_complexity, plot_accuracy_vs_n
from fer_bench.leaderboard.rows import summarize, summarize_sections
from fer_bench.leaderboard.stats import SINGLE_RUN, TABLE2_THRESHOLD, epoch_statistics
from fer_bench.leaderboard.table import (
    TOP1_MISSING_NOTE,
    build_sections,
    build_tables,
    print_terminal_tables,
)
from tests.helpers.leaderboard_support import (
    GOLDEN_V1,
    clone,
    document_of,
    make_record,
    single_seed_mcnemar_pair,
)

SEEDS = (0, 1, 2)


def _grid(accs: dict[int, list[float]], **kwargs):
    """Records of one row: nhot N -> honest accuracy per seed 0, 1, 2, ..."""
    return [make_record(nhot=n, seed=seed, acc=acc, **kwargs)
            for n, values in accs.items() for seed, acc in enumerate(values)]


def _terminal(records, provenance=()):
    console = Console(record=True, width=250)
    print_terminal_tables(records, console=console, provenance=provenance)
    return console.export_text()


def _write(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


# ----------------------------------------------------------------------------- never pooled
def test_smoke_subset_and_full_data_are_two_rows_labelled_by_data():
    subset = _grid({1: [0.60, 0.62, 0.64], 8: [0.66, 0.67, 0.70]}, dataset="ferplus-5a5a5a5a",
                   dataset_label="ferplus", sizes=(3240, 360, 400))
    full = _grid({1: [0.80, 0.81, 0.82], 8: [0.84, 0.85, 0.86]}, dataset="ferplus-f0f0f0f0",
                 dataset_label="ferplus", sizes=(28669, 3181, 3539))
    rows = {row.label: row for row in summarize(subset + full)["ordinary"]}
    assert set(rows) == {"small_cnn data=ferplus 4000 images", "small_cnn data=ferplus 35389 images"}
    small = rows["small_cnn data=ferplus 4000 images"]
    assert small.at(1).mean == pytest.approx(np.mean([0.60, 0.62, 0.64]))   # its own seeds only
    assert sorted(small.at(1).ok) == [0, 1, 2]
    assert rows["small_cnn data=ferplus 35389 images"].at(8).mean == pytest.approx(0.85)
    text = render_markdown(subset + full, [])
    assert "| small&#95;cnn data=ferplus 4000 images |" in text
    assert "| small&#95;cnn data=ferplus 35389 images |" in text
    assert "small_cnn data=ferplus 4000 images" in _terminal(subset + full)


def test_two_fingerprints_with_the_same_text_are_numbered():
    a = _grid({1: [0.6]}, dataset="synth-aaaaaaaa")
    b = _grid({1: [0.7]}, dataset="synth-bbbbbbbb")
    labels = {row.label for row in summarize(a + b)["ordinary"]}
    assert labels == {"small_cnn data=synthetic 400 images #1", "small_cnn data=synthetic 400 images #2"}


def test_cpu_fp32_and_cuda_bf16_are_two_rows():
    cpu = _grid({1: [0.60, 0.61, 0.62]})
    cuda = _grid({1: [0.70, 0.71, 0.72]}, device_type="cuda", precision="bf16")
    frame = build_tables(cpu + cuda)["ordinary"]
    assert set(frame.index) == {"small_cnn device=cpu/fp32", "small_cnn device=cuda/bf16"}
    assert frame.loc["small_cnn device=cuda/bf16", "seeds"] == "3"
    assert frame.loc["small_cnn device=cuda/bf16", "1-hot"].startswith("71.00 ± ")


def test_rows_are_labelled_by_loss_and_no_hash_is_shown():
    mse = _grid({1: [0.60, 0.62, 0.61], 8: [0.63, 0.66, 0.64]}, experiment="losses",
                recipe=TrainConfig(epochs=3, loss="mse"))
    pld = _grid({1: [0.59, 0.60, 0.58], 8: [0.62, 0.61, 0.65]}, experiment="losses",
                recipe=TrainConfig(epochs=3, loss="pld"))
    records = mse + pld
    frame = build_tables(records, experiment="losses")["ordinary"]
    assert list(frame.index) == ["small_cnn loss=mse", "small_cnn loss=pld"]
    text = render_markdown(records, [{"fer_bench": {"experiments": {"losses": "Losses (4.3.3)"}}}])
    terminal = _terminal(records)
    for output in (text, terminal):
        for record in records:
            assert record.cell.digest() not in output
        assert not re.search(r"\b[0-9a-f]{12,}\b", output)
    assert "| small&#95;cnn loss=pld |" in text and "small_cnn loss=pld" in terminal


def test_a_non_default_loss_is_named_even_when_it_does_not_vary():
    records = _grid({1: [0.6, 0.61, 0.62]}, experiment="mine", recipe=TrainConfig(epochs=3, loss="my_loss"))
    records += _grid({1: [0.7]}, model="vgg16", experiment="mine", recipe=TrainConfig(epochs=3, loss="my_loss"))
    assert set(build_tables(records, experiment="mine")["ordinary"].index) == {
        "small_cnn loss=my_loss", "vgg16 loss=my_loss"}


def test_every_identity_axis_that_varies_is_in_the_label():
    base = _grid({1: [0.6]})
    other = [clone(r, epochs=5, augmentation="flip_rot20", protocol=1) for r in base]
    labels = {row.label for row in summarize(base + other)["ordinary"]}
    assert labels == {"small_cnn aug=none epochs=3 protocol=2 (short-budget result: 3 of 5 epochs)",
                      "small_cnn aug=flip_rot20 epochs=5 protocol=1"}


# ----------------------------------------------------------------------------- gains
def test_eight_vs_one_is_paired_over_shared_seeds_only():
    one = [make_record(nhot=1, seed=s, acc=a) for s, a in zip((0, 1, 2), (0.60, 0.70, 0.65), strict=True)]
    eight = [make_record(nhot=8, seed=s, acc=a) for s, a in zip((1, 2, 3), (0.72, 0.69, 0.95), strict=True)]
    row = summarize(one + eight)["ordinary"][0]
    paired = ((0.72 - 0.70) + (0.69 - 0.65)) / 2          # seeds 1 and 2 only: +3.00
    assert row.eight_vs_one.gain == pytest.approx(paired)
    assert row.eight_vs_one.seeds == (1, 2)
    assert row.gain.gain == pytest.approx(paired)          # best N = 8, the same pairing
    frame = build_tables(one + eight)["ordinary"]
    assert frame.loc["small_cnn", "8-hot vs 1-hot (pts)"] == "+3.00"
    assert frame.loc["small_cnn", "gain vs 1-hot (pts)"] == "+3.00"   # not +13.67 (means)
    assert frame.loc["small_cnn", "p (8 vs 1)"] == "—"
    assert frame.loc["small_cnn", "test (8 vs 1)"] == "n<3"


def test_eight_vs_one_is_not_adjusted_and_best_n_is():
    accs = {1: [0.60, 0.66, 0.62], 3: [0.64, 0.67, 0.66], 8: [0.66, 0.71, 0.65]}
    row = summarize(_grid(accs))["ordinary"][0]
    raw = scipy_stats.ttest_rel(accs[8], accs[1]).pvalue
    assert row.best_n == 8 and row.gain.comparisons == 2
    assert row.eight_vs_one.p_value == pytest.approx(raw, rel=1e-12)
    assert row.gain.p_value == pytest.approx(min(1.0, 2 * raw), rel=1e-12)
    frame = build_tables(_grid(accs))["ordinary"]
    assert frame.loc["small_cnn", "test (8 vs 1)"] == "paired t, n=3"
    assert frame.loc["small_cnn", "test"] == "paired t, n=3, Bonferroni x2"
    assert frame.loc["small_cnn", "8-hot vs 1-hot (pts)"] == f"{100 * np.mean(np.subtract(accs[8], accs[1])):+.2f}"


def test_single_run_mcnemar_is_labelled():
    records, discordant = single_seed_mcnemar_pair()     # all in 8-hot's favour: exact test
    expected = scipy_stats.binomtest(discordant, discordant, 0.5).pvalue
    frame = build_tables(records)["ordinary"]
    label = "McNemar exact (single run: training variance not included)"
    assert frame.loc["small_cnn", "test (8 vs 1)"] == label
    assert frame.loc["small_cnn", "p (8 vs 1)"] == f"{expected:.4f}"
    text = render_markdown(records, [])
    assert escape_markdown(label) in text
    note = next(line for line in text.splitlines() if line.startswith("> Note:") and "one seed" in line)
    assert escape_markdown(SINGLE_RUN) in note
    terminal = _terminal(records)
    assert "note: p-values marked" in terminal and SINGLE_RUN in terminal


def test_two_seeds_give_no_p_value():
    frame = build_tables(_grid({1: [0.6, 0.7], 8: [0.65, 0.72]}))["ordinary"]
    assert frame.loc["small_cnn", "p (8 vs 1)"] == "—"
    assert frame.loc["small_cnn", "test (8 vs 1)"] == "n<3"
    assert frame.loc["small_cnn", "8-hot vs 1-hot (pts)"] == "+3.50"


# ----------------------------------------------------------------------------- augmentation
def _hand_p75(values):
    """75th percentile by linear interpolation between the sorted values, by hand."""
    ordered = sorted(values)
    position = 0.75 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def test_augmentation_table2_columns_by_hand():
    epochs = {0: [0.80, 0.86, 0.90, 0.84, 0.88, 0.82], 1: [0.83, 0.87, 0.85, 0.89, 0.80, 0.81]}
    flip = [make_record("vgg16", nhot=8, seed=s, acc=0.8, experiment="augmentation",
                        recipe=TrainConfig(epochs=6, augmentation="flip_rot20"), test_acc=acc)
            for s, acc in epochs.items()]
    plain = [make_record("vgg16", nhot=8, seed=0, acc=0.7, experiment="augmentation",
                         recipe=TrainConfig(epochs=6, augmentation="none"), test_acc=[0.7] * 6)]
    frame = build_tables(flip + plain, experiment="augmentation")["ordinary"]
    highest = np.mean([max(a) for a in epochs.values()])                  # (0.90 + 0.89) / 2
    p75 = np.mean([_hand_p75(a) for a in epochs.values()])               # (0.875 + 0.865) / 2
    above = np.mean([sum(v > 0.85 for v in a) for a in epochs.values()])  # (3 + 2) / 2; 0.85 is not above
    row = frame.loc["vgg16 aug=flip_rot20"]
    assert row["highest test acc (8-hot)"] == f"{100 * highest:.2f}" == "89.50"
    assert row["p75 test acc (8-hot)"] == f"{100 * p75:.2f}" == "87.00"
    assert row["epochs > 85% (8-hot)"] == f"{above:.1f}" == "2.5"
    assert frame.loc["vgg16 aug=none", "epochs > 85% (8-hot)"] == "0.0"
    columns = list(frame.columns)
    assert columns.index("highest test acc (8-hot)") == columns.index("8-hot") + 1   # beside it
    assert TABLE2_THRESHOLD == 0.85
    assert epoch_statistics([0.80, 0.90], threshold=0.5) == (0.90, pytest.approx(0.875), 2)
    # the columns belong to the augmentation experiment only
    assert "highest test acc (8-hot)" not in build_tables(flip + plain, experiment="nhot")["ordinary"]


# ----------------------------------------------------------------------------- sections
def test_same_cell_in_two_experiments_shows_in_both_sections(tmp_path):
    models = _grid({8: [0.70, 0.72, 0.71]}, experiment="models")
    nhot = [clone(r) for r in models] + _grid({1: [0.66, 0.69, 0.70]}, experiment="nhot")
    for record in nhot:
        record.experiment = "nhot"
    titles = {"models": "Model selection (report 4.2)", "nhot": "N-hot (report 4.4)"}
    path = _write(tmp_path / "r.json", document_of(models + nhot, titles))
    loaded = load_results([path])
    assert len(loaded.records) == 9                       # the shared cells are kept per experiment
    sections = build_sections(loaded.records, loaded.provenance)
    assert [s.name for s in sections] == ["models", "nhot"]
    assert all("small_cnn" in s.frames["ordinary"].index for s in sections)
    assert sections[0].frames["ordinary"].loc["small_cnn", "8-hot"] == \
        sections[1].frames["ordinary"].loc["small_cnn", "8-hot"]
    text = render_markdown(loaded.records, loaded.provenance)
    assert "## models — Model selection (report 4.2)" in text and "## nhot — N-hot (report 4.4)" in text
    models_part = text.split("## models")[1].split("## nhot")[0]
    assert "| small&#95;cnn |" in models_part
    terminal = _terminal(loaded.records, loaded.provenance)
    assert "models — Model selection (report 4.2)" in terminal and "nhot — N-hot (report 4.4)" in terminal


def test_section_order_and_default_section():
    records = []
    for experiment in ("zeta", "", "nhot", "pretraining", "models", "losses", "augmentation"):
        records += _grid({1: [0.6]}, experiment=experiment)
    names = [s.name for s in summarize_sections(records)]
    assert names == ["models", "augmentation", "losses", "pretraining", "nhot", "results", "zeta"]


def test_tables_per_split_in_order_with_the_complex_note():
    records = []
    for split in ("official", "complex", "ordinary", "custom"):
        records += _grid({1: [0.6, 0.62, 0.61]}, split=split)
    frames = build_tables(records)
    assert list(frames) == ["ordinary", "complex", "official", "custom"]
    assert any("carved from the training pool" in n for n in frames["complex"].attrs["notes"])
    assert frames["ordinary"].attrs["notes"] == [TOP1_MISSING_NOTE]   # records without top-1
    text = render_markdown(records, [])
    complex_part = text.split("### complex split")[1].split("### official split")[0]
    assert "> Note: complex split&#58; the validation slice is carved from the training pool" in complex_part
    assert "carved from the training pool" in _terminal(records)


# ----------------------------------------------------------------------------- loading
def test_conflict_names_both_files_and_other_experiments_are_no_conflict(tmp_path):
    record = make_record(nhot=1, seed=0, acc=0.6)
    changed = clone(record)
    changed.acc_honest = 0.9
    first = _write(tmp_path / "first.json", document_of([record]))
    second = _write(tmp_path / "second.json", document_of([changed]))
    with pytest.raises(DataError) as info:
        load_results([first, second])
    message = str(info.value)
    assert "first.json" in message and "second.json" in message
    assert record.cell_id in message and "acc_honest" in message
    elsewhere = clone(changed)
    elsewhere.experiment = "models"
    third = _write(tmp_path / "third.json", document_of([elsewhere]))
    assert len(load_results([first, third]).records) == 2
    again = _write(tmp_path / "again.json", document_of([clone(record)]))
    assert len(load_results([first, again]).records) == 1


def test_schema_one_results_are_refused_with_a_clear_reason():
    with pytest.raises(DataError, match="schema_version 1.*re-run") as info:
        load_results([GOLDEN_V1])
    assert "leaderboard_golden.json" in str(info.value)


def test_one_experiment_cannot_hold_two_results_of_one_cell():
    record = make_record(nhot=1, seed=0, acc=0.6)
    changed = clone(record)
    changed.acc_honest = 0.7
    with pytest.raises(DataError, match="appears twice"):
        summarize([record, changed])
    assert len(summarize([record, clone(record)])["ordinary"][0].at(1).ok) == 1


# ----------------------------------------------------------------------------- columns
def test_a_new_column_is_one_registry_entry():
    register_column(Column("median KL", lambda row: "0.42", experiments=("losses",)))
    try:
        records = _grid({1: [0.6]}, experiment="losses")
        _assert_median_kl_shown(records)
    finally:
        unregister_column("median KL")
    assert "median KL" not in build_tables(records, experiment="losses")["ordinary"]


def _assert_median_kl_shown(records):
    assert build_tables(records, experiment="losses")["ordinary"].loc["small_cnn", "median KL"] == "0.42"
    assert "median KL" not in build_tables(records, experiment="nhot")["ordinary"]
    header = "| model | 1-hot | seeds | best val epoch = last (still improving) | median KL |"
    assert header in render_markdown(records, []).splitlines()


def test_other_variants_keep_their_names_and_have_no_best_n():
    records = [make_record(variant="majority", seed=s, acc=a, nhot=None) for s, a in enumerate((0.6, 0.7, 0.65))]
    frame = build_tables(records)["ordinary"]
    assert list(frame.columns[:2]) == ["majority", "seeds"]
    assert "best N" not in frame.columns and "8-hot vs 1-hot (pts)" not in frame.columns
    assert frame.attrs["best"] == {}


def test_plots_draw_rows_without_nhot_variants(tmp_path):
    records = [make_record(variant="majority", seed=s, acc=a, nhot=None) for s, a in enumerate((0.6, 0.7))]
    records += _grid({8: [0.7, 0.72]}, experiment="models")
    for plot in (plot_accuracy_vs_n, plot_accuracy_by_complexity):
        path = plot(records, tmp_path / f"{plot.__name__}.png")
        assert path.read_bytes()[:4] == b"\x89PNG"

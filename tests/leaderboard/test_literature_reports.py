"""The literature protocol in what users read: ``fer-bench data stats`` (per mode and usage,
with the real FERPlus counts checked against an independent re-implementation), the
leaderboard (the section beside Barsoum et al. 2016, the N-hot section's column), and a
benchmark module run through the pytest plugin."""

from __future__ import annotations

import io
import json

from rich.console import Console

from fer_bench.cli.main import main
from fer_bench.data.clean import clean
from fer_bench.data.labels.ferplus_ms import literature_counts
from fer_bench.data.stats import _print_literature, compute_stats
from fer_bench.data.synthetic import make_synthetic
from fer_bench.identity.config import TrainConfig
from fer_bench.leaderboard.columns import LITERATURE_COLUMN
from fer_bench.leaderboard.literature import THEIRS_COLUMN, literature_frame
from fer_bench.leaderboard.markdown import render_markdown
from fer_bench.leaderboard.table import build_sections
from tests.helpers.cells import run_benchmark_module
from tests.helpers.leaderboard_support import make_record

pytest_plugins = ["pytester"]

USAGES = ("Training", "PublicTest", "PrivateTest")
#: Counted on ../shared/data/ferplus with fer2013new.csv votes (the default snapshot) and
#: checked, image by image (names and 8-way targets hashed), against a separate
#: line-by-line transcription of microsoft/FERPlus src/ferplus.py (_process_data and the
#: load_folders filter) reading fer2013new.csv with pandas (unnamed rows skipped, the later
#: row of a duplicated name kept).
REAL_FER2013NEW = {
    "majority": (25_057, 3_199, 3_152), "probability": (27_953, 3_505, 3_504),
    "crossentropy": (27_953, 3_505, 3_504), "multi_target": (27_668, 3_472, 3_471),
}
#: The same with the per-folder label.csv votes (--labels folder): the files Microsoft's
#: train.py itself reads (FER2013Train/Valid/Test/label.csv), checked the same way.
REAL_FOLDER = {
    "majority": (25_045, 3_191, 3_137), "probability": (27_947, 3_508, 3_507),
    "crossentropy": (27_947, 3_508, 3_507), "multi_target": (27_667, 3_472, 3_466),
}


def test_real_counts_fer2013new(ferplus_raw):
    counts = literature_counts(clean(ferplus_raw, "ferplus-ms"))
    assert counts["images"] == {"Training": 28_556, "PublicTest": 3_579, "PrivateTest": 3_572}
    for mode, expected in REAL_FER2013NEW.items():
        assert tuple(counts["modes"][mode]["kept"][u] for u in USAGES) == expected, mode
    assert counts["majority_voted"] == {"val": 3_199, "test": 3_152}


def test_real_counts_folder_labels(ferplus_dir):
    from fer_bench.data.cache import load_dataset

    counts = literature_counts(clean(load_dataset(ferplus_dir, labels="folder"), "ferplus-ms"))
    for mode, expected in REAL_FOLDER.items():
        assert tuple(counts["modes"][mode]["kept"][u] for u in USAGES) == expected, mode
    assert counts["majority_voted"] == {"val": 3_191, "test": 3_137}


def test_stats_json_and_text(capsys):
    stats = compute_stats(make_synthetic(400, seed=2))
    literature = stats["literature"]
    assert list(literature["modes"]) == ["majority", "probability", "crossentropy", "multi_target"]
    for entry in literature["modes"].values():
        dropped = sum(n for by_usage in entry["dropped"].values() for n in by_usage.values())
        assert sum(entry["kept"].values()) + dropped == sum(literature["images"].values())
    assert literature["majority_voted"]["test"] == literature["modes"]["majority"]["kept"]["PrivateTest"]
    json.dumps(stats)
    buffer = io.StringIO()
    _print_literature(Console(file=buffer, width=200), literature)
    text = buffer.getvalue()
    assert "majority (ms-majority)" in text and "multi_target (ms-multitarget)" in text
    assert "test (PrivateTest, majority-voted)" in text


def test_stats_command_has_the_literature_block(monkeypatch, capsys):
    monkeypatch.delenv("FER_BENCH_DATA", raising=False)
    assert main(["data", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats["literature"]) == {"cleaning", "images", "modes", "majority_voted", "fingerprint"}
    assert stats["literature"]["fingerprint"] != stats["fingerprint"]


# ---------------------------------------------------------------- leaderboard
def literature_record(variant: str, loss: str, seed: int, acc: float, model: str = "small_cnn"):
    return make_record(model, None, seed, acc, variant=variant, split="official-majority",
                       experiment="literature", dataset="ms-fp",
                       recipe=TrainConfig(epochs=3, loss=loss), acc_tie_aware=acc)


def records():
    nhot = [make_record("small_cnn", n, seed, 0.7 + 0.01 * n) for n in (1, 8) for seed in (0, 1)]
    literature = [literature_record("ms-majority", "cce", seed, 0.80 + 0.02 * seed) for seed in (0, 1)]
    literature += [literature_record("ms-probability", "pld", 0, 0.83)]
    literature += [literature_record("ms-majority", "cce", 0, 0.5, model="other_net")]
    return nhot + literature


def test_literature_frame_sets_ours_beside_theirs():
    frame = literature_frame(records())
    assert list(frame.index) == ["other_net"] * 4 + ["small_cnn"] * 4
    small = frame.loc["small_cnn"].set_index("mode")
    assert small.loc["majority voting (ms-majority)", THEIRS_COLUMN] == "83.85 ± 0.63"
    assert small.loc["majority voting (ms-majority)", "top-1 vs majority (honest)"].startswith("81.00 ± ")
    assert small.loc["majority voting (ms-majority)", "seeds"] == "2"
    assert small.loc["probability (label drawing) (ms-probability)", "tie-aware (same predictions)"] == "83.00"
    assert small.loc["cross-entropy (ms-crossentropy)", "top-1 vs majority (honest)"] == "not run"
    assert small.loc["multi-label (ms-multitarget)", THEIRS_COLUMN] == "83.97 ± 0.36"
    assert literature_frame(records()[:4]) is None


def test_nhot_section_gets_the_literature_column():
    sections = {s.name: s for s in build_sections(records())}
    frame = sections["nhot"].frames["ordinary"]
    assert frame.loc["small_cnn", LITERATURE_COLUMN] == "maj 81.00 · prob 83.00"
    assert LITERATURE_COLUMN not in sections["literature"].frames["official-majority"].columns
    # another recipe (epochs) is another identity: no literature figure for it
    other = [make_record("small_cnn", 8, 0, 0.7, recipe=TrainConfig(epochs=5))]
    sections = {s.name: s for s in build_sections(other + records()[4:])}
    assert sections["nhot"].frames["ordinary"].iloc[0][LITERATURE_COLUMN] == "—"
    # without literature cells the column is not drawn
    sections = {s.name: s for s in build_sections(records()[:4])}
    assert LITERATURE_COLUMN not in sections["nhot"].frames["ordinary"].columns


def test_markdown_has_the_literature_section():
    page = render_markdown(records(), [])
    assert "## Literature protocol beside Barsoum et al. 2016" in page
    assert "Barsoum et al. 2016 (theirs)" in page and "84.99 ± 0.37" in page
    assert "not measured here" in page


# ---------------------------------------------------------------- through the plugin
MODULE = '''
"""Literature modes through the plugin."""
import pytest

pytestmark = [pytest.mark.fer_experiment("literature", title="Literature"),
              pytest.mark.fer_axes(model=["lit_plugin_tiny"], split=["official-majority"])]


@pytest.mark.parametrize(("fer_variant", "fer_loss"),
                         [("ms-majority", "cce"), ("ms-multitarget", "ms_multitarget")])
def test_mode(fer_cell, benchmark):
    record = fer_cell.run(benchmark)
    assert record.status == "ok" and record.acc_tie_aware == record.acc_honest


@pytest.mark.fer_axes(split=["ordinary"])
@pytest.mark.parametrize(("fer_variant", "fer_loss"), [("ms-majority", "cce")])
def test_mismatch(fer_cell, benchmark):
    fer_cell.run(benchmark)
'''


def test_literature_cells_through_the_plugin(pytester, tmp_path):
    result, out = run_benchmark_module(pytester, tmp_path, tiny_model="lit_plugin_tiny",
                                       test_lit_module=MODULE)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*label treatment 'ms-majority' needs data cleaned by rule "
                                 "'ferplus-ms', split 'ordinary' by rule 'study'*"])
    document = json.loads(out.read_text())
    cells = sorted(entry["extra_info"]["cell_id"] for entry in document["benchmarks"])
    assert cells == ["lit_plugin_tiny-ms-majority-official-majority-s0-loss=cce",
                     "lit_plugin_tiny-ms-multitarget-official-majority-s0-loss=ms_multitarget"]
    records = [entry["extra_info"]["fer_bench"] for entry in document["benchmarks"]]
    assert len({r["cell"]["dataset"] for r in records}) == 1   # the ferplus-ms smoke subset
    board = pytester.run("fer-bench", "leaderboard", str(out), "--out", str(tmp_path / "board"))
    assert board.ret == 0, board.stderr.str()
    page = (tmp_path / "board" / "README.md").read_text()
    assert "Literature protocol beside Barsoum et al. 2016" in page

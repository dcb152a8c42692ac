"""Leaderboard input merging, error messages, plots and the ``fer-bench leaderboard`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from rich.console import Console

from fer_bench.cli.main import main as fer_bench_main
from fer_bench.errors import DataError
from fer_bench.identity.config import TrainConfig
from fer_bench.leaderboard import plots
from fer_bench.leaderboard.cli import leaderboard_command
from fer_bench.leaderboard.load import load_results
from fer_bench.leaderboard.plots import plot_accuracy_by_complexity, plot_accuracy_vs_n
from tests.helpers.leaderboard_support import golden_document as golden_v2
from tests.helpers.leaderboard_support import make_record, write_golden

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def golden_document():
    return golden_v2()


@pytest.fixture()
def golden_path(tmp_path):
    """The golden results file (record schema 2) as ``.../leaderboard_golden.json``."""
    return write_golden(tmp_path / "golden")


@pytest.fixture()
def drawn_figure(monkeypatch, tmp_path):
    """Call a plot function and get its matplotlib figure back instead of a PNG
    (``drawn_figure(plots.plot_gain_vs_n, records)``); every figure is closed afterwards."""
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))

    def draw(plot, records):
        plot(records, tmp_path / "drawn.png")
        return figures[-1]

    yield draw
    for fig in figures:
        plt.close(fig)


def _write(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


def _cell_entries(document):
    return [b for b in document["benchmarks"] if "fer_bench" in b["extra_info"]]


def test_two_shards_merge(golden_document, tmp_path):
    cells = _cell_entries(golden_document)
    first = dict(golden_document, benchmarks=cells[:5])
    second = dict(golden_document, benchmarks=cells[5:])
    loaded = load_results([_write(tmp_path / "a.json", first), _write(tmp_path / "b.json", second)])
    assert len(loaded.records) == 12
    assert [p["n_cells"] for p in loaded.provenance] == [5, 7]
    assert {Path(p).name for p in loaded.sources.values()} == {"a.json", "b.json"}


def test_identical_duplicate_cell_is_accepted(golden_document, tmp_path, golden_path):
    cells = _cell_entries(golden_document)
    reused = json.loads(json.dumps(cells[0]))
    reused["extra_info"]["from_store"] = True           # re-used from the store ...
    reused["stats"]["mean"] *= 0.01                      # ... so pytest's own timing differs
    second = dict(golden_document, benchmarks=[reused, *cells[1:3]])
    loaded = load_results([golden_path, _write(tmp_path / "again.json", second)])
    assert len(loaded.records) == 12
    assert loaded.provenance[1]["n_from_store"] == 1


def test_conflicting_duplicate_names_both_files(golden_document, tmp_path, golden_path):
    cells = _cell_entries(golden_document)
    changed = json.loads(json.dumps(cells[0]))
    changed["extra_info"]["fer_bench"]["acc_honest"] = 0.5
    conflicting = _write(tmp_path / "conflict.json", dict(golden_document, benchmarks=[changed]))
    with pytest.raises(DataError) as info:
        load_results([golden_path, conflicting])
    message = str(info.value)
    assert "leaderboard_golden.json" in message and "conflict.json" in message
    assert cells[0]["extra_info"]["cell_id"] in message


@pytest.mark.parametrize("content, reason", [
    ("[1, 2]", "no top-level 'benchmarks' list"),
    ('{"machine_info": {}}', "no top-level 'benchmarks' list"),
    ("{not json", "invalid JSON"),
])
def test_not_pytest_benchmark_json_is_named(tmp_path, content, reason):
    path = tmp_path / "weird.json"
    path.write_text(content)
    with pytest.raises(DataError, match=reason) as info:
        load_results([path])
    assert str(path) in str(info.value)


def test_bad_record_names_file_and_benchmark(golden_document, tmp_path):
    cells = _cell_entries(golden_document)
    del cells[0]["extra_info"]["fer_bench"]["cell"]
    path = _write(tmp_path / "bad.json", dict(golden_document, benchmarks=cells))
    with pytest.raises(DataError, match="missing fields") as info:
        load_results([path])
    assert str(path) in str(info.value) and cells[0]["name"] in str(info.value)


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000


def test_plots_are_written_as_png(tmp_path, golden_path):
    loaded = load_results([golden_path])
    _assert_png(plot_accuracy_vs_n(loaded.records, tmp_path / "n.png", loaded.provenance))
    _assert_png(plot_accuracy_by_complexity(loaded.records, tmp_path / "x.png", loaded.provenance))


def test_plots_with_two_splits_and_one_seed(golden_document, tmp_path):
    """The complex split is a copy of seed 0 with 20 points less: dashed lines, no CI band."""
    cells = [c for c in _cell_entries(golden_document) if c["extra_info"]["fer_bench"]["cell"]["seed"] == 0]
    complex_cells = json.loads(json.dumps(cells))
    for cell in complex_cells:
        record = cell["extra_info"]["fer_bench"]
        record["cell"]["split"] = "complex"
        record["acc_honest"] -= 0.2
    path = _write(tmp_path / "two.json", dict(golden_document, benchmarks=cells + complex_cells))
    loaded = load_results([path])
    _assert_png(plot_accuracy_vs_n(loaded.records, tmp_path / "n.png"))
    _assert_png(plot_accuracy_by_complexity(loaded.records, tmp_path / "x.png"))


def test_leaderboard_command_writes_everything(tmp_path, golden_path):
    out = tmp_path / "board"
    args = argparse.Namespace(results=[str(golden_path)], out=str(out), no_write=False)
    console = Console(record=True, width=200)
    assert leaderboard_command(args, console=console) == 0
    assert {p.name for p in out.iterdir()} == {
        "README.md", "gain_vs_n.png", "accuracy_vs_n.png", "accuracy_by_complexity.png",
        "results.json"}
    readme = (out / "README.md").read_text()
    assert "![accuracy vs n](accuracy_vs_n.png)" in readme
    assert "| vgg16 | 75.00 ± 6.21 | **81.67 ± 3.59** | 3 | 0 of 6 | none |" in readme
    assert "![gain vs n](gain_vs_n.png)" in readme
    _assert_png(out / "gain_vs_n.png")
    _assert_png(out / "accuracy_vs_n.png")
    again = load_results([out / "results.json"])
    original = load_results([golden_path])
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in original.records]
    assert "81.67 ± 3.59 *" in console.export_text()


def test_cli_no_write_and_error_exit(tmp_path, capsys, golden_path):
    out = tmp_path / "board"
    assert fer_bench_main(["leaderboard", str(golden_path), "--out", str(out), "--no-write"]) == 0
    assert not out.exists()
    assert "vgg16" in capsys.readouterr().out
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"benchmarks": [{"name": "t", "extra_info": {}}]}')
    assert fer_bench_main(["leaderboard", str(bogus), "--no-write"]) == 1   # runtime: its contents
    assert "no fer_bench cells" in capsys.readouterr().err


def test_merged_file_keeps_each_sources_experiment_titles(golden_document, tmp_path):
    """The CLI writes the merged input as ``results.json``; rendering that file alone must
    title every section as the original files did (the second file's titles included)."""
    from fer_bench.leaderboard.rows import experiment_titles

    cells = _cell_entries(golden_document)
    first = dict(golden_document, benchmarks=cells[:5])
    second = dict(golden_document, benchmarks=cells[5:],
                  fer_bench=dict(golden_document["fer_bench"], experiments={"speedrun": "Time to accuracy"}))
    loaded = load_results([_write(tmp_path / "a.json", first), _write(tmp_path / "b.json", second)])
    assert experiment_titles(loaded.provenance)["speedrun"] == "Time to accuracy"
    again = load_results([_write(tmp_path / "merged.json", loaded.merged_document())])
    assert experiment_titles(again.provenance) == experiment_titles(loaded.provenance)
    assert [Path(p["path"]).name for p in again.provenance] == ["a.json", "b.json"]
    assert [p["n_cells"] for p in again.provenance] == [5, 7]
    twice = load_results([tmp_path / "merged.json", tmp_path / "b.json"])   # b.json given again
    assert twice.provenance == again.provenance


def test_untimed_failures_are_loaded_as_failed_cells(golden_document, tmp_path):
    """A cell that failed before its first epoch has no benchmark entry, only a record in
    the top-level ``fer_bench.untimed_failures`` list; it must still show as failed."""
    cells = _cell_entries(golden_document)
    gone = next(c for c in cells if c["extra_info"]["cell_id"] == "vgg16-n3-ordinary-s2")
    failed = dict(gone["extra_info"]["fer_bench"], status="failed", acc_honest=None,
                  acc_optimistic=None, error="ModelError: out of memory", epoch_times_s=[])
    document = dict(golden_document, benchmarks=[c for c in cells if c is not gone])
    document["fer_bench"] = dict(document["fer_bench"], untimed_failures=[failed])
    loaded = load_results([_write(tmp_path / "untimed.json", document)])
    assert len(loaded.records) == 12
    from fer_bench.leaderboard.table import build_tables

    frame = build_tables(loaded.records)["ordinary"]
    assert frame.loc["vgg16", "3-hot"].endswith("(1 failed)")
    assert frame.loc["vgg16", "test"] == "n<3"                 # seeds 0 and 1 pair up
    again = load_results([_write(tmp_path / "merged.json", loaded.merged_document())])
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in loaded.records]


def test_nhot_plots_draw_only_the_nhot_experiment_with_the_legend_below(drawn_figure):
    """A recovery row on other data never joins the N-hot plots (it would widen every label
    and the subtitle's data); the figure's one legend stands below every panel."""
    nhot = [make_record(nhot=n, seed=s, acc=0.7 + 0.01 * n + 0.002 * s, dataset_label="ferplus")
            for n in (1, 8) for s in range(3)]
    recovery = [make_record(nhot=n, seed=s, acc=0.5, experiment="recovery", dataset="synth-ffff")
                for n in (1, 8) for s in range(3)]
    assert plots.nhot_records(nhot + recovery) == nhot
    assert plots.nhot_records(recovery) == recovery   # no N-hot experiment: every row

    fig = drawn_figure(plots.plot_gain_vs_n, nhot + recovery)
    fig.canvas.draw()
    (legend,) = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels and all("synthetic" not in label and "recovery" not in label for label in labels)
    assert any("(tie-aware)" in label for label in labels)
    renderer = fig.canvas.get_renderer()
    legend_top = legend.get_window_extent(renderer).y1
    assert all(legend_top <= ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)
    assert "SYNTHETIC" not in fig.get_suptitle()


@pytest.mark.parametrize("plot", ["plot_gain_vs_n", "plot_accuracy_vs_n",
                                  "plot_accuracy_by_complexity"])
def test_one_identity_has_one_label_and_colour_in_every_panel(drawn_figure, plot):
    """A row on both splits beside a model on the complex split only (the converged grid's
    fast_resnet and P4's VGG16): labels are made over the drawn rows of all splits together,
    so the shared row is neither relabelled per panel nor numbered "#1"/"#2" as a duplicate."""
    from matplotlib.colors import to_hex

    shared = [make_record(nhot=n, seed=s, acc=0.7 + 0.01 * n + 0.003 * s, split=split,
                          dataset_label="ferplus", acc_by_complexity={"1": 0.8},
                          count_by_complexity={"1": 40})
              for split in ("ordinary", "complex") for n in (1, 8) for s in range(3)]
    vgg = [make_record("vgg16", nhot=n, seed=s, acc=0.5 + 0.002 * n + 0.001 * s,
                       split="complex", recipe=TrainConfig(epochs=7, lr=1e-4),
                       dataset_label="ferplus", acc_by_complexity={"1": 0.6},
                       count_by_complexity={"1": 40})
           for n in (1, 8) for s in range(3)]
    fig = drawn_figure(getattr(plots, plot), shared + vgg)
    colours: dict[str, set[str]] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label.startswith(("small_cnn", "vgg16")):   # not the study's bands
                colours.setdefault(label.rsplit(" (", 1)[0], set()).add(to_hex(_colour(handle)))
    assert not any("#1" in label or "#2" in label for label in colours)
    assert sorted(label.split()[0] for label in colours) == ["small_cnn", "vgg16"], colours
    assert all(len(found) == 1 for found in colours.values()), colours


def _colour(handle):
    """The colour of a legend handle: a bar container's first bar, an error bar's line, a line."""
    if hasattr(handle, "patches"):
        return handle.patches[0].get_facecolor()
    return (handle[0] if isinstance(handle, tuple) else handle).get_color()


def test_complexity_ticks_show_the_count_range_where_seeds_test_sets_differ(drawn_figure):
    """A level held by one test image in one seed and by none in the others is drawn from that
    image: its tick says n=0-1, not the median's n=0 under a measured bar."""
    records = [make_record(nhot=n, seed=s, acc=0.7 + 0.01 * n, dataset_label="ferplus",
                           acc_by_complexity={"1": 0.8, **({"7": 1.0} if s == 0 else {})},
                           count_by_complexity={"1": 40, "7": 1 if s == 0 else 0})
               for n in (1, 8) for s in range(3)]
    fig = drawn_figure(plots.plot_accuracy_by_complexity, records)
    ticks = [text.get_text() for text in fig.axes[0].get_xticklabels()]
    assert ticks == ["X=1\nn=40", "X=7\nn=0-1"], ticks

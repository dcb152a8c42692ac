"""The column registry (in-process, entry points, columns a results file declares) and the
typed values the renderers draw from (run labels, failed cells)."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from dataclasses import replace

import pytest
from rich.console import Console

from fer_bench.identity.config import TrainConfig
from fer_bench.leaderboard.column_registry import declared_columns, load_declared_columns
from fer_bench.leaderboard.columns import (
    COLUMNS,
    COST,
    FAILED,
    OVERHEAD_COLUMN,
    Column,
    register_column,
    registered_columns,
    unregister_column,
)
from fer_bench.leaderboard.load import load_results
from fer_bench.leaderboard.markdown import render_markdown
from fer_bench.leaderboard.rows import summarize
from fer_bench.leaderboard.table import (
    RunLabels,
    _rich_table,
    build_sections,
    build_tables,
    data_text,
    print_terminal_tables,
    run_labels,
    table_title,
)
from tests.helpers.leaderboard_support import document_of, make_record

KL = "median KL"


@pytest.fixture
def kl_column():
    """An in-process column of the "losses" experiment, removed after the test."""
    column = register_column(Column(KL, lambda row: f"{len(row.records)} cells",
                                    experiments=("losses",)))
    yield column
    unregister_column(KL)


def _records(experiment="losses", seeds=(0, 1)):
    return [make_record(nhot=n, seed=s, acc=0.6 + 0.01 * s + 0.02 * n, experiment=experiment)
            for n in (1, 8) for s in seeds]


# ----------------------------------------------------------------------------- registry
def test_builtin_columns_keep_their_order_and_registered_ones_follow():
    names = [c.name for c in registered_columns()]
    assert names[:2] == ["highest test acc (8-hot)", "p75 test acc (8-hot)"]
    assert names[-1] == OVERHEAD_COLUMN
    assert len(names) == len(set(names)) == len(COLUMNS)
    register_column(Column("zz", lambda row: "", part=COST))
    register_column(Column("aa", lambda row: ""))
    try:
        assert [c.name for c in registered_columns()][-2:] == ["zz", "aa"]   # registration order
    finally:
        unregister_column("zz")
        unregister_column("aa")
    assert [c.name for c in registered_columns()] == names


def test_an_in_process_column_shows_for_its_experiment_only(kl_column):
    frame = build_tables(_records(), experiment="losses")["ordinary"]
    assert frame.loc["small_cnn", KL] == "4 cells"
    assert KL in frame.attrs["parts"]["accuracy"]
    assert KL not in build_tables(_records("nhot"), experiment="nhot")["ordinary"]
    page = render_markdown(_records() + _records("nhot"), [])
    assert page.count(f"| {KL} |") == 1
    console = Console(width=250, record=True)
    print_terminal_tables(_records(), console=console)
    text = console.export_text()
    assert KL in text and "4 cells" in text


def test_a_cost_column_is_drawn_in_the_cost_table():
    register_column(Column("joules", lambda row: "12", part=COST))
    try:
        parts = build_tables(_records())["ordinary"].attrs["parts"]
        assert parts[COST][-1] == "joules" and "joules" not in parts["accuracy"]
    finally:
        unregister_column("joules")


def test_a_column_of_another_kind_or_part_is_refused():
    with pytest.raises(Exception, match="part 'middle' is not one of"):
        register_column(Column("bad", lambda row: "", part="middle"))
    with pytest.raises(Exception, match="not a fer_bench.leaderboard.columns.Column"):
        COLUMNS.register("bad", lambda row: "")
    assert "bad" not in COLUMNS


def _column_package(tmp_path, monkeypatch, body, targets):
    """A throwaway installed distribution ``colpkg`` with ``fer_bench.columns`` entry points."""
    site = tmp_path / "site"
    (site / "colpkg").mkdir(parents=True)
    (site / "colpkg" / "__init__.py").write_text(body)
    info = site / "colpkg-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: colpkg\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(
        "[fer_bench.columns]\n" + "".join(f"{n} = {t}\n" for n, t in targets.items()))
    monkeypatch.syspath_prepend(str(site))   # a new sys.path: the registry reads it again
    monkeypatch.delitem(sys.modules, "colpkg", raising=False)
    importlib.invalidate_caches()


def test_an_installed_package_adds_a_column_through_its_entry_point(tmp_path, monkeypatch):
    body = ("from fer_bench.leaderboard.columns import Column\n"
            "SHARE = Column('share', lambda row: 'from colpkg', experiments=('losses',))\n"
            "NOT_A_COLUMN = 42\n")
    _column_package(tmp_path, monkeypatch, body,
                    {"share": "colpkg:SHARE", "broken": "colpkg:NOT_A_COLUMN"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = build_tables(_records(), experiment="losses")["ordinary"]
    assert frame.loc["small_cnn", "share"] == "from colpkg"
    assert "broken" not in frame.columns
    assert any("broken" in str(w.message) and "colpkg" in str(w.message) for w in caught)
    assert "share" not in build_tables(_records("nhot"), experiment="nhot")["ordinary"]


# ----------------------------------------------------------------------------- declared
MODULE = '''
from fer_bench.leaderboard.columns import Column, register_column

register_column(Column("declared", lambda row: "from the module", experiments=("losses",)))
'''


def _document(tmp_path, module: str):
    document = document_of(_records(), experiments={"losses": "Losses"})
    document["fer_bench"]["columns"] = [
        {"name": "declared", "experiments": ["losses"], "module": module}]
    path = tmp_path / "results" / "run.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document))
    return path


def test_a_column_a_results_file_declares_is_loaded_from_its_module(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "test_declares.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    loaded = load_results([_document(tmp_path, "bench/test_declares.py")])
    assert "declared" not in COLUMNS
    try:
        sections = build_sections(loaded.records, loaded.provenance)
        assert sections[0].frames["ordinary"].loc["small_cnn", "declared"] == "from the module"
        page = render_markdown(loaded.records, loaded.provenance)
        row = next(line for line in page.splitlines() if line.startswith("| small&#95;cnn |"))
        assert row.endswith("| from the module |")
        assert [d["name"] for d in declared_columns(["losses"], tmp_path)] == ["declared"]
        assert declared_columns(["losses"], tmp_path)[0]["module"] == "bench/test_declares.py"
        assert declared_columns(["nhot"], tmp_path) == []
    finally:
        unregister_column("declared")


def test_a_declared_column_whose_module_is_missing_is_one_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_results([_document(tmp_path, "bench/test_gone.py")])
    with pytest.warns(UserWarning, match=r"column 'declared'.*test_gone\.py is not found"):
        assert load_declared_columns(loaded.provenance) == ["declared"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = build_sections(loaded.records, loaded.provenance)[0].frames["ordinary"]
    assert "declared" not in frame.columns and "seeds" in frame.columns


# ----------------------------------------------------------------------------- typed values
def test_run_labels_are_tuples_and_only_the_titles_format_them():
    records = [make_record(dataset_label="ferplus"), make_record(seed=1, dataset_label="synthetic")]
    labels = run_labels(records)
    assert labels == RunLabels(("ferplus", "synthetic"), ("smoke",))
    assert labels.not_comparable == ("smoke",)
    assert labels.some_ferplus and not labels.ferplus_only
    assert data_text(labels) == "ferplus + SYNTHETIC (not FERPlus)"
    assert "profile: SMOKE (few epochs" in table_title("ordinary", labels)
    # judged by the profile's ``comparable``, not by its name's text
    assert "few epochs" not in table_title("ordinary", RunLabels(("ferplus",), ("nosmoke",)))
    assert "few epochs" not in table_title("ordinary", RunLabels(("ferplus",), ("cpu",)))
    assert "profile: CPU+SMOKE (few" in table_title("ordinary", RunLabels((), ("cpu", "smoke")))
    assert data_text(RunLabels()) == "UNKNOWN (not FERPlus)"
    page = render_markdown(records, [])
    assert "> **Data: ferplus+synthetic, not only FERPlus.**" in page
    assert "> **Profile: smoke.**" in page
    assert "every other section" not in page    # one section holds both: nothing to single out


def test_banners_name_the_sections_they_concern():
    """A synthetic smoke section beside a FERPlus section: the page's banners say which
    section is other data and not comparable, not that the whole page is."""
    records = [make_record(dataset_label="ferplus", profile="cpu"),
               make_record(seed=1, dataset_label="ferplus", profile="cpu"),
               make_record(dataset_label="synthetic", experiment="recovery"),
               make_record(seed=1, dataset_label="synthetic", experiment="recovery")]
    page = render_markdown(records, [])
    data_banner = next(line for line in page.splitlines() if line.startswith("> **Data:"))
    profile_banner = next(line for line in page.splitlines() if line.startswith("> **Profile:"))
    assert "not only FERPlus" in data_banner and "Section recovery ran on other data; every other section is FERPlus" in data_banner
    assert "Section recovery only; every other section is comparable" in profile_banner


def test_failed_cells_are_red_by_their_status_not_their_text():
    register_column(Column("verdict", lambda row: FAILED))    # a text that reads "failed"
    try:
        records = [make_record(nhot=1, acc=None), make_record(nhot=8, acc=0.7)]
        frame = build_tables(records)["ordinary"]
    finally:
        unregister_column("verdict")
    assert frame.attrs["failed"] == {"small_cnn": ["1-hot"]}
    assert frame.loc["small_cnn", "1-hot"] == frame.loc["small_cnn", "verdict"] == FAILED
    table = _rich_table(frame, list(frame.columns))
    styles = {column.header.plain: column.cells for column in table.columns}
    assert [str(c.style) for c in styles["1-hot"]] == ["red"]
    assert [str(c.style) for c in styles["verdict"]] == [""]


def test_a_plugin_release_is_in_a_label_only_to_tell_two_rows_apart():
    def record(loss, release, seed=0):
        base = make_record(seed=seed, recipe=TrainConfig(epochs=3, loss=loss))
        base.cell = replace(base.cell, plugin_releases={"loss": release})
        return base

    old, new = record("half_mse", "lossy==0.1"), record("half_mse", "lossy==0.2")
    labels = sorted(row.label for row in summarize([old, new])["ordinary"])
    assert labels == ["small_cnn loss=half_mse plugins=loss:lossy==0.1",
                      "small_cnn loss=half_mse plugins=loss:lossy==0.2"]
    other = record("pld", "in-process")
    labels = sorted(row.label for row in summarize([old, other])["ordinary"])
    assert labels == ["small_cnn loss=half_mse", "small_cnn loss=pld"]


def test_a_sections_labels_are_its_own_records():
    """Records run without --fer-profile (profile "") count as "default", and another file's
    smoke block does not leak into their section's title."""
    plain = [make_record(dataset_label="ferplus", profile="", experiment="speedrun"),
             make_record(seed=1, dataset_label="ferplus", profile="", experiment="speedrun")]
    provenance = [{"fer_bench": {"profile": "smoke", "data_label": "synthetic"}},
                  {"fer_bench": {"profile": "", "data_label": "ferplus"}}]
    assert run_labels(plain, provenance) == RunLabels(("ferplus",), ("default",))
    assert run_labels([], provenance) == RunLabels(("ferplus", "synthetic"), ("smoke",))

"""``fer-bench data stats`` and ``compute_stats`` on the real data and on edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_bench.cli.main import main
from fer_bench.data.schema import LoadReport, RawDataset
from fer_bench.data.stats import STATS_KEYS, compute_stats

REAL_HISTOGRAM = {"1": 9_298, "2": 13_298, "3": 8_339, "4": 3_458, "5": 874, "6": 118,
                  "7": 4, "8": 0}


def run_json(capsys, *argv: str) -> dict:
    assert main(["data", "stats", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_real_stats_json(ferplus_raw, ferplus_dir, capsys):
    stats = run_json(capsys, "--data", str(ferplus_dir))
    assert tuple(stats) == STATS_KEYS
    assert (stats["data_label"], stats["format"], stats["labels"]) == ("ferplus", "folder", "fer2013new")
    assert stats["path"] == str(ferplus_dir)
    assert stats["rows"] == 35_887 and stats["images"] == 35_710
    assert stats["unnamed_rows"] == 173 and stats["duplicate_names"] == 4
    assert sorted(stats["duplicate_name_list"]) == sorted(ferplus_raw.report.duplicate_names)
    assert stats["votes_differ"] is None
    assert stats["kept"] == 35_389
    assert stats["kept_by_usage"] == {"Training": 28_314, "PublicTest": 3_541, "PrivateTest": 3_534}
    assert stats["complexity_histogram"] == REAL_HISTOGRAM
    assert stats["complex_pool"] == 4_454
    for name, sizes in stats["splits"].items():
        assert sizes["available"] is True
        assert sizes["train"] + sizes["val"] + sizes["test"] == 35_389, name
    assert stats["splits"]["official"] == {"available": True, "train": 28_314, "val": 3_541,
                                           "test": 3_534}
    assert stats["splits"]["ordinary"]["test"] == stats["splits"]["complex"]["test"] == 3_539
    assert any("appear more than once" in w for w in stats["warnings"])
    assert stats == compute_stats(ferplus_raw, seed=0) | {"path": str(ferplus_dir)}


def test_real_stats_with_folder_labels(ferplus_dir, capsys):
    stats = run_json(capsys, "--data", str(ferplus_dir), "--labels", "folder")
    assert stats["labels"] == "folder"
    assert stats["images"] == 35_710 and stats["votes_differ"] == 1_601


def test_real_stats_table(ferplus_raw, ferplus_dir, capsys):
    assert main(["data", "stats", "--data", str(ferplus_dir), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for text in ("35,710", "35,389", "28,314", "13,298", "4,454", "fer0033120.png", "seed 3"):
        assert text in out, text


def test_synthetic_default(monkeypatch, capsys):
    monkeypatch.delenv("FER_BENCH_DATA", raising=False)
    stats = run_json(capsys)
    assert stats["data_label"] == "synthetic" and stats["format"] == "synthetic"
    assert stats["images"] == 6000 and stats["votes_differ"] is None
    assert sum(stats["complexity_histogram"].values()) == stats["kept"]


def tiny_raw(n_complex: int) -> RawDataset:
    """40 one-emotion images plus ``n_complex`` images with 5 emotions."""
    votes = np.zeros((40 + n_complex, 10), np.int32)
    votes[:40, 0] = 10
    votes[40:, :5] = 2
    votes[3, 9] = 10                      # one image the cleaning rule drops (NF 10)
    n = len(votes)
    return RawDataset(
        images=np.zeros((n, 48, 48), np.uint8), votes=votes,
        usage=(np.arange(n) % 3).astype(np.int8),
        names=np.array([f"img{i}.png" for i in range(n)], dtype=object), fingerprint="x",
        report=LoadReport(source_format="folder", label_snapshot="fer2013new", path="tiny",
                          rows=n, warnings=["loader note"]))


def test_small_complex_pool_is_a_warning(capsys):
    stats = compute_stats(tiny_raw(n_complex=2), seed=5)
    assert stats["kept"] == 41 and stats["complex_pool"] == 2
    assert stats["complexity_histogram"]["5"] == 2 and stats["complexity_histogram"]["1"] == 39
    assert stats["splits"]["complex"]["test"] == 2       # all of the pool, fewer than 4
    assert stats["splits"]["ordinary"]["test"] == 4
    assert stats["warnings"][0] == "loader note"
    assert any("complex split: only 2 images" in w for w in stats["warnings"])


def test_bad_path_is_a_clean_error(tmp_path, capsys):
    assert main(["data", "stats", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_negative_seed_is_refused(capsys):
    with pytest.raises(SystemExit) as info:      # argparse's range check: exit 2, one line
        main(["data", "stats", "--data", "synthetic", "--seed", "-1"])
    assert info.value.code == 2
    assert "argument --seed: -1 is not >= 0" in capsys.readouterr().err

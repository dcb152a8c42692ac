"""Partial sources and byte-order marks (issue 13, part 3).

A Kaggle-format pair that holds only the Training rows loads; ``data stats`` reports the
splits it cannot build as unavailable, with the reason, and ``run --split official`` on it
fails with one clear error naming the missing usages. A UTF-8 BOM at the start of
``fer2013new.csv`` or ``fer2013.csv`` (Excel writes one) is accepted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fer_bench.cli.main import main
from fer_bench.data.clean import clean
from fer_bench.data.sources import load_source
from fer_bench.data.splits import make_split
from fer_bench.data.stats import STATS_KEYS, compute_stats
from fer_bench.errors import SplitUnavailable
from tests.helpers.kaggle_pair import BOM, write_kaggle_pair

N_TRAINING = 60


@pytest.fixture()
def training_only(tmp_path):
    return write_kaggle_pair(tmp_path / "training_only", ["Training"] * N_TRAINING)


def test_training_only_pair_loads_and_official_is_unavailable(training_only):
    raw = load_source(training_only / "fer2013.csv")
    assert len(raw) == N_TRAINING and set(raw.usage.tolist()) == {0}
    cleaned = clean(raw)
    with pytest.raises(SplitUnavailable) as info:
        make_split(cleaned, "official", 0)
    message = str(info.value)
    assert "split 'official' needs FERPlus Training, PublicTest and PrivateTest images" in message
    assert "no PublicTest (validation) and no PrivateTest (test) images" in message
    assert f"{N_TRAINING} Training, 0 PublicTest, 0 PrivateTest" in message
    assert "use split ordinary or complex" in message
    assert info.value.exit_code == 2
    assert len(make_split(cleaned, "ordinary", 0).test) == N_TRAINING // 10   # the others work


def test_stats_json_reports_unavailable_splits_with_the_reason(training_only, capsys):
    assert main(["data", "stats", "--data", str(training_only), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert tuple(stats) == STATS_KEYS
    assert stats["kept_by_usage"] == {"Training": N_TRAINING, "PublicTest": 0, "PrivateTest": 0}
    official = stats["splits"]["official"]
    assert official["available"] is False and set(official) == {"available", "reason"}
    assert "no PublicTest (validation) and no PrivateTest (test) images" in official["reason"]
    for name in ("ordinary", "complex"):
        sizes = stats["splits"][name]
        assert sizes["available"] is True
        assert sizes["train"] + sizes["val"] + sizes["test"] == N_TRAINING


def test_stats_table_reports_unavailable_splits_with_the_reason(training_only, capsys):
    assert main(["data", "stats", "--data", str(training_only)]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "official" in line]
    assert any("unavailable" in line for line in lines), captured.out
    assert "split official unavailable:" in captured.out
    assert "no PublicTest (validation)" in " ".join(captured.out.split())
    assert captured.err == ""


def test_a_split_with_no_test_images_is_unavailable_too():
    """compute_stats never dies on a split: a set without complex faces has no complex test."""
    from tests.data.test_data_stats import tiny_raw

    stats = compute_stats(tiny_raw(n_complex=0), seed=0)
    assert stats["splits"]["complex"]["available"] is False
    assert "leaves" in stats["splits"]["complex"]["reason"]
    assert stats["splits"]["ordinary"]["available"] is True


def test_run_split_official_on_training_only_data_is_one_clear_error(training_only, tmp_path, capsys):
    code = main(["run", "--model", "small_cnn", "--split", "official", "--epochs", "1",
                 "--data", str(training_only), "--device", "cpu", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("fer-bench: error:") == 1 and "Traceback" not in err
    assert "split 'official' needs" in err and "no PublicTest (validation)" in err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))


@pytest.mark.parametrize("bom", [("fer2013new.csv",), ("fer2013.csv",),
                                 ("fer2013new.csv", "fer2013.csv")])
def test_a_byte_order_mark_is_accepted_in_kaggle_files(tmp_path, bom):
    usages = ["Training"] * 8 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
    plain = load_source(write_kaggle_pair(tmp_path / "plain", usages) / "fer2013.csv")
    folder = write_kaggle_pair(tmp_path / "bom", usages, bom=bom)
    for name in bom:
        assert (folder / name).read_bytes().startswith(BOM.encode("utf-8"))
    marked = load_source(folder / "fer2013.csv")
    for attr in ("images", "votes", "usage", "names"):
        np.testing.assert_array_equal(getattr(marked, attr), getattr(plain, attr), err_msg=attr)


def test_a_byte_order_mark_is_accepted_in_the_folder_format(tmp_path):
    from fer_bench.data.schema import VOTE_COLUMNS

    root = tmp_path / "ferplus"
    rows = []
    for i, (usage, sub) in enumerate([("Training", "FER2013Train"), ("PublicTest", "FER2013Valid"),
                                      ("PrivateTest", "FER2013Test")]):
        (root / sub).mkdir(parents=True)
        Image.fromarray(np.full((48, 48), 10 * i, np.uint8), mode="L").save(root / sub / f"fer{i:07d}.png")
        rows.append(f"{usage},fer{i:07d}.png,{10 - i},{i},0,0,0,0,0,0,0,0")
    header = "Usage,Image name," + ",".join(VOTE_COLUMNS)
    (root / "fer2013new.csv").write_text(BOM + "\n".join([header, *rows]) + "\n", encoding="utf-8")
    raw = load_source(root)
    assert raw.names.tolist() == [f"fer{i:07d}.png" for i in range(3)]
    assert raw.votes[1].tolist() == [9, 1] + [0] * 8

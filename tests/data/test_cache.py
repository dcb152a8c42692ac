"""fer_bench.data.cache: the one data entry point, its default, and its self-checking cache."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench.data import cache
from fer_bench.data.schema import USAGE_FOLDERS, VOTE_COLUMNS
from fer_bench.data.sources import load_source


def make_folder(root: Path, n: int = 12, seed: int = 0) -> Path:
    """A small FERPlus folder: ``n`` named rows over the three usages, random images."""
    rng = np.random.default_rng(seed)
    usages = list(USAGE_FOLDERS)
    root.mkdir(parents=True)
    for sub in USAGE_FOLDERS.values():
        (root / sub).mkdir()
    with open(root / "fer2013new.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        for i in range(n):
            usage, name = usages[i % 3], f"fer{i:07d}.png"
            writer.writerow([usage, name, *rng.multinomial(10, [0.125] * 8).tolist(), 0, 0])
            image = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            Image.fromarray(image, mode="L").save(root / USAGE_FOLDERS[usage] / name)
    return root


class CountingLoader:
    """Stands in for ``cache.load_source`` and counts how often the source is decoded."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return load_source(*args, **kwargs)


@pytest.fixture
def counter(monkeypatch) -> CountingLoader:
    loader = CountingLoader()
    monkeypatch.setattr(cache, "load_source", loader)
    return loader


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder(tmp_path / "data")


def assert_same(a, b) -> None:
    for attr in ("images", "votes", "usage", "names"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr)), attr
    assert a.fingerprint == b.fingerprint
    assert a.report.rows == b.report.rows


def only_cache_file(cache_dir: Path) -> Path:
    files = sorted(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz", files   # no stray .tmp files
    return files[0]


def test_second_load_hits_the_cache(folder, tmp_path, counter):
    first = cache.load_dataset(folder, cache_dir=tmp_path / "c")
    second = cache.load_dataset(folder, cache_dir=tmp_path / "c")
    assert counter.calls == 1
    assert_same(first, second)
    assert second.names.dtype == object and second.report.path == str(folder)
    with np.load(only_cache_file(tmp_path / "c"), allow_pickle=False) as npz:
        assert npz["names"].dtype.kind == "U"


def test_labels_and_format_have_their_own_cache_file(folder, tmp_path, counter):
    with open(folder / "fer2013new.csv", newline="") as fh:
        vote_rows = list(csv.reader(fh))[1:]
    for sub in USAGE_FOLDERS.values():          # folder labels equal to fer2013new's
        with open(folder / sub / "label.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            for row in vote_rows:
                if USAGE_FOLDERS[row[0]] == sub:
                    writer.writerow([row[1], "(0, 0, 48, 48)", *row[2:]])
    cache.load_dataset(folder, cache_dir=tmp_path / "c")
    by_folder = cache.load_dataset(folder, labels="folder", cache_dir=tmp_path / "c")
    cache.load_dataset(folder, labels="folder", cache_dir=tmp_path / "c")
    assert counter.calls == 2
    assert by_folder.report.label_snapshot == "folder" and by_folder.report.votes_differ == 0


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_corrupt_cache_is_rebuilt(folder, tmp_path, counter, damage, caplog):
    first = cache.load_dataset(folder, cache_dir=tmp_path / "c")
    path = only_cache_file(tmp_path / "c")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":                 # inside the images member: only its CRC tells
        data[len(data) // 3] ^= 0xFF
    else:
        data = bytearray(b"not a zip file at all")
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="fer_bench.data.cache"):
        rebuilt = cache.load_dataset(folder, cache_dir=tmp_path / "c")   # information, no warning
    assert "corrupt cache file" in caplog.text and "rebuilding the cache" in caplog.text
    assert counter.calls == 2
    assert_same(first, rebuilt)
    cache.load_dataset(folder, cache_dir=tmp_path / "c")   # the rebuilt file is good again
    assert counter.calls == 2


def test_changed_vote_file_makes_the_cache_stale(folder, tmp_path, counter, caplog):
    cache.load_dataset(folder, cache_dir=tmp_path / "c")
    lines = (folder / "fer2013new.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",fer0000000.png,10,0,0,0,0,0,0,0,0,0"
    (folder / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO, logger="fer_bench.data.cache"):
        changed = cache.load_dataset(folder, cache_dir=tmp_path / "c")
    assert "stale cache file" in caplog.text
    assert counter.calls == 2
    assert changed.votes[0].tolist() == [10] + [0] * 9
    only_cache_file(tmp_path / "c")             # rebuilt in place, not beside the stale one


def test_touched_png_makes_the_cache_stale(folder, tmp_path, counter, caplog):
    cache.load_dataset(folder, cache_dir=tmp_path / "c")
    png = folder / "FER2013Valid" / "fer0000001.png"
    Image.new("L", (48, 48), 7).save(png)
    os.utime(png, ns=(png.stat().st_atime_ns, png.stat().st_mtime_ns + 2_000_000_000))
    with caplog.at_level(logging.INFO, logger="fer_bench.data.cache"):
        changed = cache.load_dataset(folder, cache_dir=tmp_path / "c")
    assert "stale cache file" in caplog.text
    assert counter.calls == 2
    assert (changed.images[1] == 7).all()


def test_use_cache_false_reads_and_writes_no_cache(folder, tmp_path, counter):
    cache.load_dataset(folder, cache_dir=tmp_path / "c")
    cache.load_dataset(folder, cache_dir=tmp_path / "c", use_cache=False)
    assert counter.calls == 2
    cache.load_dataset(folder, cache_dir=tmp_path / "other", use_cache=False)
    assert not (tmp_path / "other").exists()


def test_cache_dir_inside_the_data_folder_is_refused(folder, counter):
    before = sorted(folder.rglob("*"))
    with pytest.warns(UserWarning, match="inside the data folder"):
        cache.load_dataset(folder, cache_dir=folder / "cache")
    assert sorted(folder.rglob("*")) == before


def test_env_cache_dir_is_the_default(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "env-cache"))
    cache.load_dataset(folder)
    only_cache_file(tmp_path / "env-cache")
    assert cache.default_cache_dir() == tmp_path / "env-cache"


def test_resolve_data_path(monkeypatch, tmp_path):
    monkeypatch.delenv("FER_BENCH_DATA", raising=False)
    assert cache.resolve_data_path(None) is None
    assert cache.resolve_data_path(tmp_path) == str(tmp_path)
    monkeypatch.setenv("FER_BENCH_DATA", "/some/where")
    assert cache.resolve_data_path(None) == "/some/where"
    assert cache.resolve_data_path("synthetic") == "synthetic"


def test_env_data_path_is_used(folder, tmp_path, monkeypatch, counter, caplog):
    monkeypatch.setenv("FER_BENCH_DATA", str(folder))
    raw = cache.load_dataset(cache_dir=tmp_path / "c")
    assert raw.report.source_format == "folder" and len(raw) == 12
    assert "SYNTHETIC" not in caplog.text


def test_default_is_the_announced_synthetic_set(monkeypatch, caplog):
    monkeypatch.delenv("FER_BENCH_DATA", raising=False)
    monkeypatch.setattr(cache, "_announced_synthetic_default", False)
    raw = cache.load_dataset()
    assert raw.is_synthetic and len(raw) == 6000
    notices = [r for r in caplog.records if "embedded SYNTHETIC data set" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == logging.WARNING
    assert notices[0].name == "fer_bench.data.cache"
    caplog.clear()
    # the second load only has to show the notice is not repeated, not redraw 6000 faces
    monkeypatch.setattr("fer_bench.data.sources.make_synthetic", lambda **_: raw)
    assert cache.load_dataset() is raw
    assert "SYNTHETIC" not in caplog.text          # announced once per process


def test_real_data_loads_from_the_cache(ferplus_raw, ferplus_dir, counter):
    again = cache.load_dataset(ferplus_dir)
    assert counter.calls == 0
    assert_same(ferplus_raw, again)
    assert again.report.duplicate_names == ferplus_raw.report.duplicate_names


def test_nothing_is_written_into_the_real_data_folder(ferplus_dir, tmp_path, caplog):
    """A cold prepare (fresh cache folder) plus a cached load leave the data folder as it was."""
    def snapshot():
        return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in [ferplus_dir, *ferplus_dir.rglob("*")])

    before = snapshot()
    cold = cache.load_dataset(ferplus_dir, labels="folder", cache_dir=tmp_path / "c")
    assert "appear more than once" in caplog.text     # logged (a fact of the file), not warned
    warm = cache.load_dataset(ferplus_dir, labels="folder", cache_dir=tmp_path / "c")
    assert snapshot() == before
    assert cold.report.votes_differ == warm.report.votes_differ == 1601
    only_cache_file(tmp_path / "c")

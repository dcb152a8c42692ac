"""fer_bench.data.sources: both FERPlus readers, their defect rules and their error messages."""

from __future__ import annotations

import csv
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer_bench.data.schema import USAGE_FOLDERS, USAGES, VOTE_COLUMNS
from fer_bench.data.sources import load_source, locate_source, source_fingerprint
from fer_bench.errors import DataError

HEADER = ["Usage", "Image name", *VOTE_COLUMNS]
REAL_DUPLICATES = ["fer0006953.png", "fer0008403.png", "fer0011785.png", "fer0033120.png"]


# ----------------------------------------------------------------------------- fixtures

def write_votes(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)


def export_folder(root: Path, rows: list[list], pixels: list[np.ndarray]) -> None:
    """Write what Microsoft's exporter writes: one PNG per named row (later rows overwrite)."""
    root.mkdir(parents=True, exist_ok=True)
    write_votes(root / "fer2013new.csv", rows)
    for sub in USAGE_FOLDERS.values():
        (root / sub).mkdir(exist_ok=True)
    for row, image in zip(rows, pixels, strict=True):
        if row[1]:
            Image.fromarray(image, mode="L").save(root / USAGE_FOLDERS[row[0]] / row[1])


def write_kaggle(path: Path, rows: list[list], pixels: list[np.ndarray]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        for row, image in zip(rows, pixels, strict=True):
            emotion = int(np.argmax(row[2:9]))
            writer.writerow([emotion, " ".join(map(str, image.ravel())), row[0]])


def small_rows() -> tuple[list[list], list[np.ndarray]]:
    """Six rows of every usage, one unnamed, with random 48x48 images."""
    rng = np.random.default_rng(7)
    rows = [
        ["Training", "fer0000000.png", 4, 0, 0, 1, 3, 2, 0, 0, 0, 0],
        ["Training", "", 0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
        ["Training", "fer0000002.png", 0, 10, 0, 0, 0, 0, 0, 0, 0, 0],
        ["PublicTest", "fer0000003.png", 5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
        ["PublicTest", "fer0000004.png", 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        ["PrivateTest", "fer0000005.png", 0, 0, 8, 0, 0, 0, 0, 0, 2, 0],
    ]
    pixels = [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in rows]
    return rows, pixels


@pytest.fixture
def small_folder(tmp_path) -> Path:
    rows, pixels = small_rows()
    export_folder(tmp_path / "ferplus", rows, pixels)
    return tmp_path / "ferplus"


@pytest.fixture
def small_kaggle(tmp_path) -> Path:
    rows, pixels = small_rows()
    root = tmp_path / "kaggle"
    root.mkdir()
    write_votes(root / "fer2013new.csv", rows)
    write_kaggle(root / "fer2013.csv", rows, pixels)
    return root / "fer2013.csv"


def replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- real data

def test_real_folder_counts(ferplus_raw):
    report = ferplus_raw.report
    assert len(ferplus_raw) == 35_710
    assert report.rows == 35_887
    assert report.unnamed_rows == 173
    assert sorted(report.duplicate_names) == REAL_DUPLICATES
    assert report.votes_differ is None
    assert ferplus_raw.images.shape == (35_710, 48, 48) and ferplus_raw.images.dtype == np.uint8
    assert ferplus_raw.votes.shape == (35_710, 10) and ferplus_raw.votes.dtype == np.int32
    assert np.bincount(ferplus_raw.usage).tolist() == [28_558, 3_579, 3_573]
    assert len(set(ferplus_raw.names)) == 35_710


def test_real_order_and_votes_match_an_independent_reading(ferplus_raw, ferplus_dir):
    """Canonical order = named fer2013new rows, a duplicate at the position of its later row."""
    table = pd.read_csv(ferplus_dir / "fer2013new.csv", dtype={"Image name": str})
    table = table[table["Image name"].notna()].drop_duplicates("Image name", keep="last")
    assert list(ferplus_raw.names) == list(table["Image name"])
    np.testing.assert_array_equal(ferplus_raw.votes, table[list(VOTE_COLUMNS)].to_numpy())
    assert [USAGES[u] for u in ferplus_raw.usage] == list(table["Usage"])
    # names are not row indices: data row 60 is fer0000059.png, and three unnamed rows
    # (lines 19, 25, 61) come before it, so it is image 57
    assert ferplus_raw.names[57] == "fer0000059.png"


def test_real_pixels_match_the_pngs(ferplus_raw, ferplus_dir):
    rng = np.random.default_rng(0)
    names = list(ferplus_raw.names)
    picks = set(rng.choice(len(names), 40, replace=False).tolist())
    picks |= {names.index(n) for n in REAL_DUPLICATES}
    for i in sorted(picks):
        folder = USAGE_FOLDERS[USAGES[ferplus_raw.usage[i]]]
        with Image.open(ferplus_dir / folder / names[i]) as im:
            np.testing.assert_array_equal(ferplus_raw.images[i], np.asarray(im), err_msg=names[i])


# ----------------------------------------------------------------------------- folder == kaggle

def real_slice(ferplus_dir: Path) -> tuple[list[list], list[np.ndarray]]:
    """300 real rows of all three usages (incl. unnamed ones), one name made a duplicate."""
    with open(ferplus_dir / "fer2013new.csv", newline="") as fh:
        all_rows = list(csv.reader(fh))[1:]
    rows = [list(r) for r in all_rows[:240] + all_rows[28_709:28_739] + all_rows[32_298:32_328]]
    rng = np.random.default_rng(1)
    pixels = []
    for usage, name, *_ in rows:
        if name:
            with Image.open(ferplus_dir / USAGE_FOLDERS[usage] / name) as im:
                pixels.append(np.asarray(im).copy())
        else:  # no PNG was ever exported for an unnamed row; Kaggle still has its pixels
            pixels.append(rng.integers(0, 256, (48, 48), dtype=np.uint8))
    assert rows[10][1] and rows[200][1] and rows[200][0] == rows[10][0] == "Training"
    rows[200][1] = rows[10][1]          # the later row 200 now shares row 10's name
    return rows, pixels


def test_folder_and_kaggle_loaders_agree(tmp_path, ferplus_dir, caplog):
    rows, pixels = real_slice(ferplus_dir)
    assert sum(not r[1] for r in rows) >= 1
    export_folder(tmp_path / "folder", rows, pixels)
    (tmp_path / "kaggle").mkdir()
    write_votes(tmp_path / "kaggle" / "fer2013new.csv", rows)
    write_kaggle(tmp_path / "kaggle" / "fer2013.csv", rows, pixels)

    with caplog.at_level(logging.WARNING, logger="fer_bench.data.sources"):
        folder = load_source(tmp_path / "folder")
        kaggle = load_source(tmp_path / "kaggle" / "fer2013.csv")
    duplicates = [r.getMessage() for r in caplog.records if rows[10][1] in r.getMessage()]
    assert len(duplicates) == 2 and all("appear more than once" in m for m in duplicates)
    assert (folder.report.source_format, kaggle.report.source_format) == ("folder", "kaggle")
    for attr in ("images", "votes", "usage", "names"):
        np.testing.assert_array_equal(getattr(folder, attr), getattr(kaggle, attr), err_msg=attr)
    unnamed = sum(not r[1] for r in rows)
    for raw in (folder, kaggle):
        assert raw.report.rows == 300
        assert raw.report.unnamed_rows == unnamed
        assert raw.report.duplicate_names == [rows[10][1]]
        assert len(raw) == 300 - unnamed - 1
    # the duplicate sits where row 200 stands, with row 200's pixels and votes
    expected_names = [r[1] for i, r in enumerate(rows) if r[1] and i != 10]
    assert list(folder.names) == expected_names
    k = expected_names.index(rows[10][1])
    np.testing.assert_array_equal(folder.images[k], pixels[200])
    assert folder.votes[k].tolist() == [int(v) for v in rows[200][2:]]


# ----------------------------------------------------------------------------- small fixtures

def test_small_folder_rules(small_folder):
    raw = load_source(small_folder)
    rows, pixels = small_rows()
    assert list(raw.names) == [r[1] for r in rows if r[1]]
    assert raw.report.unnamed_rows == 1 and raw.report.rows == 6
    assert raw.usage.tolist() == [0, 0, 1, 1, 2]
    np.testing.assert_array_equal(raw.images[3], pixels[4])
    assert raw.votes[1].tolist() == [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]
    assert raw.report.warnings == []


def test_auto_detection(small_folder, small_kaggle):
    assert locate_source(small_folder).format == "folder"
    assert locate_source(small_folder / "fer2013new.csv").format == "folder"
    assert locate_source(small_kaggle).format == "kaggle"
    assert locate_source(small_kaggle.parent).format == "kaggle"
    assert locate_source("synthetic").format == "synthetic"
    with pytest.raises(DataError, match="Kaggle pixel file not found"):
        locate_source(small_folder, format="kaggle")


def test_nonexistent_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_source(tmp_path / "nowhere")


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_source(tmp_path)


def test_folder_without_vote_file(small_folder):
    (small_folder / "fer2013new.csv").unlink()
    with pytest.raises(DataError, match=r"fer2013new\.csv: vote file not found"):
        load_source(small_folder)


def test_missing_png(small_folder):
    (small_folder / "FER2013Valid" / "fer0000004.png").unlink()
    with pytest.raises(DataError, match=r"fer0000004\.png: PNG missing for fer2013new\.csv line 6"):
        load_source(small_folder)


def test_corrupt_png(small_folder):
    (small_folder / "FER2013Train" / "fer0000002.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"FER2013Train/fer0000002\.png: corrupt"):
        load_source(small_folder)


def test_truncated_png(small_folder):
    png = small_folder / "FER2013Test" / "fer0000005.png"
    png.write_bytes(png.read_bytes()[:300])
    with pytest.raises(DataError, match=r"FER2013Test/fer0000005\.png: corrupt"):
        load_source(small_folder)


def test_png_of_wrong_size(small_folder):
    Image.new("L", (64, 48)).save(small_folder / "FER2013Train" / "fer0000000.png")
    with pytest.raises(DataError, match=r"fer0000000\.png: image is 64x48, expected 48x48"):
        load_source(small_folder)


def test_16_bit_png_is_rejected(small_folder):
    Image.fromarray(np.full((48, 48), 40_000, np.uint16)).save(
        small_folder / "FER2013Train" / "fer0000000.png")
    with pytest.raises(DataError, match=r"fer0000000\.png: PIL mode .* not 8-bit grayscale"):
        load_source(small_folder)


def test_rgb_png_is_converted_and_reported(small_folder):
    rgb = np.random.default_rng(3).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(small_folder / "FER2013Valid" / "fer0000003.png")
    raw = load_source(small_folder)
    expected = np.asarray(Image.fromarray(rgb, mode="RGB").convert("L"))
    np.testing.assert_array_equal(raw.images[2], expected)
    assert any("1 PNG(s) were not 8-bit grayscale" in w for w in raw.report.warnings)


def test_unlisted_png_is_reported(small_folder):
    Image.new("L", (48, 48)).save(small_folder / "FER2013Train" / "fer0099999.png")
    raw = load_source(small_folder)
    assert len(raw) == 5
    assert any("1 PNG(s) have no row" in w for w in raw.report.warnings)


@pytest.mark.parametrize("cell, message", [
    ("-1", r"line 4, column 5 \(surprise\): vote count -1 is negative"),
    ("2.5", r"line 4, column 5 \(surprise\): vote count '2\.5' is not an integer"),
    ("", r"line 4, column 5 \(surprise\): missing vote count"),
])
def test_bad_vote_cell(small_folder, cell, message):
    replace_line(small_folder / "fer2013new.csv", 4,
                 f"Training,fer0000002.png,0,10,{cell},0,0,0,0,0,0,0")
    with pytest.raises(DataError, match=r"fer2013new\.csv: " + message):
        load_source(small_folder)


def test_vote_row_with_missing_columns(small_folder):
    replace_line(small_folder / "fer2013new.csv", 5, "PublicTest,fer0000003.png,5,5,0")
    with pytest.raises(DataError, match=r"line 5, column 6 \(sadness\): missing vote count"):
        load_source(small_folder)


def test_bad_usage_value(small_folder):
    replace_line(small_folder / "fer2013new.csv", 2, "Train,fer0000000.png,4,0,0,1,3,2,0,0,0,0")
    with pytest.raises(DataError, match=r"line 2, column 1 \(Usage\): 'Train'"):
        load_source(small_folder)


def test_kaggle_row_counts_differ(small_kaggle):
    lines = small_kaggle.read_text().splitlines()
    small_kaggle.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"fer2013\.csv has 5 data rows but .*fer2013new\.csv has 6"):
        load_source(small_kaggle)


def edit_kaggle_pixels(path: Path, line: int, edit) -> None:
    lines = path.read_text().splitlines()
    emotion, pixels, usage = lines[line - 1].split(",")
    lines[line - 1] = ",".join([emotion, " ".join(edit(pixels.split())), usage])
    path.write_text("\n".join(lines) + "\n")


def test_kaggle_pixel_string_of_wrong_length(small_kaggle):
    edit_kaggle_pixels(small_kaggle, 4, lambda px: px[:-1])
    with pytest.raises(DataError, match=r"fer2013\.csv: line 4, column 2 \(pixels\): "
                                        r"pixel string has 2303 values, expected 2304"):
        load_source(small_kaggle)


def test_kaggle_pixel_value_out_of_range(small_kaggle):
    edit_kaggle_pixels(small_kaggle, 3, lambda px: ["300"] + px[1:])
    with pytest.raises(DataError, match=r"fer2013\.csv: line 3, .*outside 0\.\.255"):
        load_source(small_kaggle)


def test_kaggle_non_integer_pixel(small_kaggle):
    edit_kaggle_pixels(small_kaggle, 6, lambda px: px[:10] + ["1.5"] + px[11:])
    with pytest.raises(DataError, match=r"fer2013\.csv: line 6, .*non-integer"):
        load_source(small_kaggle)


def test_kaggle_misaligned_usage(small_kaggle):
    lines = small_kaggle.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",PrivateTest"
    small_kaggle.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"fer2013\.csv: line 5: Usage 'PrivateTest' differs"):
        load_source(small_kaggle)


# ----------------------------------------------------------------------------- folder labels

def write_label_csvs(root: Path, rows: list[list], changed: dict[str, list[int]]) -> None:
    for usage, sub in USAGE_FOLDERS.items():
        with open(root / sub / "label.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            for row in rows:
                if row[1] and row[0] == usage:
                    writer.writerow([row[1], "(0, 0, 48, 48)", *changed.get(row[1], row[2:])])


def test_folder_labels_replace_the_votes(small_folder):
    rows, _ = small_rows()
    new_votes = [9, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    write_label_csvs(small_folder, rows, {"fer0000004.png": new_votes})
    raw = load_source(small_folder, labels="folder")
    assert raw.report.votes_differ == 1 and raw.report.label_snapshot == "folder"
    assert raw.votes[3].tolist() == new_votes
    np.testing.assert_array_equal(np.delete(raw.votes, 3, 0),
                                  np.delete(load_source(small_folder).votes, 3, 0))


def test_folder_labels_missing_row(small_folder):
    rows, _ = small_rows()
    write_label_csvs(small_folder, [r for r in rows if r[1] != "fer0000002.png"], {})
    with pytest.raises(DataError, match=r"FER2013Train/label\.csv: no row for image fer0000002\.png"):
        load_source(small_folder, labels="folder")


def test_folder_labels_need_the_folder_format(small_kaggle):
    with pytest.raises(DataError, match="needs the FERPlus folder layout"):
        load_source(small_kaggle, labels="folder")


# ----------------------------------------------------------------------------- fingerprint

def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def test_fingerprint_tracks_files_and_reading_writes_nothing(small_folder):
    before = snapshot(small_folder)
    first = load_source(small_folder).fingerprint
    assert snapshot(small_folder) == before
    assert source_fingerprint(locate_source(small_folder)) == first
    png = small_folder / "FER2013Test" / "fer0000005.png"
    os.utime(png, ns=(png.stat().st_atime_ns, png.stat().st_mtime_ns + 1_000_000_000))
    touched = source_fingerprint(locate_source(small_folder))
    assert touched != first
    replace_line(small_folder / "fer2013new.csv", 3, "Training,,0,0,0,0,0,0,0,0,1,9")
    assert source_fingerprint(locate_source(small_folder)) not in (first, touched)


def test_duplicate_warning_names_the_lines(small_folder, caplog):
    replace_line(small_folder / "fer2013new.csv", 7,
                 "PrivateTest,fer0000003.png,0,0,8,0,0,0,0,0,2,0")
    Image.new("L", (48, 48), 5).save(small_folder / "FER2013Test" / "fer0000003.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a fact of the file: logged, not warned
        raw = load_source(small_folder)
    assert "fer0000003.png (lines 5, 7)" in caplog.text
    assert any("fer0000003.png (lines 5, 7)" in w for w in raw.report.warnings)
    assert list(raw.names) == ["fer0000000.png", "fer0000002.png", "fer0000004.png",
                               "fer0000003.png"]
    assert raw.usage[-1] == 2 and raw.images[-1].max() == 5

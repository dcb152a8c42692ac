"""The literature protocol wired through the harness: cleaning rule ferplus-ms, split
official-majority, the rule check between label treatment and split, task data, the
multi-target loss, one cell end to end, and ``fer-bench run``."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from fer_bench.cli.main import main
from fer_bench.data.clean import clean, clean_fingerprint, subset
from fer_bench.data.labels.treatments import LABELS
from fer_bench.data.schema import LoadReport, RawDataset
from fer_bench.data.splits import SPLITS, make_split
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import ConfigError, SplitUnavailable
from fer_bench.identity.record import CellRecord
from fer_bench.models import ModelSpec, register_model, unregister_model
from fer_bench.training.losses import get_loss
from fer_bench.training.resolve import resolve_cell, resolve_config
from fer_bench.training.runner import run_cell
from fer_bench.training.tasks import build_task_data, cleaning_rule

MS_VARIANTS = ("ms-majority", "ms-probability", "ms-crossentropy", "ms-multitarget")


def raw_of(rows: list[tuple[str, list[int]]]) -> RawDataset:
    """A RawDataset of hand-built (usage, votes) rows; image i is filled with the value i."""
    usages = ("Training", "PublicTest", "PrivateTest")
    n = len(rows)
    return RawDataset(
        images=np.stack([np.full((48, 48), i, np.uint8) for i in range(n)]),
        votes=np.array([votes for _, votes in rows], np.int32),
        usage=np.array([usages.index(u) for u, _ in rows], np.int8),
        names=np.array([f"img{i}.png" for i in range(n)], dtype=object), fingerprint="hand",
        report=LoadReport(source_format="folder", label_snapshot="fer2013new", path="hand", rows=n))


HAND = [
    ("Training", [6, 0, 0, 0, 0, 0, 0, 0, 4, 0]),    # 0: study drops (unknown 4 > 3); every mode keeps
    ("Training", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),    # 1: no majority; prob/ce/multi keep
    ("Training", [0] * 8 + [10, 0]),                 # 2: no emotion vote: both rules drop it
    ("Training", [2, 2, 2, 2, 2, 0, 0, 0, 0, 0]),    # 3: every mode discards
    ("PublicTest", [0, 8, 2, 0, 0, 0, 0, 0, 0, 0]),  # 4: majority happiness
    ("PublicTest", [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]),  # 5: tie at the threshold: no majority
    ("PrivateTest", [0, 0, 7, 3, 0, 0, 0, 0, 0, 0]),  # 6: majority surprise
    ("PrivateTest", [4, 0, 0, 0, 0, 0, 0, 0, 4, 2]),  # 7: study drops; no majority
    ("PrivateTest", [0, 0, 0, 6, 0, 0, 0, 0, 4, 0]),  # 8: study drops; majority sadness
]


# ---------------------------------------------------------------- cleaning rules
def test_cleaning_rules_keep_and_fingerprint():
    raw = raw_of(HAND)
    study, ms = clean(raw), clean(raw, "ferplus-ms")
    assert study.cleaning == "study" and ms.cleaning == "ferplus-ms"
    assert study.names.tolist() == [f"img{i}.png" for i in (1, 3, 4, 5, 6)]
    assert ms.names.tolist() == [f"img{i}.png" for i in (0, 1, 3, 4, 5, 6, 7, 8)]
    assert ms.votes.tolist() == [HAND[i][1] for i in (0, 1, 3, 4, 5, 6, 7, 8)]
    assert study.votes.dtype == np.int32 and study.votes.shape == (5, 10)
    # the study's fingerprint is the one it always was: names + 8 emotion counts
    assert study.fingerprint == clean_fingerprint(study.names, study.votes[:, :8])
    assert study.fingerprint != ms.fingerprint


def test_same_images_under_two_rules_have_two_fingerprints():
    raw = raw_of([("Training", [9, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                  ("PrivateTest", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0])])
    study, ms = clean(raw), clean(raw, "ferplus-ms")
    assert study.names.tolist() == ms.names.tolist()
    assert study.fingerprint != ms.fingerprint
    small = subset(clean(make_synthetic(300, seed=1), "ferplus-ms"), 100, seed=0)
    assert small.cleaning == "ferplus-ms" and small.votes.shape == (100, 10)


def test_unknown_cleaning_rule():
    with pytest.raises(ConfigError, match="unknown cleaning rule 'microsoft'; valid: study, ferplus-ms"):
        clean(raw_of(HAND), "microsoft")


# ---------------------------------------------------------------- split official-majority
def test_official_majority_on_hand_rows():
    data = clean(raw_of(HAND), "ferplus-ms")
    split = make_split(data, "official-majority", seed=3)
    names = data.names
    assert names[split.train].tolist() == ["img0.png", "img1.png", "img3.png"]
    assert names[split.val].tolist() == ["img4.png"]                  # img5: tie, no majority
    assert names[split.test].tolist() == ["img6.png", "img8.png"]     # img7: no majority
    kind = SPLITS.get("official-majority")
    assert kind.cleaning == "ferplus-ms"
    assert kind.eval_targets(data, split.test).argmax(axis=1).tolist() == [2, 3]


@pytest.mark.parametrize(("dropped", "named"), [("PrivateTest", "PrivateTest (its test set)"),
                                                ("PublicTest", "PublicTest (its validation set)")])
def test_missing_usage_is_named(dropped, named):
    data = clean(raw_of([row for row in HAND if row[0] != dropped]), "ferplus-ms")
    with pytest.raises(SplitUnavailable, match=r"split 'official-majority' needs .* no " + re.escape(named)):
        make_split(data, "official-majority", 0)


def test_no_majority_image_in_a_usage():
    rows = [row for row in HAND if row[0] != "PrivateTest"] + [("PrivateTest", [4, 0, 0, 0, 0, 0, 0, 0, 4, 2])]
    with pytest.raises(SplitUnavailable, match="no PrivateTest image has a majority label"):
        make_split(clean(raw_of(rows), "ferplus-ms"), "official-majority", 0)


# ---------------------------------------------------------------- rule agreement
def test_cleaning_rule_of_a_cell():
    assert cleaning_rule("ms-majority", "official-majority") == "ferplus-ms"
    assert cleaning_rule("nhot-3", "ordinary") == "study"
    assert all(LABELS.get(v).cleaning == "ferplus-ms" for v in MS_VARIANTS)
    with pytest.raises(ConfigError, match="label treatment 'ms-majority' needs data cleaned by "
                                          "rule 'ferplus-ms', split 'ordinary' by rule 'study'"):
        cleaning_rule("ms-majority", "ordinary")
    with pytest.raises(ConfigError, match="split official-majority takes the label modes"):
        cleaning_rule("nhot-8", "official-majority")


class Tiny(nn.Module):
    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        self.head = nn.Linear(in_chans * 12 * 12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(x, 12).flatten(1))


SPEC = ModelSpec(name="lit_tiny", factory=Tiny, batch_size=32, input_size=48)


def cell_for(data, variant: str, loss: str, split: str = "official-majority", epochs: int = 1):
    config = resolve_config(SPEC, epochs=epochs, loss=loss)
    return resolve_cell(SPEC, variant=variant, split=split, seed=0, config=config,
                        dataset_fingerprint=data.fingerprint, device="cpu")


def test_task_data_scores_against_majority_labels():
    data = clean(make_synthetic(600, seed=0), "ferplus-ms")
    task = build_task_data(data, cell_for(data, "ms-multitarget", "ms_multitarget"))
    assert set(task.test_dist.sum(dim=1).tolist()) == {1.0}
    assert set(task.test_dist.max(dim=1).values.tolist()) == {1.0}      # one-hot
    assert task.test_full_dist.shape == tuple(task.test_dist.shape)
    # the majority label is the single top share of the full distribution (see majority_targets)
    full = task.test_full_dist
    top = full >= full.max(axis=1, keepdims=True) - 1e-6
    assert (top.sum(axis=1) == 1).all()
    assert (top.argmax(axis=1) == task.test_dist.argmax(dim=1).numpy()).all()
    rows = task.train_targets.numpy()                                  # normalised masks
    assert np.allclose(rows.sum(axis=1), 1)
    assert np.allclose(rows, (rows > 0) / (rows > 0).sum(axis=1, keepdims=True))
    with pytest.raises(ConfigError, match="needs data cleaned by rule 'ferplus-ms'; the data given "
                                          "was cleaned by 'study'"):
        study = clean(make_synthetic(600, seed=0))
        build_task_data(study, cell_for(study, "ms-majority", "cce"))


# ---------------------------------------------------------------- the multi-target loss
def test_ms_multitarget_loss_by_hand():
    loss = get_loss("ms_multitarget")
    target = torch.tensor([[0.5, 0, 0, 0, 0.5, 0, 0, 0]])
    # weights: masked (1 - 0.001) * 1 + 0.001 = 1, unmasked 0.001 (ferplus.py L199-201)
    # uniform output: max_c w_c p_c = 1/8
    assert float(loss(torch.zeros(1, 8), target)) == pytest.approx(math.log(8), rel=1e-6)
    # the most probable masked class counts: p_0 = e^2 / (e^2 + e + 6)
    logits = torch.tensor([[2.0, 0, 0, 0, 1.0, 0, 0, 0]])
    p0 = math.exp(2) / (math.exp(2) + math.e + 6)
    assert float(loss(logits, target)) == pytest.approx(-math.log(p0), rel=1e-6)
    # an unmasked class only counts with weight 0.001: p_7 ~ 1 -> -log(0.001)
    far = torch.tensor([[0.0, 0, 0, 0, 0, 0, 0, 30.0]])
    assert float(loss(far, target)) == pytest.approx(-math.log(0.001), rel=1e-3)
    logits = torch.randn(4, 8, requires_grad=True)
    value = loss(logits, target.repeat(4, 1))
    value.backward()
    assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------- one cell end to end
@pytest.mark.parametrize(("variant", "loss"), [("ms-probability", "pld"), ("ms-multitarget", "ms_multitarget")])
def test_one_cell_records_both_accuracies(variant, loss):
    data = clean(make_synthetic(600, seed=0), "ferplus-ms")
    cell = cell_for(data, variant, loss, epochs=2)
    record = run_cell(SPEC, build_task_data(data, cell), device="cpu")
    assert record.status == "ok", record.error
    assert record.cell.id == f"lit_tiny-{variant}-official-majority-s0-loss={loss}"
    assert record.acc_tie_aware == pytest.approx(record.acc_honest, abs=1e-12)
    split = make_split(data, "official-majority", 0)
    assert record.n_test == len(split.test) and record.n_val == len(split.val)
    assert CellRecord.from_dict(record.to_dict()).acc_tie_aware == record.acc_tie_aware


def test_study_cells_have_no_extra_figure():
    data = clean(make_synthetic(600, seed=0))
    record = run_cell(SPEC, build_task_data(data, cell_for(data, "nhot-8", "mse", "ordinary")))
    assert record.status == "ok" and record.acc_tie_aware is None


# ---------------------------------------------------------------- fer-bench run
@pytest.fixture()
def lit_model():
    register_model(SPEC)
    yield
    unregister_model("lit_tiny")


def test_run_command(tmp_path, capsys, lit_model):
    base = ["run", "--model", "lit_tiny", "--seed", "0", "--epochs", "1", "--data", "synthetic",
            "--device", "cpu", "--results", str(tmp_path / "results")]
    assert main([*base, "--variant", "ms-majority", "--split", "ordinary"]) == 2
    err = capsys.readouterr().err
    assert "argument --split: label treatment 'ms-majority' needs data cleaned by rule 'ferplus-ms'" in err
    assert main([*base, "--variant", "ms-crossentropy", "--loss", "cce",
                 "--split", "official-majority"]) == 0
    out = capsys.readouterr().out
    assert "lit_tiny-ms-crossentropy-official-majority-s0-loss=cce" in out
    assert "accuracy (tie-aware, same predictions)" in out


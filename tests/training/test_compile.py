"""The recipe's ``compile`` field (``--fer-compile``): identity, validation, and a compiled
evaluation that agrees with the eager one and keeps its compile time apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_bench.data.clean import subset
from fer_bench.errors import ConfigError
from fer_bench.identity.cell import Cell
from fer_bench.identity.config import TrainConfig
from fer_bench.training.recipe import check_recipe
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from fer_bench.training.tasks import build_task_data
from tests.helpers.cells import make_cell, rebind, tiny_spec

#: Digest of this identity before ``compile`` existed (commit b731cef): an added field left at
#: its default must not move any stored cell to another file.
PRE_COMPILE_CELL = Cell(model="small_cnn", variant="nhot-1", split="ordinary", seed=0,
                        model_release="fer-baselines==0.1.0", dataset="abc")
PRE_COMPILE_DIGEST = "d5473f82676e"


def test_default_compile_leaves_identity_and_digest_unchanged():
    assert "compile" not in TrainConfig().to_dict()
    assert PRE_COMPILE_CELL.digest() == PRE_COMPILE_DIGEST
    assert PRE_COMPILE_CELL.id == "small_cnn-n1-ordinary-s0"
    assert Cell.from_dict(PRE_COMPILE_CELL.to_dict()) == PRE_COMPILE_CELL


def test_compiled_cell_is_another_cell_with_its_own_id():
    compiled = PRE_COMPILE_CELL.with_axes(compile="eval")
    assert compiled.recipe.to_dict()["compile"] == "eval"
    assert compiled.id == "small_cnn-n1-ordinary-s0-compile=eval"
    assert compiled.digest() != PRE_COMPILE_DIGEST
    assert Cell.from_dict(compiled.to_dict()) == compiled


def test_unknown_compile_choice_is_refused():
    with pytest.raises(ConfigError, match="unknown compile choice 'train'; valid: none, eval"):
        check_recipe(TrainConfig(compile="train"))


def test_compiled_evaluation_matches_eager_and_times_compile_apart(ferplus_clean, monkeypatch):
    """Two epochs of the same cell (EMA weights and flip TTA, so the averaged model and the
    mirrored batches are what gets compiled), eager and compiled evaluation: the same
    training (the loss curve is bit-identical), accuracies equal up to rounding-level argmax
    flips, the compile seconds recorded apart, and no graph compiled after the warm-up."""
    from fer_bench.training import runner

    clean = subset(ferplus_clean, 700, seed=0)
    spec = tiny_spec()
    data = build_task_data(clean, make_cell(spec, clean, nhot=1))
    torch._dynamo.reset()
    graphs_after_warm_up = []
    compile_for_eval = runner.compile_for_eval

    def counting_compile(*args, **kwargs):
        compiled = compile_for_eval(*args, **kwargs)
        graphs_after_warm_up.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        return compiled

    monkeypatch.setattr(runner, "compile_for_eval", counting_compile)
    records = {}
    for choice in ("none", "eval"):
        config = resolve_config(spec, epochs=2, compile=choice, ema=0.9, tta="flip")
        records[choice] = run_cell(spec, rebind(data, spec, config), device="cpu")
    assert len(graphs_after_warm_up) == 1 and graphs_after_warm_up[0] > 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs_after_warm_up[0]
    eager, compiled = records["none"], records["eval"]
    assert eager.status == compiled.status == "ok", (eager.error, compiled.error)
    assert eager.compile_seconds is None and compiled.compile_seconds > 0
    assert compiled.cell.id.endswith("-compile=eval") and compiled.cell != eager.cell
    assert compiled.train_loss == eager.train_loss
    same = np.mean(compiled.predictions() == eager.predictions())
    assert same >= 0.99, f"compiled and eager test predictions agree on {same:.1%} only"
    for a, b in zip(compiled.val_acc + compiled.test_acc, eager.val_acc + eager.test_acc, strict=True):
        assert abs(a - b) <= 2 / min(data.n_val, data.n_test)

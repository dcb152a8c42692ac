"""The stage a failed cell names comes from the code that entered it (``training.failure``),
not from the names of the files or functions on the traceback."""

from __future__ import annotations

import re

import pytest

from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.identity.record import CellRecord, Status
from fer_bench.training import runner
from fer_bench.training.failure import Stage, describe_model_failure, entering, stage_of
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from tests.helpers.cells import task_for, tiny_spec


@pytest.fixture(scope="module")
def data():
    """400 synthetic faces, cleaned."""
    return clean(make_synthetic(400, seed=5))


def one_epoch_cell(data, name: str):
    spec = tiny_spec(name)
    return spec, task_for(spec, data, config=resolve_config(spec, epochs=1))


def test_the_innermost_stage_is_the_one_named():
    with pytest.raises(KeyError) as caught, entering(Stage.TRAINING), entering(Stage.EVALUATION):
        raise KeyError("x")
    assert stage_of(caught.value) is Stage.EVALUATION


def test_an_exception_outside_every_stage_has_none_and_passes_unchanged():
    error = ValueError("plain")
    with pytest.raises(ValueError) as caught:
        raise error
    assert caught.value is error and stage_of(error) is None
    with pytest.raises(ValueError) as caught, entering(Stage.BUILD):
        raise error
    assert caught.value is error and stage_of(error) is Stage.BUILD


def test_the_error_text_keeps_its_form():
    record = CellRecord(cell=None, epoch_times_s=[1.0, 2.0], params=10)
    try:
        with entering(Stage.EVALUATION):
            raise RuntimeError("bad\n  output")
    except RuntimeError as exc:
        text = describe_model_failure("m", record, exc)
    assert re.fullmatch(r"model m raised RuntimeError in epoch 3 \(evaluation\) at "
                        r"test_failure_stages\.py:\d+: bad output", text), text
    record.params = None
    assert describe_model_failure("m", record, ValueError("")).startswith(
        "model m raised ValueError while building the model (before epoch 1)")


def test_a_training_step_under_another_name_is_still_training(data, monkeypatch):
    """A step function from another file (a wrapper, a replaced loop) fails: the cell's
    error still says training, because the runner entered that stage around it."""
    def step_of_mine(run, images, targets, epoch):
        raise RuntimeError("boom in a renamed step")

    monkeypatch.setattr(runner, "train_epoch", step_of_mine)
    spec, task = one_epoch_cell(data, "renamed_step")
    record = run_cell(spec, task)
    assert record.status is Status.FAILED
    assert re.fullmatch(r"model renamed_step raised RuntimeError in epoch 1 \(training\) at "
                        r"test_failure_stages\.py:\d+: boom in a renamed step", record.error), record.error


def test_an_evaluation_under_another_name_is_still_evaluation(data, monkeypatch):
    def predict_of_mine(model, images, **kwargs):
        raise ValueError("eval went wrong")

    monkeypatch.setattr(runner, "predict", predict_of_mine)
    spec, task = one_epoch_cell(data, "renamed_eval")
    record = run_cell(spec, task)
    assert record.status is Status.FAILED and record.params is not None
    assert record.error.startswith("model renamed_eval raised ValueError in epoch 1 (evaluation) at ")


def test_a_model_that_cannot_be_built_fails_before_epoch_1(data, monkeypatch):
    def broken_build(*args, **kwargs):
        raise TypeError("factory exploded")

    monkeypatch.setattr(runner, "build_model", broken_build)
    spec, task = one_epoch_cell(data, "unbuildable")
    record = run_cell(spec, task)
    assert record.status is Status.FAILED and record.epoch_times_s == []
    assert record.error.startswith("model unbuildable raised TypeError while building the model "
                                   "(before epoch 1) at ")

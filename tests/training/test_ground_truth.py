"""Synthetic ground truth (issue 22, part 4): the hidden distributions travel with the data,
the tagger count varies as a data source, and cells record how close they get to the truth."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from fer_bench.data import clean, load_dataset, make_split, make_synthetic
from fer_bench.data.clean import subset
from fer_bench.data.sources import locate_source
from fer_bench.errors import DataPathError
from fer_bench.results.run import get_or_run_cell
from fer_bench.training import metrics
from fer_bench.training.runner import run_cell
from tests.helpers.cells import make_cell, run_benchmark_module, task_for, tiny_spec

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def by_taggers():
    """The same 1,500 faces with the votes of 3, 10 (the default) and 30 taggers."""
    return {t: make_synthetic(n=1500, seed=0, taggers=t) for t in (3, 10, 30)}


# ----------------------------------------------------------------------------- the source
def test_ten_taggers_is_the_default_set_bit_for_bit(by_taggers):
    default, ten = make_synthetic(n=1500, seed=0), by_taggers[10]
    for name in ("images", "votes", "usage", "names"):
        np.testing.assert_array_equal(getattr(ten, name), getattr(default, name))
    assert ten.fingerprint == default.fingerprint and ten.report.path == "synthetic"
    assert clean(ten).fingerprint == clean(default).fingerprint


def test_other_tagger_counts_redraw_only_the_votes(by_taggers):
    ten = by_taggers[10]
    fingerprints = {raw.fingerprint for raw in by_taggers.values()}
    assert len(fingerprints) == 3
    for taggers in (3, 30):
        raw = by_taggers[taggers]
        for name in ("images", "usage", "names"):
            np.testing.assert_array_equal(getattr(raw, name), getattr(ten, name))
        np.testing.assert_array_equal(raw.truth.dist, ten.truth.dist)
        assert (raw.votes.sum(axis=1) == taggers).all() and raw.truth.taggers == taggers
        assert raw.report.path == f"synthetic:taggers={taggers}"
        again = make_synthetic(n=1500, seed=0, taggers=taggers)
        np.testing.assert_array_equal(again.votes, raw.votes)
        assert again.fingerprint == raw.fingerprint


def test_votes_are_draws_from_the_hidden_distribution(by_taggers):
    """More taggers, closer vote shares: the mean L1 distance between an image's emotion
    vote shares and its true mixture falls as 1/sqrt(taggers), and the top vote agrees with
    the true top emotion more often."""
    distance, agreement = {}, {}
    for taggers, raw in by_taggers.items():
        data = clean(raw)
        truth = data.truth.dist
        assert truth.shape == data.dist.shape and truth.dtype == np.float32
        np.testing.assert_allclose(truth.sum(axis=1), 1.0, atol=1e-5)
        distance[taggers] = float(np.abs(data.dist - truth).sum(axis=1).mean())
        agreement[taggers] = float((data.dist.argmax(axis=1) == truth.argmax(axis=1)).mean())
    assert distance[3] > 1.4 * distance[10] > 1.4 * 1.4 * distance[30]
    assert agreement[3] < agreement[10] < agreement[30]
    assert agreement[30] > 0.9


def test_cleaning_and_subsets_keep_the_truth_row_for_row(by_taggers):
    raw = by_taggers[30]
    data = clean(raw)
    index = {name: i for i, name in enumerate(raw.names)}
    rows = np.array([index[name] for name in data.names])
    assert len(data) < len(raw)       # 30 taggers: the hard-to-read faces are dropped
    np.testing.assert_array_equal(data.truth.dist, raw.truth.dist[rows])
    small = subset(data, 300, seed=4)
    rows_small = np.array([index[name] for name in small.names])
    np.testing.assert_array_equal(small.truth.dist, raw.truth.dist[rows_small])
    assert small.truth.taggers == 30


def test_source_names_load_and_bad_ones_name_the_source():
    raw = load_dataset("synthetic:taggers=3")
    assert raw.fingerprint == make_synthetic(taggers=3).fingerprint
    assert (raw.votes.sum(axis=1) == 3).all()
    assert load_dataset("synthetic:taggers=10").fingerprint == make_synthetic().fingerprint
    for bad, why in (("synthetic:taggers=0", "whole number >= 1"),
                     ("synthetic:taggers=x", "whole number >= 1"),
                     ("synthetic:teggers=3", "unknown option 'teggers=3'")):
        with pytest.raises(DataPathError, match=why) as caught:
            locate_source(bad)
        assert str(caught.value).startswith(bad) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="taggers"):
        make_synthetic(n=10, taggers=0)


# ----------------------------------------------------------------------------- the metric
def test_truth_recovery_against_hand_computed_values():
    truth = np.array([[0.7, 0.2, 0.1, 0, 0, 0, 0, 0],
                      [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3]])
    kl, acc = metrics.truth_recovery(truth, truth)
    assert kl == pytest.approx(0.0, abs=1e-12) and acc == 1.0
    uniform = np.full((2, 8), 1 / 8)
    expected = np.mean([sum(t * np.log(8 * t) for t in row if t > 0) for row in truth])
    kl, acc = metrics.truth_recovery(uniform, truth)
    assert kl == pytest.approx(expected, rel=1e-12)
    assert acc == 0.5         # argmax of a uniform row is neutral: right for row 0 only
    wrong = np.array([[0.1, 0.8, 0.1, 0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0, 0, 0, 1.0]])
    assert metrics.truth_recovery(wrong, truth)[1] == 0.5


# ----------------------------------------------------------------------------- cells
@pytest.fixture(scope="module")
def small():
    return clean(make_synthetic(n=700, seed=5, taggers=3))


def test_task_data_carries_the_test_truth_and_real_data_none(small):
    spec = tiny_spec("tiny_truth", epochs=1)
    data = task_for(spec, small, nhot=8)
    split = make_split(small, "ordinary", seed=0)
    np.testing.assert_array_equal(data.test_truth, small.truth.dist[split.test])
    assert data.taggers == 3
    real = replace(small, truth=None)
    real_data = task_for(spec, real, nhot=8)
    assert real_data.test_truth is None and real_data.taggers is None


def test_a_cell_records_kl_and_accuracy_against_the_truth(small):
    spec = tiny_spec("tiny_truth", epochs=1)
    data = task_for(spec, small, nhot=8)
    record = run_cell(spec, data)
    assert record.status == "ok" and record.synthetic_taggers == 3
    truth_top = data.test_truth.argmax(axis=1)
    assert record.acc_true_top == pytest.approx(float((record.predictions() == truth_top).mean()))
    # KL(true || p) >= 0, and differs from the KL against the 3 taggers' vote shares
    assert record.kl_true_mean > 0 and record.kl_true_mean != pytest.approx(record.kl_mean)
    real = run_cell(spec, task_for(spec, replace(small, truth=None), nhot=8))
    assert real.kl_true_mean is None and real.acc_true_top is None and real.synthetic_taggers is None
    assert real.kl_mean == pytest.approx(record.kl_mean)     # the same training otherwise


class _Store:
    """A result store holding one record (no claims)."""

    def __init__(self, record=None):
        self.record, self.written = record, []

    def get(self, cell):
        return self.record

    def put(self, record):
        self.written.append(record)


def test_a_stored_synthetic_record_without_truth_metrics_is_trained_again(small):
    spec = tiny_spec("tiny_truth", epochs=1)
    cell = make_cell(spec, small, nhot=8)
    fresh, from_store = get_or_run_cell(_Store(), spec, small, cell)
    assert not from_store and fresh.kl_true_mean is not None
    old = replace(fresh, kl_true_mean=None, acc_true_top=None)
    again, from_store = get_or_run_cell(_Store(old), spec, small, cell)
    assert not from_store and again.kl_true_mean == pytest.approx(fresh.kl_true_mean)
    assert get_or_run_cell(_Store(fresh), spec, small, cell) == (fresh, True)
    real = replace(small, truth=None)    # real data: nothing to add, the record is served
    real_cell = make_cell(spec, real, nhot=8)
    assert get_or_run_cell(_Store(replace(old, cell=real_cell)), spec, real, real_cell)[1]


# ----------------------------------------------------------------------------- the plugin
MODULE = '''
"""Tagger counts as a module's own data sources."""
import pytest

pytestmark = [pytest.mark.fer_experiment("recovery"),
              pytest.mark.fer_axes(models=["truth_tiny"], nhot=[1, 8], split=["ordinary"])]


@pytest.mark.parametrize("fer_data", ["synthetic:taggers=3", "synthetic:taggers=30"],
                         ids=["taggers=3", "taggers=30"])
def test_cell(fer_cell, fer_data, benchmark):
    assert fer_cell.run(benchmark).status == "ok"


def test_default(fer_cell, benchmark):
    assert fer_cell.run(benchmark).status == "ok"
'''


def test_a_module_varies_the_taggers_through_fer_data(pytester, tmp_path):
    from fer_bench.identity.record import CellRecord
    from fer_bench.leaderboard.markdown import render_markdown

    result, out = run_benchmark_module(pytester, tmp_path, tiny_model="truth_tiny",
                                       test_taggers=MODULE)
    result.assert_outcomes(passed=6)
    document = json.loads(out.read_text())
    records = [CellRecord.from_dict(b["extra_info"]["fer_bench"]) for b in document["benchmarks"]]
    by_taggers = {}
    for record in records:
        by_taggers.setdefault(record.synthetic_taggers, set()).add(record.cell.dataset)
        assert record.kl_true_mean is not None and record.dataset_label == "synthetic"
    assert set(by_taggers) == {3, 10, 30}             # the default source: 10 taggers
    assert len(set().union(*by_taggers.values())) == 3 and all(len(v) == 1 for v in by_taggers.values())
    assert document["fer_bench"]["dataset_fingerprint"] == by_taggers[10].pop()
    page = render_markdown(records, [document])
    assert "KL→truth 8-hot" in page and "N-hot recovers the hidden distribution" in page
    assert "4000 images, 3 taggers" in page and "4000 images, 30 taggers" in page

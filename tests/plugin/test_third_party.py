"""A third party's model, declared by one entry point in its own distribution, is listed
and trained exactly like a baseline (the same registry and runner path)."""

from __future__ import annotations

from fer_bench.data.clean import subset
from fer_bench.models import get_model, list_models
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore
from fer_bench.training.resolve import resolve_config
from tests.helpers.cells import make_cell
from tests.helpers.plugin_pkg import TINY_FACTORY_BODY, make_entry_point_package


def test_throwaway_package_is_listed_and_trained_like_a_baseline(tmp_path, monkeypatch, ferplus_clean):
    make_entry_point_package(tmp_path, "acme_fer", TINY_FACTORY_BODY,
                             models={"acme_tiny": "factory"}, dist_name="acme-fer",
                             monkeypatch=monkeypatch)
    names = list_models()
    assert "acme_tiny" in names and "small_cnn" in names  # beside the baselines
    assert names == sorted(names)

    spec = get_model("acme_tiny")
    assert spec.source.startswith("acme-fer==0.1")
    baseline = get_model("small_cnn")
    assert baseline.source.startswith("fer-baselines==")

    data = subset(ferplus_clean, 800, seed=0)
    store = ResultStore(tmp_path / "results")
    records = {}
    for model_spec in (spec, baseline):
        config = resolve_config(model_spec, epochs=1, batch_size=32)
        cell = make_cell(model_spec, data, nhot=3, split="complex", config=config)
        record, from_store = get_or_run_cell(store, model_spec, data, cell, device="cpu")
        assert not from_store
        records[model_spec.name] = record

    third_party, reference = records["acme_tiny"], records["small_cnn"]
    assert third_party.status == "ok", third_party.error
    # Same task, same split, same record fields filled in both cases.
    assert third_party.split_fingerprint == reference.split_fingerprint
    assert third_party.n_test == reference.n_test > 0
    assert len(third_party.epoch_times_s) == 1 and third_party.acc_honest is not None
    assert 0.0 <= third_party.acc_honest <= 1.0
    assert third_party.params == sum(
        p.numel() for p in get_model("acme_tiny").factory().parameters())
    assert len(third_party.predictions()) == third_party.n_test
    # And it is stored like any other cell.
    cell = make_cell(spec, data, nhot=3, split="complex",
                     config=resolve_config(spec, epochs=1, batch_size=32))
    again, from_store = get_or_run_cell(store, spec, data, cell, device="cpu")
    assert from_store and again.to_dict() == third_party.to_dict()

"""The model registry: entry-point discovery (lazy), plain factories, broken plugins,
name suggestions, duplicate names, output checks and the ``fer-bench models`` table."""

from __future__ import annotations

import importlib.metadata
import sys
import warnings

import pytest
import torch
from torch import nn

from fer_bench.cli.listing import list_command
from fer_bench.errors import ModelError
from fer_bench.models import (
    MODELS,
    ModelSpec,
    build_model,
    check_model_output,
    get_model,
    list_entries,
    list_models,
    register_model,
    unregister_model,
)
from tests.helpers.plugin_pkg import TINY_FACTORY_BODY, make_entry_point_package

BROKEN_BODY = 'raise RuntimeError("boom at import of brokenpkg")\n'


@pytest.fixture
def in_process():
    """Names registered with register_model during a test; unregistered afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_model(name)


def test_plain_factory_entry_point_is_listed_and_builds(tmp_path, monkeypatch):
    make_entry_point_package(tmp_path, "mypkg", TINY_FACTORY_BODY, models={"my_net": "factory"},
                             dist_name="my-fer-models", version="0.3", monkeypatch=monkeypatch)
    assert "my_net" in list_models()
    entry = next(e for e in list_entries() if e.name == "my_net")
    assert (entry.value, entry.distribution, entry.version) == ("mypkg:factory", "my-fer-models", "0.3")

    spec = get_model("my_net")
    assert spec.name == "my_net"
    assert spec.source == "my-fer-models==0.3 (mypkg:factory)"
    assert spec.description.startswith("Tiny test net")
    model = build_model(spec)
    logits = model(torch.rand(3, 1, 48, 48))
    assert logits.shape == (3, 8)
    check_model_output(model, spec, "cpu")
    assert build_model(spec, num_classes=5, in_chans=3)(torch.rand(2, 3, 48, 48)).shape == (2, 5)


def test_listing_does_not_import_the_plugin(tmp_path, monkeypatch):
    make_entry_point_package(tmp_path, "lazypkg", TINY_FACTORY_BODY, monkeypatch=monkeypatch)
    assert "lazypkg" in list_models()
    assert [e.loaded for e in list_entries() if e.name == "lazypkg"] == [False]
    assert "lazypkg" not in sys.modules
    get_model("lazypkg")
    assert "lazypkg" in sys.modules


def test_model_spec_entry_point_keeps_its_preferences(tmp_path, monkeypatch):
    body = TINY_FACTORY_BODY + (
        "from fer_bench.models import ModelSpec\n"
        "spec = ModelSpec(name='spec_net', factory=factory, epochs=3, batch_size=16,\n"
        "                 tags=('small',))\n")
    make_entry_point_package(tmp_path, "specpkg", body, models={"spec_net": "spec"},
                             monkeypatch=monkeypatch)
    spec = get_model("spec_net")
    assert isinstance(spec, ModelSpec)
    assert (spec.epochs, spec.batch_size, spec.tags) == (3, 16, ("small",))
    assert spec.source == "specpkg==0.1 (specpkg:spec)"


def test_broken_plugin_is_reported_and_skipped(tmp_path, monkeypatch):
    make_entry_point_package(tmp_path, "goodpkg", TINY_FACTORY_BODY, monkeypatch=monkeypatch)
    make_entry_point_package(tmp_path, "brokenpkg", BROKEN_BODY, models={"broken_net": "factory"},
                             monkeypatch=monkeypatch)
    assert {"goodpkg", "broken_net"} <= set(list_models())   # metadata only: both named

    with pytest.warns(UserWarning, match=r"broken_net = brokenpkg:factory.*brokenpkg 0\.1.*"
                                         r"RuntimeError: boom at import"):
        loadable = list_models(loadable_only=True)
    assert "goodpkg" in loadable
    assert "broken_net" not in loadable

    with warnings.catch_warnings():   # warned once above: never again in this process
        warnings.simplefilter("error")
        entries = {e.name: e for e in list_entries(load=True)}
        assert "broken_net" not in list_models(loadable_only=True)
    assert entries["goodpkg"].loaded and entries["goodpkg"].error is None
    assert not entries["broken_net"].loaded
    assert entries["broken_net"].error == "RuntimeError: boom at import of brokenpkg"

    with pytest.raises(ModelError, match=r"'broken_net'.*brokenpkg==0\.1.*boom at import") as info:
        get_model("broken_net")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert get_model("goodpkg").name == "goodpkg"


def test_entry_point_target_that_is_not_callable(tmp_path, monkeypatch):
    make_entry_point_package(tmp_path, "intpkg", "factory = 42\n", monkeypatch=monkeypatch)
    with pytest.raises(ModelError, match=r"'intpkg'.*int, not a ModelSpec or a factory"):
        get_model("intpkg")


def test_unknown_name_suggests_close_names(in_process):
    for name in ("toy_vgg16", "toy_vgg19", "toy_resnet"):
        register_model(lambda num_classes=8, in_chans=1: nn.Linear(1, num_classes), name=name)
        in_process.append(name)
    with pytest.raises(ModelError, match=r"unknown model 'toy_vgg61'; did you mean: "
                                         r"toy_vgg16, toy_vgg19\?$"):
        get_model("toy_vgg61")
    with pytest.raises(ModelError, match=r"unknown model 'qqqqqqqq'; valid: .*toy_resnet"):
        get_model("qqqqqqqq")


def test_duplicate_name_first_distribution_by_name_wins(tmp_path, monkeypatch):
    # zeta is put first on sys.path: the winner must not depend on path order.
    make_entry_point_package(tmp_path, "alphapkg", TINY_FACTORY_BODY, models={"dup_net": "factory"},
                             dist_name="alpha-models", monkeypatch=monkeypatch)
    make_entry_point_package(tmp_path, "zetapkg", TINY_FACTORY_BODY, models={"dup_net": "factory"},
                             dist_name="zeta-models", monkeypatch=monkeypatch)
    with pytest.warns(UserWarning, match=r"'dup_net' is registered twice.*keeping alpha-models"
                                         r"==0\.1.*ignoring zeta-models==0\.1"):
        spec = get_model("dup_net")
    assert spec.source == "alpha-models==0.1 (alphapkg:factory)"


def test_register_model_decorator_and_function(in_process):
    @register_model
    def toy_decorated(num_classes=8, in_chans=1):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 48 * 48, num_classes))

    register_model(ModelSpec(name="toy_spec", factory=toy_decorated, lr=3e-4))
    in_process.extend(["toy_decorated", "toy_spec"])
    assert {"toy_decorated", "toy_spec"} <= set(list_models())
    assert get_model("toy_spec").lr == 3e-4
    assert get_model("toy_decorated").source.startswith("in-process (")
    assert callable(toy_decorated)   # the decorator returns the factory unchanged
    unregister_model("toy_spec")
    assert "toy_spec" not in list_models()


def test_build_model_passes_pretrained_only_when_accepted():
    calls: list[dict] = []

    def with_pretrained(num_classes=8, in_chans=1, pretrained=False):
        calls.append({"pretrained": pretrained})
        return nn.Linear(1, num_classes)

    def plain(num_classes=8, in_chans=1):
        return nn.Linear(1, num_classes)

    build_model(ModelSpec(name="p", factory=with_pretrained, pretrained_available=True),
                pretrained=True)
    build_model(ModelSpec(name="p", factory=with_pretrained))
    assert calls == [{"pretrained": True}, {"pretrained": False}]
    assert isinstance(build_model(ModelSpec(name="plain", factory=plain)), nn.Linear)
    with pytest.raises(ModelError, match="'plain'.*no pretrained weights"):
        build_model(ModelSpec(name="plain", factory=plain), pretrained=True)


def test_build_model_errors_name_the_model():
    def raises(num_classes=8, in_chans=1):
        raise ValueError("bad width")

    with pytest.raises(ModelError, match=r"'raiser'.*failed to build: ValueError: bad width"):
        build_model(ModelSpec(name="raiser", factory=raises))
    with pytest.raises(ModelError, match=r"'notmodule'.*returned a str"):
        build_model(ModelSpec(name="notmodule", factory=lambda num_classes=8, in_chans=1: "x"))


class _Crashes(nn.Module):
    def forward(self, images):
        raise RuntimeError("shape mismatch inside forward")


def test_check_model_output_rejects_wrong_shape_and_raising_forward():
    wrong = ModelSpec(name="five_classes", factory=lambda **kw: None)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 5))
    with pytest.raises(ModelError, match=r"'five_classes'.*output shape \(2, 5\), expected \[2, 8\]"):
        check_model_output(model, wrong, "cpu")

    crash = ModelSpec(name="crasher", factory=lambda **kw: None)
    with pytest.raises(ModelError, match=r"'crasher'.*raised RuntimeError: shape mismatch"):
        check_model_output(_Crashes(), crash, "cpu")

    good = ModelSpec(name="good", factory=lambda **kw: None)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 8), nn.Dropout(0.5)).train()
    check_model_output(model, good, "cpu")
    assert model.training   # the training flag is restored


def test_check_model_output_accepts_tuple_with_logits_first():
    class WithAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(48 * 48, 8)

        def forward(self, images):
            return self.fc(images.flatten(1)), images.mean()

    check_model_output(WithAttention(), ModelSpec(name="att", factory=lambda **kw: None), "cpu")


def test_list_models_command_shows_status_and_broken_plugins(tmp_path, monkeypatch, capsys):
    make_entry_point_package(tmp_path, "goodpkg", TINY_FACTORY_BODY, monkeypatch=monkeypatch)
    make_entry_point_package(tmp_path, "brokenpkg", BROKEN_BODY, models={"broken_net": "factory"},
                             monkeypatch=monkeypatch)
    monkeypatch.setenv("COLUMNS", "250")
    assert list_command("models") == 1
    out = capsys.readouterr().out
    good_row = next(line for line in out.splitlines() if "goodpkg:factory" in line)
    assert "48x48" in good_row and "ok" in good_row
    broken_row = next(line for line in out.splitlines() if "broken_net" in line)
    assert "import error: RuntimeError: boom at import of brokenpkg" in broken_row


def test_list_models_command_with_no_models(monkeypatch, capsys):
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: importlib.metadata.EntryPoints(()))
    MODELS.refresh()   # the metadata changed under a registry that read it already
    try:
        assert list_models() == []
        assert list_command("models") == 0
    finally:
        monkeypatch.undo()
        MODELS.refresh()
    assert "no models registered" in capsys.readouterr().out
    assert "small_cnn" in list_models()

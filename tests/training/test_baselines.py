"""Every fer-baselines model is found through the ``fer_bench.models`` entry points, builds
without pretrained weights, and trains one step on a [2, 1, 48, 48] batch."""

from __future__ import annotations

import pytest
import torch

from fer_bench.errors import ModelError
from fer_bench.models import build_model, check_model_output, get_model, list_entries

BASELINES = [
    "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
    "densenet121", "densenet169", "densenet201", "mobilenetv2", "mobilenetv3",
    *(f"efficientnet_b{i}" for i in range(8)),
    "small_cnn",
]
#: The study's FER-specific models (tests/training/test_study_models.py covers them).
STUDY = ["ran", "dan", "mten", "mten_b0"]
#: Recipes and variants beyond the study (fast CPU recipe and its 15-minute speedrun, VGG13
#: at Microsoft's 64x64).
OTHER = [name for name in ("fast_resnet", "fast_resnet_long", "vgg13_64")
         if name in {e.name for e in list_entries() if e.distribution == "fer-baselines"}]


def test_all_baselines_registered_by_fer_baselines_entry_points():
    by_name = {e.name: e for e in list_entries() if e.distribution == "fer-baselines"}
    assert sorted(by_name) == sorted(BASELINES + STUDY + OTHER)
    assert by_name["vgg16"].value == "fer_baselines.classic:vgg16"


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_builds_and_trains_one_step(name):
    spec = get_model(name)
    assert spec.source.startswith("fer-baselines==")
    assert spec.name == name and spec.input_size == 48
    assert spec.tags in (("classical",), ("small",))
    torch.manual_seed(0)
    model = build_model(spec, num_classes=8, in_chans=1, pretrained=False)
    model.train()
    images = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    logits = model(images)
    assert logits.shape == (2, 8)
    target = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0, 0, 0]])
    loss = torch.nn.functional.mse_loss(logits.softmax(dim=1), target)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_small_cnn_is_small():
    model = build_model(get_model("small_cnn"))
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n_params <= 300_000


def test_pretrained_refused_where_no_weights_exist(monkeypatch):
    monkeypatch.delenv("FER_BASELINES_WEIGHTS_DIR", raising=False)
    for name in ("small_cnn", "efficientnet_b6"):
        spec = get_model(name)
        assert not spec.pretrained_available
        with pytest.raises(ModelError, match=f"'{name}'.*no pretrained weights"):
            build_model(spec, pretrained=True)
    # The factory itself refuses too (before any network access).
    with pytest.raises(ModelError, match="timm has no pretrained weights for 'efficientnet_b7'"):
        get_model("efficientnet_b7").factory(pretrained=True)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_from_local_weights_file(tmp_path, monkeypatch, suffix):
    """An ImageNet-layout checkpoint (3 channels, 1000 classes) in FER_BASELINES_WEIGHTS_DIR
    is loaded without network: stem summed to 1 channel, classifier dropped."""
    import timm

    source = timm.create_model("resnet18", pretrained=False)   # random "ImageNet" weights
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp_path / "resnet18.safetensors"))
    else:
        torch.save({"state_dict": state}, tmp_path / "resnet18.pth")
    monkeypatch.setenv("FER_BASELINES_WEIGHTS_DIR", str(tmp_path))

    spec = get_model("resnet18")
    model = build_model(spec, pretrained=True)
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert model.fc.weight.shape == (8, 512)
    check_model_output(model, spec, "cpu")

"""The study's own models (issue 10): ``ran``, ``dan``, ``mten``, ``mten_b0`` from
fer-baselines. Registration, forward + backward at 48x48, a training batch of one, each
extra loss against values worked out by hand, bad input sizes, NaN from an extra loss in a
real ``run_cell``, and parameter counts against the upstream models."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fer_bench.errors import ModelError
from fer_bench.models import build_model, check_model_output, get_model, list_entries, logits_of

STUDY = {"ran": "fer_baselines.ran:ran", "dan": "fer_baselines.dan:dan",
         "mten": "fer_baselines.mten:mten", "mten_b0": "fer_baselines.mten:mten_b0"}
TARGETS = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0, 0, 0]])


def images(batch: int, size: int = 48, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def built():
    """Each study model built once (seeded), in training mode."""
    models = {}
    for name in STUDY:
        torch.manual_seed(0)
        models[name] = build_model(get_model(name)).train()
    return models


# ---- registration --------------------------------------------------------------------

def test_registered_by_fer_baselines_with_their_preferences():
    by_name = {e.name: e for e in list_entries() if e.distribution == "fer-baselines"}
    for name, value in STUDY.items():
        assert by_name[name].value == value
        spec = get_model(name)
        assert spec.source.startswith("fer-baselines==")
        assert spec.tags == ("study",) and spec.input_size == 48
        assert spec.extra_loss is not None and not spec.pretrained_available
    assert get_model("dan").epochs == 60            # SPEC: DAN 60 epochs
    assert get_model("ran").epochs is None           # SPEC default (40)
    with pytest.raises(ModelError, match="'ran'.*no pretrained weights"):
        build_model(get_model("ran"), pretrained=True)
    from fer_baselines.dan import create_dan

    with pytest.raises(ModelError, match="'dan'.*no pretrained weights are bundled"):
        create_dan(pretrained=True)


# ---- forward + backward ----------------------------------------------------------------

def _check_outputs(name, model, outputs, extra):
    """What each model's forward returns beside the logits, and how its extra loss is made."""
    from fer_baselines.dan import affinity_loss, partition_loss
    from fer_baselines.mten import ambiguity_targets

    if name == "ran":
        weights = outputs["region_weights"]
        assert weights.shape == (2, 6)                          # whole face + 5 crops
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    elif name == "dan":
        heads = outputs["heads"]
        assert heads.shape == (2, 4, 512) and outputs["features"].shape == (2, 512)
        # the heads are log-softmaxed across the head axis
        torch.testing.assert_close(heads.exp().sum(dim=1), torch.ones(2, 512))
        expected = (affinity_loss(outputs["features"], model.centres, TARGETS)
                    + partition_loss(heads))
        assert float(extra.detach()) == pytest.approx(float(expected.detach()))
    else:
        aux = outputs["aux"]
        assert aux.shape == (2, 2) and bool(((aux > 0) & (aux < 1)).all())
        expected = torch.nn.functional.mse_loss(aux, ambiguity_targets(TARGETS))
        assert float(extra.detach()) == pytest.approx(float(expected.detach()))


@pytest.mark.parametrize("name", list(STUDY))
def test_forward_backward_with_extra_loss(built, name):
    spec, model = get_model(name), built[name]
    model.zero_grad(set_to_none=True)
    outputs = model(images(2))
    logits = logits_of(outputs)
    assert logits.shape == (2, 8) and torch.isfinite(logits).all()
    extra = spec.extra_loss(model, outputs, logits, TARGETS)
    assert extra.shape == () and torch.isfinite(extra)
    _check_outputs(name, model, outputs, extra)
    loss = torch.nn.functional.mse_loss(logits.softmax(dim=1), TARGETS) + extra
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.requires_grad}
    missing = [k for k, g in grads.items() if g is None]
    assert not missing, f"{name}: parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_ran_crops_are_batched_slices_resized_to_the_input(built):
    from fer_baselines.ran import DEFAULT_CROPS, crop_boxes

    assert crop_boxes(48, 48) == [(0, 36, 0, 36), (0, 36, 12, 48), (12, 48, 6, 42),
                                  (2, 45, 2, 45), (5, 43, 5, 43)]
    model = built["ran"]
    x = images(3)
    regions = model.regions(x)
    assert regions.shape == (3 * (1 + len(DEFAULT_CROPS)), 1, 48, 48)
    torch.testing.assert_close(regions[:3], x)                      # region 0: the face
    top_left = torch.nn.functional.interpolate(x[:, :, :36, :36], size=(48, 48),
                                               mode="bilinear", align_corners=False)
    torch.testing.assert_close(regions[3:6], top_left)              # region 1: top-left
    assert model.num_regions == 6


# ---- batch of one in training ---------------------------------------------------------

@pytest.mark.parametrize("name", ["ran", "mten", "mten_b0"])
def test_training_batch_of_one_works(built, name):
    """RAN: BatchNorm sees 6 regions x >= 2x2 values; MTEN: >= 3x3 maps; the attention
    softmaxes run over regions, not the batch."""
    spec, model = get_model(name), built[name]
    outputs = model(images(1))
    logits = logits_of(outputs)
    assert logits.shape == (1, 8)
    (logits.sum() + spec.extra_loss(model, outputs, logits, TARGETS[:1])).backward()


def test_dan_training_batch_of_one_is_a_clear_error(built):
    model = built["dan"]
    with pytest.raises(ModelError, match=r"model 'dan': a training batch of 1 .*BatchNorm1d"
                                         r".*batch_size >= 2"):
        model(images(1))
    model.eval()
    try:
        assert model(images(1))["logits"].shape == (1, 8)           # evaluation: any batch
    finally:
        model.train()


# ---- extra losses against hand-computed values -----------------------------------------

def test_region_biased_loss_by_hand():
    from fer_baselines.ran import ran_extra_loss, region_biased_loss

    # column 0 = whole face; columns 1..5 = crops
    holds = torch.tensor([[0.10, 0.30, 0.10, 0.10, 0.20, 0.20]])    # best crop 0.3 - 0.1 = 0.2 >= 0.1
    assert float(region_biased_loss(holds)) == 0.0
    edge = torch.tensor([[0.25, 0.35, 0.10, 0.10, 0.10, 0.10]])     # 0.35 - 0.25 = 0.1: just holds
    assert float(region_biased_loss(edge)) == pytest.approx(0.0, abs=1e-7)
    short = torch.tensor([[0.20, 0.25, 0.15, 0.15, 0.15, 0.10]])    # 0.1 - (0.25 - 0.2) = 0.05
    assert float(region_biased_loss(short)) == pytest.approx(0.05, abs=1e-6)
    reversed_ = torch.tensor([[0.50, 0.10, 0.10, 0.10, 0.10, 0.10]])  # 0.1 - (0.1 - 0.5) = 0.5
    assert float(region_biased_loss(reversed_)) == pytest.approx(0.5, abs=1e-6)
    batch = torch.cat([holds, short, reversed_])                   # mean of 0, 0.05, 0.5
    outputs = {"logits": torch.zeros(3, 8), "region_weights": batch}
    assert float(ran_extra_loss(None, outputs, outputs["logits"], TARGETS[:1].expand(3, 8))) \
        == pytest.approx(0.55 / 3, abs=1e-6)
    with pytest.raises(ModelError, match="'ran'.*'region_weights'"):
        ran_extra_loss(None, torch.zeros(3, 8), None, None)


def test_partition_loss_identical_vs_distinct_heads():
    from fer_baselines.dan import PARTITION_VAR_FLOOR, partition_loss

    identical = torch.randn(2, 1, 5).expand(2, 4, 5)              # 4 identical heads: var 0
    assert float(partition_loss(identical)) == pytest.approx(math.log1p(4 / PARTITION_VAR_FLOOR))
    # one image, 4 heads, 2 features: feature 0 = 0,1,2,3 (var 5/3), feature 1 = 0,0,0,4 (var 4)
    distinct = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 4.0]]])
    assert float(partition_loss(distinct)) == pytest.approx(math.log(1 + 4 / (17 / 6)), rel=1e-6)
    assert float(partition_loss(distinct)) < float(partition_loss(identical))
    assert float(partition_loss(torch.randn(3, 1, 5))) == 0.0      # a single head


def test_affinity_loss_by_hand_and_one_hot_equals_upstream():
    from fer_baselines.dan import affinity_loss

    # centres c0 = (0, 0), c1 = (2, 0): variance across classes (unbiased) = (2, 0), sum 2
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    features = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # image 0: ||(1,1)-(0,0)||^2 = 2; image 1: 0.5 * 8 + 0.5 * 4 = 6; mean 4, / 2 = 2
    assert float(affinity_loss(features, centres, targets)) == pytest.approx(2.0)

    # one-hot targets: upstream rafdb.AffinityLoss (distmat, mask, clamp, / batch)
    g = torch.Generator().manual_seed(3)
    feats, cents = torch.rand(5, 512, generator=g), torch.randn(8, 512, generator=g)
    labels = torch.tensor([0, 3, 7, 3, 1])
    distmat = ((feats ** 2).sum(1, keepdim=True).expand(5, 8)
               + (cents ** 2).sum(1, keepdim=True).expand(8, 5).t()) - 2 * feats @ cents.t()
    mask = labels.unsqueeze(1).eq(torch.arange(8))
    upstream = ((distmat * mask.float()) / cents.var(dim=0).sum()).clamp(1e-12, 1e12).sum() / 5
    one_hot = torch.nn.functional.one_hot(labels, 8).float()
    assert float(affinity_loss(feats, cents, one_hot)) == pytest.approx(float(upstream), rel=1e-4)


def test_mten_auxiliary_targets_and_loss_by_hand():
    from fer_baselines.mten import ambiguity_targets, mten_extra_loss

    t = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0],        # one-hot: entropy 0, support 0
                      [0.5, 0.5, 0, 0, 0, 0, 0, 0],      # log 2 / log 8 = 1/3; (2-1)/7
                      [0.125] * 8])                      # uniform: 1, 1
    expected = torch.tensor([[0.0, 0.0], [1 / 3, 1 / 7], [1.0, 1.0]])
    torch.testing.assert_close(ambiguity_targets(t), expected)
    aux = torch.tensor([[0.5, 0.5], [1 / 3, 1 / 7], [1.0, 0.0]])
    # squared errors 0.25, 0.25, 0, 0, 0, 1 -> mean 1.5 / 6
    outputs = {"logits": torch.zeros(3, 8), "aux": aux}
    assert float(mten_extra_loss(None, outputs, outputs["logits"], t)) == pytest.approx(0.25)


# ---- bad input size --------------------------------------------------------------------

def test_ran_input_size_its_crops_cannot_serve_is_a_build_time_error():
    from fer_baselines.ran import create_ran, min_input_size

    assert min_input_size() == 32
    with pytest.raises(ModelError, match=r"model 'ran': input 24x24 is too small for its crop "
                                         r"geometry.*input_size >= 32"):
        create_ran(input_size=24)
    spec = get_model("ran")
    model = build_model(spec)
    # the runner's build-time output check at the configured size names the model
    with pytest.raises(ModelError, match=r"'ran'.*\[2, 1, 24, 24\].*crop geometry"):
        check_model_output(model, spec, "cpu", input_size=24)
    check_model_output(model, spec, "cpu", input_size=32)        # the smallest that works


# ---- parameter counts vs the upstream models -------------------------------------------

def _resnet18_trunk_reference() -> int:
    """torchvision ResNet-18 at 3 channels without its 1000-way fc (upstream's trunks)."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    return sum(p.numel() for p in net.parameters()) - (512 * 1000 + 1000)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_upstream_up_to_the_grayscale_stem(built):
    trunk = _resnet18_trunk_reference()                           # 11,176,512
    resnet_stem_rgb = 2 * 64 * 7 * 7                              # 2 dropped input channels
    # RAN (attention_rank_loss.ResNet): trunk + alpha 512->1 + beta 1024->1 + fc 1024->8
    ran_ref = trunk + (512 + 1) + (1024 + 1) + (1024 * 8 + 8)
    # DAN (networks/dan.py): per head, conv1x1 512->256 + BN, conv3x3/1x3/3x1 256->512 + BN,
    # channel 512->32 + BN1d + 32->512; fc 512->8 + BN1d(8); AffinityLoss centres 8 x 512
    head = ((512 * 256 + 256) + 2 * 256 + (256 * 512 * 9 + 512) + 2 * 512
            + 2 * ((256 * 512 * 3 + 512) + 2 * 512)
            + (512 * 32 + 32) + 2 * 32 + (32 * 512 + 512))
    dan_ref = trunk + 4 * head + (512 * 8 + 8) + 2 * 8 + 8 * 512
    import timm

    mten_refs = {name: _count(timm.create_model(arch, num_classes=10, in_chans=3))
                 for name, arch in (("mten", "efficientnet_b2"), ("mten_b0", "efficientnet_b0"))}
    stem_rgb = {"ran": resnet_stem_rgb, "dan": resnet_stem_rgb,
                "mten": 2 * 32 * 3 * 3, "mten_b0": 2 * 32 * 3 * 3}
    references = {"ran": ran_ref, "dan": dan_ref, **mten_refs}
    assert references == {"ran": 11_186_250, "dan": 19_728_344,
                          "mten": 7_715_084, "mten_b0": 4_020_358}   # as in the docstrings
    for name, reference in references.items():
        ours = _count(built[name])
        assert ours == reference - stem_rgb[name], name            # the only difference
        assert abs(ours - reference) / reference < 0.10


# ---- NaN from an extra loss in a real cell ----------------------------------------------

def _tiny_task_data(spec, **overrides):
    """2 train / 2 val / 2 test random faces with random 8-way distributions, as the
    ``TaskData`` of ``spec``'s cell (CPU, fp32): one epoch of one batch of 2, at 32x32
    (the smallest input RAN's crops serve) unless told otherwise, to keep the test fast."""
    from fer_bench.training.resolve import resolve_cell, resolve_config
    from fer_bench.training.tasks import TaskData

    config = resolve_config(spec, **{"epochs": 1, "batch_size": 2, "input_size": 32,
                                     **overrides})
    cell = resolve_cell(spec, variant="nhot-8", split="ordinary", seed=0, config=config,
                        dataset_fingerprint="0" * 16, device="cpu")
    g = torch.Generator().manual_seed(0)

    def dist(n):
        d = torch.rand(n, 8, generator=g)
        return d / d.sum(dim=1, keepdim=True)

    def faces(n):
        return torch.randint(0, 256, (n, 48, 48), generator=g, dtype=torch.uint8)

    return TaskData(cell=cell, train_images=faces(2), train_targets=dist(2),
                    val_images=faces(2), val_dist=dist(2), test_images=faces(2),
                    test_dist=dist(2), test_complexity=torch.full((2,), 8, dtype=torch.int64),
                    dataset_label="synthetic-unit", dataset_fingerprint="0" * 16,
                    split_fingerprint="0" * 16, n_train=2, n_val=2, n_test=2)


def _nan_spec(name: str):
    """``name``'s spec with its real extra loss turned into NaN."""
    real = get_model(name)

    def nan_extra(model, outputs, logits, targets):
        return real.extra_loss(model, outputs, logits, targets) * float("nan")

    return dataclasses.replace(real, extra_loss=nan_extra)


@pytest.mark.parametrize("name", ["ran", "dan"])
def test_nan_extra_loss_fails_the_cell_naming_the_model(name):
    from fer_bench.training.runner import run_cell

    spec = _nan_spec(name)
    record = run_cell(spec, _tiny_task_data(spec), device="cpu")
    assert record.status == "failed"
    assert record.error == f"NaN loss at epoch 1, batch 1 for model {name}", record.error
    assert record.val_acc == [] and record.acc_honest is None


def test_after_a_failed_cell_the_grid_goes_on():
    """A NaN cell (mten_b0), a cell whose input size RAN's crops cannot serve, then a
    healthy cell."""
    from fer_bench.training.runner import run_cell

    nan_spec = _nan_spec("mten_b0")
    nan = run_cell(nan_spec, _tiny_task_data(nan_spec), device="cpu")
    assert (nan.status, nan.error) == ("failed", "NaN loss at epoch 1, batch 1 for model mten_b0")
    ran = get_model("ran")
    small = run_cell(ran, _tiny_task_data(ran, input_size=24), device="cpu")
    assert small.status == "failed"
    assert "'ran'" in small.error and "crop geometry" in small.error, small.error
    ok = run_cell(ran, _tiny_task_data(ran), device="cpu")
    assert ok.status == "ok", ok.error
    assert ok.acc_honest is not None and len(ok.epoch_times_s) == 1

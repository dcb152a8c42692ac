"""FLOPs per image (fer_bench.training.flops): known counts, the real model untouched,
and the runner recording them."""

from __future__ import annotations

import torch
from torch import nn

from fer_bench.data.clean import clean, subset
from fer_bench.data.synthetic import make_synthetic
from fer_bench.identity.config import TrainConfig
from fer_bench.training import runner
from fer_bench.training.flops import cell_flops, eval_flops_per_image, train_flops_per_image
from fer_bench.training.resolve import resolve_config
from fer_bench.training.runner import run_cell
from tests.helpers.cells import task_for, tiny_spec

SIDE = 4                     # input side: a [B, 1, 4, 4] image is 16 numbers
IN, HIDDEN, OUT = SIDE * SIDE, 12, 8


def one_linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(IN, OUT))


def test_single_linear_layer():
    """Forward 2*in*out per image. Backward: the weight gradient only (2*in*out), as the
    images of a training step need no gradient. The bias adds nothing counted."""
    model = one_linear()
    assert eval_flops_per_image(model, SIDE, channels_last=False) == 2 * IN * OUT
    assert eval_flops_per_image(model, SIDE, channels_last=False, tta="flip") == 4 * IN * OUT
    assert eval_flops_per_image(model, SIDE, channels_last=False, tta="flip_shift1") == 12 * IN * OUT
    assert train_flops_per_image(model, SIDE, channels_last=False) == 4 * IN * OUT


def test_deeper_layer_counts_three_times_its_forward():
    """A layer after the first also back-propagates to its input: 3x its forward."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))
    forward = 2 * IN * HIDDEN + 2 * HIDDEN * OUT
    assert eval_flops_per_image(model, SIDE, channels_last=False) == forward
    assert train_flops_per_image(model, SIDE, channels_last=False) == 2 * (2 * IN * HIDDEN) + 3 * (2 * HIDDEN * OUT)


def test_convolution_count_and_batch_independence():
    """Conv3x3(1 -> c), padding 1, on S x S: 2 * 9 * c * S * S per image, whatever the batch."""
    side, channels = 12, 5
    model = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(channels * side * side, OUT, bias=False))
    conv = 2 * 9 * channels * side * side
    head = 2 * channels * side * side * OUT
    assert eval_flops_per_image(model, side) == conv + head
    for batch in (2, 5):
        assert train_flops_per_image(model, side, batch=batch) == 2 * conv + 3 * head


def test_grouped_and_depthwise_convolutions_count_their_groups():
    """A grouped conv after the first layer: forward 2 * 9 * (c / g) * c * S * S per image,
    training 3x that, for any number of groups g (torch's own formula counts the weight
    gradient g times over: a depthwise conv's backward came out 64x its forward at 64
    channels, MTEN's training 10.5 GFLOP an image instead of 0.72)."""
    side, channels = 8, 16
    for groups in (1, 4, channels):
        for layer in (nn.Conv2d, nn.ConvTranspose2d):
            grouped = layer(channels, channels, 3, padding=1, groups=groups, bias=False)
            model = nn.Sequential(nn.Conv2d(1, channels, 1, bias=False), grouped)
            stem = 2 * channels * side * side
            forward = 2 * 9 * (channels // groups) * channels * side * side
            assert eval_flops_per_image(model, side) == stem + forward, (layer, groups)
            assert train_flops_per_image(model, side) == 2 * stem + 3 * forward, (layer, groups)


def test_every_study_model_trains_at_about_three_times_its_forward():
    """Backward = 2x forward for every layer but the first: MTEN (depthwise convolutions)
    included."""
    from fer_bench.models import build_model, get_model

    for name in ("small_cnn", "mten"):
        model = build_model(get_model(name), num_classes=8, in_chans=1)
        ratio = train_flops_per_image(model, 48) / eval_flops_per_image(model, 48)
        assert 2.9 < ratio <= 3.0, (name, ratio)


class Noisy(nn.Module):
    """BatchNorm (running statistics) and dropout (draws from the global generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * SIDE * SIDE, OUT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1)
        return self.head(features), features.mean(dim=1)   # a second (auxiliary) output


def test_the_real_model_and_random_streams_are_untouched():
    torch.manual_seed(0)
    model = Noisy().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    train = train_flops_per_image(model, SIDE)
    assert train > 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert model.training                         # its mode is as it was
    eval_flops_per_image(model, SIDE)
    assert model.training and torch.equal(torch.get_rng_state(), rng)


def test_cell_flops_follows_the_recipe_and_never_raises():
    model = one_linear()
    assert cell_flops(model, TrainConfig(input_size=SIDE), channels_last=False) == (4 * IN * OUT, 2 * IN * OUT)
    assert cell_flops(model, TrainConfig(input_size=SIDE, tta="flip"),
                      channels_last=False) == (4 * IN * OUT, 4 * IN * OUT)
    # a model that cannot run on the input: no figure, no exception
    assert cell_flops(model, TrainConfig(input_size=SIDE + 1), channels_last=False) == (None, None)


def test_run_cell_records_flops_without_changing_the_result(monkeypatch):
    data = subset(clean(make_synthetic(600, seed=1)), 400, seed=0)
    spec = tiny_spec(batch_size=32, epochs=1)            # TinyNet: 6 channels
    config = resolve_config(spec, tta="flip")
    record = run_cell(spec, task_for(spec, data, config=config), device="cpu")
    assert record.status == "ok", record.error
    conv = 2 * 9 * 6 * 23 * 23             # stride 2, no padding: 48 -> 23
    head = 2 * 54 * 8
    assert record.train_flops_per_image == 2 * conv + 3 * head
    assert record.eval_flops_per_image == 2 * (conv + head)   # flip TTA: two forwards
    # the count draws nothing and touches nothing: the same run without it is identical
    monkeypatch.setattr(runner, "cell_flops", lambda *args, **kwargs: (None, None))
    uncounted = run_cell(spec, task_for(spec, data, config=config), device="cpu")
    assert uncounted.train_flops_per_image is None
    assert uncounted.train_loss == record.train_loss and uncounted.val_acc == record.val_acc
    assert uncounted.test_predictions == record.test_predictions


def test_flop_rate_against_the_bf16_peak():
    from fer_bench.identity.cell import Cell
    from fer_bench.identity.record import CellRecord
    from fer_bench.training.flops import flop_rate_text, peak_bf16_flops

    assert peak_bf16_flops("NVIDIA H200") == ("H200", 989.5e12)
    assert peak_bf16_flops("NVIDIA H100 PCIe")[0] == "H100 PCIe"
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB")[0] == "A100"
    assert peak_bf16_flops("x86_64") is None
    cuda = Cell(model="m", variant="nhot-8", split="ordinary", seed=0, recipe=TrainConfig(),
                device_type="cuda", precision="bf16")
    record = CellRecord(cell=cuda, device_name="NVIDIA H200", train_flops_per_image=10**9,
                        train_images_per_s=9900.0)
    assert flop_rate_text(record) == ("training 9.90 TFLOP/s = 1.0% of the H200's dense bf16 "
                                      "peak (989.50 TFLOP/s)")
    assert peak_bf16_flops("NVIDIA L40")[0] == "L40" and peak_bf16_flops("NVIDIA L4")[0] == "L4"
    fp32 = CellRecord(cell=Cell(model="m", variant="nhot-8", split="ordinary", seed=0,
                                recipe=TrainConfig(), device_type="cuda", precision="fp32"),
                      device_name="NVIDIA H200", train_flops_per_image=10**9, train_images_per_s=9900.0)
    assert flop_rate_text(fp32) == "training 9.90 TFLOP/s (fp32: no bf16 peak share)"
    cpu = CellRecord(cell=Cell(model="m", variant="nhot-8", split="ordinary", seed=0,
                               recipe=TrainConfig()),
                     device_name="x86_64", train_flops_per_image=34_000_000, train_images_per_s=500.0)
    assert flop_rate_text(cpu) == "training 17.0 GFLOP/s"
    assert flop_rate_text(CellRecord(cell=cpu.cell)) == ""

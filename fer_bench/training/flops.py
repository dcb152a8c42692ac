"""FLOPs of a cell's model per image, counted with ``torch.utils.flop_counter``.

* ``train_flops_per_image``: one training step's forward and backward pass, per image, at
  the model's input size: a deep copy of the model in train mode runs one small batch and
  the sum of its floating outputs is back-propagated. The input needs no gradient (as in
  training), so the first layer's input gradient is not computed: a single ``Linear(i, o)``
  costs 2·i·o forward + 2·i·o for its weight gradient = 4·i·o per image; a layer deeper in
  the net also back-propagates to its input, 6·i·o in all (the usual "3x forward").
* ``eval_flops_per_image``: one forward pass in eval mode, without gradients; times the
  views of test-time augmentation (``tta="flip"``: the mirror is a second forward pass).

What is counted is what ``FlopCounterMode`` counts: matrix multiplications and
convolutions (and their backward), 2 FLOPs per multiply-add; not element-wise ops,
normalisation, pooling, the loss or the optimizer step. For convolutional nets that is
nearly all of the arithmetic, and it is the convention of the published speedruns.

The real run is untouched: the count runs on a deep copy (BatchNorm running statistics
and weights of the trained model stay as they were), on a zero input (no random draw),
under ``torch.random.fork_rng`` (dropout's draws do not advance the run's generators).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from fer_bench.identity.config import TrainConfig
from fer_bench.training.tta import tta_views

__all__ = ["BF16_PEAK_TFLOPS", "cell_flops", "eval_flops_per_image", "flop_rate_text",
           "peak_bf16_flops", "train_flops_per_image"]

log = logging.getLogger(__name__)

#: Images in the counting batch: FLOPs of matmuls and convolutions grow linearly with the
#: batch, and 2 keeps BatchNorm in train mode well defined.
COUNT_BATCH = 2


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                         transposed, _output_padding, groups, output_mask, out_shape,
                         **_kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``, shapes in (as ``FlopCounterMode`` passes them).

    torch's own formula (``conv_backward_flop`` in torch/utils/flop_counter.py) with one
    fix: it counts the weight gradient of a grouped convolution as if ``groups`` were 1,
    i.e. ``groups`` times over. For a depthwise convolution (groups = channels) that made
    its backward 65x its forward at 64 channels instead of 2x, and MTEN's (EfficientNet's)
    training FLOPs 10.5 GFLOP an image instead of 0.7, more than this CPU's peak at its
    measured rate. The input gradient (a transposed convolution with the same grouped
    weight) was already right."""
    def swap(shape):
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, list(out_shape[0]), not transposed)
    if output_mask[1]:
        grad_weight_shape = list(out_shape[1])
        if transposed:
            weight_flops = conv_flop_count(swap(grad_out_shape), swap(x_shape), swap(grad_weight_shape))
        else:
            weight_flops = conv_flop_count(swap(x_shape), swap(grad_out_shape), swap(grad_weight_shape))
        flops += weight_flops // groups
    return flops


def _counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` with the grouped-convolution backward fixed."""
    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})


def _floating_tensors(outputs: Any) -> Iterator[torch.Tensor]:
    """Every floating tensor in a model's output (a tensor, tuple/list or dict of them)."""
    if isinstance(outputs, torch.Tensor):
        if outputs.is_floating_point():
            yield outputs
    elif isinstance(outputs, dict):
        for value in outputs.values():
            yield from _floating_tensors(value)
    elif isinstance(outputs, (list, tuple)):
        for value in outputs:
            yield from _floating_tensors(value)


def _zero_input(model: torch.nn.Module, input_size: int, in_chans: int, batch: int,
                channels_last: bool) -> torch.Tensor:
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.zeros(batch, in_chans, input_size, input_size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _devices_of(model: torch.nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def train_flops_per_image(model: torch.nn.Module, input_size: int, *, in_chans: int = 1,
                          batch: int = COUNT_BATCH, channels_last: bool = True,
                          amp: bool = False) -> int:
    """Forward + backward FLOPs of one training image (see the module docstring).

    ``model`` itself is not touched (a deep copy runs); ``amp`` runs the copy under the
    cell's CUDA bf16 autocast (the count does not depend on the precision)."""
    from fer_bench.training.evaluate import autocast_for

    twin = copy.deepcopy(model).train()
    x = _zero_input(twin, input_size, in_chans, batch, channels_last)
    with torch.random.fork_rng(devices=_devices_of(twin)), _counter() as counter:
        with autocast_for(x.device, amp):
            outputs = twin(x)
        total = sum(t.float().sum() for t in _floating_tensors(outputs))
        if isinstance(total, torch.Tensor) and total.requires_grad:
            total.backward()
    return int(round(counter.get_total_flops() / batch))


def eval_flops_per_image(model: torch.nn.Module, input_size: int, *, in_chans: int = 1,
                         batch: int = COUNT_BATCH, channels_last: bool = True,
                         amp: bool = False, tta: str = "none") -> int:
    """Forward FLOPs of evaluating one image (eval mode, no gradients), times the number of
    views of test-time augmentation ``tta`` (``training.tta``)."""
    from fer_bench.training.evaluate import autocast_for

    twin = copy.deepcopy(model).eval()
    x = _zero_input(twin, input_size, in_chans, batch, channels_last)
    with (torch.random.fork_rng(devices=_devices_of(twin)), torch.no_grad(),
          _counter() as counter, autocast_for(x.device, amp)):
        twin(x)
    per_image = counter.get_total_flops() / batch
    return int(round(per_image * len(tta_views(tta))))


def cell_flops(model: torch.nn.Module, config: TrainConfig, *, channels_last: bool = True,
               amp: bool = False) -> tuple[int | None, int | None]:
    """(training, evaluation) FLOPs per image of ``model`` as ``config`` trains and
    evaluates it; (None, None) when the model cannot be counted (logged, never raised:
    the count is a figure of the record, not a reason to fail the cell)."""
    try:
        train = train_flops_per_image(model, config.input_size, channels_last=channels_last, amp=amp)
        evaluate = eval_flops_per_image(model, config.input_size, channels_last=channels_last,
                                        amp=amp, tta=config.tta)
    except Exception as exc:   # an op the counter cannot run: no figure, the cell goes on
        log.info("FLOPs of %s not counted: %s: %s", type(model).__name__, type(exc).__name__, exc)
        return None, None
    return train, evaluate


# ----------------------------------------------------------------------------- rates
#: Dense bf16 tensor-core peaks in TFLOP/s (no structured sparsity; NVIDIA datasheets, the
#: SXM part where a name covers several), matched as a substring of the CUDA device name,
#: first match wins (so "H100 PCIe" before "H100", "A100" before "A10", "L40" before "L4").
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.5), ("H200", 989.5), ("H100 NVL", 835.5), ("H100 PCIe", 756.5),
    ("H100", 989.5), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10", 125.0),
)


def peak_bf16_flops(device_name: str) -> tuple[str, float] | None:
    """(matched name, peak FLOP/s) of a CUDA device's dense bf16 tensor cores, None when
    the device is not in ``BF16_PEAK_TFLOPS``."""
    for name, tflops in BF16_PEAK_TFLOPS:
        if name.lower() in device_name.lower():
            return name, tflops * 1e12
    return None


def _rate(flops_per_s: float) -> str:
    return (f"{flops_per_s / 1e12:.2f} TFLOP/s" if flops_per_s >= 1e12
            else f"{flops_per_s / 1e9:.1f} GFLOP/s")


def flop_rate_text(record: Any) -> str:
    """The training FLOP rate of a finished cell (``CellRecord``), "" when not counted:
    counted FLOPs per image x training images/s (median epoch); for a bf16 cell on a CUDA
    device with a known peak, also its share of the dense bf16 peak, e.g. "training 41.3
    TFLOP/s = 4.2% of the H200's dense bf16 peak (989.5 TFLOP/s)". An fp32 cell is not set
    against the bf16 peak (its own peak is several times lower): "(fp32: no bf16 peak share)"."""
    if not record.train_flops_per_image or not record.train_images_per_s:
        return ""
    rate = record.train_flops_per_image * record.train_images_per_s
    text = f"training {_rate(rate)}"
    peak = peak_bf16_flops(record.device_name) if record.cell.device_type == "cuda" else None
    if peak is not None and record.cell.precision != "bf16":
        text += f" ({record.cell.precision}: no bf16 peak share)"
    elif peak is not None:
        name, flops = peak
        text += f" = {100 * rate / flops:.1f}% of the {name}'s dense bf16 peak ({_rate(flops)})"
    return text

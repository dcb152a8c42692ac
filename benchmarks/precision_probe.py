"""fp32 vs bf16 autocast on this CPU: training-step and evaluation images/s per model.

Run as a script (not a pytest module; pause any grid first, the rates are the machine's)::

    python benchmarks/precision_probe.py [--models small_cnn,fast_resnet,vgg16,ran,dan,mten]
                                         [--rounds 3] [--seconds 2] [--json out.json]
                                         [--no-peak]

Both precisions run the same work side by side, interleaved round by round (fp32, bf16,
fp32, bf16 ...) so a change in machine load hits both: one training step is the runner's
(channels-last input, forward under the cell's autocast, the recipe's loss in float32,
backward, optimizer step, learning-rate schedule step), at the model's own batch size and
input size; evaluation is ``training.evaluate.predict`` (float32 logits, flip TTA when the
recipe has it) on random pixels. Each figure is the median over rounds of images/s, and
the ratio is bf16 / fp32. ``ModelSpec.cpu_precision`` (what ``--fer-precision auto`` picks
on a CPU with bf16 units) is chosen from this table and real full-data cells
(leaderboard README, "CPU precision").

**The CPU's own limit** (unless ``--no-peak``): the attainable dense throughput of this
CPU, measured, in fp32 and bf16: a square matmul (``torch.mm``, 2048 x 2048, bf16 inputs
for bf16: oneDNN's AMX / AVX-512 BF16 kernels) and a 3x3 convolution at a shape these nets
train with (batch 64, 128 -> 128 channels, 24x24, channels-last; bf16 under autocast),
forward only, the best of the rounds. Each model's training FLOP rate (counted
forward + backward FLOPs per image, ``training.flops.train_flops_per_image``, x training
images/s above) is printed as a share of the better of the two peaks of its precision: how
much of what this CPU can do the model's training actually gets, as the GPU path states
its share of a datasheet peak.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from fer_bench.identity.config import TrainConfig
from fer_bench.models import ModelSpec, build_model, logits_of
from fer_bench.planning.cells import CellRequest, plan_cell
from fer_bench.training.augment.sets import to_model_input
from fer_bench.training.device import cpu_has_bf16, device_name
from fer_bench.training.evaluate import autocast_for, eval_batch_size, predict
from fer_bench.training.heap import keep_heap
from fer_bench.training.losses import get_loss
from fer_bench.training.recipe import make_optimizer, make_schedule

DEFAULT_MODELS = "small_cnn,fast_resnet,vgg16,ran,dan,mten"


def own_recipe(name: str) -> tuple[ModelSpec, TrainConfig]:
    """(``ModelSpec``, ``TrainConfig``) of model ``name`` with its own recipe, as a cell of
    it would train (``planning.cells``; the split and device do not enter the recipe)."""
    plan = plan_cell(CellRequest(model=name, split="ordinary", device="cpu"))
    return plan.spec, plan.config


def _training_rate(model, spec, config, batch: torch.Tensor, targets: torch.Tensor,
                   amp: bool, seconds: float) -> float:
    """Images/s of full training steps on ``batch`` for at least ``seconds`` (>= 2 steps)."""
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, 10_000)
    loss_fn = get_loss(config.loss)
    model.train()
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        x = to_model_input(batch, config.input_size, channels_last=True)
        with autocast_for(batch.device, amp):
            outputs = model(x)
            loss = loss_fn(logits_of(outputs), targets)
            if spec.extra_loss is not None:
                extra = spec.extra_loss(model, outputs, logits_of(outputs), targets)
                if extra is not None:
                    loss = loss + extra.float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        steps += 1
    return steps * batch.shape[0] / (time.perf_counter() - start)


def _eval_rate(model, config, images: torch.Tensor, amp: bool, seconds: float) -> float:
    """Images/s of ``predict`` over ``images`` repeated for at least ``seconds``."""
    batch = eval_batch_size(config.input_size, config.batch_size, images.device)
    done, start = 0, time.perf_counter()
    while done < 2 * images.shape[0] or time.perf_counter() - start < seconds:
        predict(model, images, input_size=config.input_size, batch_size=batch,
                channels_last=True, amp=amp, tta=config.tta)
        done += images.shape[0]
    return done / (time.perf_counter() - start)


def _dense_rate(run, flops: float, seconds: float) -> float:
    """FLOP/s of ``run()`` (``flops`` per call) repeated for at least ``seconds``."""
    run()   # warm-up: kernel selection
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * flops / (time.perf_counter() - start)


def cpu_peaks(rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """{"fp32"|"bf16": {"matmul": FLOP/s, "conv3x3": FLOP/s}}: the best of ``rounds``
    interleaved measurements of each dense kernel (see the module docstring)."""
    size = 2048
    a32 = torch.randn(size, size)
    b32 = torch.randn(size, size)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    batch, channels, side = 64, 128, 24
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(
        memory_format=torch.channels_last)
    conv_flops = 2.0 * batch * channels * channels * 9 * side * side
    matmul_flops = 2.0 * size ** 3

    def conv_run(amp: bool):
        def run():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                conv(x)
        return run

    kernels = {("fp32", "matmul"): (lambda: torch.mm(a32, b32), matmul_flops),
               ("bf16", "matmul"): (lambda: torch.mm(a16, b16), matmul_flops),
               ("fp32", "conv3x3"): (conv_run(False), conv_flops),
               ("bf16", "conv3x3"): (conv_run(True), conv_flops)}
    best: dict[str, dict[str, float]] = {"fp32": {}, "bf16": {}}
    for _ in range(rounds):
        for (precision, kernel), (run, flops) in kernels.items():
            rate = _dense_rate(run, flops, seconds / 2)
            best[precision][kernel] = max(best[precision].get(kernel, 0.0), rate)
    return best


def train_flops(name: str) -> int | None:
    """Counted training FLOPs (forward + backward) per image of ``name`` at its input size."""
    from fer_bench.training.flops import train_flops_per_image

    spec, config = own_recipe(name)
    model = build_model(spec, num_classes=8, in_chans=1)
    return train_flops_per_image(model, config.input_size)


def probe_model(name: str, rounds: int, seconds: float) -> dict:
    """{"model", "batch", "train": {fp32, bf16, ratio}, "eval": {...}} for one model."""
    spec, config = own_recipe(name)
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (config.batch_size, 48, 48), dtype=torch.uint8,
                          generator=generator)
    targets = torch.softmax(torch.randn(config.batch_size, 8, generator=generator), dim=1)
    eval_images = torch.randint(0, 256, (max(256, config.batch_size), 48, 48),
                                dtype=torch.uint8, generator=generator)
    torch.manual_seed(0)
    model = build_model(spec, num_classes=8, in_chans=1).to(memory_format=torch.channels_last)
    rates: dict[str, dict[str, list[float]]] = {"train": {"fp32": [], "bf16": []},
                                                  "eval": {"fp32": [], "bf16": []}}
    for amp in (False, True):   # warm-up: oneDNN builds its kernels once per shape and dtype
        _training_rate(model, spec, config, batch, targets, amp, 0.0)
        _eval_rate(model, config, eval_images[: config.batch_size], amp, 0.0)
    for _ in range(rounds):
        for precision in ("fp32", "bf16"):
            amp = precision == "bf16"
            rates["train"][precision].append(
                _training_rate(model, spec, config, batch, targets, amp, seconds))
            rates["eval"][precision].append(_eval_rate(model, config, eval_images, amp, seconds))
    result = {"model": name, "batch": config.batch_size, "input_size": config.input_size}
    for kind, by_precision in rates.items():
        fp32, bf16 = (statistics.median(by_precision[p]) for p in ("fp32", "bf16"))
        result[kind] = {"fp32": fp32, "bf16": bf16, "ratio": bf16 / fp32,
                        "rounds": {p: by_precision[p] for p in ("fp32", "bf16")}}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="minimum seconds per measurement (default 2)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-peak", action="store_true",
                        help="skip the CPU peak measurement and the FLOP-rate shares")
    args = parser.parse_args(argv)
    if not cpu_has_bf16():
        print("precision_probe: this CPU has no native bf16 units (AVX-512 BF16 / AMX); "
              "bf16 would be emulated", file=sys.stderr)
        return 2
    heap = keep_heap()   # as run_cell does first: no page faults per step (training.heap)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} interleaved rounds of >= {args.seconds:g} s each, glibc heap {heap}, "
          f"CPU {device_name(torch.device('cpu'))}")
    print(f"{'model':<12} {'batch':>5} {'train fp32':>10} {'train bf16':>10} {'ratio':>6} "
          f"{'eval fp32':>10} {'eval bf16':>10} {'ratio':>6}   (images/s)")
    results = []
    for name in (n.strip() for n in args.models.split(",") if n.strip()):
        row = probe_model(name, args.rounds, args.seconds)
        results.append(row)
        train, evaluation = row["train"], row["eval"]
        print(f"{name:<12} {row['batch']:>5} {train['fp32']:>10.1f} {train['bf16']:>10.1f} "
              f"{train['ratio']:>5.2f}x {evaluation['fp32']:>10.1f} {evaluation['bf16']:>10.1f} "
              f"{evaluation['ratio']:>5.2f}x", flush=True)
    peaks = None
    if not args.no_peak:
        peaks = cpu_peaks(args.rounds, args.seconds)
        print("\nthis CPU's attainable dense throughput (best of the rounds), GFLOP/s:")
        for precision, kernels in peaks.items():
            print(f"  {precision}: " + ", ".join(f"{k} {v / 1e9:,.0f}" for k, v in kernels.items()))
        print(f"\n{'model':<12} {'GFLOP/img':>9} {'fp32 GFLOP/s':>12} {'% of fp32 peak':>14} "
              f"{'bf16 GFLOP/s':>12} {'% of bf16 peak':>14}")
        for row in results:
            flops = train_flops(row["model"])
            row["train_flops_per_image"] = flops
            if not flops:
                continue
            cells = []
            for precision in ("fp32", "bf16"):
                rate = row["train"][precision] * flops
                share = 100.0 * rate / max(peaks[precision].values())
                row["train"][f"{precision}_flop_rate"] = rate
                row["train"][f"{precision}_peak_share"] = share
                cells.append(f"{rate / 1e9:>12,.1f} {share:>13.1f}%")
            print(f"{row['model']:<12} {flops / 1e9:>9.3f} " + " ".join(cells), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "heap": heap,
                       "cpu": device_name(torch.device("cpu")),
                       "results": results, "cpu_peak_flops": peaks}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

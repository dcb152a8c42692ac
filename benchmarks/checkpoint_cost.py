"""What an epoch checkpoint costs (issue 20): size, write and resume-load time per model,
and the overhead against a run without checkpoints.

    python benchmarks/checkpoint_cost.py [--models fast_resnet,vgg16] [--dir DIR] [--repeat 2]

Nothing is trained to convergence: each model is built with its recipe at 48x48, its
optimizer takes one step on a tiny random batch (so momentum / Adam moments exist, the
size they have in a real run), the EMA copy exists when the recipe has one, and the
checkpoint payload a cell writes after an epoch (``training.checkpoint.capture``: model,
optimizer, schedule, EMA, random states, per-epoch metrics, the best epoch's test
probabilities for FERPlus's 3,539 test images) is written ``--repeat`` times through the
store's atomic write (temp file, fsync, rename) and read back verified. The epoch time the
overhead is set against is timed training steps of the recipe's batch size, scaled to
the full FERPlus training split (28,665 images); on fast_resnet the committed cells'
median measured epoch is printed beside it. Run it through the CPU lock on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fer_bench.identity.record import CellRecord
from fer_bench.models import build_model
from fer_bench.planning.cells import CellRequest, plan_cell
from fer_bench.training.checkpoint import CheckpointFile, capture
from fer_bench.training.checkpoint_file import read_info, verified_payload
from fer_bench.training.loop import Best, TrainingRun, training_generators
from fer_bench.training.losses import get_loss
from fer_bench.training.recipe import WeightAverage, make_optimizer, make_schedule

N_TRAIN, N_TEST = 28_665, 3_539   # FERPlus (study cleaning, ordinary split)
MIB = 1024 * 1024


def build_run(name: str) -> tuple[TrainingRun, CellRecord]:
    plan = plan_cell(CellRequest(model=name, variant="nhot-8", split="ordinary", seed=0,
                                 device="cpu", precision="fp32"))
    spec, config = plan.spec, plan.config     # the model's own recipe
    torch.manual_seed(0)
    model = build_model(spec, num_classes=8, in_chans=1).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    steps = config.epochs * (N_TRAIN // config.batch_size)
    shuffle, draws = training_generators(0, "cpu")
    run = TrainingRun(model=model, spec=spec, config=config, optimizer=optimizer,
                      schedule=make_schedule(optimizer, config, steps), loss_fn=get_loss(config.loss),
                      online=None, shuffle=shuffle, label_draws=draws,
                      augment_draws=torch.Generator().manual_seed(1),
                      average=WeightAverage(model, config.ema) if config.ema > 0 else None,
                      channels_last=True, amp=False)
    record = CellRecord(cell=plan.cell("probe"), epoch_times_s=[1.0], train_loss=[1.0],
                        val_acc=[0.5], test_acc=[0.5], test_top1=[0.5], eval_s=1.0, setup_s=1.0,
                        flops_s=1.0)
    return run, record


def step(run: TrainingRun, batch: int) -> float:
    """One training step on ``batch`` random 48x48 images; wall seconds."""
    x = torch.rand(batch, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    y = torch.softmax(torch.rand(batch, 8), dim=1)
    start = time.perf_counter()
    run.model.train()
    loss = run.loss_fn(run.model(x), y)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.schedule.step()
    if run.average is not None:
        run.average.update(run.model)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="fast_resnet,vgg16")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per model")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = Path(args.dir or tempfile.mkdtemp(prefix="ckpt_probe_"))
    print(f"threads {torch.get_num_threads()}, writing to {folder}")
    for name in args.models.split(","):
        run, record = build_run(name)
        step(run, 2)                                          # optimizer state exists now
        batch = run.config.batch_size
        step(run, batch)                                      # warm-up
        step_s = statistics.median(step(run, batch) for _ in range(args.steps))
        epoch_s = step_s * (N_TRAIN // batch)
        best = Best(1, 0.5, torch.rand(N_TEST, 8))
        file = CheckpointFile(folder / f"{name}.ckpt", record.cell)
        writes, loads = [], []
        for _ in range(args.repeat):
            size, seconds = file.save(capture(run, record, best, 1, torch.device("cpu"), 1.0))
            writes.append(seconds)
            start = time.perf_counter()
            with verified_payload(read_info(file.path)) as handle:
                torch.load(handle, map_location="cpu", weights_only=True)
            loads.append(time.perf_counter() - start)
        params = sum(p.numel() for p in run.model.parameters())
        write_s = min(writes)
        print(f"{name}: {params / 1e6:.2f} M parameters, optimizer {run.config.optimizer}, "
              f"ema {run.config.ema}; checkpoint {size / MIB:.1f} MiB, write {write_s:.3f} s "
              f"(runs: {', '.join(f'{w:.3f}' for w in writes)}), verified load "
              f"{min(loads):.3f} s; training step (batch {batch}) {step_s:.3f} s -> epoch "
              f"~{epoch_s:.0f} s on {N_TRAIN} images; overhead {100 * write_s / epoch_s:.2f}% "
              f"of an epoch")
        file.remove()


if __name__ == "__main__":
    main()

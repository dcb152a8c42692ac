"""Print, per registered baseline, its parameter count and CPU training throughput.

Not a pytest module: run ``python benchmarks/baseline_costs.py [--models a b] [--steps 3]``.
Throughput = images/s over ``--steps`` training steps (batch 64 by default, Adam lr 1e-4,
MSE on the softmax output as in the SPEC defaults, plus the model's ``extra_loss`` when its
spec has one) on uniform random [B, 1, S, S] images (S = the spec's input size) and random
8-way distributions, after one untimed warm-up step. Model and images are channels_last,
as in the runner. Models whose forward returns a tuple or dict are read through
``registry.logits_of``. ``--threads`` sets torch's thread count (default: torch's);
on a shared machine the numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from fer_bench.models import ModelSpec, build_model, get_model, list_models, logits_of


def train_images_per_second(model: torch.nn.Module, batch_size: int, steps: int,
                            seed: int = 0, spec: ModelSpec | None = None,
                            input_size: int = 48) -> float:
    """CPU training throughput in images/s over ``steps`` timed steps (1 warm-up step first);
    ``spec.extra_loss`` is added to the loss when ``spec`` has one."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 1, input_size, input_size, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.rand(batch_size, 8, generator=generator)
    targets = targets / targets.sum(dim=1, keepdim=True)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    extra_loss = spec.extra_loss if spec is not None else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = model(images)
        logits = logits_of(outputs)
        loss = torch.nn.functional.mse_loss(logits.softmax(dim=1), targets)
        if extra_loss is not None:
            extra = extra_loss(model, outputs, logits, targets)
            if extra is not None:
                loss = loss + extra.float()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None,
                        help="model names (default: every fer-baselines model)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.models:
        names = args.models
    else:
        names = [name for name in list_models()
                 if get_model(name).source.startswith("fer-baselines==")]
    print(f"CPU training throughput: batch {args.batch_size}, {args.steps} timed steps "
          f"after 1 warm-up, Adam, {torch.get_num_threads()} torch threads")
    print(f"{'model':<16} {'params':>12} {'train img/s':>12} {'s / 25k-image epoch':>20}")
    for name in names:
        torch.manual_seed(0)
        spec = get_model(name)
        model = build_model(spec)
        n_params = sum(p.numel() for p in model.parameters())
        rate = train_images_per_second(model, args.batch_size, args.steps, spec=spec,
                                       input_size=spec.input_size)
        print(f"{name:<16} {n_params:>12,} {rate:>12.1f} {25_000 / rate:>20.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print, per registered baseline, its parameter count and CPU training throughput.

Not a pytest module: run ``python benchmarks/baseline_costs.py [--models a b] [--steps 3]``.
Throughput = images/s over ``--steps`` training steps (batch 64 by default, Adam lr 1e-4,
MSE on the softmax output as in the SPEC defaults) on uniform random [B, 1, 48, 48] images
and random 8-way distributions, after one untimed warm-up step. Uses torch's default
thread count; on a shared machine the numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from fer_bench.registry import build_model, get_model, list_models


def train_images_per_second(model: torch.nn.Module, batch_size: int, steps: int,
                            seed: int = 0) -> float:
    """CPU training throughput in images/s over ``steps`` timed steps (1 warm-up step first)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 1, 48, 48, generator=generator)
    targets = torch.rand(batch_size, 8, generator=generator)
    targets = targets / targets.sum(dim=1, keepdim=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(images).softmax(dim=1), targets)
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
    args = parser.parse_args(argv)

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
        model = build_model(get_model(name))
        n_params = sum(p.numel() for p in model.parameters())
        rate = train_images_per_second(model, args.batch_size, args.steps)
        print(f"{name:<16} {n_params:>12,} {rate:>12.1f} {25_000 / rate:>20.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

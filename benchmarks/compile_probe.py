"""Does ``torch.compile`` pay on this machine? Prints, for one model: compile seconds
(separately), eager vs compiled evaluation images/s through ``evaluate.predict`` and the
largest difference of their probabilities, then eager vs compiled training images/s of
the runner's step (forward, MSE on the softmax, backward, Adam), all interleaved.

    python benchmarks/compile_probe.py --model small_cnn [--device cuda] [--train-steps 20]

Not a cell. Cells train eagerly; the recipe field ``compile`` ("none" / "eval",
``--fer-compile``) makes a cell evaluate through ``torch.compile``, and because compiled
outputs equal eager ones only up to floating-point rounding it is part of the cell's
identity (a compiled cell's id ends in ``-compile=eval``). The evaluation half compiles the
way such a cell does, through ``fer_bench.training.compiled.compile_for_eval``; the training
half measures a compiled step, which no recipe offers.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch

from fer_bench.models import build_model, get_model
from fer_bench.training.compiled import compile_for_eval
from fer_bench.training.evaluate import autocast_for, predict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-images", type=int, default=3200)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    spec = get_model(args.model)
    torch.manual_seed(0)
    model = build_model(spec, num_classes=8, in_chans=1).to(device).to(memory_format=torch.channels_last)
    size = spec.input_size or 48
    images = torch.randint(0, 256, (args.eval_images, 48, 48), dtype=torch.uint8, device=device)
    kwargs = dict(input_size=size, batch_size=args.batch, channels_last=True, amp=amp)
    result: dict[str, object] = {"model": args.model, "device": str(device),
                                 "threads": torch.get_num_threads(), "load": os.getloadavg()}

    eager_eval = copy.deepcopy(model).eval()
    compiled_eval, result["eval_compile_s"] = compile_for_eval(
        copy.deepcopy(model).eval(), eval_set_sizes={args.eval_images}, tta="none",
        device=device, **kwargs)
    eager_s, compiled_s = [], []
    for _ in range(args.repeats):
        eager_probs, seconds = predict(eager_eval, images, **kwargs)
        eager_s.append(seconds)
        compiled_probs, seconds = predict(compiled_eval, images, **kwargs)
        compiled_s.append(seconds)
    result["eval_img_per_s"] = {"eager": args.eval_images / statistics.median(eager_s),
                                "compiled": args.eval_images / statistics.median(compiled_s)}
    result["eval_max_abs_prob_diff"] = float((eager_probs - compiled_probs).abs().max())

    x = torch.rand(args.batch, 1, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.softmax(torch.randn(args.batch, 8, device=device), dim=1)

    def step(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        with autocast_for(device, amp):
            loss = torch.nn.functional.mse_loss(torch.softmax(net(x).float(), dim=1), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    eager_net = copy.deepcopy(model).train()
    compiled_net = copy.deepcopy(model).train()
    compiled_fn = torch.compile(compiled_net)
    eager_opt = torch.optim.Adam(eager_net.parameters(), lr=1e-4)
    compiled_opt = torch.optim.Adam(compiled_net.parameters(), lr=1e-4)
    step(eager_net, eager_opt)
    start = time.perf_counter()
    step(compiled_fn, compiled_opt)
    result["train_compile_s"] = time.perf_counter() - start
    eager_s, compiled_s = [], []
    for _ in range(args.repeats):
        for net, opt, times in ((eager_net, eager_opt, eager_s), (compiled_fn, compiled_opt, compiled_s)):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(args.train_steps):
                step(net, opt)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    trained = args.train_steps * args.batch
    result["train_img_per_s"] = {"eager": trained / statistics.median(eager_s),
                                 "compiled": trained / statistics.median(compiled_s)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Prototype of a fast CPU recipe for FERPlus (issue 14, part 3), standalone.

Trains ``fer_baselines.fast_resnet`` on the ordinary split (seed 0, 8-hot targets, 10%
validation carved from train), evaluating validation and test after every epoch, and
prints one JSON line per epoch plus a summary (honest test = test accuracy at the epoch
with the best validation accuracy). Training time excludes evaluation; both are logged.

    python benchmarks/fast_recipe_probe.py --epochs 16 --batch 256 --out /tmp/run.jsonl
    python benchmarks/fast_recipe_probe.py --speed-only      # time + FLOPs of one step

Everything runs on the CPU with ``torch.set_num_threads(threads)``; augmentation is done
as whole-tensor ops once per epoch (random horizontal flip + random translation by up to
``--shift`` pixels via reflect-pad + per-image crop gathered with one indexing op).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "baselines"))

from fer_baselines.fast_resnet import fast_resnet  # noqa: E402
from fer_bench.data.cache import load_dataset  # noqa: E402
from fer_bench.data.clean import clean  # noqa: E402
from fer_bench.data.splits import make_split  # noqa: E402
from fer_bench.metrics import tie_aware_accuracy  # noqa: E402

DATA = "/work/shared/data/ferplus"


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--opt", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, default=0.2, help="peak LR")
    p.add_argument("--wd", type=float, default=5e-4, help="weight decay (not on BN/bias)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of steps warming up")
    p.add_argument("--final-lr", type=float, default=0.0, help="final LR as a fraction of peak")
    p.add_argument("--widths", type=str, default="24,48,96,192")
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--stem-pool", type=int, default=1)
    p.add_argument("--shift", type=int, default=4, help="max translation in pixels (0 = off)")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--smooth", type=float, default=0.0, help="mix targets with uniform")
    p.add_argument("--loss", choices=["ce", "mse"], default="ce")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay per step (0 = off)")
    p.add_argument("--ema-start", type=float, default=0.0, help="fraction of steps before EMA starts")
    p.add_argument("--channels-last", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--out", type=str, default="")
    p.add_argument("--speed-only", action="store_true")
    return p.parse_args(argv)


def to_input(u8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = u8.unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment_epoch(images: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """uint8 [T, H, W] -> uint8 [T, H, W]: per-image random flip and translation, batched."""
    n, h, w = images.shape
    out = images
    if flip:
        mask = torch.rand(n, generator=gen) < 0.5
        out = torch.where(mask[:, None, None], images.flip(-1), images)
    if shift > 0:
        padded = F.pad(out.unsqueeze(1).float(), (shift,) * 4, mode="reflect").squeeze(1).to(torch.uint8)
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, :]
        out = padded[torch.arange(n)[:, None, None], rows, cols]
    return out


def soft_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "ce":
        return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    return ((F.softmax(logits, dim=1) - target) ** 2).sum(1).mean()


def lr_at(step: int, total: int, warmup: float, final: float) -> float:
    """Fraction of peak LR: linear warm-up from 0 over ``warmup`` of the steps, then linear
    decay to ``final``."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return (step + 1) / w
    return final + (1 - final) * max(0.0, (total - step) / max(1, total - w))


@torch.no_grad()
def predict(model, images_u8: torch.Tensor, channels_last: bool, batch: int = 1024):
    """(plain logits, flip-averaged logits) as float tensors [M, 8]."""
    model.eval()
    plain, tta = [], []
    for s in range(0, len(images_u8), batch):
        x = to_input(images_u8[s:s + batch], channels_last)
        a = model(x)
        b = model(x.flip(-1))
        plain.append(a)
        tta.append((F.softmax(a, 1) + F.softmax(b, 1)) / 2)
    return torch.cat(plain), torch.cat(tta)


def count_step_flops(model, batch: int, channels_last: bool, loss_kind: str) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    m = copy.deepcopy(model).train()
    x = to_input(torch.randint(0, 256, (batch, 48, 48), dtype=torch.uint8), channels_last)
    t = torch.softmax(torch.randn(batch, 8), 1)
    with FlopCounterMode(display=False) as fc:
        soft_loss(m(x), t, loss_kind).backward()
    return fc.get_total_flops()


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    widths = tuple(int(v) for v in args.widths.split(","))
    cl = bool(args.channels_last)
    model = fast_resnet(widths=widths, depth=args.depth, stem_pool=bool(args.stem_pool))
    if cl:
        model = model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    step_flops = count_step_flops(model, args.batch, cl, args.loss)
    header = {"kind": "header", "args": vars(args), "params": n_params,
              "train_step_flops": step_flops, "flops_per_image": step_flops / args.batch,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    out = open(args.out, "a") if args.out else None

    def emit(rec):
        line = json.dumps(rec)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    emit(header)

    if args.speed_only:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        x = to_input(torch.randint(0, 256, (args.batch, 48, 48), dtype=torch.uint8), cl)
        t = torch.softmax(torch.randn(args.batch, 8), 1)
        model.train()
        times = []
        for i in range(8):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            soft_loss(model(x), t, args.loss).backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        per = float(np.median(times[2:]))
        emit({"kind": "speed", "step_s": per, "img_per_s": args.batch / per,
              "gflops": step_flops / per / 1e9, "est_epoch_s_25k": 25000 / (args.batch / per)})
        return

    t_load = time.perf_counter()
    d = clean(load_dataset(DATA))
    sp = make_split(d, "ordinary", seed=args.split_seed, val_fraction=0.1)
    images = torch.from_numpy(np.ascontiguousarray(d.images))
    dist = torch.from_numpy(np.asarray(d.dist, dtype=np.float32))
    tr = torch.from_numpy(np.asarray(sp.train, dtype=np.int64))
    xtr, ttr = images[tr].contiguous(), dist[tr].contiguous()
    if args.smooth > 0:
        ttr = (1 - args.smooth) * ttr + args.smooth / ttr.shape[1]
    xva, dva = images[torch.from_numpy(np.asarray(sp.val))], np.asarray(d.dist)[sp.val]
    xte, dte = images[torch.from_numpy(np.asarray(sp.test))], np.asarray(d.dist)[sp.test]
    emit({"kind": "data", "train": len(xtr), "val": len(xva), "test": len(xte),
          "load_s": time.perf_counter() - t_load})

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}]
    if args.opt == "sgd":
        opt = torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99))

    ema_model = copy.deepcopy(model) if args.ema > 0 else None
    steps_per_epoch = len(xtr) // args.batch  # drop last partial batch
    total = steps_per_epoch * args.epochs
    ema_start = int(args.ema_start * total)
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    train_s = 0.0
    train_cpu = 0.0
    eval_s = 0.0
    best = (-1.0, None)
    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        c0 = time.process_time()
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        xa = augment_epoch(xtr[perm], args.shift, not args.no_flip, gen)
        ta = ttr[perm]
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            sl = slice(b * args.batch, (b + 1) * args.batch)
            frac = lr_at(step, total, args.warmup, args.final_lr)
            for g in opt.param_groups:
                g["lr"] = args.lr * frac
            x = to_input(xa[sl], cl)
            loss = soft_loss(model(x), ta[sl], args.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if ema_model is not None:
                with torch.no_grad():
                    dcy = 0.0 if step <= ema_start else args.ema
                    for pe, pm in zip(ema_model.parameters(), model.parameters()):
                        pe.lerp_(pm, 1 - dcy)
                    for be, bm in zip(ema_model.buffers(), model.buffers()):
                        be.copy_(bm)
            loss_sum += float(loss.detach())
        ep_train = time.perf_counter() - t0
        ep_cpu = time.process_time() - c0
        train_s += ep_train
        train_cpu += ep_cpu
        rec = {"kind": "epoch", "epoch": epoch, "train_s": round(ep_train, 2),
               "cum_train_s": round(train_s, 1),
               "train_cpu_s": round(ep_cpu, 2), "cum_train_cpu_s": round(train_cpu, 1),
               "load1": round(os.getloadavg()[0], 2), "loss": loss_sum / steps_per_epoch,
               "lr_frac_end": lr_at(step - 1, total, args.warmup, args.final_lr)}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            t1 = time.perf_counter()
            for tag, m in (("", model), ("ema_", ema_model)):
                if m is None:
                    continue
                pv, pv2 = predict(m, xva, cl)
                pt, pt2 = predict(m, xte, cl)
                rec[tag + "val"] = tie_aware_accuracy(pv, dva)
                rec[tag + "val_tta"] = tie_aware_accuracy(pv2, dva)
                rec[tag + "test"] = tie_aware_accuracy(pt, dte)
                rec[tag + "test_tta"] = tie_aware_accuracy(pt2, dte)
            ev = time.perf_counter() - t1
            eval_s += ev
            rec["eval_s"] = round(ev, 2)
        rec["cum_wall_s"] = round(train_s + eval_s, 1)
        history.append(rec)
        emit(rec)

    def honest(key_val, key_test):
        rows = [r for r in history if key_val in r]
        bestr = max(rows, key=lambda r: (r[key_val], r["epoch"]))
        return {"epoch": bestr["epoch"], "val": bestr[key_val], "test": bestr[key_test],
                "optimistic_test": max(r[key_test] for r in rows)}

    summary = {"kind": "summary", "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1), "eval_s": round(eval_s, 1),
               "params": n_params, "flops_per_image": step_flops / args.batch,
               "total_train_pflops": step_flops * total / 1e15,
               "honest": honest("val", "test"), "honest_tta": honest("val_tta", "test_tta")}
    if ema_model is not None:
        summary["honest_ema_tta"] = honest("ema_val_tta", "ema_test_tta")
    emit(summary)


if __name__ == "__main__":
    main()

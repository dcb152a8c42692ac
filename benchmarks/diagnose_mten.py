"""Why MTEN barely learns in the sanity check (issue 22, part 3), measured.

The 2-epoch sanity cell of ``mten`` (EfficientNet-B2 from scratch, the study's recipe: MSE on
the softmax, Adam at lr 1e-4, batch 64, fp32) ends 2.1 points above the majority-class rate,
where VGG16, RAN and DAN end 16 to 25 points above it; its mean training loss without the
auxiliary term stays above the loss of always predicting the training set's mean target.
Two questions, each answered by a measurement on real FERPlus:

1. **Who drives the shared trunk?** At initialisation (seed 0), for a few training batches,
   the gradient of the emotion loss and of MTEN's auxiliary loss (``mten_extra_loss``) with
   respect to the trunk's parameters (everything but the final Linear): their norms and the
   cosine between them. Adam normalises the *summed* gradient per parameter, so a term with
   a far larger gradient decides the direction the trunk moves.
2. **What makes it learn?** The same model and subset trained for a few epochs with one
   thing changed at a time: the recipe as in the sanity cell; no auxiliary term
   (``mten_noaux``, registered here: the same network, ``extra_loss`` None); soft-target CE
   (``cce``) instead of MSE on the softmax; lr 1e-3 instead of 1e-4. Each is a cell of its
   own identity in the store given (``--results``), so a rerun is served from it.

Printed and written as markdown (``--out``): per variant the mean emotion loss of every
epoch beside the constant-prior loss of the same targets, validation and honest test
accuracy against the majority-class rate::

    python benchmarks/diagnose_mten.py --data ../shared/data/ferplus \\
        --results leaderboard/diagnostics/cells --out leaderboard/diagnostics/mten.md
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from fer_bench.data.cache import load_dataset
from fer_bench.data.clean import clean, subset
from fer_bench.data.labels.treatments import nhot_variant
from fer_bench.models import MODELS, get_model
from fer_bench.planning.cells import CellRequest, plan_cell
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore
from fer_bench.training.augment.sets import to_model_input
from fer_bench.training.losses import get_loss
from fer_bench.training.tasks import build_task_data

NOAUX = "mten_noaux"
#: (label, model, loss, recipe overrides): one thing changed at a time from the sanity cell.
VARIANTS = (
    ("sanity recipe (mse, lr 1e-4, aux weight 1)", "mten", "mse", {}),
    ("no auxiliary term", NOAUX, "mse", {}),
    ("soft-target CE instead of MSE", "mten", "cce", {}),
    ("lr 1e-3 instead of 1e-4", "mten", "mse", {"lr": 1e-3}),
)


def register_noaux() -> None:
    """``mten_noaux``: MTEN's network and recipe without its auxiliary loss."""
    if NOAUX not in MODELS:
        spec = get_model("mten")
        MODELS.register(NOAUX, dataclasses.replace(spec, name=NOAUX, extra_loss=None,
                                                   description="MTEN without its auxiliary loss"))


def gradient_share(data, batches: int, batch_size: int = 64) -> list[tuple[float, float, float]]:
    """Per batch: (|grad emotion loss|, |grad aux loss|, cosine) over MTEN's trunk at init."""
    spec = get_model("mten")
    torch.manual_seed(0)
    model = spec.factory(num_classes=8, in_chans=1)
    model.train()
    trunk = [p for name, p in model.named_parameters() if not name.startswith("net.classifier")]
    mse = get_loss("mse")
    rows = []
    for b in range(batches):
        index = torch.arange(b * batch_size, (b + 1) * batch_size)
        x = to_model_input(data.train_images[index], 48, False)
        y = data.train_targets[index]
        outputs = model(x)
        grads = []
        for loss in (mse(outputs["logits"], y), spec.extra_loss(model, outputs, outputs["logits"], y)):
            g = torch.autograd.grad(loss, trunk, retain_graph=True)
            grads.append(torch.cat([t.flatten() for t in g]))
        main, aux = grads
        rows.append((float(main.norm()), float(aux.norm()),
                     float(torch.nn.functional.cosine_similarity(main, aux, dim=0))))
    return rows


def prior_loss(targets: np.ndarray) -> float:
    """MSE (mean over the 8 classes) of always predicting the mean target: the loss a model
    reaches by learning the label prior and nothing about the face."""
    return float(((targets - targets.mean(0)) ** 2).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--images", type=int, default=8000, help="cleaned images in the subset")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    register_noaux()
    store = ResultStore(args.results)
    full = clean(load_dataset(args.data))
    data = subset(full, args.images, seed=0)
    lines = [f"# Why MTEN barely learns in 2 epochs: measured ({args.images} cleaned FERPlus "
             f"images, seed 0, 8-hot, ordinary split, fp32, {args.epochs} epochs)", ""]

    plan = plan_cell(CellRequest(model="mten", split="ordinary", variant=nhot_variant(8),
                                 loss="mse", epochs=args.epochs, precision="fp32", device="cpu"))
    task = build_task_data(data, plan.cell(data.fingerprint))
    shares = gradient_share(task, batches=4)
    prior = prior_loss(task.train_targets.numpy())
    lines += ["## 1. Gradient on the trunk at initialisation (4 batches of 64)", "",
              "| batch | emotion loss (mse) | auxiliary loss | aux / emotion | cosine |",
              "|---:|---:|---:|---:|---:|"]
    lines += [f"| {i + 1} | {m:.3g} | {a:.3g} | {a / m:.1f}x | {c:+.2f} |"
              for i, (m, a, c) in enumerate(shares)]
    lines += ["", f"Constant-prior loss of these training targets (MSE, mean over 8 classes): "
                  f"{prior:.4f}.", "",
              "## 2. One change at a time", "",
              "| variant | emotion loss by epoch (train) | val accuracy by epoch, % | honest test, % "
              "| majority-class rate, % | margin, points |", "|---|---|---|---:|---:|---:|"]
    for label, model, loss, recipe in VARIANTS:
        plan = plan_cell(CellRequest(model=model, split="ordinary", variant=nhot_variant(8),
                                     loss=loss, epochs=args.epochs, precision="fp32",
                                     device="cpu", recipe=recipe))
        cell = plan.cell(data.fingerprint)
        record, from_store = get_or_run_cell(store, plan.spec, data, cell, device="cpu",
                                             experiment="diagnose_mten")
        extra = record.train_extra_loss or [0.0] * len(record.train_loss)
        emotion = [total - aux for total, aux in zip(record.train_loss, extra, strict=True)]
        honest, majority = 100 * record.acc_honest, 100 * record.majority_acc
        lines.append(f"| {label} | {', '.join(f'{v:.4f}' for v in emotion)} | "
                     f"{', '.join(f'{100 * v:.1f}' for v in record.val_acc)} | {honest:.2f} | "
                     f"{majority:.2f} | {honest - majority:+.2f} |")
        print(lines[-1], "(from the store)" if from_store else "", flush=True)
    lines += ["", "The CE row's emotion loss is a cross-entropy, not comparable with the MSE "
              "rows or the prior loss; compare its accuracies.", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

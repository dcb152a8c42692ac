"""Small sweep of the adaptive augmentation's thresholds X1 / X2 (report 5.3.2, issue 11).

Not a pytest module: ``python benchmarks/adaptive_sweep.py --data ../shared/data/ferplus``.
Trains ``--model`` (default small_cnn) for ``--epochs`` epochs on a seeded ``--subset`` of the
cleaned data (8-hot, ordinary split, seeds ``--seeds``) with Base, Base+Flip+Rotate+-20 and
the adaptive sets ``adaptive_x1=<X1>_x2=<X2>`` of ``--grid`` (inclination from the dlib HOG
landmarks: run ``fer-bench data align`` first, or the aligner runs on the subset's rows), and
prints per set its training-set size against the full 4x set and its honest test accuracy
(test accuracy at the best validation epoch), mean over seeds, as one JSON object per line
and a closing table. It is a SMALL sweep: a few thousand images and a few epochs leave the
accuracy differences within the noise of a ~300-image test set; it chooses defaults, it
does not measure the method. Results go to the store (``--results``), so a rerun is free.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="FERPlus folder (default: $FER_BENCH_DATA)")
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0", help="comma list")
    parser.add_argument("--grid", default="3:15,5:15,8:15,5:25",
                        help="X1:X2 pairs, comma separated")
    parser.add_argument("--results", default="results/adaptive_sweep")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    import torch

    from fer_bench.data.align.axis import DEFAULT_ALIGNMENT, align_clean
    from fer_bench.data.cache import load_dataset
    from fer_bench.data.clean import clean, subset
    from fer_bench.data.splits import make_split
    from fer_bench.planning.cells import CellRequest, plan_cell
    from fer_bench.results.run import get_or_run_cell
    from fer_bench.results.store import ResultStore
    from fer_bench.training.augment.adaptive import adaptive_name, adaptive_size
    from fer_bench.training.augment.sets import AUGMENTATIONS

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    pairs = [tuple(float(v) for v in pair.split(":")) for pair in args.grid.split(",")]
    sets = [("none", None), ("flip_rot20", None),
            *((adaptive_name(*pair), pair) for pair in pairs)]   # (name, (X1, X2) or None)
    # Every cell planned (and checked) before the data is loaded.
    plans = {(name, seed): plan_cell(CellRequest(
                 model=args.model, variant="nhot-8", split="ordinary", seed=seed,
                 augmentation=name, epochs=args.epochs, device="cpu"))
             for name, _ in sets for seed in seeds}
    (rule,) = {plan.cleaning for plan in plans.values()}    # nhot-8 on ordinary: "study"
    raw = load_dataset(args.data)
    data = subset(clean(raw, rule), args.subset, seed=0)
    aligners = {plan.aligner for plan in plans.values()} - {DEFAULT_ALIGNMENT}
    if aligners:   # the adaptive sets' inclination: the default landmark aligner, dlib-hog
        (aligner,) = aligners
        data = align_clean(raw, data, aligner, rows_only=True)
    store = ResultStore(args.results)
    rows = []
    for name, pair in sets:
        honest, sizes = [], []
        for seed in seeds:
            plan = plans[(name, seed)]
            cell = plan.cell(data.fingerprint)
            train = make_split(data, cell.split, seed, cell.recipe.val_fraction).train
            if pair is not None:
                sizes.append(adaptive_size(data.alignment.inclination[train], *pair) / (4 * len(train)))
            else:
                sizes.append(AUGMENTATIONS.get(name).multiple / 4)
            start = time.perf_counter()
            record, cached = get_or_run_cell(store, plan.spec, data, cell, device=plan.device,
                                             experiment="adaptive_sweep")
            honest.append(record.acc_honest)
            line = {"set": name, "seed": seed, "honest": record.acc_honest,
                    "optimistic": record.acc_optimistic, "size_vs_4x": round(sizes[-1], 4),
                    "n_train": record.n_train, "n_test": record.n_test, "from_store": cached,
                    "seconds": round(time.perf_counter() - start, 1)}
            print(json.dumps(line), flush=True)
        rows.append((name, float(np.mean(honest)), float(np.mean(sizes)), len(seeds)))
    print(f"\nSMALL sweep: {args.model}, {args.epochs} epochs, {len(data)} images "
          f"({args.subset} subset), seeds {args.seeds}; honest test accuracy")
    for name, acc, size, n in rows:
        print(f"{name:24s} {100 * acc:6.2f}%  size {size:.3f} of the 4x set  ({n} seed(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of fer_bench's data path against the usual naive PyTorch pipeline, side by side,
every row giving both sides the same work.

On the real FERPlus folder (``--fer-data`` or ``../shared/data/ferplus``), a fixed subset of
6,400 cleaned images, batches of 64, the same torch thread count in both sides' main
process (DataLoader workers run one thread each, as PyTorch sets them), shuffled in the
same way (a seeded ``randperm`` / ``RandomSampler``):

(a) data pipeline, random mirror + random shift up to 4 px: shuffled, augmented float32
    model-input batches [64, 1, 48, 48] + targets [64, 8] per second. fer_bench: the uint8
    images in one tensor, the runner's batch selection (``device.select_batch``), its online
    ``rand_flip_shift4`` (one row select + one column gather per batch: each image mirrored
    with p = 1/2 and shifted by its own (dy, dx) in [-4, 4], border pixels repeated) and
    ``to_model_input``.
    Naive: a DataLoader over a Dataset that decodes each PNG with PIL and applies
    torchvision's RandomHorizontalFlip + RandomCrop(48, padding=4, padding_mode="edge")
    (the same flip + shift, border repeated) + ToTensor, with num_workers 0 and 2 (the
    better of the two is the baseline). This is the augmentation the fast recipe trains with.
(a') the same with random mirror + a random rotation in [-20, 20] degrees per image, bilinear:
    fer_bench ``augment.hflip`` + ``augment.rotate`` (one ``grid_sample`` per batch) against
    RandomHorizontalFlip + RandomRotation(20, bilinear). Shown for the record, no target
    (the runner's rotation sets are static, built once per cell, see ``augment.py``).
(b) one training epoch of ``small_cnn`` (the same initial weights, Adam lr 1e-4, MSE on the
    softmax, batch 64, the last partial batch dropped) with the (a) augmentation on both
    sides: fer_bench's runner (``run_cell`` with ``augmentation="rand_flip_shift4"``, its
    own device-synchronised timing of the training pass) against a plain loop over the
    naive (a) DataLoader.
(c) evaluation images/s of ``small_cnn`` (the same weights, batch 64, no augmentation,
    softmax probabilities out): ``fer_bench.training.evaluate.predict`` on the uint8 tensor
    (as the runner calls it) against a no-grad loop over a DataLoader of decoded PNGs.

(b) and (c) run in fp32 and, on a CPU with native bf16 (AVX-512 BF16 / AMX), again under
bf16 autocast on both sides (``--fer-precision bf16``: the runner's autocast and fp32
logits; the naive loop's ``torch.autocast("cpu", torch.bfloat16)``), each row with the
same target. Both sides run with the glibc heap that ``run_cell`` keeps
(``fer_bench.training.heap``, set before anything is measured; process-wide, so the naive
loops get it too): without it every batch page-faults its activations anew and
fer_bench's evaluation rate swung 1.7x between back-to-back runs.

Everything is measured **interleaved** in one run (round-robin over the measures, each
repeated, the median kept), so a change in the machine's load hits both sides alike; the
load average is printed beside the ratios. On a shared machine the figures are noisy:
read the ratios, not the absolute rates. Targets (issue 14): data pipeline >= 20x the
better naive setting, training epoch >= 1.5x, evaluation >= 3x. The table is printed and
each ratio is a ``record_property``; nothing is asserted about speed.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.data.schema import USAGE_FOLDERS, USAGES

SUBSET = 6400          # images: 100 batches of 64
BATCH = 64
MAX_SHIFT = 4
MAX_ANGLE = 20.0
REPEATS = 3            # data pipeline rounds
EVAL_REPEATS = 5       # evaluation rounds: one pass is about a second, so its median needs more
TRAIN_REPEATS = 2      # training epochs per side
WORKERS = (0, 2)
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ferplus_folder(fer_settings) -> Path:
    path = Path(fer_settings.data) if fer_settings.data else REPO_ROOT.parent / "shared" / "data" / "ferplus"
    if not (path / "fer2013new.csv").is_file() or not (path / USAGE_FOLDERS["Training"]).is_dir():
        pytest.skip(f"the throughput benchmark needs the FERPlus folder layout with PNGs; not found at {path}")
    return path


@pytest.fixture(scope="module")
def images_and_files(ferplus_folder):
    """The fixed subset: uint8 [SUBSET, 48, 48], float32 targets [SUBSET, 8], PNG paths."""
    from fer_bench.data.cache import load_dataset
    from fer_bench.data.clean import clean, subset

    data = subset(clean(load_dataset(ferplus_folder)), SUBSET, seed=0)
    files = [ferplus_folder / USAGE_FOLDERS[USAGES[u]] / str(name) for u, name in zip(data.usage, data.names, strict=True)]
    return torch.from_numpy(data.images), torch.from_numpy(data.dist.astype(np.float32)), files


# ------------------------------------------------------------------ the naive pipeline
def naive_transform(augment: str):
    """torchvision per-sample transforms: "none", "flip_shift" or "flip_rotate"."""
    from torchvision import transforms

    steps = {
        "none": [],
        "flip_shift": [transforms.RandomHorizontalFlip(),
                       transforms.RandomCrop(48, padding=MAX_SHIFT, padding_mode="edge")],
        "flip_rotate": [transforms.RandomHorizontalFlip(),
                        transforms.RandomRotation(MAX_ANGLE, interpolation=transforms.InterpolationMode.BILINEAR)],
    }[augment]
    return transforms.Compose([*steps, transforms.ToTensor()])


class PngDataset(torch.utils.data.Dataset):
    """Per-sample PIL decode + torchvision transforms: the usual tutorial pipeline."""

    def __init__(self, files: list[Path], targets: torch.Tensor, augment: str) -> None:
        self.files, self.targets = files, targets
        self.transform = naive_transform(augment)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("L")), self.targets[index]


def naive_loader(files, targets, *, augment: str, workers: int, shuffle: bool, drop_last: bool = False):
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(PngDataset(files, targets, augment), batch_size=BATCH,
                                       shuffle=shuffle, num_workers=workers, generator=generator,
                                       drop_last=drop_last)


def consume(batches) -> None:
    """Draw every batch of an iterable (the measured work), keeping none."""
    for _ in batches:
        pass


def naive_train_epoch(model, loader, bf16: bool = False) -> None:
    """A plain training loop; ``bf16``: forward and loss under CPU bf16 autocast, as the
    usual AMP recipe (fp32 weights, Adam in fp32)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    for x, y in loader:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.mse_loss(torch.softmax(model(x).float(), dim=1), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def naive_eval(model, loader, bf16: bool = False) -> None:
    model.eval()
    for x, _ in loader:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        torch.softmax(logits.float(), dim=1)


# ------------------------------------------------------------------ fer_bench's path
def fer_bench_batches(images: torch.Tensor, targets: torch.Tensor, augment: str, seed: int = 0):
    """Shuffled, augmented model-input batches as the runner makes them: float32
    [64, 1, 48, 48] (channels_last), targets [64, 8]. ``augment``: "flip_shift" (the
    registered online ``rand_flip_shift4``) or "flip_rotate" (per-image mirror + angle)."""
    from fer_bench.training.augment.sets import (
        AUGMENTATIONS,
        hflip,
        rotate,
        to_model_input,
    )
    from fer_bench.training.device import select_batch

    flip_shift = AUGMENTATIONS.get("rand_flip_shift4").online
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(images.shape[0], generator=generator)
    for first in range(0, images.shape[0] - BATCH + 1, BATCH):
        index = order[first:first + BATCH]
        batch = select_batch(images, index)
        if augment == "flip_shift":
            batch = flip_shift(batch, generator)
        else:
            flip = torch.rand(BATCH, generator=generator) < 0.5
            angles = (torch.rand(BATCH, generator=generator) * 2.0 - 1.0) * MAX_ANGLE
            batch = rotate(torch.where(flip[:, None, None], hflip(batch), batch), angles)
        yield to_model_input(batch, images.shape[-1], channels_last=True), select_batch(targets, index)


def fer_bench_epoch_seconds(images: torch.Tensor, targets: torch.Tensor, seed: int = 0,
                            precision: str = "fp32") -> float:
    """Seconds of one training pass of fer_bench's runner (``run_cell``, 1 epoch, batch 64,
    online flip + shift 4, ``precision`` "fp32" or "bf16") over the subset, as the runner
    times it."""
    from fer_bench.planning.cells import CellRequest, plan_cell
    from fer_bench.training.runner import run_cell
    from fer_bench.training.tasks import TaskData

    plan = plan_cell(CellRequest(model="small_cnn", variant="nhot-8", split="ordinary",
                                 seed=seed, epochs=1, augmentation="rand_flip_shift4",
                                 device="cpu", precision=precision, recipe={"batch_size": BATCH}))
    cell = plan.cell("throughput")
    held_out = slice(0, 256)  # validation/test are evaluated after the epoch; kept small here
    data = TaskData(
        cell=cell, train_images=images, train_targets=targets,
        val_images=images[held_out], val_dist=targets[held_out],
        test_images=images[held_out], test_dist=targets[held_out],
        test_complexity=torch.ones(256, dtype=torch.int64), dataset_label="ferplus",
        dataset_fingerprint="throughput", split_fingerprint="throughput",
        n_train=images.shape[0], n_val=256, n_test=256,
    )
    record = run_cell(plan.spec, data, device="cpu")
    assert record.status == "ok", record.error
    return record.epoch_times_s[0]


# ------------------------------------------------------------------ measuring
def interleaved(measures: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, float]:
    """Median seconds of each measure, run round-robin ``repeats`` times (a measure may
    return its own seconds, e.g. the runner's timing of the training pass; None = the wall
    time of the call)."""
    times: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, run in measures.items():
            start = time.perf_counter()
            own = run()
            times[name].append(own if own is not None else time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def test_throughput_ratios(images_and_files, capsys, record_property):
    """Print fer_bench vs naive, same work per row: (a) data pipeline, (b) training epoch,
    (c) evaluation, each ratio beside its target."""
    from fer_bench.models import get_model
    from fer_bench.training.device import cpu_has_bf16
    from fer_bench.training.evaluate import eval_batch_size, predict
    from fer_bench.training.heap import keep_heap

    heap = keep_heap()   # what run_cell does first; process-wide, so both sides share it
    precisions = ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)
    images, targets, files = images_and_files
    n_batches = images.shape[0] // BATCH
    load_before = load_text()

    # Same batch layout from both pipelines.
    ours_x, ours_y = next(fer_bench_batches(images, targets, "flip_shift"))
    naive_x, naive_y = next(iter(naive_loader(files, targets, augment="flip_shift", workers=0, shuffle=True)))
    assert ours_x.shape == naive_x.shape == (BATCH, 1, 48, 48) and ours_x.dtype == naive_x.dtype
    assert ours_y.shape == naive_y.shape and ours_y.dtype == naive_y.dtype

    # (a), (a'): augmented training batches, interleaved (one untimed warm-up pass each)
    data_measures: dict[str, Callable[[], float | None]] = {}
    for augment in ("flip_shift", "flip_rotate"):
        data_measures[f"{augment} ours"] = lambda a=augment: consume(fer_bench_batches(images, targets, a))
        for w in WORKERS:
            data_measures[f"{augment} naive w{w}"] = lambda a=augment, w=w: consume(naive_loader(
                files, targets, augment=a, workers=w, shuffle=True, drop_last=True))
    interleaved(data_measures, 1)
    data_s = interleaved(data_measures, REPEATS)

    # (b) one training epoch of small_cnn, same augmentation, each precision, interleaved
    spec = get_model("small_cnn")

    def naive_epoch(workers: int, precision: str) -> None:
        torch.manual_seed(0)          # the runner's initial weights (it seeds before building)
        model = spec.factory(num_classes=8, in_chans=1)
        naive_train_epoch(model, naive_loader(files, targets, augment="flip_shift", workers=workers,
                                              shuffle=True, drop_last=True), bf16=precision == "bf16")

    train_measures: dict[str, Callable[[], float | None]] = {}
    for precision in precisions:
        train_measures[f"{precision} ours"] = lambda p=precision: fer_bench_epoch_seconds(
            images, targets, precision=p)
        for w in WORKERS:
            train_measures[f"{precision} naive w{w}"] = lambda w=w, p=precision: naive_epoch(w, p)
    train_s = interleaved(train_measures, TRAIN_REPEATS)

    # (c) evaluation, same weights, same batch, each precision, interleaved
    torch.manual_seed(0)
    model = spec.factory(num_classes=8, in_chans=1).eval()
    ours_model = copy.deepcopy(model).to(memory_format=torch.channels_last)   # as the runner holds it
    eval_batch = eval_batch_size(48, BATCH, images.device)
    assert eval_batch == BATCH

    def ours_eval(precision: str) -> Callable[[], None]:
        def run() -> None:
            predict(ours_model, images, input_size=48, batch_size=eval_batch, channels_last=True,
                    amp=precision == "bf16")
        return run

    eval_measures: dict[str, Callable[[], float | None]] = {}
    for precision in precisions:
        eval_measures[f"{precision} ours"] = ours_eval(precision)
        for w in WORKERS:
            eval_measures[f"{precision} naive w{w}"] = lambda w=w, p=precision: naive_eval(
                model, naive_loader(files, targets, augment="none", workers=w, shuffle=False),
                bf16=p == "bf16")
    for run in eval_measures.values():   # untimed warm-up: oneDNN builds its kernels per dtype
        run()
    eval_s = interleaved(eval_measures, EVAL_REPEATS)

    rate_a = {k: n_batches / v for k, v in data_s.items()}
    rate_c = {k: images.shape[0] / v for k, v in eval_s.items()}
    rows = []   # (row, what both sides do, ours, naive w0, naive w2, ratio, target)
    for augment, name, what, target in (
            ("flip_shift", "(a) data pipeline, batches/s", "decode/index + flip + shift<=4px + to float, batch 64", 20.0),
            ("flip_rotate", "(a') data pipeline, batches/s", "decode/index + flip + rotate<=20deg bilinear, batch 64", None)):
        ours, naive = rate_a[f"{augment} ours"], [rate_a[f"{augment} naive w{w}"] for w in WORKERS]
        rows.append((name, what, f"{ours:,.0f}", *(f"{n:,.1f}" for n in naive), ours / max(naive), target))
    for precision in precisions:
        naive_b = [train_s[f"{precision} naive w{w}"] for w in WORKERS]
        ours_b = train_s[f"{precision} ours"]
        rows.append((f"(b) small_cnn epoch {precision}, s",
                     f"train {SUBSET} img, Adam, MSE, batch 64, flip + shift<=4px",
                     f"{ours_b:.2f}", *(f"{n:.2f}" for n in naive_b), min(naive_b) / ours_b, 1.5))
    for precision in precisions:
        naive_c = [rate_c[f"{precision} naive w{w}"] for w in WORKERS]
        ours_c = rate_c[f"{precision} ours"]
        rows.append((f"(c) small_cnn eval {precision}, img/s",
                     "decode/index + forward + softmax, batch 64, no aug",
                     f"{ours_c:,.0f}", *(f"{n:,.0f}" for n in naive_c), ours_c / max(naive_c), 3.0))

    for name, _, *_, ratio, _target in rows:
        record_property(name, round(ratio, 2))
    load_after = load_text()
    record_property("load average before / after", f"{load_before} / {load_after}")
    header = (f"{'row':<33}{'fer_bench':>11}{'naive w=0':>11}{'naive w=2':>11}{'ratio':>8}"
              f"{'target':>8}  {'both sides do':<58}")
    lines = [f"throughput on {SUBSET} FERPlus images, interleaved, median of {REPEATS} "
             f"(training: {TRAIN_REPEATS}, evaluation: {EVAL_REPEATS}); torch threads {torch.get_num_threads()} on both sides "
             f"(ratio = fer_bench vs the better naive setting); glibc heap {heap} on both sides "
             f"(fer_bench.training.heap)",
             f"load average before: {load_before}; after: {load_after} (shared machine: noisy)",
             header, "-" * len(header)]
    for name, what, ours, n0, n2, ratio, target in rows:
        verdict = "-" if target is None else ("ok" if ratio >= target else "BELOW")
        target_text = f"{target:>7.1f}x" if target else f"{'-':>8}"
        lines.append(f"{name:<33}{ours:>11}{n0:>11}{n2:>11}{ratio:>7.1f}x{target_text}  {what:<58}{verdict}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))

"""Throughput of fer_bench's data path against the usual naive PyTorch pipeline.

On the real FERPlus folder (``--fer-data`` or ``../shared/data/ferplus``), side by side:

(a) augmented training batches/s: fer_bench keeps the images as one uint8 tensor in
    memory, builds the report's static 4x set (Base + Flip + Rotate +-20) as large batched
    tensor ops (``augment.expand_static``; charged to every epoch here, although the runner
    builds it once per cell) and ``index_select``s shuffled batches of 64 from it. (a')
    shows the online variant too: a random flip and a random angle in [-20, 20] per image,
    applied to each batch by one ``grid_sample``. The naive pipeline decodes each PNG with
    PIL and applies torchvision's RandomHorizontalFlip + RandomRotation(20) + ToTensor in
    a DataLoader (batch 64), with num_workers 0 and 2 (the better one is the baseline);
(b) one training epoch of ``small_cnn``: fer_bench's runner (``run_cell``; its own timing of
    the training pass) against a plain loop over that naive DataLoader (same model, Adam,
    MSE on the softmax);
(c) evaluation images/s: ``fer_bench.training.evaluate.predict`` on the uint8 tensor
    against a no-grad loop over a DataLoader of decoded PNGs (no augmentation).

The ratios are the output (printed as a table, also in ``record_property``); nothing is
asserted about speed. Each timing is the median of a few repeats (``time.perf_counter``).
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.data.schema import USAGE_FOLDERS, USAGES

SUBSET = 6400          # images: 100 batches of 64
BATCH = 64
MAX_ANGLE = 20.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def median_seconds(run, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``run()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
class PngDataset(torch.utils.data.Dataset):
    """Per-sample PIL decode + torchvision transforms: the usual tutorial pipeline."""

    def __init__(self, files: list[Path], targets: torch.Tensor, augment: bool) -> None:
        from torchvision import transforms

        self.files, self.targets = files, targets
        steps = [transforms.RandomHorizontalFlip(), transforms.RandomRotation(MAX_ANGLE)] if augment else []
        self.transform = transforms.Compose([*steps, transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("L")), self.targets[index]


def naive_loader(files, targets, *, augment: bool, workers: int, shuffle: bool):
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(PngDataset(files, targets, augment), batch_size=BATCH,
                                       shuffle=shuffle, num_workers=workers, generator=generator)


# ------------------------------------------------------------------ fer_bench's path
def fer_bench_batches(images: torch.Tensor, targets: torch.Tensor, seed: int = 0):
    """Shuffled, augmented model-input batches: float32 [64, 1, 48, 48], targets [64, 8].

    Each batch is an ``index_select`` of the shuffled order, flipped per image at random
    and rotated by its own random angle in [-20, 20] degrees per image (``augment.rotate``),
    the same per-sample randomness as the naive pipeline, done as one batched op.
    """
    from fer_bench.training.augment import hflip, rotate, to_model_input

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(images.shape[0], generator=generator)
    for first in range(0, images.shape[0] - BATCH + 1, BATCH):
        index = order[first:first + BATCH]
        batch = images.index_select(0, index)
        flip = torch.rand(BATCH, generator=generator) < 0.5
        angles = (torch.rand(BATCH, generator=generator) * 2.0 - 1.0) * MAX_ANGLE
        batch = torch.where(flip[:, None, None], hflip(batch), batch)
        yield to_model_input(rotate(batch, angles), images.shape[-1]), targets.index_select(0, index)


# ------------------------------------------------------------------ training and eval
def naive_train_epoch(model, loader) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    for x, y in loader:
        loss = torch.nn.functional.mse_loss(torch.softmax(model(x), dim=1), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def naive_eval(model, loader) -> None:
    model.eval()
    for x, _ in loader:
        torch.softmax(model(x), dim=1)


def fer_bench_static_epoch(images: torch.Tensor, targets: torch.Tensor, seed: int = 0) -> int:
    """The runner's own path, one epoch: build the report's static 4x set (Base + Flip +
    Rotate +-20, ``augment.expand_static``; the runner does this once per cell, here it is
    charged to every epoch) and ``index_select`` shuffled model-input batches from it.
    Returns the number of batches produced."""
    from fer_bench.training.augment import expand_static, to_model_input

    augmented, augmented_targets = expand_static(images, targets, "flip_rot20", seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(augmented.shape[0], generator=generator)
    batches = 0
    for first in range(0, augmented.shape[0] - BATCH + 1, BATCH):
        index = order[first:first + BATCH]
        to_model_input(augmented.index_select(0, index), augmented.shape[-1], channels_last=True)
        augmented_targets.index_select(0, index)
        batches += 1
    return batches


def fer_bench_epoch_seconds(images: torch.Tensor, targets: torch.Tensor) -> float:
    """Median training-pass seconds of fer_bench's runner over 2 epochs on the subset."""
    from fer_bench.registry import get_model
    from fer_bench.tasks import TaskData
    from fer_bench.training.runner import resolve_cell, resolve_config, run_cell

    spec = get_model("small_cnn")
    config = resolve_config(spec, epochs=2, augmentation="none", batch_size=BATCH)
    cell = resolve_cell(spec, variant="nhot-8", split="ordinary", seed=0, config=config,
                        dataset_fingerprint="throughput", device="cpu")
    held_out = slice(0, 256)  # validation/test are evaluated each epoch; kept small here
    data = TaskData(
        cell=cell, train_images=images, train_targets=targets,
        val_images=images[held_out], val_dist=targets[held_out],
        test_images=images[held_out], test_dist=targets[held_out],
        test_complexity=torch.ones(256, dtype=torch.int64), dataset_label="ferplus",
        dataset_fingerprint="throughput", split_fingerprint="throughput",
        n_train=images.shape[0], n_val=256, n_test=256,
    )
    record = run_cell(spec, data, device="cpu")
    assert record.status == "ok", record.error
    return statistics.median(record.epoch_times_s)


def test_throughput_ratios(images_and_files, capsys, record_property):
    """Print fer_bench vs naive: (a) augmented batches/s, (b) epoch time, (c) eval images/s."""
    from fer_bench.registry import get_model

    images, targets, files = images_and_files
    n_batches = images.shape[0] // BATCH

    # Same batch layout from both pipelines.
    ours_x, ours_y = next(fer_bench_batches(images, targets))
    naive_x, naive_y = next(iter(naive_loader(files, targets, augment=True, workers=0, shuffle=True)))
    assert ours_x.shape == naive_x.shape == (BATCH, 1, 48, 48) and ours_x.dtype == naive_x.dtype
    assert ours_y.shape == naive_y.shape and ours_y.dtype == naive_y.dtype

    # (a) augmented training batches/s
    static_batches = fer_bench_static_epoch(images, targets)
    ours_a = static_batches / median_seconds(lambda: fer_bench_static_epoch(images, targets), 3)
    online_a = n_batches / median_seconds(lambda: sum(1 for _ in fer_bench_batches(images, targets)), 3)
    naive_a = {w: n_batches / median_seconds(
        lambda w=w: sum(1 for _ in naive_loader(files, targets, augment=True, workers=w, shuffle=True)), 2)
        for w in (0, 2)}

    # (b) one training epoch of small_cnn
    ours_b = fer_bench_epoch_seconds(images, targets)
    spec = get_model("small_cnn")
    naive_b = {}
    for workers in (0, 2):
        torch.manual_seed(0)
        model = spec.factory(num_classes=8, in_chans=1)
        loader = naive_loader(files, targets, augment=True, workers=workers, shuffle=True)
        naive_b[workers] = median_seconds(lambda m=model, lo=loader: naive_train_epoch(m, lo), 1)

    # (c) evaluation images/s
    from fer_bench.training.evaluate import eval_batch_size, predict

    torch.manual_seed(0)
    model = spec.factory(num_classes=8, in_chans=1)
    # Exactly as the runner evaluates: channels_last model and inputs, its batch size.
    ours_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    ours_c = images.shape[0] / median_seconds(lambda: predict(
        ours_model, images, input_size=48, batch_size=eval_batch_size(48, BATCH, images.device),
        channels_last=True, amp=False), 3)
    naive_c = {w: images.shape[0] / median_seconds(
        lambda w=w: naive_eval(model, naive_loader(files, targets, augment=False, workers=w, shuffle=False)), 1)
        for w in (0, 2)}

    best_a, best_b, best_c = max(naive_a.values()), min(naive_b.values()), max(naive_c.values())
    rows = [
        ("(a) augmented train batches/s (static 4x set)", f"{ours_a:,.0f}", f"{naive_a[0]:,.1f}",
         f"{naive_a[2]:,.1f}", ours_a / best_a, 15.0),
        ("(a') same, online per-image flip+rotation", f"{online_a:,.0f}", f"{naive_a[0]:,.1f}",
         f"{naive_a[2]:,.1f}", online_a / best_a, 0.0),
        ("(b) small_cnn epoch seconds (6400 img)", f"{ours_b:.2f}", f"{naive_b[0]:.2f}", f"{naive_b[2]:.2f}",
         best_b / ours_b, 1.3),
        ("(c) evaluation images/s", f"{ours_c:,.0f}", f"{naive_c[0]:,.0f}", f"{naive_c[2]:,.0f}",
         ours_c / best_c, 2.0),
    ]
    for name, *_, ratio, _target in rows:
        record_property(name, round(ratio, 2))
    header = f"{'measure':<46}{'fer_bench':>12}{'naive w=0':>12}{'naive w=2':>12}{'ratio':>9}{'target':>9}"
    lines = [f"throughput on {SUBSET} FERPlus images, torch threads {torch.get_num_threads()} "
             f"(ratio = fer_bench vs the better naive setting)", header, "-" * len(header)]
    lines += [f"{name:<46}{ours:>12}{n0:>12}{n2:>12}{ratio:>8.1f}x"
              + (f"{target:>8.1f}x" if target else f"{'-':>9}")
              for name, ours, n0, n2, ratio, target in rows]
    with capsys.disabled():
        print("\n" + "\n".join(lines))

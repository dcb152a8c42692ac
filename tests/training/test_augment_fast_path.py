"""The CPU fast paths of the batch data ops (fer_bench.training.augment.sets, .device): one
thread for batch-sized ops, the row select + column gather of ``random_flip_shift``; results
bit-identical."""

from __future__ import annotations

import torch

from fer_bench.training import device
from fer_bench.training.augment.sets import (
    hflip,
    random_flip_shift,
    rotate,
    to_model_input,
)
from fer_bench.training.device import (
    ONE_THREAD_MAX_ELEMENTS,
    one_thread_for_small,
    select_batch,
)


def reference_flip_shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """The first implementation (three broadcast index tensors): the same draws, the same
    index maps."""
    count, height, width = batch.shape
    flip = torch.rand(count, generator=generator) < 0.5
    shifts = torch.randint(-max_shift, max_shift + 1, (2, count), generator=generator)
    rows = (torch.arange(height)[None, :] - shifts[0][:, None]).clamp_(0, height - 1)
    cols = torch.arange(width)[None, :].expand(count, width)
    cols = torch.where(flip[:, None], width - 1 - cols, cols)
    cols = (cols - shifts[1][:, None]).clamp_(0, width - 1)
    return batch[torch.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]


def test_flip_shift_equals_the_reference_and_draws_the_same():
    batch = torch.randint(0, 256, (37, 48, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    for shift in (0, 2, 4):
        ours, theirs = torch.Generator().manual_seed(shift), torch.Generator().manual_seed(shift)
        for _ in range(3):
            assert torch.equal(random_flip_shift(batch, shift, ours), reference_flip_shift(batch, shift, theirs))
        assert torch.equal(ours.get_state(), theirs.get_state())


def test_small_ops_run_on_one_thread_and_restore_the_count():
    threads = torch.get_num_threads()
    cpu = torch.device("cpu")
    try:
        torch.set_num_threads(2)
        with one_thread_for_small(64 * 48 * 48, cpu):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with one_thread_for_small(ONE_THREAD_MAX_ELEMENTS + 1, cpu):
            assert torch.get_num_threads() == 2          # large: every thread
        try:
            with one_thread_for_small(10, cpu):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert torch.get_num_threads() == 2              # restored after an exception too
    finally:
        torch.set_num_threads(threads)


def test_one_thread_gives_bit_identical_batches(monkeypatch):
    images = torch.randint(0, 256, (64, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    angles = torch.linspace(-20, 20, 64)
    threads = torch.get_num_threads()
    outputs = []
    try:
        for count, limit in ((2, ONE_THREAD_MAX_ELEMENTS), (2, 0), (1, 0)):   # fast path, then none
            torch.set_num_threads(count)
            monkeypatch.setattr(device, "ONE_THREAD_MAX_ELEMENTS", limit)
            outputs.append((hflip(images), rotate(images, angles), to_model_input(images, 48, True),
                            to_model_input(images, 64), to_model_input(images, 24),
                            random_flip_shift(images, 4, torch.Generator().manual_seed(1)),
                            select_batch(images, torch.tensor([5, 0, 63, 5])),
                            select_batch(images.reshape(64, -1).float(), torch.arange(64).flip(0))))
    finally:
        torch.set_num_threads(threads)
    for other in outputs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outputs[0], other, strict=True))

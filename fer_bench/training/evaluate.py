"""Batched inference and the test summary of a cell's selected epoch."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from fer_bench.identity.record import CellRecord, encode_bool, encode_uint8
from fer_bench.models import logits_of
from fer_bench.training import metrics
from fer_bench.training.augment.sets import to_model_input
from fer_bench.training.device import one_thread_for_small, synchronized_time
from fer_bench.training.tta import View, apply_view, tta_views

#: Evaluation batches hold about this many input pixels (1024 images at 48x48).
EVAL_PIXELS = 1024 * 48 * 48


def autocast_for(device: torch.device, amp: bool) -> AbstractContextManager:
    """bf16 autocast on CUDA or a CPU when ``amp`` (the cell's precision "bf16"): matmuls and
    convolutions in bf16 (AMX / AVX-512 BF16 on a CPU), weights and optimizer in float32;
    nothing otherwise (and on MPS)."""
    if amp and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def eval_batch_size(input_size: int, train_batch_size: int, device: torch.device) -> int:
    """Inference batch size. On CUDA a large batch (``EVAL_PIXELS`` worth of images, at
    least the training batch) keeps the GPU busy; on a CPU the training batch is used (1024
    images ran about 2.5x slower per image than 64 here, measured before ``training.heap``
    stopped the per-batch page faults; with the heap kept, small_cnn at 256 is about 8%
    faster than at 64). The batch is not part of a cell's identity and can move a float
    rounding, so it stays what committed cells were evaluated with.
    """
    if device.type != "cuda":
        return train_batch_size
    return max(train_batch_size, EVAL_PIXELS // (input_size * input_size))


def break_low_precision_ties(logits: torch.Tensor,
                             recompute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``logits`` float32 [B, C] upcast from a lower precision; the rows whose two largest
    values are exactly equal (a tie made by rounding: argmax would pick the lower class
    index, i.e. favour neutral) are replaced by ``recompute(row_indices)`` (float32 [k, C])."""
    if logits.shape[1] < 2:
        return logits
    top2 = logits.topk(2, dim=1).values
    tied = (top2[:, 0] == top2[:, 1]).nonzero().flatten()
    if tied.numel() == 0:
        return logits
    logits = logits.clone()
    logits[tied] = recompute(tied).float()
    return logits


def fp32_logits(model: torch.nn.Module, x: torch.Tensor, *, amp: bool) -> torch.Tensor:
    """The model's logits for the batch ``x`` as float32 [B, C].

    Under bf16 autocast (``amp``, the cell's precision "bf16", CUDA or CPU) the forward runs in
    bf16 and the last layer emits bf16 logits: they are upcast to float32 here, so softmax,
    KL and argmax are computed in float32. Upcasting cannot undo rounding, though: two
    classes whose logits round to the same bf16 value tie, and argmax would give the lower
    class index. Those rows (and only those) are recomputed in float32 with autocast off,
    through the eager module when ``model`` is compiled (``_orig_mod``): their count varies,
    and each new count would be a new compiled shape.
    Without autocast (precision fp32) the forward is float32 throughout.
    """
    device = x.device
    with autocast_for(device, amp):
        logits = logits_of(model(x))
    if logits.dtype == torch.float32:
        return logits

    eager = getattr(model, "_orig_mod", model)

    def recompute(rows: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, enabled=False):
            return logits_of(eager(x.index_select(0, rows)))

    return break_low_precision_ties(logits.float(), recompute)


@torch.no_grad()
def predict(
    model: torch.nn.Module, images: torch.Tensor, *, input_size: int, batch_size: int,
    channels_last: bool, amp: bool, tta: str = "none",
) -> tuple[torch.Tensor, float]:
    """Softmax probabilities float32 [M, C] (on the images' device) and wall seconds;
    the logits are float32 before the softmax (``fp32_logits``).

    images uint8 [M, H, W]. The model is put in eval mode and left there. ``tta`` names the
    views whose probabilities are averaged (``training.tta``: "none", "flip", ...).
    """
    device = images.device
    views = tta_views(tta)
    model.eval()
    start = synchronized_time(device)
    chunks = []
    for first in range(0, images.shape[0], batch_size):
        x = to_model_input(images[first:first + batch_size], input_size, channels_last)
        probs = None
        for view in views:
            if view == View():
                seen = x
            else:
                with one_thread_for_small(x.numel(), device):   # a batch-sized copy (device.py)
                    seen = apply_view(x, view, channels_last=channels_last)
            view_probs = torch.softmax(fp32_logits(model, seen, amp=amp), dim=1)
            if len(views) == 1:
                probs = view_probs
            else:
                probs = view.weight * view_probs if probs is None else probs + view.weight * view_probs
        chunks.append(probs)
    probs = torch.cat(chunks)
    return probs, synchronized_time(device) - start


def majority_accuracy(train_targets: torch.Tensor, test_dist: torch.Tensor) -> float:
    """The chance level a model must beat, a fraction in [0, 1]: the tie-aware accuracy on
    ``test_dist`` [M, 8] of the constant predictor that always answers the most frequent
    top emotion of ``train_targets`` [T, 8] (the cell's treated training targets).

    An emotion's frequency is the number of training rows whose top shares hold it (a tied
    row counts for each tied emotion): the tie-aware training accuracy of always answering
    it. Equal frequencies go to the first emotion in ``EMOTIONS`` order. Only the training
    targets choose the answer, so the test set is never looked at to set the bar.
    """
    targets = train_targets.detach().float().cpu()
    n_classes = targets.shape[1]
    answers = torch.eye(n_classes)
    frequency = [metrics.tie_aware_accuracy(answers[k].expand(targets.shape[0], -1), targets)
                 for k in range(n_classes)]
    majority = int(np.argmax(frequency))
    return metrics.tie_aware_accuracy(answers[majority].expand(test_dist.shape[0], -1), test_dist)


def fill_test_summary(
    record: CellRecord, test_probs: torch.Tensor, test_dist: torch.Tensor,
    test_complexity: torch.Tensor, *, train_targets: torch.Tensor,
) -> None:
    """Write the selected epoch's test figures into ``record``: per-class and per-complexity
    accuracy, mean KL(true || predicted), predictions and tie-aware correctness per image,
    and the majority-class rate (``majority_accuracy`` of ``train_targets`` [T, 8])."""
    probs = test_probs.float().cpu().numpy()
    dist = test_dist.cpu().numpy()
    record.per_class_acc = metrics.per_class_accuracy(probs, dist)
    record.acc_by_complexity, record.count_by_complexity = metrics.accuracy_by_complexity(
        probs, dist, test_complexity.cpu().numpy()
    )
    record.kl_mean = metrics.mean_kl_divergence(probs, dist)
    record.test_predictions = encode_uint8(probs.argmax(axis=1).astype(np.uint8))
    record.test_correct = encode_bool(metrics.tie_aware_correct(probs, dist))
    record.majority_acc = majority_accuracy(train_targets, test_dist)

"""The recipe's ``compile`` field: evaluation through ``torch.compile``, timed apart.

``compile="eval"`` (``--fer-compile``) runs every evaluation of a cell through
``torch.compile(model, dynamic=False)`` (inductor on a CPU and on CUDA); training stays eager.
Why only evaluation: on this project's 2-core CPU (``benchmarks/compile_probe.py``,
interleaved) small_cnn's compiled evaluation ran 1.4-1.6x the eager images/s, while a
compiled training step was no faster than the runner's eager channels-last step, and a
compile costs 20-40 s per model and shape. On CUDA neither side has been measured here.

The model is compiled once per cell, before the first epoch, for every batch shape the
cell's evaluations will see (the full evaluation batch and the two remainders of the
validation and test sets), and those seconds go to ``CellRecord.compile_seconds``, never
into epoch or evaluation time. torch's compile cache lives as long as the process: a later
cell of the same architecture and shapes in the same pytest run finds its graphs compiled
and records about 0 s, so read ``compile_seconds`` as "paid by this cell". The rare bf16
tie re-check in ``evaluate.fp32_logits`` runs on the eager module (its row count varies).
Compiled outputs equal eager ones only up to floating-point rounding, which is why
``compile`` is part of the cell's identity (``TrainConfig``).
"""

from __future__ import annotations

import torch

from fer_bench.training.device import synchronized_time
from fer_bench.training.evaluate import predict


def compile_for_eval(model: torch.nn.Module, *, eval_set_sizes: set[int], input_size: int,
                     batch_size: int, channels_last: bool, amp: bool, tta: str,
                     device: torch.device) -> tuple[torch.nn.Module, float]:
    """``(compiled model, compile seconds)``: ``torch.compile(model, dynamic=False)`` warmed
    up on uint8 zeros of every evaluation set size in ``eval_set_sizes`` (e.g. {n_val, n_test}),
    so each batch shape ``predict`` will meet is compiled here.

    The compiled module shares ``model``'s parameters: training updates reach it (inductor
    reads them as graph inputs; ``torch._inductor.config.freezing`` stays off).
    """
    compiled = torch.compile(model, dynamic=False)
    shapes = {min(batch_size, n) for n in eval_set_sizes if n > 0}
    shapes |= {n % batch_size for n in eval_set_sizes if n % batch_size}
    was_training = model.training
    start = synchronized_time(device)
    for rows in sorted(shapes):
        blank = torch.zeros(rows, input_size, input_size, dtype=torch.uint8, device=device)
        predict(compiled, blank, input_size=input_size, batch_size=rows,
                channels_last=channels_last, amp=amp, tta=tta)
    seconds = synchronized_time(device) - start
    model.train(was_training)
    return compiled, seconds

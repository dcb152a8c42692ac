"""Train and evaluate one cell -> ``CellRecord`` (``run_cell``).

A cell's identity is put together in ``training.resolve`` (``resolve_config``,
``resolve_cell``); asking the store first and storing the record is
``fer_bench.results.run.get_or_run_cell``'s.

The study's recipe (SPEC "Training defaults"): Adam(lr), the configured loss on the
softmax output, ``epochs`` epochs of ``batch_size`` images with the last partial batch
dropped, a fresh seeded shuffle each epoch. Everything stays on the device: uint8 images
are indexed there batch by batch and converted to float just before the forward pass;
static augmentation is expanded once per cell.

Model selection never looks at the test set: ``acc_honest`` is the test accuracy at the
epoch with the best validation accuracy (first best on ties); ``acc_optimistic`` is the
best test accuracy over epochs, the figure the report used.

Model-level failures (any exception from model code while building, training or
evaluating; a wrong output shape, a NaN/inf loss, running out of memory) never escape: the
cell comes back with ``status=Status.FAILED``, the message (model, epoch, stage, exception)
in ``error`` (``training.failure``) and whatever was measured before. Bad configuration
raises; so does ``KeyboardInterrupt``.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from fer_bench.errors import CellFailed, CellSkipped, ConfigError, DataError, ModelError
from fer_bench.identity.config import COMPILE_EVAL, TrainConfig
from fer_bench.identity.record import CellRecord, Status, encode_bool
from fer_bench.models import ModelSpec, build_model, check_model_output
from fer_bench.training import metrics, preempt
from fer_bench.training.augment.sets import AUGMENTATIONS
from fer_bench.training.checkpoint import CheckpointFile, capture, carry, resume
from fer_bench.training.compiled import compile_for_eval
from fer_bench.training.device import CellMemory, cudnn_autotune, device_name, package_versions
from fer_bench.training.evaluate import eval_batch_size, fill_test_summary, predict
from fer_bench.training.failure import OOM_ERRORS, Stage, describe_model_failure, entering
from fer_bench.training.flops import cell_flops
from fer_bench.training.heap import heap_mode, keep_heap
from fer_bench.training.loop import (
    AUGMENT_SEED_OFFSET,
    Best,
    EpochReport,
    TrainingRun,
    train_epoch,
    training_generators,
)
from fer_bench.training.losses import draw_one_hot, get_loss
from fer_bench.training.recipe import WeightAverage, make_optimizer, make_schedule
from fer_bench.training.resolve import check_init, load_weights_file
from fer_bench.training.tasks import TaskData

__all__ = ["run_cell", "train_targets_sha256"]

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _new_record(data: TaskData, device: torch.device, profile: str,
                init_path: Path | None) -> CellRecord:
    return CellRecord(
        cell=data.cell, device=str(device), device_name=device_name(device), heap=heap_mode(),
        n_train=data.n_train, n_val=data.n_val, n_test=data.n_test,
        dataset_label=data.dataset_label, dataset_fingerprint=data.dataset_fingerprint,
        split_fingerprint=data.split_fingerprint, init_file=str(init_path or ""),
        profile=str(profile), versions=package_versions(), started_at=_now(),
        test_aligned="" if data.test_aligned is None else encode_bool(data.test_aligned),
        synthetic_taggers=data.taggers,
    )


def _build_checked_model(spec: ModelSpec, config: TrainConfig, device: torch.device,
                         init_path: Path | None) -> torch.nn.Module:
    """Build the model (initialised as ``config.init`` says) on ``device`` and check one
    forward pass gives logits [2, 8]."""
    check_init(spec, config.init)
    try:
        model = build_model(spec, num_classes=8, in_chans=1, pretrained=config.init == "imagenet")
    except ModelError as exc:
        if config.init == "imagenet":   # asked for weights that cannot be had here
            raise CellSkipped(f"ImageNet weights for model {spec.name!r} are not reachable "
                              f"({exc}); no network? give a local file with "
                              f"--fer-init file:PATH") from exc
        raise CellFailed(str(exc)) from exc
    try:
        if config.init.startswith("file:"):
            if init_path is None:
                raise CellFailed(f"init {config.init} needs the weights file's path")
            load_weights_file(model, init_path, config.init.removeprefix("file:"), spec.name)
        check_model_output(model, spec, device, input_size=config.input_size)
    except ModelError as exc:
        raise CellFailed(str(exc)) from exc
    return model.to(memory_format=torch.channels_last)


def _train_and_evaluate(spec: ModelSpec, data: TaskData, device: torch.device, record: CellRecord,
                        on_epoch: Callable[[EpochReport], None] | None,
                        init_path: Path | None, checkpoint: CheckpointFile | None,
                        cell_start: float) -> None:
    """The cell's work; fills ``record`` epoch by epoch so a failure keeps what was done.

    With ``checkpoint``, a checkpoint there is resumed from (``training.checkpoint``) and a
    new one is written after every epoch; ``cell_start``: ``perf_counter`` at the cell's start.
    """
    config, seed = data.cell.recipe, data.cell.seed
    amp = data.cell.precision == "bf16"
    # channels_last on every device: tensor cores on CUDA, and oneDNN on a CPU ran small_cnn
    # 1.3x faster (VGG16 / ResNet18 unchanged) on this project's 2-core machines.
    channels_last = True
    setup_start = time.perf_counter()
    torch.manual_seed(seed)
    with entering(Stage.BUILD):
        model = _build_checked_model(spec, config, device, init_path)
    record.params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops_start = time.perf_counter()
    record.train_flops_per_image, record.eval_flops_per_image = cell_flops(
        model, config, channels_last=channels_last, amp=amp)
    record.flops_s = time.perf_counter() - flops_start
    record.train_targets_sha256 = train_targets_sha256(data)

    augmentation = AUGMENTATIONS.get(config.augmentation)
    images, targets = augmentation.apply(data.train_images, data.train_targets, seed,
                                         data.train_meta)
    if images.shape[0] < config.batch_size:
        raise ConfigError(f"{images.shape[0]} training images are fewer than one batch of "
                          f"{config.batch_size}; lower batch_size or use more data")
    loss_fn = get_loss(config.loss)
    optimizer = make_optimizer(model, config)
    shuffle, label_draws = training_generators(seed, device)
    run = TrainingRun(
        model=model, spec=spec, config=config, optimizer=optimizer,
        schedule=make_schedule(optimizer, config, config.epochs * (images.shape[0] // config.batch_size)),
        loss_fn=loss_fn, online=augmentation.online, shuffle=shuffle, label_draws=label_draws,
        augment_draws=torch.Generator(device=device).manual_seed(seed + AUGMENT_SEED_OFFSET),
        average=WeightAverage(model, config.ema) if config.ema > 0 else None,
        channels_last=channels_last, amp=amp)
    eval_kwargs = dict(input_size=config.input_size, channels_last=channels_last, amp=amp,
                       batch_size=eval_batch_size(config.input_size, config.batch_size, device),
                       tta=config.tta)
    eval_model = run.eval_model
    if config.compile == COMPILE_EVAL:
        with entering(Stage.EVALUATION):   # the warm-up evaluates every batch shape
            eval_model, record.compile_seconds = compile_for_eval(
                eval_model, eval_set_sizes={data.n_val, data.n_test}, device=device,
                **eval_kwargs)
    trained_per_epoch = (images.shape[0] // config.batch_size) * config.batch_size
    # after compiling: the RNG states restored are the ones epoch k + 1 starts from
    resumed = resume(checkpoint, run, n_test=data.n_test, device=device) if checkpoint else None
    record.setup_s = (record.setup_s or 0.0) + (time.perf_counter() - setup_start
                                                 - record.flops_s - (record.compile_seconds or 0.0))
    best: Best | None = None
    if resumed is not None:
        carry(record, resumed)
        best = resumed.best
        _fill_rates(record, trained_per_epoch, data)
    eval_seconds = record.eval_s or 0.0
    try:
        for epoch in range(len(record.epoch_times_s) + 1, config.epochs + 1):
            epoch_targets = draw_one_hot(targets, label_draws) if loss_fn.draws_targets else targets
            with entering(Stage.TRAINING):
                seconds, mean_loss, mean_extra = train_epoch(run, images, epoch_targets, epoch)
            with entering(Stage.EVALUATION):
                val_probs, val_seconds = predict(eval_model, data.val_images, **eval_kwargs)
                test_probs, test_seconds = predict(eval_model, data.test_images, **eval_kwargs)
            eval_seconds += val_seconds + test_seconds
            # argmax of a NaN row is class 0: catch it instead of scoring it as "neutral".
            if not bool(torch.isfinite(val_probs).all() and torch.isfinite(test_probs).all()):
                raise CellFailed(f"non-finite outputs in evaluation after epoch {epoch} "
                                  f"for model {spec.name}")
            val_acc = metrics.tie_aware_accuracy(val_probs, data.val_dist)
            test_acc = metrics.tie_aware_accuracy(test_probs, data.test_dist)
            record.epoch_times_s.append(seconds)
            record.train_loss.append(mean_loss)
            if mean_extra is not None:
                record.train_extra_loss.append(mean_extra)
            record.val_acc.append(val_acc)
            record.test_acc.append(test_acc)
            record.test_top1.append(metrics.top1_accuracy(test_probs, data.test_dist))
            record.eval_s = eval_seconds
            _fill_rates(record, trained_per_epoch, data)
            if best is None or val_acc > best.val_acc:
                best = Best(epoch, val_acc, test_probs)
            if checkpoint is not None:
                wall_s = (record.wall_s or 0.0) + time.perf_counter() - cell_start
                record.checkpoint_bytes, write_s = checkpoint.save(
                    capture(run, record, best, epoch, device, wall_s))
                record.checkpoint_write_s = (record.checkpoint_write_s or 0.0) + write_s
            if on_epoch is not None:
                on_epoch(EpochReport(epoch, config.epochs, seconds, mean_loss, val_acc, test_acc))
            if epoch < config.epochs:   # a signal during evaluation or the write stops here
                preempt.check(f"after epoch {epoch}")
    finally:
        if best is not None:
            _fill_selection(record, best, data)


def _fill_rates(record: CellRecord, trained_per_epoch: int, data: TaskData) -> None:
    """Training images/s at the median epoch time; evaluation images/s over all epochs."""
    record.train_images_per_s = trained_per_epoch / statistics.median(record.epoch_times_s)
    record.eval_images_per_s = (len(record.epoch_times_s) * (data.n_val + data.n_test)
                                / max(record.eval_s or 0.0, 1e-9))


def _fill_selection(record: CellRecord, best: Best, data: TaskData) -> None:
    record.best_val_epoch = best.epoch
    record.acc_honest = record.test_acc[best.epoch - 1]
    record.acc_optimistic = max(record.test_acc)
    record.best_test_epoch = record.test_acc.index(record.acc_optimistic) + 1
    record.acc_top1_honest = record.test_top1[best.epoch - 1]
    record.acc_top1_optimistic = max(record.test_top1)
    fill_test_summary(record, best.test_probs, data.test_dist, data.test_complexity,
                      train_targets=data.train_targets)
    if data.test_full_dist is not None:   # split scored otherwise (official-majority)
        record.acc_tie_aware = metrics.tie_aware_accuracy(best.test_probs, data.test_full_dist)
    if data.test_truth is not None:   # synthetic data: its hidden distributions are known
        record.kl_true_mean, record.acc_true_top = metrics.truth_recovery(best.test_probs,
                                                                          data.test_truth)


def train_targets_sha256(data: TaskData) -> str:
    """Hex sha256 of the training data's identity: the split fingerprint (which images, in
    which order) and the treated targets, float32 [T, 8] little-endian, before augmentation.
    Equal values mean the cells trained on identical images and targets."""
    digest = hashlib.sha256(data.split_fingerprint.encode())
    targets = data.train_targets.detach().to("cpu", torch.float32).contiguous().numpy()
    digest.update(targets.astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def _on_device(data: TaskData, device: torch.device) -> TaskData:
    if data.device == device:
        return data
    tensors = ("train_images", "train_targets", "val_images", "val_dist", "test_images",
               "test_dist", "test_complexity")
    return replace(data, **{name: getattr(data, name).to(device) for name in tensors})


def run_cell(spec: ModelSpec, data: TaskData, *, device: str | torch.device | None = None,
             on_epoch: Callable[[EpochReport], None] | None = None, profile: str = "",
             init_path: Path | None = None, setup_seconds: float = 0.0,
             checkpoint: CheckpointFile | None = None) -> CellRecord:
    """Train ``spec`` on ``data`` as its cell (``data.cell``) says; return the ``CellRecord``.

    ``device`` defaults to where ``data`` lives (data elsewhere is moved there once).
    The same cell on a CPU is reproducible: ``torch.manual_seed(task.seed)`` before the
    model is built, a generator seeded with it for shuffling, another for PLD. On CUDA,
    ``cudnn.benchmark`` and cuDNN's nondeterministic backward kernels make repeated runs
    agree only up to floating-point noise.
    Peak memory is this cell's alone (``device.CellMemory``): CUDA peak allocated during
    the cell, or on a CPU the peak growth of the resident set over its level when the cell
    started (``memory_kind`` "host_rss_cell_delta").

    Failure isolation: any exception from model code (building, a training step, an
    evaluation pass) ends the cell with ``Status.FAILED`` and an ``error`` naming the
    model, the epoch, the stage and the exception (type and message); the epochs finished
    before it stay in the record. Bad configuration (``ConfigError``, ``DataError``) and
    ``CellSkipped`` raise; ``KeyboardInterrupt`` stops the run (cells finished before it
    are already stored by ``results.run.get_or_run_cell``).
    ``setup_seconds``: time already spent building ``data`` (counted in ``setup_s``).
    On CUDA, ``cudnn.benchmark`` is on for this cell only (``device.cudnn_autotune``).
    ``checkpoint``: the cell's epoch checkpoint (``training.checkpoint``): continued from
    when there is one to trust, rewritten after every epoch (the caller removes it once the
    record is stored). A SIGTERM / SIGUSR1 noted by ``preempt`` raises ``CellPreempted``
    at the next safe point.
    """
    cell_start = time.perf_counter() - setup_seconds
    keep_heap()   # no page faults per batch (training.heap); process-wide, once
    device = torch.device(device) if device is not None else data.device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type != data.cell.device_type:
        raise ConfigError(f"cell {data.cell.id} is defined for device type "
                          f"{data.cell.device_type!r} but would run on {device}")
    if spec.name != data.cell.model:
        raise ConfigError(f"model {spec.name!r} does not match cell {data.cell.id}")
    config = data.cell.recipe
    data = _on_device(data, device)
    record = _new_record(data, device, profile, init_path)
    record.setup_s = setup_seconds
    memory = CellMemory(device).start()
    release = False
    try:
        with cudnn_autotune(device):
            _train_and_evaluate(spec, data, device, record, on_epoch, init_path, checkpoint,
                                cell_start)
    except CellFailed as exc:
        record.status, record.error = Status.FAILED, str(exc)
    except OOM_ERRORS:
        release = True
        record.status = Status.FAILED
        record.error = (f"out of memory on {device} for model {spec.name} with batch size "
                        f"{config.batch_size} (input {config.input_size}px); lower the batch size")
    except (CellSkipped, ConfigError, DataError):
        raise
    except Exception as exc:   # model code: the cell fails, the grid goes on
        release = True
        record.status, record.error = Status.FAILED, describe_model_failure(spec.name, record, exc)
        log.debug("cell %s failed:\n%s", data.cell.id,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    finally:
        record.peak_memory_bytes, record.memory_kind = memory.stop()
    if release:  # outside the except block, so the traceback no longer pins the tensors
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record.finished_at = _now()
    record.wall_s = (record.wall_s or 0.0) + time.perf_counter() - cell_start   # + earlier processes'
    return record

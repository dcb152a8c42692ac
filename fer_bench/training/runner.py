"""Train and evaluate one cell -> ``CellRecord``.

``resolve_config`` and ``resolve_cell`` are the one place a cell's identity is put
together (SPEC defaults < model spec < profile < user, then the dataset fingerprint,
device type, effective precision and the model's release).

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
cell comes back with ``status="failed"``, the message (model, epoch, exception) in
``error`` and whatever was measured before. Bad configuration raises; so does
``KeyboardInterrupt``.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import statistics
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from fer_bench import metrics
from fer_bench.cell import (
    DEFAULT_ALIGNMENT,
    Cell,
    InitChoice,
    effective_precision,
    file_sha256,
    resolve_init,
)
from fer_bench.config import COMPILE_EVAL, TrainConfig
from fer_bench.data.variants import LABELS
from fer_bench.errors import CellFailed, CellSkipped, ConfigError, DataError, ModelError
from fer_bench.record import CellRecord, encode_bool
from fer_bench.registry import ModelSpec, build_model, check_model_output, logits_of
from fer_bench.tasks import TaskData, build_task_data
from fer_bench.training.augment import (
    AUGMENTATIONS,
    check_augmentation,
    to_model_input,
)
from fer_bench.training.compiled import compile_for_eval
from fer_bench.training.device import (
    CellMemory,
    cpu_has_bf16,
    default_device,
    device_name,
    package_versions,
    select_batch,
    synchronized_time,
)
from fer_bench.training.evaluate import (
    autocast_for,
    eval_batch_size,
    fill_test_summary,
    predict,
)
from fer_bench.training.flops import cell_flops
from fer_bench.training.losses import Loss, draw_one_hot, get_loss
from fer_bench.training.recipe import WeightAverage, check_recipe, make_optimizer, make_schedule

__all__ = ["EpochReport", "default_device", "get_or_run_cell", "resolve_cell", "resolve_config",
           "run_cell"]

log = logging.getLogger(__name__)
_OOM_ERRORS: tuple[type[BaseException], ...] = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)
_SPEC_CONFIG_FIELDS = ("epochs", "lr", "batch_size", "loss", "augmentation", "input_size")


@dataclass(frozen=True)
class EpochReport:
    """What ``on_epoch`` hears after each epoch (``epoch`` is 1-based; accuracies in [0, 1])."""

    epoch: int
    epochs: int
    train_seconds: float
    train_loss: float
    val_acc: float
    test_acc: float


def resolve_config(spec: ModelSpec, **overrides: Any) -> TrainConfig:
    """SPEC defaults < the spec's non-None preferences (named fields, then ``spec.recipe``)
    < non-None ``overrides``.

    ``init`` may be given as the user wrote it ("file:PATH"); it is stored resolved
    ("file:<sha256>"). Raises ``ConfigError`` for an unknown loss, augmentation or init,
    TypeError for an unknown field.
    """
    from_spec = {name: getattr(spec, name) for name in _SPEC_CONFIG_FIELDS}
    config = (TrainConfig().with_overrides(**from_spec).with_overrides(**spec.recipe)
              .with_overrides(**overrides))
    get_loss(config.loss)
    check_augmentation(config.augmentation)
    check_recipe(config)
    if not 0.0 <= config.label_smoothing < 1.0 or config.tta not in ("none", "flip"):
        raise ConfigError(f"label_smoothing must be in [0, 1) and tta 'none' or 'flip': {config}")
    config = replace(config, init=resolve_init(config.init).name)
    if config.epochs < 1 or config.batch_size < 1 or config.input_size < 1:
        raise ConfigError(f"epochs, batch_size and input_size must be >= 1: {config}")
    return config


def resolve_cell(spec: ModelSpec, *, variant: str, split: str, seed: int, config: TrainConfig,
                 dataset_fingerprint: str, device: str | torch.device,
                 precision: str = "auto", alignment: str = DEFAULT_ALIGNMENT) -> Cell:
    """The complete identity of ``spec`` trained with ``config`` on this data and device.

    ``precision``: "auto" | "fp32" | "bf16" as asked (``--fer-precision``); the cell holds
    the effective one (``cell.effective_precision``: "auto" is bf16 on CUDA, the model's
    ``cpu_precision`` on a CPU with bf16 units).
    ``alignment``: the aligner output the cell uses (``data.alignment.cell_alignment``);
    ``ConfigError`` when the augmentation needs landmarks and it has none."""
    from fer_bench.data.alignment import check_cell_alignment
    from fer_bench.data.splits import SPLITS

    LABELS.get(variant)
    SPLITS.get(split)
    check_cell_alignment(alignment, config.augmentation)
    device_type = torch.device(device).type
    return Cell(model=spec.name, variant=variant, split=split, seed=int(seed), recipe=config,
                model_release=spec.release or "unregistered", alignment=alignment,
                dataset=dataset_fingerprint,
                device_type=device_type,
                precision=effective_precision(device_type, precision,
                                              model_cpu_precision=spec.cpu_precision,
                                              cpu_has_bf16=device_type == "cpu" and cpu_has_bf16()))


#: Offset of the PLD label-draw stream's seed from the shuffle stream's (both torch generators).
LABEL_DRAW_SEED_OFFSET = 1_000_003
#: Offset of the online-augmentation stream's seed (random mirror / shift of each batch).
AUGMENT_SEED_OFFSET = 2_000_003


def training_generators(seed: int, device: torch.device | str) -> tuple[torch.Generator, torch.Generator]:
    """(shuffle, label draws): the runner's two seeded torch random streams on ``device``."""
    shuffle = torch.Generator(device=device).manual_seed(seed)
    return shuffle, torch.Generator(device=device).manual_seed(seed + LABEL_DRAW_SEED_OFFSET)


def check_init(spec: ModelSpec, init: InitChoice | str) -> None:
    """Raise ``CellSkipped`` when ``spec`` cannot take ``init`` (ImageNet weights it has not)."""
    name = init.name if isinstance(init, InitChoice) else init
    if name == "imagenet" and not spec.pretrained_available:
        raise CellSkipped(f"model {spec.name!r} has no ImageNet weights (init=imagenet); "
                          f"use --fer-init scratch or file:PATH")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _new_record(data: TaskData, device: torch.device, profile: str,
                init_path: Path | None) -> CellRecord:
    return CellRecord(
        cell=data.cell, device=str(device), device_name=device_name(device),
        n_train=data.n_train, n_val=data.n_val, n_test=data.n_test,
        dataset_label=data.dataset_label, dataset_fingerprint=data.dataset_fingerprint,
        split_fingerprint=data.split_fingerprint, init_file=str(init_path or ""),
        profile=profile, versions=package_versions(), started_at=_now(),
        test_aligned="" if data.test_aligned is None else encode_bool(data.test_aligned),
        synthetic_taggers=data.taggers,
    )


def load_weights_file(model: torch.nn.Module, path: Path, expected_sha256: str, model_name: str) -> int:
    """Load a local weights file into ``model``; returns the number of tensors loaded.

    ``.safetensors`` or a torch file read with ``weights_only=True`` (never a pickle of
    code); ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers are unwrapped. Tensors whose
    name and shape match are loaded (a new classifier head stays initialised). Raises
    ``CellFailed`` when the file changed since its sha256 was taken or nothing matches.
    """
    if file_sha256(path) != expected_sha256:
        raise CellFailed(f"weights file {path} changed since the cell was defined (sha256)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = model.state_dict()
    matching = {k: v for k, v in state.items()
                if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not matching:
        raise CellFailed(f"weights file {path}: no tensor matches model {model_name!r} "
                         f"({len(state)} tensors in the file)")
    model.load_state_dict(matching, strict=False)
    return len(matching)


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


@dataclass
class _Training:
    """What one cell's training loop holds (built once per cell by ``_train_and_evaluate``)."""

    model: torch.nn.Module
    spec: ModelSpec
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Loss
    online: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    shuffle: torch.Generator
    augment_draws: torch.Generator
    average: WeightAverage | None
    channels_last: bool
    amp: bool

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights evaluation and model selection use (the average when ``ema`` > 0)."""
        return self.average.model if self.average is not None else self.model


def _train_epoch(run: _Training, images: torch.Tensor, targets: torch.Tensor,
                 epoch: int) -> tuple[float, float]:
    """One pass over ``images`` in shuffled full batches; returns (seconds, mean loss).

    Per-batch losses stay on the device and are checked once at the end of the epoch (no
    per-batch host sync); a NaN/inf loss raises ``CellFailed`` naming epoch and batch.
    """
    model, config, device = run.model, run.config, images.device
    model.train()
    batch_size = config.batch_size
    n_batches = images.shape[0] // batch_size
    batch_losses = torch.zeros(n_batches, device=device)
    smoothing = config.label_smoothing
    start = synchronized_time(device)
    order = torch.randperm(images.shape[0], generator=run.shuffle, device=device)
    for b in range(n_batches):
        index = order[b * batch_size:(b + 1) * batch_size]
        batch = select_batch(images, index)
        if run.online is not None:
            batch = run.online(batch, run.augment_draws)
        x = to_model_input(batch, config.input_size, run.channels_last)
        y = select_batch(targets, index)
        # the model's own extra term sees the unsmoothed targets (e.g. MTEN's support head)
        y_loss = y * (1.0 - smoothing) + smoothing / y.shape[1] if smoothing else y
        with autocast_for(device, run.amp):
            outputs = model(x)
            logits = logits_of(outputs)
            loss = run.loss_fn(logits, y_loss)
            if run.spec.extra_loss is not None:
                extra = run.spec.extra_loss(model, outputs, logits, y)
                if extra is not None:
                    loss = loss + extra.float()
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.schedule.step()
        if run.average is not None:
            run.average.update(model)
        batch_losses[b] = loss.detach()
    seconds = synchronized_time(device) - start
    finite = torch.isfinite(batch_losses)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0]) + 1
        kind = "NaN" if bool(torch.isnan(batch_losses[bad - 1])) else "infinite"
        raise CellFailed(f"{kind} loss at epoch {epoch}, batch {bad} for model {run.spec.name}")
    return seconds, float(batch_losses.mean())


@dataclass
class _Best:
    """Test probabilities of the epoch with the best validation accuracy so far."""

    epoch: int
    val_acc: float
    test_probs: torch.Tensor


def _train_and_evaluate(spec: ModelSpec, data: TaskData, device: torch.device, record: CellRecord,
                        on_epoch: Callable[[EpochReport], None] | None,
                        init_path: Path | None) -> None:
    """The cell's work; fills ``record`` epoch by epoch so a failure keeps what was done."""
    config, seed = data.cell.recipe, data.cell.seed
    amp = data.cell.precision == "bf16"
    # channels_last on every device: tensor cores on CUDA, and oneDNN on a CPU ran small_cnn
    # 1.3x faster (VGG16 / ResNet18 unchanged) on this project's 2-core machines.
    channels_last = True
    setup_start = time.perf_counter()
    torch.manual_seed(seed)
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
    run = _Training(
        model=model, spec=spec, config=config, optimizer=optimizer,
        schedule=make_schedule(optimizer, config, config.epochs * (images.shape[0] // config.batch_size)),
        loss_fn=loss_fn, online=augmentation.online, shuffle=shuffle,
        augment_draws=torch.Generator(device=device).manual_seed(seed + AUGMENT_SEED_OFFSET),
        average=WeightAverage(model, config.ema) if config.ema > 0 else None,
        channels_last=channels_last, amp=amp)
    eval_kwargs = dict(input_size=config.input_size, channels_last=channels_last, amp=amp,
                       batch_size=eval_batch_size(config.input_size, config.batch_size, device),
                       flip_tta=config.tta == "flip")
    eval_model = run.eval_model
    if config.compile == COMPILE_EVAL:
        eval_model, record.compile_seconds = compile_for_eval(
            eval_model, eval_set_sizes={data.n_val, data.n_test}, device=device, **eval_kwargs)
    trained_per_epoch = (images.shape[0] // config.batch_size) * config.batch_size
    record.setup_s = (record.setup_s or 0.0) + (time.perf_counter() - setup_start
                                                 - record.flops_s - (record.compile_seconds or 0.0))
    eval_seconds = 0.0
    best: _Best | None = None
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_targets = draw_one_hot(targets, label_draws) if loss_fn.draws_targets else targets
            seconds, mean_loss = _train_epoch(run, images, epoch_targets, epoch)
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
            record.val_acc.append(val_acc)
            record.test_acc.append(test_acc)
            record.test_top1.append(metrics.top1_accuracy(test_probs, data.test_dist))
            record.eval_s = eval_seconds
            record.train_images_per_s = trained_per_epoch / statistics.median(record.epoch_times_s)
            record.eval_images_per_s = epoch * (data.n_val + data.n_test) / max(eval_seconds, 1e-9)
            if best is None or val_acc > best.val_acc:
                best = _Best(epoch, val_acc, test_probs)
            if on_epoch is not None:
                on_epoch(EpochReport(epoch, config.epochs, seconds, mean_loss, val_acc, test_acc))
    finally:
        if best is not None:
            _fill_selection(record, best, data)


def _fill_selection(record: CellRecord, best: _Best, data: TaskData) -> None:
    record.best_val_epoch = best.epoch
    record.acc_honest = record.test_acc[best.epoch - 1]
    record.acc_optimistic = max(record.test_acc)
    record.best_test_epoch = record.test_acc.index(record.acc_optimistic) + 1
    record.acc_top1_honest = record.test_top1[best.epoch - 1]
    record.acc_top1_optimistic = max(record.test_top1)
    fill_test_summary(record, best.test_probs, data.test_dist, data.test_complexity)
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


#: Functions whose frames tell the stage an exception came from: (file name, function).
_STAGES = {("runner.py", "_build_checked_model"): "building the model",
           ("runner.py", "_train_epoch"): "training",
           ("evaluate.py", "predict"): "evaluation"}
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)


def describe_model_failure(model: str, record: CellRecord, exc: BaseException) -> str:
    """The ``error`` of a cell ended by ``exc`` from model code: model, epoch, stage,
    the exception's type and message, and where it was raised (outside torch)."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    stage = ""
    for frame, _ in frames:
        key = (Path(frame.f_code.co_filename).name, frame.f_code.co_name)
        stage = _STAGES.get(key, stage)
    epoch = len(record.epoch_times_s) + 1
    if stage == "building the model" or (not stage and record.params is None):
        when = "while building the model (before epoch 1)"
    else:
        when = f"in epoch {epoch}" + (f" ({stage})" if stage else "")
    where = ""
    outside_torch = [(f, n) for f, n in frames if not f.f_code.co_filename.startswith(_TORCH_DIR)]
    if outside_torch or frames:
        frame, lineno = (outside_torch or frames)[-1]
        where = f" at {Path(frame.f_code.co_filename).name}:{lineno}"
    message = " ".join(str(exc).split()) or "(no message)"
    return f"model {model} raised {type(exc).__name__} {when}{where}: {message}"


def run_cell(spec: ModelSpec, data: TaskData, *, device: str | torch.device | None = None,
             on_epoch: Callable[[EpochReport], None] | None = None, profile: str = "",
             init_path: Path | None = None, setup_seconds: float = 0.0) -> CellRecord:
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
    evaluation pass) ends the cell with ``status="failed"`` and an ``error`` naming the
    model, the epoch, the stage and the exception (type and message); the epochs finished
    before it stay in the record. Bad configuration (``ConfigError``, ``DataError``) and
    ``CellSkipped`` raise; ``KeyboardInterrupt`` stops the run (cells finished before it
    are already stored by ``get_or_run_cell``).
    ``setup_seconds``: time already spent building ``data`` (counted in ``setup_s``).
    """
    cell_start = time.perf_counter() - setup_seconds
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
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    record = _new_record(data, device, profile, init_path)
    record.setup_s = setup_seconds
    memory = CellMemory(device).start()
    release = False
    try:
        _train_and_evaluate(spec, data, device, record, on_epoch, init_path)
    except CellFailed as exc:
        record.status, record.error = "failed", str(exc)
    except _OOM_ERRORS:
        release = True
        record.status = "failed"
        record.error = (f"out of memory on {device} for model {spec.name} with batch size "
                        f"{config.batch_size} (input {config.input_size}px); lower the batch size")
    except (CellSkipped, ConfigError, DataError):
        raise
    except Exception as exc:   # model code: the cell fails, the grid goes on
        release = True
        record.status, record.error = "failed", describe_model_failure(spec.name, record, exc)
        log.debug("cell %s failed:\n%s", data.cell.id,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    finally:
        record.peak_memory_bytes, record.memory_kind = memory.stop()
    if release:  # outside the except block, so the traceback no longer pins the tensors
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record.finished_at = _now()
    record.wall_s = time.perf_counter() - cell_start
    return record


def _usable(stored: CellRecord | None, clean: Any) -> bool:
    """A stored record ``get_or_run_cell`` may return for data ``clean``: ok, and carrying
    the ground-truth metrics when the data has a ``GroundTruth``."""
    return (stored is not None and stored.status == "ok"
            and (getattr(clean, "truth", None) is None or stored.kl_true_mean is not None))


def get_or_run_cell(store: Any, spec: ModelSpec, clean: Any, cell: Cell, *,
                    device: str | torch.device | None = None, rerun: bool = False,
                    on_epoch: Callable[[EpochReport], None] | None = None,
                    profile: str = "", init_path: Path | None = None,
                    experiment: str = "") -> tuple[CellRecord, bool]:
    """The stored record of exactly ``cell``, or train it and store the result.

    Returns (record, from_store). The store (a ``fer_bench.store.ResultStore``) is asked
    before any task data is built. A stored failed record is retried, not returned;
    ``rerun`` trains regardless. Every finished cell, failed ones included, is stored.
    ``cell.dataset`` must be ``clean``'s fingerprint.

    Training happens under the store's claim on the cell (``ResultStore.claim``): a cell
    another process is training is waited for, and the record it wrote meanwhile (ok or
    failed) is returned from the store instead of training the cell a second time.
    A stored record of data with a ``GroundTruth`` (synthetic) that lacks ``kl_true_mean``
    (written before it was recorded) is trained again, so every such record carries it.
    """
    if cell.dataset != clean.fingerprint:
        raise ConfigError(f"cell {cell.id} names dataset {cell.dataset!r}, the data given is "
                          f"{clean.fingerprint!r}")
    if not rerun:
        stored = store.get(cell)
        if _usable(stored, clean):
            return stored, True
    claim = getattr(store, "claim", None)
    with claim(cell) if claim is not None else nullcontext() as written_meanwhile:
        if written_meanwhile is not None:
            return written_meanwhile, True
        stored = None if rerun else store.get(cell)       # finished before our claim?
        if _usable(stored, clean):
            return stored, True
        device = torch.device(device or default_device())
        setup_start = time.perf_counter()
        data = build_task_data(clean, cell, device=device)
        record = run_cell(spec, data, device=device, on_epoch=on_epoch, profile=profile,
                          init_path=init_path, setup_seconds=time.perf_counter() - setup_start)
        record.experiment = experiment
        store_start = time.perf_counter()
        store.put(record)
        # The file then holds the time of its own first write (a second write, a few ms).
        record.store_s = time.perf_counter() - store_start
        record.wall_s = (record.wall_s or 0.0) + record.store_s
        store.put(record)
    return record, False

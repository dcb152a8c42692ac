"""``fer-bench run``: train and evaluate one cell, or show it from the result store."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.table import Table

from fer_bench.console import wide_console
from fer_bench.identity.record import CellRecord
from fer_bench.training.loop import EpochReport

MIB = 1024 * 1024


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}%"


def _epoch_line(report: EpochReport) -> str:
    return (f"epoch {report.epoch}/{report.epochs}  train {report.train_seconds:.1f}s  "
            f"loss {report.train_loss:.4f}  val {_percent(report.val_acc)}  "
            f"test {_percent(report.test_acc)}")


def _dataset_text(record: CellRecord) -> str:
    if record.dataset_label == "synthetic":
        return "SYNTHETIC (procedural faces, not FERPlus: numbers say nothing about FER)"
    return record.dataset_label


def record_table(record: CellRecord, store_path: str, from_store: bool) -> Table:
    """A two-column rich table of one cell record."""
    title = f"{record.cell_id}  ({'from store' if from_store else 'trained now'})"
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, str]] = [("status", record.status)]
    if record.error:
        rows.append(("error", record.error))
    rows += [
        ("dataset", _dataset_text(record)),
        ("images train / val / test", f"{record.n_train} / {record.n_val} / {record.n_test}"),
        ("accuracy (honest: best-val epoch)",
         f"{_percent(record.acc_honest)}  (epoch {record.best_val_epoch})"),
        ("accuracy (optimistic: best test epoch)",
         f"{_percent(record.acc_optimistic)}  (epoch {record.best_test_epoch})"),
        *([("accuracy (tie-aware, same predictions)", _percent(record.acc_tie_aware))]
          if record.acc_tie_aware is not None else []),
        ("val accuracy per epoch", "  ".join(_percent(v) for v in record.val_acc) or "-"),
        ("test accuracy per epoch", "  ".join(_percent(v) for v in record.test_acc) or "-"),
        ("per class", "  ".join(f"{k} {_percent(v)}" for k, v in record.per_class_acc.items()) or "-"),
        ("by complexity X", "  ".join(f"{k}:{_percent(v)} (n={record.count_by_complexity.get(k, 0)})"
                                      for k, v in record.acc_by_complexity.items() if v is not None) or "-"),
        ("mean KL(true || pred)", "-" if record.kl_mean is None else f"{record.kl_mean:.4f} nats"),
        ("epoch times", "  ".join(f"{s:.1f}s" for s in record.epoch_times_s) or "-"),
        ("train images/s", "-" if record.train_images_per_s is None else f"{record.train_images_per_s:,.0f}"),
        ("eval images/s", "-" if record.eval_images_per_s is None else f"{record.eval_images_per_s:,.0f}"),
        ("peak memory", "-" if record.peak_memory_bytes is None
         else f"{record.peak_memory_bytes / MIB:,.1f} MiB ({record.memory_kind})"),
        ("parameters", "-" if record.params is None else f"{record.params:,}"),
        ("device", f"{record.device} ({record.device_name})"),
        ("recipe", " ".join(f"{k}={v}" for k, v in record.config.items())),
        ("identity", f"protocol {record.cell.protocol}, {record.cell.model_release}, "
                     f"{record.cell.device_type} {record.cell.precision}, dataset {record.cell.dataset}"),
        ("store", store_path + ("  (from store)" if from_store else "")),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _as_option_error(option: str, check, *args):
    """``check(*args)``; a ``ConfigError`` it raises is re-raised naming ``option``."""
    from fer_bench.errors import ConfigError

    try:
        return check(*args)
    except ConfigError as exc:
        message = str(exc).replace(f"--fer-{option.removeprefix('--')}", option)
        raise ConfigError(message if option in message else f"argument {option}: {message}") from None


def check_device(device: str) -> None:
    """``ConfigError`` (exit 2) when ``device`` names an accelerator this machine lacks."""
    import torch

    from fer_bench.errors import ConfigError

    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"argument --device: {device!r} asked for, but CUDA is not "
                              f"available on this machine; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"argument --device: {device!r}: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s), cuda:0.."
                              f"cuda:{torch.cuda.device_count() - 1}")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None)
                                and torch.backends.mps.is_available()):
        raise ConfigError(f"argument --device: {device!r} asked for, but MPS is not available "
                          f"on this machine; use --device cpu")


def run_command(args: Any) -> int:
    """Run ``fer-bench run``; returns 0 when the cell is ok, 1 when it failed (the record
    is printed, then one ``fer-bench: error:`` line on stderr).

    Every option is checked before the data is loaded; a bad one raises ``ConfigError``
    naming it (``fer_bench.cli.main`` prints it as one line, exit 2).
    """
    from fer_bench.data.align.axis import align_clean, check_alignment, resolve_alignment
    from fer_bench.data.cache import load_dataset
    from fer_bench.data.clean import clean
    from fer_bench.data.labels.treatments import LABELS, nhot_variant
    from fer_bench.data.splits import SPLITS
    from fer_bench.errors import ConfigError
    from fer_bench.identity.cell import resolve_init
    from fer_bench.identity.config import COMPILE_EVAL
    from fer_bench.models import MODELS, get_model
    from fer_bench.results.run import get_or_run_cell
    from fer_bench.results.store import ResultStore
    from fer_bench.training.augment.sets import check_augmentation, needs_landmarks
    from fer_bench.training.device import default_device
    from fer_bench.training.losses import get_loss
    from fer_bench.training.resolve import resolve_cell, resolve_config
    from fer_bench.training.tasks import cleaning_rule

    # Progress goes to stderr so that --json output on stdout stays parseable.
    console = wide_console(sys.stderr if args.json else sys.stdout)
    if args.model not in MODELS:
        raise ConfigError(f"argument --model: {MODELS.unknown_message(args.model, MODELS.names())}")
    spec = get_model(args.model)
    init = _as_option_error("--init", resolve_init, args.init)
    if args.loss is not None:
        _as_option_error("--loss", get_loss, args.loss)
    if args.augmentation is not None:
        _as_option_error("--augmentation", check_augmentation, args.augmentation)
    config = resolve_config(spec, epochs=args.epochs, loss=args.loss,
                            augmentation=args.augmentation, init=init.name,
                            compile=COMPILE_EVAL if args.compile else None)
    variant = args.variant or nhot_variant(args.nhot if args.nhot is not None else 8)
    _as_option_error("--variant" if args.variant else "--nhot", LABELS.get, variant)
    _as_option_error("--split", SPLITS.get, args.split)
    rule = _as_option_error("--split", cleaning_rule, variant, args.split)
    aligner = _as_option_error("--alignment", check_alignment, args.alignment)
    alignment, use = resolve_alignment(aligner, landmarks=needs_landmarks(config.augmentation))
    device = args.device or default_device()
    check_device(device)
    store = ResultStore(args.results)
    raw = load_dataset(args.data, format=args.format, labels=args.labels)
    data = clean(raw, rule)
    if use is not None:   # the aligner's cache, else it runs on every core
        data = align_clean(raw, data, use.aligner)
    cell = resolve_cell(spec, variant=variant, split=args.split, seed=args.seed, config=config,
                        dataset_fingerprint=data.fingerprint, device=device,
                        precision=args.precision, alignment=alignment)
    console.print(f"{cell.id} on {data.label} ({len(data)} images), device {device}, "
                  f"identity {cell.digest()}")

    def on_epoch(report: EpochReport) -> None:
        console.print(_epoch_line(report), highlight=False)

    record, from_store = get_or_run_cell(store, spec, data, cell, device=device, rerun=args.rerun,
                                         on_epoch=on_epoch, init_path=init.path, experiment="run")
    store_path = str(store.path(cell))
    if args.json:
        payload = {"record": record.to_dict(), "store_path": store_path, "from_store": from_store}
        sys.stdout.write(json.dumps(payload, indent=1) + "\n")
    else:
        console.print(record_table(record, store_path, from_store))
    if record.status != "ok":
        print(f"fer-bench: error: cell {record.cell_id} failed: {record.error}", file=sys.stderr)
        return 1
    return 0

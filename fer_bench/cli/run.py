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


#: ``fer-bench run``'s option of each ``CellRequest`` field, named in its error messages.
RUN_OPTIONS = {"model": "--model", "split": "--split", "seed": "--seed", "loss": "--loss",
               "augmentation": "--augmentation", "init": "--init", "alignment": "--alignment",
               "epochs": "--epochs", "precision": "--precision", "device": "--device"}


def plan_run(args: Any) -> Any:
    """The checked plan (``planning.cells.CellPlan``) of ``fer-bench run``'s options: the
    variant is ``--variant``, else ``nhot-<--nhot>``, else ``nhot-8``. A bad option raises
    ``ConfigError`` naming it (``argument --loss: unknown loss ...``); nothing is loaded."""
    from fer_bench.data.labels.treatments import nhot_variant
    from fer_bench.planning.cells import DEFAULT_VARIANT, CellRequest, OptionNames, plan_cell

    if args.variant:
        variant, variant_option = args.variant, "--variant"
    else:
        variant = DEFAULT_VARIANT if args.nhot is None else nhot_variant(args.nhot)
        variant_option = "--nhot"
    request = CellRequest(model=args.model, variant=variant, split=args.split, seed=args.seed,
                          loss=args.loss, augmentation=args.augmentation, init=args.init,
                          alignment=args.alignment, epochs=args.epochs, compile=args.compile,
                          precision=args.precision, device=args.device)
    names = OptionNames({**RUN_OPTIONS, "variant": variant_option}, prefix="argument ")
    return plan_cell(request, names)


def load_run_data(args: Any, plan: Any) -> Any:
    """The data of ``fer-bench run``'s cell: ``--data`` loaded, cleaned by the plan's rule,
    with its aligner's output attached when it reads one (from the aligner's cache, else the
    aligner runs on every core)."""
    from fer_bench.data.align.axis import DEFAULT_ALIGNMENT, align_clean
    from fer_bench.data.cache import load_dataset
    from fer_bench.data.clean import clean

    raw = load_dataset(args.data, format=args.format, labels=args.labels)
    data = clean(raw, plan.cleaning)
    if plan.aligner != DEFAULT_ALIGNMENT:
        data = align_clean(raw, data, plan.aligner)
    return data


def run_command(args: Any) -> int:
    """Run ``fer-bench run``; returns 0 when the cell is ok, 1 when it failed (the record
    is printed, then one ``fer-bench: error:`` line on stderr).

    Every option is checked before the data is loaded (``plan_run``); a bad one raises
    ``ConfigError`` naming it (``fer_bench.cli.main`` prints it as one line, exit 2).
    """
    from fer_bench.results.run import get_or_run_cell
    from fer_bench.results.store import ResultStore

    # Progress goes to stderr so that --json output on stdout stays parseable.
    console = wide_console(sys.stderr if args.json else sys.stdout)
    plan = plan_run(args)
    store = ResultStore(args.results)
    data = load_run_data(args, plan)
    cell = plan.cell(data.fingerprint)
    console.print(f"{cell.id} on {data.label} ({len(data)} images), device {plan.device}, "
                  f"identity {cell.digest()}")

    def on_epoch(report: EpochReport) -> None:
        console.print(_epoch_line(report), highlight=False)

    record, from_store = get_or_run_cell(store, plan.spec, data, cell, device=plan.device,
                                         rerun=args.rerun, on_epoch=on_epoch,
                                         init_path=plan.init_path, experiment="run")
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

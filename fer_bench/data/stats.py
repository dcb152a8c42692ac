"""``fer-bench data stats``: what a data source holds, what cleaning keeps, split sizes.

``compute_stats`` builds one plain dict (the ``--json`` output, keys fixed below);
the terminal view draws the same dict with rich.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from fer_bench.data.schema import USAGES, RawDataset

#: The keys of the JSON object, in output order.
STATS_KEYS: tuple[str, ...] = (
    "data_label", "path", "format", "labels", "rows", "images", "unnamed_rows",
    "duplicate_names", "duplicate_name_list", "votes_differ", "kept", "kept_by_usage",
    "complexity_histogram", "complex_pool", "splits", "literature", "fingerprint", "warnings",
)
_MAX_COMPLEXITY = 8


def compute_stats(raw: RawDataset, seed: int = 0) -> dict[str, Any]:
    """Counts for one loaded source: defects, cleaning result, complexity, split sizes.

    Cleans ``raw`` and draws the ordinary / complex / official splits at ``seed``.
    Returns a JSON-ready dict with exactly ``STATS_KEYS``; ``complexity_histogram`` maps
    "1".."8" to image counts; ``splits`` maps each split name to
    ``{"available": true, "train": n, "val": n, "test": n}``, or, for a split this data
    cannot build (``official`` on a source holding only Training rows, ``complex`` without
    complex faces), to ``{"available": false, "reason": "..."}``;
    ``fingerprint`` is the cleaned set's; ``warnings`` holds the loader's warnings and any
    raised while splitting (e.g. a complex pool smaller than the test set).
    """
    from fer_bench.data.clean import clean
    from fer_bench.data.splits import SPLIT_NAMES, make_split
    from fer_bench.errors import DataError

    report = raw.report
    cleaned = clean(raw)
    complexity = np.asarray(cleaned.complexity, dtype=np.int64)
    histogram = np.bincount(complexity, minlength=_MAX_COMPLEXITY + 1)
    usage_counts = np.bincount(np.asarray(cleaned.usage, dtype=np.int64), minlength=len(USAGES))

    notes = list(report.warnings)
    splits: dict[str, dict[str, int]] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in SPLIT_NAMES:
            try:
                split = make_split(cleaned, name, seed)
            except DataError as exc:   # SplitUnavailable, an empty validation slice ...
                splits[name] = {"available": False, "reason": str(exc)}
                continue
            splits[name] = {"available": True, "train": len(split.train), "val": len(split.val),
                            "test": len(split.test)}
    notes.extend(str(w.message) for w in caught)

    stats = {
        "data_label": cleaned.label,
        "path": report.path,
        "format": report.source_format,
        "labels": report.label_snapshot,
        "rows": int(report.rows),
        "images": len(raw),
        "unnamed_rows": int(report.unnamed_rows),
        "duplicate_names": len(report.duplicate_names),
        "duplicate_name_list": list(report.duplicate_names),
        "votes_differ": report.votes_differ,
        "kept": len(cleaned),
        "kept_by_usage": {u: int(usage_counts[i]) for i, u in enumerate(USAGES)},
        "complexity_histogram": {str(x): int(histogram[x]) for x in range(1, _MAX_COMPLEXITY + 1)},
        "complex_pool": int((complexity > 3).sum()),
        "splits": splits,
        "literature": literature_stats(raw),
        "fingerprint": cleaned.fingerprint,
        "warnings": notes,
    }
    return stats


def literature_stats(raw: RawDataset) -> dict[str, Any]:
    """Microsoft's FERPlus protocol on ``raw`` (``fer_bench.data.labels.ferplus_ms``): the data
    cleaned by rule "ferplus-ms", then per mode (majority, probability, crossentropy,
    multi_target) the images kept in each usage and why the others were dropped, and the
    sizes of the majority-voted validation (PublicTest) and test (PrivateTest) sets."""
    from fer_bench.data.clean import clean
    from fer_bench.data.labels.ferplus_ms import literature_counts

    cleaned = clean(raw, "ferplus-ms")
    counts = literature_counts(cleaned)
    counts["fingerprint"] = cleaned.fingerprint
    return counts


def data_stats_command(args: Any) -> int:
    """``fer-bench data stats``: load (through the cache), compute, print JSON or tables.

    ``args`` carries ``.data .format .labels .seed .json`` (see ``fer_bench.cli.main``, which
    checks their ranges). Returns the process exit code; errors are raised
    (``fer_bench.errors``) and reported by ``fer_bench.cli.main.main``.
    """
    from fer_bench.data.cache import load_dataset
    from fer_bench.errors import ConfigError

    if args.seed < 0:
        raise ConfigError(f"argument --seed: expected a whole number >= 0, got {args.seed}")
    raw = load_dataset(args.data, args.format, args.labels)
    stats = compute_stats(raw, seed=args.seed)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_tables(stats, seed=args.seed)
    return 0


def _print_tables(stats: dict[str, Any], seed: int) -> None:
    from rich.table import Table

    from fer_bench.console import wide_console

    console = wide_console()
    source = Table(title=f"data source: {stats['data_label']}", show_header=False)
    source.add_column("field", style="bold")
    source.add_column("value")
    differ = stats["votes_differ"]
    for field, value in [
        ("path", stats["path"]), ("format", stats["format"]), ("labels", stats["labels"]),
        ("vote rows", f"{stats['rows']:,}"), ("images", f"{stats['images']:,}"),
        ("unnamed rows (skipped)", f"{stats['unnamed_rows']:,}"),
        ("duplicate names (later row wins)",
         f"{stats['duplicate_names']}: {', '.join(stats['duplicate_name_list']) or '-'}"),
        ("votes differ from fer2013new.csv", "-" if differ is None else f"{differ:,}"),
        ("kept after cleaning", f"{stats['kept']:,}"),
        *((f"  kept {u}", f"{n:,}") for u, n in stats["kept_by_usage"].items()),
        ("complex pool (X > 3)", f"{stats['complex_pool']:,}"),
        ("cleaned fingerprint", stats["fingerprint"]),
    ]:
        source.add_row(field, str(value))
    console.print(source)

    kept = max(stats["kept"], 1)
    histogram = Table(title="complexity X (emotions with a vote)")
    histogram.add_column("X", justify="right")
    histogram.add_column("images", justify="right")
    histogram.add_column("share", justify="right")
    for x, n in stats["complexity_histogram"].items():
        histogram.add_row(x, f"{n:,}", f"{100 * n / kept:.1f}%")
    console.print(histogram)

    splits = Table(title=f"splits (seed {seed})")
    for column in ("split", "train", "val", "test"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    unavailable = []
    for name, sizes in stats["splits"].items():
        if not sizes.get("available", True):
            splits.add_row(name, "unavailable", "-", "-")
            unavailable.append((name, sizes["reason"]))
            continue
        splits.add_row(name, *(f"{sizes[k]:,}" for k in ("train", "val", "test")))
    console.print(splits)
    for name, reason in unavailable:
        console.print(f"split {name} unavailable: {reason}", soft_wrap=True, highlight=False)
    _print_literature(console, stats["literature"])
    for note in stats["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {note}", soft_wrap=True)


def _print_literature(console: Any, literature: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="literature protocol (microsoft/FERPlus ferplus.py): images kept per "
                        "mode, cleaning rule ferplus-ms")
    table.add_column("mode (label treatment)")
    usages = list(literature["images"])
    for usage in usages:
        table.add_column(usage, justify="right")
    table.add_row("images (ferplus-ms)", *(f"{literature['images'][u]:,}" for u in usages))
    for mode, entry in literature["modes"].items():
        table.add_row(f"{mode} ({entry['variant']})", *(f"{entry['kept'][u]:,}" for u in usages))
    console.print(table)
    voted = literature["majority_voted"]
    console.print(f"split official-majority: validation (PublicTest, majority-voted) "
                  f"{voted['val']:,} images, test (PrivateTest, majority-voted) {voted['test']:,} "
                  f"images; training images are those each mode keeps", highlight=False)

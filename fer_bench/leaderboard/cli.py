"""``fer-bench leaderboard RESULTS.json|RUN_DIR [MORE ...] [--out leaderboard/] [--no-write]``.

A folder is a run folder of ``fer-bench launch`` (all its shard JSON files; an incomplete
run is an error naming each missing, failed or truncated shard) or a folder of JSON files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from fer_bench.console import wide_console
from fer_bench.errors import DataError
from fer_bench.fileio import atomic_write_text
from fer_bench.leaderboard.load import load_results
from fer_bench.leaderboard.markdown import write_markdown
from fer_bench.leaderboard.plots import (
    plot_accuracy_by_complexity,
    plot_accuracy_vs_n,
    plot_gain_vs_n,
)
from fer_bench.leaderboard.table import print_terminal_tables

GAIN_VS_N_PNG = "gain_vs_n.png"
ACCURACY_VS_N_PNG = "accuracy_vs_n.png"
ACCURACY_BY_COMPLEXITY_PNG = "accuracy_by_complexity.png"
MERGED_JSON = "results.json"


def leaderboard_command(args: argparse.Namespace, console: Console | None = None) -> int:
    """Draw the terminal tables; unless ``args.no_write``, write into ``args.out``:
    README.md, the three PNGs (the answer: gain vs N; accuracy vs N; by complexity) and ``results.json`` (the merged input). Returns 0.

    ``args``: ``results`` (list of paths), ``out`` (folder), ``no_write`` (bool).
    Raises DataError for unreadable input or when no fer_bench cell is found.
    """
    loaded = load_results(args.results)
    if not loaded.records:
        raise DataError(f"no fer_bench cells (extra_info.fer_bench) in {', '.join(map(str, args.results))}")
    console = console or wide_console()
    print_terminal_tables(loaded.records, console=console, provenance=loaded.provenance)
    if getattr(args, "no_write", False):
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_gain_vs_n(loaded.records, out / GAIN_VS_N_PNG, loaded.provenance)
    plot_accuracy_vs_n(loaded.records, out / ACCURACY_VS_N_PNG, loaded.provenance)
    plot_accuracy_by_complexity(loaded.records, out / ACCURACY_BY_COMPLEXITY_PNG, loaded.provenance)
    merged = atomic_write_text(out / MERGED_JSON, json.dumps(loaded.merged_document(), indent=2))
    readme = write_markdown(loaded.records, loaded.provenance, out,
                            plots=[GAIN_VS_N_PNG, ACCURACY_VS_N_PNG, ACCURACY_BY_COMPLEXITY_PNG])
    console.print(f"wrote {readme}, {out / GAIN_VS_N_PNG}, {out / ACCURACY_VS_N_PNG}, {out / ACCURACY_BY_COMPLEXITY_PNG}, {merged}")
    return 0

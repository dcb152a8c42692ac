"""The ``fer-bench`` command. Each subcommand lives beside the stage it belongs to;
this module only parses arguments and dispatches (imports are lazy so ``--help`` is fast).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fer_bench.errors import FerBenchError


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None,
                        help="FERPlus folder, Kaggle fer2013.csv, or 'synthetic' "
                             "(default: $FER_BENCH_DATA, else the embedded synthetic set)")
    parser.add_argument("--format", default="auto", choices=["auto", "folder", "kaggle", "synthetic"])
    parser.add_argument("--labels", default="fer2013new", choices=["fer2013new", "folder"],
                        help="vote snapshot: fer2013new.csv (default) or the folder label.csv files")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect a data source")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    stats = data_sub.add_parser("stats", help="counts, defects, complexity histogram, split sizes")
    _add_data_options(stats)
    stats.add_argument("--seed", type=int, default=0)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    align = data_sub.add_parser("align", help="align every face with dlib (cached); coverage, speed")
    _add_data_options(align)
    from fer_bench.data.align_cli import add_align_arguments
    add_align_arguments(align)

    sub.add_parser("models", help="list registered models and where each comes from")
    listing = sub.add_parser("list", help="list what a registry holds")
    listing.add_argument("kind", choices=["models", "losses", "augmentations", "splits", "labels"],
                         help="which registry")

    run = sub.add_parser("run", help="train and evaluate one cell")
    _add_data_options(run)
    run.add_argument("--model", required=True, help="a registered model (fer-bench list models)")
    run.add_argument("--nhot", type=int, default=None, help="N-hot training labels, 1..8 (default 8)")
    run.add_argument("--variant", default=None,
                     help="label treatment, e.g. nhot-3 (overrides --nhot; fer-bench list labels)")
    run.add_argument("--split", required=True, help="test split (fer-bench list splits)")
    run.add_argument("--seed", type=int, default=0, help="seed of split, labels and training")
    run.add_argument("--epochs", type=int, default=None, help="epochs (default: the model's, else 40)")
    run.add_argument("--loss", default=None, help="loss (default: the model's, else mse)")
    run.add_argument("--augmentation", default=None,
                     help="augmentation set (default: the model's, else none)")
    run.add_argument("--init", default="scratch", help="scratch, imagenet or file:PATH")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    run.add_argument("--results", default=None, help="result store folder (default: ./results)")
    run.add_argument("--rerun", action="store_true", help="train even if the store has this cell")
    run.add_argument("--json", action="store_true", help="print the record as JSON")

    board = sub.add_parser("leaderboard", help="render pytest-benchmark JSON as tables and plots")
    board.add_argument("results", nargs="+", help="pytest-benchmark JSON file(s); shards merge")
    board.add_argument("--out", default="leaderboard", help="folder for README.md and plots")
    board.add_argument("--no-write", action="store_true", help="only draw the terminal table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "data" and args.data_command == "align":
            from fer_bench.data.align_cli import data_align_command
            return data_align_command(args)
        if args.command == "data":
            from fer_bench.data.stats import data_stats_command
            return data_stats_command(args)
        if args.command == "models":
            from fer_bench.listing import list_command
            return list_command("models")
        if args.command == "list":
            from fer_bench.listing import list_command
            return list_command(args.kind)
        if args.command == "run":
            from fer_bench.training.cli import run_command
            return run_command(args)
        if args.command == "leaderboard":
            from fer_bench.leaderboard.cli import leaderboard_command
            return leaderboard_command(args)
    except FerBenchError as exc:
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())

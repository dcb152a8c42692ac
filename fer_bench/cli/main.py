"""The ``fer-bench`` command. Each subcommand lives beside the stage it belongs to;
this module only parses arguments and dispatches (imports are lazy so ``--help`` is fast).

The error contract, the same for every subcommand: a user error is ONE line on stderr,
``fer-bench: error: <what is wrong, the bad value, what is allowed>``, and no traceback
(``--debug`` shows it). Exit status:

* 0: done;
* 1: a runtime failure: bad contents of a data or results file, a model that cannot be
  built or a cell that failed (``run``), an I/O error, or an unexpected error;
* 2: a usage error: an unknown subcommand or option, a missing argument, a value out of
  range or not among those allowed, an unknown name (model, loss, split ...), a data path
  that is no data source, a split the data cannot provide;
* 130: interrupted (Ctrl-C).

argparse's own errors follow the same contract: its usage block is not printed (only the
one line, which points at ``--help``). The exit status of a ``fer_bench`` exception is its
``exit_code`` (``fer_bench.errors``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from fer_bench.errors import DataPathError, FerBenchError
from fer_bench.planning.catalog import KINDS

PROG = "fer-bench"
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the contract's one-line errors (``fer-bench: error: ...``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see: {self.prog} --help)\n")


def int_in_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``low..high`` (``high`` None: no upper bound)."""
    allowed = f"in {low}..{high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not {allowed}")
        return value

    parse.__name__ = f"whole number {allowed}"
    return parse


def device_name(text: str) -> str:
    """An argparse ``type``: cpu, cuda, cuda:N or mps."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps")
    return text


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="FERPlus folder, Kaggle fer2013.csv, or 'synthetic' "
                             "('synthetic:taggers=T': T simulated taggers per image) "
                             "(default: $FER_BENCH_DATA, else the embedded synthetic set)")
    parser.add_argument("--format", default="auto", choices=["auto", "folder", "kaggle", "synthetic"],
                        help="source layout (default: auto, detected from the path)")
    parser.add_argument("--labels", default="fer2013new", choices=["fer2013new", "folder"],
                        help="vote snapshot: fer2013new.csv (default) or the folder label.csv files")


def _add_debug(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's default must not overwrite a --debug given before it.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error, and debug log lines")


def _set_type(parser: argparse.ArgumentParser, dest: str, type_: Callable[[str], object]) -> None:
    for action in parser._actions:   # argparse has no public way to look an action up
        if action.dest == dest:
            action.type = type_
            return
    raise AssertionError(f"no option with dest {dest!r}")


def build_parser() -> ArgumentParser:
    from fer_bench import __version__

    parser = ArgumentParser(prog=PROG, description="fer_bench: the FERPlus N-hot label "
                            "benchmark. Errors are one line; exit 2 = usage error, 1 = runtime "
                            "failure (--debug shows the traceback).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the installed fer-bench version and exit")
    _add_debug(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="inspect a data source")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    stats = data_sub.add_parser("stats", help="counts, defects, complexity histogram, split sizes")
    _add_data_options(stats)
    stats.add_argument("--seed", type=int_in_range(0), default=0,
                       help="seed of the split draws (default 0)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    _add_debug(stats)
    align = data_sub.add_parser("align", help="align every face with dlib (cached); coverage, speed")
    _add_data_options(align)
    from fer_bench.cli.align import add_align_arguments
    add_align_arguments(align)
    for dest, type_ in (("upscale", int_in_range(48)), ("upsample", int_in_range(0)),
                        ("limit", int_in_range(1)), ("workers", int_in_range(1)),
                        ("seed", int_in_range(0))):
        _set_type(align, dest, type_)
    _add_debug(align)

    models = sub.add_parser("models", help="list registered models and where each comes from")
    _add_debug(models)
    listing = sub.add_parser("list", help="list what a registry holds")
    listing.add_argument("kind", choices=KINDS, help="which registry")
    _add_debug(listing)

    run = sub.add_parser("run", help="train and evaluate one cell")
    _add_data_options(run)
    run.add_argument("--model", required=True, help="a registered model (fer-bench list models)")
    run.add_argument("--nhot", type=int_in_range(1, 8), default=None,
                     help="N-hot training labels, 1..8 (default 8)")
    run.add_argument("--variant", default=None,
                     help="label treatment, e.g. nhot-3 (overrides --nhot; fer-bench list labels)")
    run.add_argument("--split", required=True, help="test split (fer-bench list splits)")
    run.add_argument("--seed", type=int_in_range(0), default=0,
                     help="seed of split, labels and training, >= 0 (default 0)")
    run.add_argument("--epochs", type=int_in_range(1), default=None,
                     help="epochs, >= 1 (default: the model's, else 40)")
    run.add_argument("--loss", default=None,
                     help="loss (default: the model's, else mse; fer-bench list losses)")
    run.add_argument("--augmentation", default=None,
                     help="augmentation set (default: the model's, else none; "
                          "fer-bench list augmentations)")
    run.add_argument("--init", default="scratch", help="scratch, imagenet or file:PATH")
    run.add_argument("--alignment", default="none",
                     help="none, or an aligner (dlib-hog, dlib-cnn; fer-bench list aligners): "
                          "train and test on its aligned faces")
    run.add_argument("--device", type=device_name, default=None,
                     help="cpu, cuda, cuda:N or mps (default: cuda if available)")
    run.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                     help="bf16 autocast over fp32 weights or plain fp32 (default auto: bf16 on "
                          "CUDA; on a CPU with bf16 units the model's cpu_precision)")
    run.add_argument("--results", default=None, metavar="DIR",
                     help="result store folder (default: $FER_BENCH_RESULTS, else ./results)")
    run.add_argument("--compile", action="store_true",
                     help="evaluate through torch.compile (compile=eval in the cell's identity; "
                          "compile seconds recorded apart from epoch time)")
    run.add_argument("--rerun", action="store_true", help="train even if the store has this cell")
    run.add_argument("--json", action="store_true", help="print the record as JSON")
    _add_debug(run)

    launch = sub.add_parser("launch", help="run a benchmark selection as N shards (local, "
                            "Slurm via submitit, Ray); status; merge")
    from fer_bench.launch.cli import add_launch_arguments
    add_launch_arguments(launch)
    _add_debug(launch)

    board = sub.add_parser("leaderboard", help="render pytest-benchmark JSON as tables and plots")
    board.add_argument("results", nargs="+",
                       help="pytest-benchmark JSON file(s) or run folder(s) (fer-bench launch); shards merge")
    board.add_argument("--out", default="leaderboard", metavar="DIR",
                       help="folder for README.md and plots (default: leaderboard)")
    board.add_argument("--no-write", action="store_true", help="only draw the terminal table")
    _add_debug(board)
    return parser


class _LogFormatter(logging.Formatter):
    """``fer-bench: message`` for information, ``fer-bench: warning: message`` above it."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{PROG}: {record.levelname.lower()}: {text}"
        return f"{PROG}: {text}"


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"{PROG}: warning: {message}\n"


@contextlib.contextmanager
def _command_output(debug: bool) -> Iterator[None]:
    """While a command runs: fer_bench's log lines (INFO, DEBUG with ``--debug``) and Python
    warnings go to stderr as one ``fer-bench: ...`` line each; everything is restored after
    (``main`` may be called in-process, e.g. by tests)."""
    logger = logging.getLogger("fer_bench")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    old_level, old_format = logger.level, warnings.formatwarning
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        warnings.formatwarning = _format_warning
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        warnings.formatwarning = old_format


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "data" and args.data_command == "align":
        from fer_bench.cli.align import data_align_command
        return data_align_command(args)
    if args.command == "data":
        from fer_bench.data.stats import data_stats_command
        return data_stats_command(args)
    if args.command == "models":
        from fer_bench.cli.listing import list_command
        return list_command("models")
    if args.command == "list":
        from fer_bench.cli.listing import list_command
        return list_command(args.kind)
    if args.command == "run":
        from fer_bench.cli.run import run_command
        return run_command(args)
    if args.command == "launch":
        from fer_bench.launch.cli import launch_command
        return launch_command(args)
    if args.command == "leaderboard":
        from fer_bench.leaderboard.cli import leaderboard_command
        _check_leaderboard_paths(args)
        return leaderboard_command(args)
    raise AssertionError(f"unhandled command {args.command!r}")


def _check_leaderboard_paths(args: argparse.Namespace) -> None:
    from pathlib import Path

    from fer_bench.errors import ConfigError

    for path in map(Path, args.results):
        if not path.is_file() and not path.is_dir():   # a folder: a run folder (fer-bench launch)
            raise ConfigError(f"argument results: {path} does not exist; give pytest-benchmark "
                              f"JSON files (pytest --benchmark-json FILE) or run folders")
    out = Path(args.out)
    if not args.no_write and out.exists() and not out.is_dir():
        raise ConfigError(f"argument --out: {out} is a file; give a folder (or --no-write)")


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fer-bench``; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    with _command_output(debug):
        try:
            return _dispatch(args)
        except FerBenchError as exc:
            if debug:
                raise
            message = " ".join(str(exc).split("\n"))
            if isinstance(exc, DataPathError) and "--data" not in message and "--labels" not in message:
                message = f"argument --data: {message}"
            _error(message)
            return exc.exit_code
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"{PROG}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except OSError as exc:
            if debug:
                raise
            _error(f"{exc.filename + ': ' if exc.filename else ''}"
                   f"{exc.strerror or exc} ({type(exc).__name__})")
            return EXIT_RUNTIME
        except Exception as exc:   # a bug, or a library's error: one line unless --debug
            if debug:
                raise
            text = " ".join(str(exc).split()) or "(no message)"
            _error(f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the traceback)")
            return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())

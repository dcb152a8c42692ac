"""How long preparing FERPlus takes: cold (empty cache) vs cached load.

Run as a script (not a pytest module)::

    python benchmarks/prepare_speed.py [--data PATH] [--format auto] [--repeats 5]

"Cold" decodes every PNG (or Kaggle row) into a fresh, empty cache folder and writes the
cache file; "cached" is the median of ``--repeats`` loads that hit that file (fingerprint
check included). The OS file cache is not dropped, so cold means "no fer_bench cache".
CPU time is printed beside wall time: on a shared machine the wall time also counts the
time other processes held the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from fer_bench.data.cache import load_dataset, resolve_data_path

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help="FERPlus folder or Kaggle csv (default: $FER_BENCH_DATA, "
                             "else ../shared/data/ferplus beside the repo)")
    parser.add_argument("--format", default="auto", choices=["auto", "folder", "kaggle"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    data = resolve_data_path(args.data) or str(REPO_ROOT.parent / "shared" / "data" / "ferplus")

    with tempfile.TemporaryDirectory(prefix="fer_bench_prepare_") as cache_dir, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the known duplicate-name warning, every run
        start, start_cpu = time.perf_counter(), time.process_time()
        raw = load_dataset(data, args.format, cache_dir=cache_dir)
        cold, cold_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        cached_times, cached_cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            load_dataset(data, args.format, cache_dir=cache_dir)
            cached_times.append(time.perf_counter() - start)
            cached_cpu.append(time.process_time() - start_cpu)
        cache_bytes = sum(p.stat().st_size for p in Path(cache_dir).iterdir())

    cached = statistics.median(cached_times)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"data:    {data} ({raw.report.source_format}, {len(raw):,} images, "
          f"{os.cpu_count()} CPUs, load average {load:.1f})")
    print(f"cold prepare (empty cache):   {cold:8.3f} s wall, {cold_cpu:.3f} s CPU  "
          f"({1e6 * cold / max(len(raw), 1):.0f} us/image)")
    print(f"cached load (median of {args.repeats}):  {cached:8.3f} s wall, "
          f"{statistics.median(cached_cpu):.3f} s CPU  "
          f"(all: {', '.join(f'{t:.3f}' for t in cached_times)})")
    print(f"cold / cached:                {cold / cached:8.1f} x")
    print(f"cache file:                   {cache_bytes / 2**20:8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``fer-bench data align``: align a source with dlib (cached) and report coverage and speed.

``align_summary`` builds the ``--json`` object: coverage overall, per usage, per detector
outcome and per complexity X (X from ``clean``; images that cleaning drops are counted under
"dropped"), the eye-line inclination of the aligned faces, and the run's timing (images/s,
per core, CPU ms per image) beside the load average, since the cores may be shared.
Heavy imports stay inside the functions so ``fer-bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import replace
from typing import Any

#: The keys of the JSON object, in output order.
SUMMARY_KEYS: tuple[str, ...] = (
    "path", "images", "sample", "settings", "key", "cache", "coverage", "inclination",
    "timing", "load_average",
)


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fer-bench data align`` (besides --data/--format/--labels)."""
    parser.add_argument("--detector", default="hog", choices=["hog", "cnn"],
                        help="dlib HOG detector (fast) or CNN/MMOD detector (more faces, ~100x slower)")
    parser.add_argument("--upscale", type=int, default=None,
                        help="detect on the image resized to PX square (default: hog 144, cnn 96)")
    parser.add_argument("--upsample", type=int, default=None,
                        help="extra detector pyramid levels (default: hog 0, cnn 1)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="align a seeded uniform sample of N images instead of all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: every core)")
    parser.add_argument("--landmark-model", default=None, metavar="PATH",
                        help="shape_predictor_68_face_landmarks.dat (default: $FER_BENCH_DLIB_MODELS "
                             "or the face_recognition_models package)")
    parser.add_argument("--cnn-model", default=None, metavar="PATH",
                        help="mmod_human_face_detector.dat (same defaults)")
    parser.add_argument("--rerun", action="store_true",
                        help="recompute even if the cache holds this alignment")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def sample_raw(raw: Any, n: int, seed: int = 0) -> Any:
    """A seeded uniform sample of ``n`` images of a ``RawDataset``, in canonical order:
    ``default_rng(seed).choice(N, n, replace=False)``, sorted. The fingerprint becomes
    sha256 over the parent's and the chosen indices. ``n >= N`` returns ``raw``."""
    import numpy as np

    if n < 1:
        raise ValueError(f"--limit must be >= 1, got {n}")
    if n >= len(raw):
        return raw
    chosen = np.sort(np.random.default_rng(seed).choice(len(raw), size=n, replace=False))
    digest = hashlib.sha256(f"{raw.fingerprint}\0sample\0".encode())
    digest.update(np.ascontiguousarray(chosen, dtype="<i8").tobytes())
    return replace(raw, images=raw.images[chosen], votes=raw.votes[chosen],
                   usage=raw.usage[chosen], names=raw.names[chosen],
                   fingerprint=digest.hexdigest())


def complexity_of_raw(raw: Any) -> Any:
    """int8 [N]: complexity X of each raw image from ``clean``, 0 where cleaning drops it
    (joined by position: ``clean`` keeps ``keep_mask(raw.votes)`` in order; the names are
    checked)."""
    import numpy as np

    from fer_bench.data.clean import clean, keep_mask

    cleaned = clean(raw)
    keep = keep_mask(raw.votes)
    if not np.array_equal(np.asarray(raw.names[keep], dtype=str), np.asarray(cleaned.names, dtype=str)):
        raise AssertionError("clean() no longer keeps keep_mask's rows in order")
    x = np.zeros(len(raw), dtype=np.int8)
    x[keep] = cleaned.complexity
    return x


def align_summary(raw: Any, result: Any, load_average: dict[str, Any] | None = None,
                  sample: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``--json`` object (``SUMMARY_KEYS``) for one ``RawDataset`` and its ``AlignResult``."""
    import numpy as np

    from fer_bench.data.align.result import coverage_share

    coverage = result.coverage()
    x = complexity_of_raw(raw)
    by_x = {str(k): coverage_share(result.aligned[x == k]) for k in range(1, 9) if (x == k).any()}
    if (x == 0).any():
        by_x["dropped"] = coverage_share(result.aligned[x == 0])
    coverage["by_complexity"] = by_x
    angles = np.abs(result.inclination[result.aligned].astype(np.float64))
    inclination = {"aligned": int(angles.size)}
    if angles.size:
        inclination.update({
            "median_abs_deg": round(float(np.median(angles)), 2),
            "p90_abs_deg": round(float(np.percentile(angles, 90)), 2),
            "share_abs_lt_5": round(float((angles < 5).mean()), 4),
            "share_abs_gt_15": round(float((angles > 15).mean()), 4),
        })
    timing = dict(result.timing)
    computed, wall = timing.get("computed_images", 0), timing.get("wall_s", 0.0)
    workers = max(int(timing.get("workers") or 1), 1)
    if computed and wall:
        rate = computed / wall
        timing["images_per_s"] = round(rate, 2)
        timing["images_per_s_per_core"] = round(rate / workers, 2)
        timing["cpu_ms_per_image"] = round(1000 * timing.get("cpu_s", 0.0) / computed, 2)
    settings = result.settings
    return {
        "path": raw.report.path,
        "images": len(raw),
        "sample": sample,
        "settings": settings.key(),
        "key": result.key,
        "cache": result.path,
        "coverage": coverage,
        "inclination": inclination,
        "timing": timing,
        "load_average": load_average,
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def data_align_command(args: Any) -> int:
    """``fer-bench data align``: load (through the data cache), align (through the alignment
    cache), print JSON or tables. Progress lines are INFO records of the
    ``fer_bench.data.align.run`` logger (``fer_bench.cli.main`` sends them to stderr)."""
    from fer_bench.data.align.run import align_dataset
    from fer_bench.data.align.settings import AlignSettings
    from fer_bench.data.cache import load_dataset

    try:
        settings = AlignSettings(detector=args.detector, upscale=args.upscale,
                                 upsample=args.upsample, landmark_model=args.landmark_model,
                                 cnn_model=args.cnn_model)
    except ValueError as exc:
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"fer-bench: error: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"fer-bench: error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    raw = load_dataset(args.data, args.format, args.labels)
    sample = None
    if args.limit is not None and args.limit < len(raw):
        sample = {"of": len(raw), "n": args.limit, "seed": args.seed}
        raw = sample_raw(raw, args.limit, args.seed)
    before = _loadavg()
    result = align_dataset(raw, settings, workers=args.workers, progress=True,
                           recompute=args.rerun)
    summary = align_summary(raw, result, {"before": before, "after": _loadavg()}, sample)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_tables(summary)
    return 0


def _print_tables(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from fer_bench.console import wide_console

    console = wide_console()
    s = summary["settings"]
    title = (f"alignment coverage: {s['detector']} at {s['upscale']} px (+{s['upsample']} upsample), "
             f"{summary['images']:,} images")
    table = Table(title=title)
    for column in ("group", "images", "aligned", "share"):
        table.add_column(column, justify="left" if column == "group" else "right")
    cov = summary["coverage"]

    def row(label: str, share: dict[str, Any]) -> None:
        pct = "-" if share["share"] is None else f"{100 * share['share']:.1f}%"
        table.add_row(label, f"{share['images']:,}", f"{share['aligned']:,}", pct)

    row("overall", cov["overall"])
    for usage, share in cov["by_usage"].items():
        row(usage, share)
    for x, share in cov["by_complexity"].items():
        row(f"X={x}" if x != "dropped" else "dropped by cleaning", share)
    console.print(table)
    console.print("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in cov["by_status"].items()))
    t = summary["timing"]
    if t.get("from_cache"):
        console.print(f"read from the cache {summary['cache']} (computed earlier in "
                      f"{t.get('wall_s', 0):.1f} s with {t.get('workers')} worker(s))")
    elif "images_per_s" in t:
        console.print(f"{t['computed_images']:,} images in {t['wall_s']:.1f} s with "
                      f"{t['workers']} worker(s): {t['images_per_s']:.1f} images/s, "
                      f"{t['images_per_s_per_core']:.1f} per core, {t['cpu_ms_per_image']:.2f} "
                      f"CPU ms per image; load average {summary['load_average']}")

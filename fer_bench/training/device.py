"""Device facts a cell record needs: synchronised clocks, peak memory, names, versions."""

from __future__ import annotations

import platform
import resource
import sys
import time
from importlib import metadata

import torch


def default_device() -> str:
    """"cuda" when a CUDA device is available, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronized_time(device: torch.device) -> float:
    """``time.perf_counter()`` after waiting for queued CUDA work, so intervals are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak-memory window (no-op on CPU: RSS has no reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind): peak CUDA memory allocated since ``reset_peak_memory`` ("cuda"), or
    the process's peak resident set size ("host_rss").

    The host figure is a process-wide high-water mark: it includes the data set, Python
    and every earlier cell of the same process, and never goes down, so on CPU it is an
    upper bound for one cell rather than the cell's own footprint.
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda"
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return int(max_rss * scale), "host_rss"


def device_name(device: torch.device) -> str:
    """Marketing name of a CUDA device, else the CPU's processor name (or "cpu")."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a result: fer_bench, torch, timm, numpy, python."""
    import numpy

    import fer_bench

    try:
        timm_version = metadata.version("timm")
    except metadata.PackageNotFoundError:
        timm_version = "absent"
    return {
        "fer_bench": fer_bench.__version__,
        "torch": str(torch.__version__),  # a TorchVersion object, which xdist cannot send
        "timm": timm_version,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }

"""Device facts a cell record needs: synchronised clocks, peak memory, names, versions;
the CPU threading of batch-sized data ops (``one_thread_for_small``, ``select_batch``) and
cuDNN's autotuning scoped to one cell (``cudnn_autotune``)."""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata

import torch

from fer_bench.training.heap import trim_heap


@functools.cache
def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX-BF16 in
    ``/proc/cpuinfo``'s flags; elsewhere oneDNN's own check). Without them torch emulates
    bf16 and autocast runs slower than fp32."""
    _, flags = _cpuinfo_model_and_flags()
    if flags:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def default_device() -> str:
    """"cuda" when a CUDA device is available, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


#: Data ops on at most this many elements (a training or evaluation batch: 64 x 48 x 48 is
#: 147k) run on one CPU thread. Each takes well under a millisecond on one core, and an
#: OpenMP parallel region costs more than that: up to a scheduler time slice whenever
#: another process holds the second core (15-30 ms per op measured on this project's busy
#: 2-core machines, 0.1-3 ms on one thread). The ops are element-wise copies and per-pixel
#: samples, so the result is bit-identical; large ones (a static set's expansion) keep
#: every thread.
ONE_THREAD_MAX_ELEMENTS = 1 << 22


@contextmanager
def one_thread_for_small(numel: int, device: torch.device) -> Iterator[None]:
    """Run the block on one intra-op thread when it is a CPU op on at most
    ``ONE_THREAD_MAX_ELEMENTS`` elements (see there); otherwise as it is."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or numel > ONE_THREAD_MAX_ELEMENTS:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` on for the block when ``device`` is CUDA (cuDNN
    times its kernels for each input shape and keeps the fastest), restored to its value
    before the block afterwards, also when the block raises: one cell's choice never leaks
    into the rest of the process. On other devices the block runs as it is."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def select_batch(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor.index_select(0, index)``: a training batch of images or targets, on one
    thread when small (``one_thread_for_small``; the same values)."""
    rows = index.numel()
    with one_thread_for_small(rows * (tensor[0].numel() if len(tensor) else 0), tensor.device):
        return tensor.index_select(0, index)


def synchronized_time(device: torch.device) -> float:
    """``time.perf_counter()`` after waiting for queued CUDA work, so intervals are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak-memory window (no-op on CPU: see ``CellMemory``)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind): peak CUDA memory allocated since ``reset_peak_memory`` ("cuda"), or
    the process's lifetime peak resident set size ("host_rss").

    The host figure is a process-wide high-water mark: it includes the data set, Python
    and every earlier cell of the same process. Cells measure with ``CellMemory`` instead.
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda"
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return int(max_rss * scale), "host_rss"


#: ``memory_kind`` of a CPU cell: peak growth of the process's resident memory over its
#: level when the cell started (after freeing what earlier cells left behind).
HOST_RSS_CELL_DELTA = "host_rss_cell_delta"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss() -> int | None:
    """Resident set size of this process now, in bytes (Linux ``/proc``; else None)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def _rss_high_water_mark() -> int | None:
    """``VmHWM`` of ``/proc/self/status`` in bytes (peak RSS since the last reset)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_rss_high_water_mark() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0: write 5 to ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _release_free_host_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so
    memory an earlier cell freed but the allocator kept is not counted in the baseline."""
    gc.collect()
    trim_heap()


class CellMemory:
    """Peak memory of one cell, measured for that cell alone: ``start()`` before the cell,
    ``stop() -> (bytes, memory_kind)`` after it (also when it failed).

    * CUDA: ``torch.cuda.max_memory_allocated`` over the cell (the window is reset at
      ``start``), kind ``"cuda"``.
    * CPU on Linux: kind ``"host_rss_cell_delta"``: the peak of the process's resident set
      during the cell minus its resident set at ``start`` (taken after ``gc.collect()`` and
      ``malloc_trim``, so an earlier cell's freed memory is not in it). The peak is the
      kernel's exact ``VmHWM`` (reset at ``start`` through ``/proc/self/clear_refs``); where
      that cannot be reset, a background thread samples the resident set every
      ``interval_s`` (peaks shorter than that may be missed). It counts everything the
      cell's work made resident: model, optimiser state, activations, the augmented
      training copy, evaluation outputs; not the data set loaded before the cell.
    * Elsewhere (no ``/proc``): the process-wide lifetime peak, kind ``"host_rss"``.
    """

    def __init__(self, device: torch.device, interval_s: float = 0.002,
                 use_high_water_mark: bool = True) -> None:
        self.device = device
        self.interval_s = interval_s
        self.use_high_water_mark = use_high_water_mark
        self.method = ""                # "cuda" | "vmhwm" | "sampled" | "process_peak"
        self._baseline = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CellMemory:
        if self.device.type == "cuda":
            reset_peak_memory(self.device)
            self.method = "cuda"
            return self
        _release_free_host_memory()
        baseline = current_rss()
        if baseline is None:
            self.method = "process_peak"
            return self
        self._baseline = self._peak = baseline
        if self.use_high_water_mark and _reset_rss_high_water_mark():
            self.method = "vmhwm"
            return self
        self.method = "sampled"
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="fer_bench-cell-memory",
                                        daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = current_rss()
            if rss is not None and rss > self._peak:
                self._peak = rss

    def stop(self) -> tuple[int, str]:
        """(peak bytes, memory_kind); stops the sampler. Safe to call more than once."""
        if self.method == "cuda":
            return peak_memory(self.device)
        if self.method == "process_peak":
            return peak_memory(self.device)
        if self.method == "vmhwm":
            self._peak = max(self._peak, _rss_high_water_mark() or 0)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        rss = current_rss()
        if rss is not None:
            self._peak = max(self._peak, rss)
        return max(0, self._peak - self._baseline), HOST_RSS_CELL_DELTA


def device_name(device: torch.device) -> str:
    """Marketing name of a CUDA device, else the CPU's model name as ``/proc/cpuinfo`` gives
    it (e.g. "AMD EPYC"), with its native bf16 units named ("AMX-BF16", "AVX512-BF16");
    elsewhere ``platform.processor()`` or the architecture. Records taken before this field
    named the CPU say "x86_64"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model, flags = _cpuinfo_model_and_flags()
    if not model:
        return platform.processor() or platform.machine() or "cpu"
    units = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
             if flag in flags]
    return f"{model} ({', '.join(units)})" if units else model


@functools.lru_cache(maxsize=1)
def _cpuinfo_model_and_flags() -> tuple[str, frozenset[str]]:
    """The first processor's "model name" and flag set in ``/proc/cpuinfo`` ("" and an
    empty set where there is none, e.g. macOS)."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, flags


def _dlib_version() -> str | None:
    """The installed dlib's version (distribution ``dlib`` or the prebuilt ``dlib-bin``),
    read from package metadata without importing dlib; None when ``dlib`` is not importable."""
    if importlib.util.find_spec("dlib") is None:
        return None
    for distribution in ("dlib", "dlib-bin"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a result: fer_bench, torch, timm, numpy, python,
    and dlib (face alignment, ``fer_bench.data.align.run``) when it is installed."""
    import numpy

    import fer_bench

    try:
        timm_version = metadata.version("timm")
    except metadata.PackageNotFoundError:
        timm_version = "absent"
    versions = {
        "fer_bench": fer_bench.__version__,
        "torch": str(torch.__version__),  # a TorchVersion object, which xdist cannot send
        "timm": timm_version,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    dlib_version = _dlib_version()
    if dlib_version is not None:
        versions["dlib"] = dlib_version
    return versions

"""glibc's heap, kept: freed tensor memory stays mapped for the next batch.

Why. PyTorch's CPU allocator is plain ``posix_memalign``/``free``, and glibc by default
(a) serves every block above its mmap threshold (dynamic, 128 KiB growing to at most
32 MiB) with fresh ``mmap``'d pages and unmaps them on ``free``, and (b) hands free memory
at the top of the heap back to the OS once it exceeds the trim threshold. A training step
or an evaluation batch frees and reallocates activations of exactly those sizes, so every
batch page-faults, and the kernel zeroes, its activations anew. Measured on this project's
2-core CPU (``benchmarks/test_throughput.py`` and the notes of issue 21):

* ``small_cnn`` evaluation of 6,400 images, batch 64: 457,600 minor faults per pass with
  glibc's defaults, none when kept; 4,184 -> 8,539 images/s. How far the dynamic
  thresholds had grown when a run began decided its rate, hence the 1.7x swing between
  back-to-back throughput runs.
* ``fast_resnet`` training step, batch 256, bf16: 53,522-64,520 faults per step (its
  activations exceed 32 MiB, so raising the mmap threshold alone does not help), none
  with mmap off; 863-1,029 -> 1,215-1,248 images/s.

What. ``keep_heap()`` sets, once per process, ``M_MMAP_MAX`` = 0 (no block is ``mmap``'d;
glibc still falls back to ``mmap`` where the heap cannot grow) and ``M_TRIM_THRESHOLD`` =
1 GiB (free memory stays in the heap). Memory is reused, not returned: the resident set
stays at its high-water mark until ``malloc_trim`` (``device.CellMemory.start`` calls it
before each cell's memory baseline, so per-cell peaks stay per-cell). Nothing computed
changes: PyTorch aligns every CPU tensor to 64 bytes either way, and the same cell gives
the same predictions bit for bit (``tests/training/test_heap.py``).

The setting is process-wide and, once made, glibc's dynamic thresholds stay off (mallopt
cannot switch them back on), so it is made once and left. ``FER_BENCH_HEAP=default``
leaves glibc alone; elsewhere than glibc (macOS, musl) this does nothing. The same effect
from outside a process: ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824``.
Upstream advice to the same end: PyTorch's CPU performance tuning guide (jemalloc /
tcmalloc with retained memory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

__all__ = ["HEAP_ENV", "TRIM_THRESHOLD_BYTES", "keep_heap", "heap_mode"]

log = logging.getLogger(__name__)

#: Environment variable: "default" leaves glibc's heap as it is.
HEAP_ENV = "FER_BENCH_HEAP"
#: Free heap memory kept before glibc trims the top of the heap.
TRIM_THRESHOLD_BYTES = 1 << 30

# mallopt parameter numbers, glibc malloc/malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: glibc's own M_MMAP_MAX (malloc/malloc.c, DEFAULT_MMAP_MAX), put back if the second setting fails.
_DEFAULT_MMAP_MAX = 65536

_state: str | None = None   # "kept", "default" or "unavailable" once decided


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_heap() -> str:
    """Keep freed memory in this process's heap (see the module docstring), once; later
    calls return the first call's outcome: "kept", "default" (``FER_BENCH_HEAP=default``)
    or "unavailable" (not glibc, or mallopt refused)."""
    global _state
    if _state is not None:
        return _state
    if os.environ.get(HEAP_ENV, "").strip().lower() == "default":
        _state = "default"
        return _state
    libc = _libc()
    if libc is None:
        _state = "unavailable"
        return _state
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
    if ok and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)   # all or nothing: the mode is one word
        ok = False
    if not ok:
        log.info("glibc mallopt refused the kept-heap setting; the heap stays as glibc sets it")
    _state = "kept" if ok else "unavailable"
    return _state


def heap_mode() -> str:
    """What ``keep_heap`` decided for this process, or "default" before it ran."""
    return _state or "default"


def trim_heap() -> None:
    """Hand the heap's free pages back to the OS now (glibc ``malloc_trim(0)``), kept heap
    or not; nothing off glibc."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)

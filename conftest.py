"""Repo-root pytest configuration shared by tests/ and benchmarks/.

The fer_bench plugin itself is loaded through its pytest11 entry point; this file only
keeps caches and result stores of test runs out of the user's home and the data folder.
"""

import os
import tempfile

# A test or benchmark run must never write into ../shared or the user's real cache unless
# the user pointed FER_BENCH_CACHE somewhere on purpose.
os.environ.setdefault("FER_BENCH_CACHE", os.path.join(tempfile.gettempdir(), "fer_bench_cache"))

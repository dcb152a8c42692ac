"""fer_bench: a FERPlus facial-expression benchmark on pytest + pytest-benchmark.

Data flow, one module per stage (see ARCHITECTURE.md):
source -> clean -> split -> nhot -> task -> runner -> record -> leaderboard.

``__version__`` is the installed distribution's version (``pyproject.toml`` is its one
source); a source tree that was never installed reports ``0+unknown``.
"""

from importlib import metadata as _metadata

try:
    __version__: str = _metadata.version("fer-bench")
except _metadata.PackageNotFoundError:   # imported from a source tree that is not installed
    __version__ = "0+unknown"

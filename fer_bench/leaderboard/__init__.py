"""The leaderboard: pytest-benchmark JSON -> merged records -> statistics -> rich tables,
published markdown (``<out>/README.md``) and plots. Entry point: ``fer-bench leaderboard``.

Modules: ``load`` (read + merge shards), ``stats`` (CI, paired tests, best N), ``table``
(DataFrames + rich), ``markdown`` (escaped README), ``plots`` (matplotlib Agg), ``cli``.
"""

from fer_bench.leaderboard.load import LoadedResults, load_results, records_frame
from fer_bench.leaderboard.stats import mcnemar, mcnemar_cells, mean_ci, paired_gain, summarize
from fer_bench.leaderboard.table import build_tables, print_terminal_tables

__all__ = [
    "LoadedResults", "build_tables", "load_results", "mcnemar", "mcnemar_cells", "mean_ci",
    "paired_gain", "print_terminal_tables", "records_frame", "summarize",
]

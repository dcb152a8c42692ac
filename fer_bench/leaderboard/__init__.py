"""The leaderboard: pytest-benchmark JSON -> merged records -> statistics -> rich tables,
published markdown (``<out>/README.md``) and plots. Entry point: ``fer-bench leaderboard``.

Modules: ``load`` (read + merge shards), ``stats`` (CI, paired tests, gains, Table 2),
``rows`` (sections per experiment, rows per identity, labels), ``column_registry`` (the
column registry: built-ins, group ``fer_bench.columns``, an experiment module's own),
``columns`` (fer_bench's own columns and their texts), ``table`` (DataFrames + rich),
``markdown`` (escaped README), ``plots`` (matplotlib Agg), ``cli``.
"""

from fer_bench.leaderboard.columns import COLUMNS, Column, register_column
from fer_bench.leaderboard.load import LoadedResults, load_results, records_frame
from fer_bench.leaderboard.rows import summarize, summarize_sections
from fer_bench.leaderboard.stats import mcnemar, mcnemar_cells, mean_ci, paired_gain
from fer_bench.leaderboard.table import build_sections, build_tables, print_terminal_tables

__all__ = [
    "COLUMNS", "Column", "LoadedResults", "build_sections", "build_tables", "load_results",
    "mcnemar", "mcnemar_cells", "mean_ci", "paired_gain", "print_terminal_tables",
    "records_frame", "register_column", "summarize", "summarize_sections",
]

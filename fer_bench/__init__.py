"""fer_bench: a FERPlus facial-expression benchmark on pytest + pytest-benchmark.

Data flow, one module per stage (see ARCHITECTURE.md):
source -> clean -> split -> nhot -> task -> runner -> record -> leaderboard.
"""

__version__ = "0.1.0"

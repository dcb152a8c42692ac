"""fer_bench.cli."""

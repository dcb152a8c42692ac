"""fer_bench.planning."""

"""fer_bench.results."""

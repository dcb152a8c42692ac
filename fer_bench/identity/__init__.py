"""fer_bench.identity."""

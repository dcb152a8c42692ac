"""fer_bench.pytest."""

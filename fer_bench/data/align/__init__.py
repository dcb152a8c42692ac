"""fer_bench.data.align."""

"""fer_bench.data.labels."""

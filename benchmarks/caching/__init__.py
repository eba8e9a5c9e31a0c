"""Cache benchmarks: trace replay (hit ratios) and throughput/memory versus peers."""

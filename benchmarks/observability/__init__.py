"""What instrumentation costs on the hot paths (`python -m benchmarks.observability`)."""

"""scalekit's benchmarks: one runnable package per family (``python -m benchmarks.caching``)."""

"""Lock benchmarks: scalekit's locks beside redis-py, kazoo and python-redis-lock.

Run ``python -m benchmarks.locking`` (``--quick`` for a smoke run).
"""

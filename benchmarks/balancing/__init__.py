"""Balancing benchmarks: a discrete-event tail-latency simulator and pick+release overhead.

Run ``python -m benchmarks.balancing`` (``--quick`` for a smoke run).
"""

"""The reference e-commerce order flow, built from scalekit's public API.

Registration, catalog, cart, checkout and payment over sharded SQLite
databases, with a scalekit cache in front of product detail, a per-SKU
scalekit lock whose fencing token the stock ``UPDATE`` checks, and payment
calls balanced over several simulated gateways with outlier ejection.

Run ``python -m examples.shop`` for the load simulation and its report.
"""

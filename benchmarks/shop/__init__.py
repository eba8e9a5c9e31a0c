"""The shop's scaling benchmark: checkouts per second by lock backend and process count."""

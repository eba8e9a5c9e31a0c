"""Examples built only from scalekit's public API."""

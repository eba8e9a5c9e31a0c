"""Entry point: ``python -m benchmarks.locking [--quick] [--no-plot] ...``."""

from .run import main

main()

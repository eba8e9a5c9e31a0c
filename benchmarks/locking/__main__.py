"""Entry point: ``python -m benchmarks.locking [--quick] [--no-plot] ...``.

``python -m benchmarks.locking soak --seconds N [--seed S] [--backend B]``
runs the randomized fault schedules instead (see ``soak.py``).
"""

import sys

if sys.argv[1:2] == ["soak"]:
    from .soak import main as soak

    sys.exit(soak(sys.argv[2:]))

from .run import main

main()

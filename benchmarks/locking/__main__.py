"""Entry point: ``python -m benchmarks.locking [--quick] [--no-plot] ...``.

``python -m benchmarks.locking soak --seconds N [--seed S] [--backend B]``
runs the randomized fault schedules instead (see ``soak.py``);
``python -m benchmarks.locking lost-updates`` the fencing experiment.
"""

import sys

if sys.argv[1:2] == ["soak"]:
    from .soak import main as soak

    sys.exit(soak(sys.argv[2:]))
if sys.argv[1:2] == ["lost-updates"]:
    from .lost_updates import main as lost_updates

    sys.exit(lost_updates(sys.argv[2:]))

from .run import main

main()

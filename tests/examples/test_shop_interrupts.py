"""Ctrl-C outside the load: while the CLI starts up, and while it prints its report.

A Ctrl-C during the load is an interrupted run (test_shop_hostile.py); one
before it or after it must end the same way, on one line and exit 130,
never a `KeyboardInterrupt` traceback. A hook put first on the CLI's
PYTHONPATH holds the process inside one import until the signal comes, so
it lands there for sure: the shop is not changed for it. Memory backend,
one worker: about 2.5 s in all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_shop import ROOT, _env

# Holds the process in the import of HELD (the first import of that module)
# until a signal ends the sleep, and says so by creating the file "held".
_HOLD_IMPORT = """
import sys, time
from pathlib import Path

HELD = {held!r}


class _Hold:
    def find_spec(self, name, path=None, target=None):
        if name == HELD:
            sys.meta_path.remove(self)
            (Path(__file__).parent / "held").touch()
            time.sleep(60)
        return None


sys.meta_path.insert(0, _Hold())
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("held", "when", "reported"),
    [
        # Imported by the CLI's own module, before the options are read.
        ("examples.shop.report", "before the load", False),
        # Imported by --plot once the report's text is out.
        ("matplotlib.pyplot", "while reporting", True),
    ],
)
def test_ctrl_c_before_or_after_the_load_is_one_line_and_exit_130(
    tmp_path: Path, held: str, when: str, reported: bool
) -> None:
    pytest.importorskip("matplotlib")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOLD_IMPORT.format(held=held))
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    child = subprocess.Popen(
        [
            *(sys.executable, "-m", "examples.shop", "--duration", "0.2"),
            *("--plot", str(tmp_path / "latency.png")),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A user's Ctrl-C reaches a CLI whose SIGINT is the default: one
        # started from a background job inherits it ignored, and Python
        # then installs no KeyboardInterrupt handler.
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not (hook / "held").exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[:2000]
    assert child.returncode == 130, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"python -m examples.shop: interrupted {when}")
    # Before the load nothing ran; after it, the report was out and the load was not
    # cut short (it had ended): no INTERRUPTED line, and no plot was written.
    assert ("audit (initial = left + sold + reserved)" in stdout) is reported, stdout
    assert "INTERRUPTED" not in stdout, stdout
    assert not (tmp_path / "latency.png").exists()

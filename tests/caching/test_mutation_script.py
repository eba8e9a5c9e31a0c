"""`scripts/mutation` run again in its kept scratch directory, against a stand-in for mutmut.

The stand-in applies mutmut 3's rules for reusing an earlier run: a selected
module is mutated again unless its copy under `mutants/` is newer than its
source (mutmut compares the two files' mtimes), a module not selected is
copied there as it is, and which tests run each function is kept from the
earlier run (`mutants/mutmut-stats.json`) for the modules still mutated, so a
module the earlier run did not mutate has no tests unless that record is gone.
The real mutmut takes minutes per module; this takes about a second per run
of the script (three runs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """\
import json, os, re, shutil, sys
from pathlib import Path

status = Path("mutants/status.json")
if sys.argv[1] == "results":
    for module, verdict in sorted(json.loads(status.read_text()).items()):
        print(f"    scalekit.caching.{module}.x_f__mutmut_1: {verdict}")
    sys.exit(0)
config = Path("setup.cfg").read_text()
selected = set(re.findall(r"^    (src/\\S+)$", config.split("also_copy")[0], re.M))
mutated, current = [], set()
for source in sorted(Path("src").rglob("*.py")):
    out = Path("mutants") / source
    out.parent.mkdir(parents=True, exist_ok=True)
    if str(source) not in selected:
        shutil.copy(source, out)
        continue
    current.add(source.stem)
    if not (out.exists() and os.path.getmtime(source) < os.path.getmtime(out)):
        out.write_text("# mutmut trampolines\\n" + source.read_text())
        mutated.append(source.name)
# Which tests run each function: traced over every test when there is no record
# of an earlier run, else kept from it for the modules still mutated (and only
# new tests are traced), as mutmut 3 does.
stats = Path("mutants/mutmut-stats.json")
traced = set(json.loads(stats.read_text())) & current if stats.exists() else current
stats.write_text(json.dumps(sorted(traced)))
status.write_text(json.dumps({m: "killed" if m in traced else "no tests" for m in current}))
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(" ".join(mutated) + "\\n")
sys.exit(0 if mutated else 1)  # mutmut: "Unable to force test failures"
"""


def _stand_in(tmp_path: Path) -> dict[str, str]:
    bin_dir, stubs = tmp_path / "venv" / "bin", tmp_path / "stubs" / "mutmut"
    bin_dir.mkdir(parents=True)
    stubs.mkdir(parents=True)
    (stubs / "__init__.py").write_text("")
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={stubs.parent} exec {sys.executable} "$@"\n')
    mutmut = bin_dir / "mutmut"
    mutmut.write_text(f"#!{sys.executable}\n{STAND_IN}")
    for script in (python, mutmut):
        script.chmod(0o755)
    suite = tmp_path / "suite"
    (suite / "tests").mkdir(parents=True)
    return {
        **os.environ,
        "PYTHON": str(python),
        "MUTATION_DIR": str(tmp_path / "work"),
        "SCALEKIT_CACHETOOLS_SUITE": str(suite),
        "STAND_IN_LOG": str(tmp_path / "mutated.log"),
    }


def _run(env: dict[str, str], *modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "mutation"), *modules],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_second_run_in_the_same_directory_mutates_the_modules_it_selects(
    tmp_path: Path,
) -> None:
    env = _stand_in(tmp_path)
    first = _run(env, "keys.py")
    assert first.returncode == 0, first.stderr
    second = _run(env, "lru.py")  # lru.py's copy from the first run is newer than its source
    assert second.returncode == 0, second.stderr
    assert re.search(r"^lru\s+1\s+1\s+100\.0%", second.stdout, re.M), second.stdout
    everything = _run(env)  # a full run after partial ones mutates every module
    assert everything.returncode == 0, everything.stderr
    runs = Path(env["STAND_IN_LOG"]).read_text().splitlines()
    modules = re.search(r"MODULES=\(([^)]*)\)", (ROOT / "scripts" / "mutation").read_text())
    assert modules is not None
    assert runs[:2] == ["keys.py", "lru.py"]
    assert sorted(runs[2].split()) == sorted(modules[1].split())
    for module in modules[1].split():  # each one's mutants ran against the tests that cover it
        name = re.escape(module.removesuffix(".py"))
        assert re.search(rf"^{name}\s+1\s+1\s+100\.0%", everything.stdout, re.M), everything.stdout

"""`scripts/mutation` run again in its kept scratch directory, against a stand-in for mutmut.

The stand-in applies mutmut 3's rule for reusing a module's mutants: a
selected module is mutated again unless its copy under `mutants/` is newer
than its source (mutmut compares the two files' mtimes), and a module not
selected is copied there as it is. The real mutmut takes minutes per module;
this takes about a second per run of the script (three runs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """\
import os, re, shutil, sys
from pathlib import Path

if sys.argv[1] == "results":
    for path in sorted(Path("mutants/src/scalekit/caching").glob("*.py")):
        if path.read_text().startswith("# mutated"):
            print(f"    scalekit.caching.{path.stem}.x_f__mutmut_1: killed")
    sys.exit(0)
config = Path("setup.cfg").read_text()
selected = set(re.findall(r"^    (src/\\S+)$", config.split("also_copy")[0], re.M))
mutated = []
for source in sorted(Path("src").rglob("*.py")):
    out = Path("mutants") / source
    out.parent.mkdir(parents=True, exist_ok=True)
    if str(source) not in selected:
        shutil.copy(source, out)
    elif not (out.exists() and os.path.getmtime(source) < os.path.getmtime(out)):
        out.write_text("# mutated\\n" + source.read_text())
        mutated.append(source.name)
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

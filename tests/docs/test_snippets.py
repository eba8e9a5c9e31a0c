"""What a newcomer pastes from the README and the docs works as written.

Every `python` block in README.md and docs/*.md runs on its own in a fresh
interpreter, unless the line before it is `<!-- fragment: why -->` (a
block that uses the caller's names, such as `redis_client`); a fragment
must still compile. The README's shell commands name modules, options,
extras and scripts that exist, and the cheap ones run. About 30 seconds:
the blocks that start servers start real ones.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.test_cli import COMMANDS, _parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = (ROOT / "README.md").read_text()
INDEX = (ROOT / "docs" / "index.md").read_text()
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def _blocks(lang: str) -> list[tuple[str, str, bool]]:
    """(page:line, code, is_fragment) of every fenced block in *lang*."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S):
            if match.group(1) != lang:
                continue
            line = text[: match.start()].count("\n") + 1
            previous = text[: match.start()].rstrip("\n").rpartition("\n")[2]
            fragment = previous.startswith("<!-- fragment:")
            found.append((f"{page.name}:{line}", match.group(2), fragment))
    return found


PYTHON = _blocks("python")


@pytest.mark.parametrize("where,code,fragment", PYTHON, ids=[b[0] for b in PYTHON])
def test_python_blocks_run_as_pasted(where: str, code: str, fragment: bool, tmp_path: Path) -> None:
    compile(code, where, "exec")
    if fragment:
        return
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-2000:]}"


def _commands(text: str) -> list[str]:
    """Every `python -m ...` command in *text*: shell blocks' lines and inline code."""
    found = []
    for match in re.finditer(r"^```sh\n(.*?)^```$", text, re.M | re.S):
        for line in match.group(1).splitlines():
            found += [part.split("#")[0].strip() for part in line.split("&&")]
    found += re.findall(r"`([^`\n]*python3? -m [^`\n]*)`", text)
    return [c for c in found if c]


def _module(command: str) -> tuple[str, list[str]]:
    words = command.split()
    at = words.index("-m")
    return words[at + 1], words[at + 2 :]


README_MODULES = sorted(
    {_module(c)[0] for c in _commands(README) + _commands(INDEX) if " -m " in c}
)


@pytest.mark.parametrize("module", README_MODULES)
def test_every_module_the_readme_runs_exists(module: str) -> None:
    if module in ("venv", "pip"):
        return
    assert importlib.util.find_spec(module) is not None, module


def test_the_readme_lists_every_benchmark() -> None:
    listed = re.search(r"The benchmarks \((.*?)\) measure", README, re.S)
    assert listed, "the README's benchmark list moved"
    names = {
        name.rsplit(".", 1)[-1] for name in re.findall(r"`(?:python -m )?([\w.]*\.\w+)`", listed[1])
    }
    on_disk = {p.parent.name for p in (ROOT / "benchmarks").glob("*/__main__.py")}
    assert names == on_disk


def test_every_option_the_readme_names_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    options: set[str] = set()
    for _, target, argv in COMMANDS:
        parser = _parser(target, argv, monkeypatch)
        options |= {o for action in parser._actions for o in action.option_strings}
        monkeypatch.undo()
    named = set(re.findall(r"`(--[a-z][\w-]*)", README))
    for command in _commands(README):
        if " -m " in command:
            named |= {w for w in _module(command)[1] if w.startswith("--")}
    assert named and named <= options, named - options


def test_every_extra_the_install_lines_name_exists() -> None:
    section = PYPROJECT.partition("[project.optional-dependencies]")[2].partition("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) = \[", section, re.M))
    name = re.search(r'^name = "([^"]+)"', PYPROJECT, re.M)[1]  # type: ignore[index]
    assert {"redis", "zookeeper", "bench", "dev"} <= extras
    for text in (README, INDEX):
        for dist, extra in re.findall(r"pip install (?:-e )?'?([\w.-]+)\[([\w,]+)\]", text):
            assert dist in (name, "."), dist
            assert set(extra.split(",")) <= extras, extra
    assert f"pip install {name}" in README and f"pip install {name}" in INDEX


def test_the_test_command_exists() -> None:
    assert "./scripts/test" in _commands(README) or "./scripts/test" in README
    script = ROOT / "scripts" / "test"
    assert script.is_file() and os.access(script, os.X_OK)


def test_the_first_command_runs_and_reports_what_the_readme_says(tmp_path: Path) -> None:
    """`.venv/bin/python -m examples.shop` (the venv is this one): a few seconds of load."""
    quick_start = next(c for c in _commands(README) if "examples.shop" in c)
    module, args = _module(quick_start)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "oversold: 0" in proc.stdout
    assert "audit (initial = left + sold + reserved): exact" in proc.stdout
    assert re.search(r"gateway gw-\d: \d+ calls, \d+ failures, [1-9]\d* ejections", proc.stdout)
    assert "python -m scalekit" in README

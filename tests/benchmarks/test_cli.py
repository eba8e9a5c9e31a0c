"""Every command's --help: the command users type, plain text, defaults said, positionals explained.

The commands are every benchmark (`python -m benchmarks.<family>` and its
subcommands) and the example shop. `test_every_option_says_its_default`
walks each command's real parser, option by option.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["balancing", "caching", "locking", "observability", "rediscache", "sharding", "shop"]
# (command as typed, module and function that build and parse its arguments, argv)
COMMANDS: list[tuple[str, str, list[str]]] = [
    ("benchmarks.balancing", "benchmarks.balancing.__main__:main", []),
    ("benchmarks.caching", "benchmarks.caching.__main__:main", []),
    ("benchmarks.locking", "benchmarks.locking.run:main", []),
    ("benchmarks.locking soak", "benchmarks.locking.soak:main", []),
    ("benchmarks.locking lost-updates", "benchmarks.locking.lost_updates:main", []),
    ("benchmarks.observability", "benchmarks.observability.__main__:main", []),
    ("benchmarks.rediscache", "benchmarks.rediscache.__main__:main", []),
    ("benchmarks.rediscache soak", "benchmarks.rediscache.__main__:main", ["soak"]),
    ("benchmarks.sharding", "benchmarks.sharding.__main__:main", []),
    ("benchmarks.shop", "benchmarks.shop.__main__:main", []),
    ("benchmarks.shop soak", "benchmarks.shop.__main__:main", ["soak"]),
    ("examples.shop", "examples.shop.__main__:main", []),
]
# reST a terminal shows raw: double backticks, roles, and a bare `code` span.
MARKUP = re.compile(r"``|:[a-z]+:`|(?<![\w'])`[^`\s][^`]*`")


def _help(command: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *command.split(), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return proc.stdout


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser(
    target: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> argparse.ArgumentParser:
    """The parser *target* builds, caught when it parses (so nothing runs)."""

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    monkeypatch.setattr(sys, "argv", ["prog", *argv])
    module, _, name = target.partition(":")
    main: Callable[..., Any] = getattr(importlib.import_module(module), name)
    with pytest.raises(_Captured) as caught:
        main(argv) if argv or "observability" not in module else main()
    return caught.value.parser


def _mentions(help_text: str, default: Any) -> bool:
    if isinstance(default, Path):
        spellings = {str(default)}
        with contextlib.suppress(ValueError):
            spellings.add(str(default.resolve().relative_to(ROOT)))
    elif isinstance(default, bool):
        return True  # a flag: its default is its absence
    elif isinstance(default, int | float):
        spellings = {str(default), f"{default:g}", f"{default:,}", f"{default:,g}"}
    elif isinstance(default, list | tuple):
        spellings = {",".join(map(str, default)), ", ".join(map(str, default))}
    else:
        spellings = {str(default)}
    return any(s in help_text for s in spellings)


@pytest.mark.parametrize("command,target,argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_option_says_its_default(
    command: str, target: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = _parser(target, argv, monkeypatch)
    assert parser.prog == f"python -m {command}"
    formatter = parser._get_formatter()
    assert not MARKUP.search(parser.description or ""), parser.description
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{command} {name} has no help"
        text = formatter._expand_help(action)
        assert not MARKUP.search(text), f"{command} {name}: markup in {text!r}"
        default = action.default
        if default is None or default is argparse.SUPPRESS or default is False:
            continue
        assert "default" in text and _mentions(text, default), (
            f"{command} {name}: help {text!r} does not say its default {default!r}"
        )


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_help_names_the_command_and_has_no_markup(command: str) -> None:
    text = _help(command)
    assert text.startswith(f"usage: python -m {command} ")
    assert not MARKUP.search(text), MARKUP.search(text)
    description = text.split("\n\n")[1]
    assert description.rstrip().endswith("."), description  # a whole sentence
    positionals = text.partition("positional arguments:\n")[2].partition("\n\n")[0]
    for line in positionals.splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            assert len(line.split()) > 1, f"positional without help: {line.strip()}"


def test_shop_plot_is_redrawn_from_the_committed_results(tmp_path: Path) -> None:
    from benchmarks.shop.__main__ import _points_from_table, main

    results = ROOT / "benchmarks" / "results" / "shop.txt"
    points = _points_from_table(results.read_text())
    assert len(points) == 7 and all(rate > 0 and p99 > 0 for rate, p99 in points.values())
    assert main(["--replot", str(results), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "shop-scaling.png").stat().st_size > 10_000


def _parse(argv: list[str]) -> argparse.Namespace:
    from benchmarks._common import base_parser

    return base_parser("A benchmark.").parse_args(argv)


@pytest.mark.parametrize(("repeat", "shown"), [("0", "0"), ("-1", "-1"), ("x", "'x'")])
def test_repeat_must_be_a_positive_integer(
    repeat: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parse(["--repeat", repeat])
    assert info.value.code == 2
    assert f"argument --repeat: must be a positive integer, got {shown}" in capsys.readouterr().err


def test_a_quick_run_takes_an_explicit_repeat() -> None:
    from benchmarks._common import repeat_for

    assert repeat_for(_parse(["--quick"]), 3) == 3
    assert repeat_for(_parse(["--quick", "--repeat", "2"]), 3) == 2
    assert repeat_for(_parse([]), 3) == 7 and repeat_for(_parse(["--repeat", "9"]), 3) == 9


def test_out_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "sharding.txt"
    existing.write_text("a result\n")
    with pytest.raises(SystemExit) as info:
        _parse(["--out", str(existing)])
    assert info.value.code == 2
    assert "--out must be a folder (results go in it), got the file" in capsys.readouterr().err
    assert existing.read_text() == "a result\n"


def test_a_benchmark_refuses_repeat_zero_before_running() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sharding", "--repeat", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "argument --repeat: must be a positive integer, got 0" in proc.stderr

"""Every docstring example in the package runs and holds."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import scalekit

SRC = Path(scalekit.__file__).resolve().parent


def _modules() -> list[str]:
    found = ["scalekit"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="scalekit."):
        spec = importlib.util.find_spec(info.name)
        # compiled twins (.so) carry no Python source; their .py references are walked
        if spec is not None and (spec.origin or "").endswith(".py"):
            found.append(info.name)
    return sorted(found)


MODULES = _modules()


def _source(name: str) -> str:
    module = importlib.import_module(name)
    return Path(module.__file__ or "").read_text()


def test_the_walk_finds_every_module() -> None:
    on_disk = {
        ".".join(("scalekit", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        for p in SRC.rglob("*.py")
        if p.name != "__main__.py"
    }
    assert on_disk <= set(MODULES) | {"scalekit.__main__"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for test in finder.find(module, module.__name__):
        # only the module's own objects, not what it imports
        if test.filename and Path(test.filename).resolve() != Path(module.__file__ or "").resolve():
            continue
        examples += len(test.examples)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0
    # a module that shows an example must have it found (and so run)
    assert (examples > 0) == (">>> " in _source(name))

"""The caching API's static types hold: `mypy --strict` passes on tests/typing/cache_types.py
and reports the mistakes the types exist to catch.

Runs mypy in-process, twice: about 10 s with a cold mypy cache, 2 s with a warm one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _mypy(*args: str) -> tuple[str, int]:
    stdout, stderr, status = mypy_api.run(["--strict", "--no-error-summary", *args])
    return stdout + stderr, status


def test_the_typed_api_passes_mypy_strict() -> None:
    out, status = _mypy(str(HERE / "cache_types.py"))
    assert status == 0, out


WRONG = """
from scalekit.caching import LRUCache, TTLCache, cached

c: LRUCache[str, int] = LRUCache(10)
s: str = c.get("a", 0)
t: str = c.pop("a")
u: str = c.setdefault("a", 1)
v: str = c.peek("a", 0)

@cached(LRUCache(4))
def f(x: int) -> int:
    return x

w: str = f(1)
f.cache_info().nope
f("not an int")
x = TTLCache(maxsize=1, ttl="5")
"""


def test_mypy_reports_wrong_types(tmp_path: Path) -> None:
    snippet = tmp_path / "wrong.py"
    snippet.write_text(WRONG)
    out, status = _mypy(str(snippet))
    assert status == 1
    lines = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    code = WRONG.splitlines()
    flagged = {code[n - 1].split(" ")[0] for n in lines}
    assert flagged == {"s:", "t:", "u:", "v:", "w:", "f.cache_info().nope", 'f("not', "x"}, out
    assert (
        'Incompatible types in assignment (expression has type "int", variable has type "str")'
        in out
    )

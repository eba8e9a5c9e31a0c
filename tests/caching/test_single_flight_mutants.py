"""The copy of a shared call's exception each waiting caller raises, where mutation testing asked.

`cached`, `cachedmethod` and `RedisCache.get_or_load` give every caller
that waited for another caller's call its own copy of that call's exception
(`scalekit.caching._single_flight.own_copy`), chained to it as `__cause__`.
docs/caching.md ("The `cached` decorator") says what the copy is:
`copy.copy(exc)`, or, for a class that cannot be rebuilt from its `args`,
the same class, `args` and attributes made without the class's constructor.
Each test failed with a mutant of `_single_flight.py` that passed the rest
of the suite. Fast: no threads, the copy is made directly.
"""

from __future__ import annotations

import errno
from typing import Any

from scalekit.caching._single_flight import own_copy


def test_a_waiters_oserror_keeps_its_errno_strerror_and_filename() -> None:
    # A loader reading a file: `copy.copy` keeps the filename, which is not in `args`.
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "/srv/prices.json")
    clone = own_copy(exc)
    assert clone is not exc and type(clone) is FileNotFoundError
    assert isinstance(clone, FileNotFoundError)
    assert (clone.errno, clone.strerror, clone.filename) == (
        errno.ENOENT,
        "No such file or directory",
        "/srv/prices.json",
    )
    assert clone.args == exc.args and str(clone) == str(exc)
    assert clone.__cause__ is exc and clone.__traceback__ is None


class _Formatted(Exception):
    """A constructor that formats its argument: rebuilt from `args`, it would format twice."""

    def __init__(self, code: int) -> None:
        super().__init__(f"backend refused: code {code}")
        self.code = code


def test_a_waiters_copy_keeps_the_args_a_formatting_constructor_made() -> None:
    exc = _Formatted(503)
    clone = own_copy(exc)
    assert type(clone) is _Formatted and clone is not exc
    assert clone.args == ("backend refused: code 503",) and clone.code == 503
    assert str(clone) == str(exc)


class _PicklesAsRuntimeError(Exception):
    """Pickles as a plain `RuntimeError` (to load where its module cannot be imported)."""

    def __reduce__(self) -> Any:
        return (RuntimeError, self.args)


def test_a_waiters_copy_is_of_the_raised_class_even_when_it_pickles_as_another() -> None:
    exc = _PicklesAsRuntimeError("backend said no")
    exc.shard = 7  # type: ignore[attr-defined]
    clone = own_copy(exc)
    assert type(clone) is _PicklesAsRuntimeError  # an `except _PicklesAsRuntimeError` catches it
    assert clone.args == ("backend said no",) and clone.shard == 7  # type: ignore[attr-defined]
    assert clone.__cause__ is exc


class _MissingShard(OSError):
    """An `OSError` built by its own `__new__` from one argument: `args` cannot rebuild it."""

    def __new__(cls, shard: str) -> _MissingShard:
        return super().__new__(cls, errno.ENOENT, f"no shard {shard}")

    def __init__(self, shard: str) -> None:
        self.shard = shard


def test_a_waiters_copy_of_an_oserror_args_cannot_rebuild_keeps_errno_and_strerror() -> None:
    exc = _MissingShard("eu-1")
    assert (exc.errno, exc.strerror) == (errno.ENOENT, "no shard eu-1")
    clone = own_copy(exc)
    assert type(clone) is _MissingShard and clone is not exc
    assert (clone.errno, clone.strerror, clone.args) == (errno.ENOENT, "no shard eu-1", exc.args)
    assert clone.shard == "eu-1" and str(clone) == str(exc)
    assert clone.__cause__ is exc

"""Optional drivers: a missing one names its extra; `import *` and `dir()` work either way.

The drivers are hidden from a subprocess by a `None` entry in `sys.modules`,
which makes `import redis` raise `ModuleNotFoundError` as if it were not
installed. `tests/test_build.py` repeats the check in a virtualenv that
really has only the wheel and its core dependencies.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import scalekit.caching
import scalekit.locking
import scalekit.observability
import scalekit.sharding

ROOT = Path(__file__).resolve().parent.parent
HIDE = "import sys\nfor _m in {modules!r}:\n    sys.modules[_m] = None\n"
LAZY = {
    "scalekit.caching": {
        "NearCache": "redis",
        "NearCacheStats": "redis",
        "RedisCache": "redis",
        "RedisCacheStats": "redis",
    },
    "scalekit.locking": {
        "AsyncLease": "redis",
        "AsyncRedisLock": "redis",
        "RedisLock": "redis",
        "RedisReadWriteLock": "redis",
        "RedisSemaphore": "redis",
        "Redlock": "redis",
        "ZooKeeperLock": "zookeeper",
        "ZooKeeperReadWriteLock": "zookeeper",
        "ZooKeeperSemaphore": "zookeeper",
    },
    "scalekit.sharding": {"RedisShardStore": "redis"},
    "scalekit.observability": {
        "OpenTelemetryExporter": "opentelemetry",
        "PrometheusCollector": "prometheus",
    },
}
DRIVER = {
    "redis": "redis",
    "zookeeper": "kazoo",
    "prometheus": "prometheus_client",
    "opentelemetry": "opentelemetry",
}


def run_python(code: str, *, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE.format(modules=hide) + code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_every_lazy_backend_without_its_driver_names_the_extra() -> None:
    code = (
        "import importlib, json\n"
        "out = {}\n"
        f"for package, names in {LAZY!r}.items():\n"
        "    module = importlib.import_module(package)\n"
        "    for name in names:\n"
        "        try:\n"
        "            exec(f'from {package} import {name}')\n"
        "        except ImportError as exc:\n"
        "            from scalekit import ScaleKitError\n"
        "            out[name] = [type(exc).__name__, str(exc), exc.extra, exc.name,\n"
        "                         isinstance(exc, ModuleNotFoundError),\n"
        "                         isinstance(exc, ScaleKitError)]\n"
        "print(json.dumps(out))\n"
    )
    proc = run_python(code, hide=tuple(DRIVER.values()))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    expected = {name: extra for names in LAZY.values() for name, extra in names.items()}
    assert sorted(seen) == sorted(expected)
    for name, (cls, message, extra, module, is_mnf, is_ours) in seen.items():
        assert cls == "MissingDependencyError" and is_mnf and is_ours
        assert extra == expected[name]
        assert module == DRIVER[extra]
        assert f"pip install 'scalekit-primitives[{extra}]'" in message
        assert name in message


def test_redis_lock_message_reads_as_documented() -> None:
    proc = run_python("from scalekit.locking import RedisLock", hide=("redis",))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "scalekit.exceptions.MissingDependencyError: scalekit.locking.RedisLock needs "
        "redis-py, which is not installed; install it with "
        "pip install 'scalekit-primitives[redis]'"
    )


@pytest.mark.parametrize("hide", [(), tuple(DRIVER.values())], ids=["drivers", "no-drivers"])
def test_star_imports_work_and_load_no_driver(hide: tuple[str, ...]) -> None:
    code = (
        "from scalekit.caching import *\n"
        "from scalekit.locking import *\n"
        "from scalekit.observability import *\n"
        "from scalekit.sharding import *\n"
        "import sys\n"
        "print(LRUCache.__name__, MemoryLock.__name__, Telemetry.__name__,\n"
        f"      [m for m in {tuple(DRIVER.values())!r} if sys.modules.get(m) is not None])\n"
    )
    proc = run_python(code, hide=hide)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["LRUCache", "MemoryLock", "Telemetry", "[]"]


@pytest.mark.parametrize(
    "module",
    [scalekit.caching, scalekit.locking, scalekit.observability, scalekit.sharding],
    ids=lambda m: m.__name__,
)
def test_dir_lists_the_lazy_backends_and_all_lists_what_imports_without_drivers(
    module: object,
) -> None:
    lazy = LAZY[module.__name__]  # type: ignore[attr-defined]
    names = dir(module)
    assert set(lazy) <= set(names)
    exported = module.__all__  # type: ignore[attr-defined]
    assert exported == sorted(exported) and not set(lazy) & set(exported)
    for name in exported:
        assert hasattr(module, name)
    for name in lazy:  # the drivers are installed here: every backend resolves
        assert getattr(module, name).__name__ == name


def test_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"'scalekit\.locking' has no attribute 'RedisLok'"):
        scalekit.locking.RedisLok  # type: ignore[attr-defined]  # noqa: B018


def test_shop_plot_without_matplotlib_fails_before_the_run(tmp_path: Path) -> None:
    png = tmp_path / "latency.png"
    code = (
        "import runpy\n"
        f"sys.argv = ['examples.shop', '--plot', {str(png)!r}, '--duration', '30']\n"
        "runpy.run_module('examples.shop', run_name='__main__')\n"
    )
    proc = run_python(code, hide=("matplotlib",))
    assert proc.returncode == 2  # argparse's usage error: nothing ran for 30 s
    assert proc.stdout == ""
    assert "--plot needs matplotlib" in proc.stderr and ".[bench]" in proc.stderr
    assert not png.exists()


#: Backend modules a user may import directly (the API reference names them).
BACKEND_MODULES = {
    "scalekit.caching.redis_cache": "redis",
    "scalekit.caching.near_cache": "redis",
    "scalekit.locking.redis_lock": "redis",
    "scalekit.locking.async_redis_lock": "redis",
    "scalekit.locking.redlock": "redis",
    "scalekit.locking.redis_semaphore": "redis",
    "scalekit.locking.zookeeper_lock": "zookeeper",
    "scalekit.sharding.redis_store": "redis",
    "scalekit.observability.prometheus_exporter": "prometheus",
    "scalekit.observability.otel_exporter": "opentelemetry",
}


@pytest.mark.parametrize(("module", "extra"), sorted(BACKEND_MODULES.items()))
def test_importing_a_backend_module_without_its_driver_names_the_extra(
    module: str, extra: str
) -> None:
    code = (
        "import importlib, json\n"
        "from scalekit.exceptions import MissingDependencyError\n"
        "try:\n"
        f"    importlib.import_module({module!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print(json.dumps([exc.extra, str(exc)]))\n"
    )
    result = run_python(code, hide=(DRIVER[extra],))
    assert result.returncode == 0, result.stderr
    got_extra, message = json.loads(result.stdout)
    assert got_extra == extra
    assert f"pip install 'scalekit-primitives[{extra}]'" in message


def test_a_fenced_store_and_the_msgpack_serializer_name_their_extra() -> None:
    code = (
        "import json\n"
        "from scalekit.exceptions import MissingDependencyError\n"
        "from scalekit.locking.fencing import RedisFencedStore\n"
        "from scalekit.caching.serializers import MsgpackSerializer\n"
        "out = []\n"
        "for make in (lambda: RedisFencedStore(object()), MsgpackSerializer):\n"
        "    try:\n"
        "        make()\n"
        "    except MissingDependencyError as exc:\n"
        "        out.append(exc.extra)\n"
        "print(json.dumps(out))\n"
    )
    result = run_python(code, hide=("redis", "msgpack"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["redis", "msgpack"]


@pytest.mark.parametrize(
    "package",
    [
        "scalekit.balancing",
        "scalekit.caching",
        "scalekit.locking",
        "scalekit.observability",
        "scalekit.sharding",
        "scalekit.testing",
    ],
)
def test_dir_lists_public_names_only(package: str) -> None:
    module = importlib.import_module(package)
    names = dir(module)
    assert names == sorted(names)
    private = [n for n in names if n.startswith("_")]
    assert private == []
    helpers = {"lazy_exports", "TYPE_CHECKING", "annotations"} & set(names)
    assert helpers == set()
    assert set(module.__all__) | set(LAZY.get(package, {})) <= set(names)
    for name in names:  # everything dir() offers resolves
        getattr(module, name)


@pytest.mark.parametrize(
    ("flag", "value", "driver", "extra"),
    [
        ("--redis", "redis://127.0.0.1:1/0", "redis", "redis"),
        ("--redis-cluster", "redis://127.0.0.1:1", "redis", "redis"),
        ("--zookeeper", "127.0.0.1:1", "kazoo", "zookeeper"),
    ],
)
def test_shop_backend_without_its_driver_names_the_extra(
    flag: str, value: str, driver: str, extra: str
) -> None:
    code = (
        "import runpy\n"
        f"sys.argv = ['examples.shop', {flag!r}, {value!r}, '--duration', '30']\n"
        "runpy.run_module('examples.shop', run_name='__main__')\n"
    )
    proc = run_python(code, hide=(driver,))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"python -m examples.shop: error: {flag} needs {driver}, which is not installed; "
        f"install it with pip install 'scalekit-primitives[{extra}]'"
    ]


def test_introspection_passes_over_a_backend_whose_driver_is_missing() -> None:
    # dir() lists the backends; hasattr, getattr's default, inspect and help()
    # tolerate only AttributeError, which the attribute lookup raises.
    code = (
        "import inspect, json, pydoc\n"
        "import scalekit.caching as C, scalekit.locking as L\n"
        "from scalekit import MissingBackendError, ScaleKitError\n"
        "out = [hasattr(L, 'RedisLock'), getattr(L, 'RedisLock', None),\n"
        "       'RedisLock' in dir(L), [n for n, _ in inspect.getmembers(L)] == sorted(\n"
        "       n for n in dir(L) if hasattr(L, n)), len(inspect.getmembers(C)) > 0,\n"
        "       'MemoryLock' in pydoc.render_doc(L)]\n"
        "try:\n"
        "    L.RedisLock\n"
        "except AttributeError as exc:\n"
        "    out += [type(exc).__name__, isinstance(exc, ScaleKitError), exc.name, exc.extra,\n"
        "            exc.driver, exc.obj is L, str(exc)]\n"
        "print(json.dumps(out))\n"
    )
    proc = run_python(code, hide=tuple(DRIVER.values()))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        False,
        None,
        True,
        True,
        True,
        True,
        "MissingBackendError",
        True,
        "RedisLock",
        "redis",
        "redis",
        True,
        "scalekit.locking.RedisLock needs redis-py, which is not installed; "
        "install it with pip install 'scalekit-primitives[redis]'",
    ]


def test_every_module_imports_or_names_its_extra_and_pydoc_renders_it() -> None:
    # Every module of the package, private ones included (an API reference or
    # `python -m pydoc` may import any), without any optional driver: it imports
    # and pydoc renders it, or it raises the MissingDependencyError that names
    # the extra, which `python -m pydoc` prints as its one line.
    code = (
        "import contextlib, importlib, io, json, pkgutil, pydoc, sys\n"
        "import scalekit\n"
        "from scalekit.exceptions import MissingDependencyError\n"
        "out = {}\n"
        "for info in pkgutil.walk_packages(scalekit.__path__, 'scalekit.'):\n"
        "    try:\n"
        "        module = importlib.import_module(info.name)\n"
        "    except MissingDependencyError as exc:\n"
        "        shown = io.StringIO()\n"
        "        sys.argv = ['pydoc', info.name]\n"
        "        with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):\n"
        "            pydoc.cli()  # python -m pydoc NAME: prints the problem, exits 1\n"
        "        out[info.name] = [exc.extra, str(exc), shown.getvalue()]\n"
        "    except Exception as exc:\n"
        "        out[info.name] = ['raw', f'{type(exc).__name__}: {exc}', '']\n"
        "    else:\n"
        "        out[info.name] = [None, pydoc.render_doc(module, renderer=pydoc.plaintext), '']\n"
        "print(json.dumps(out))\n"
    )
    proc = run_python(code, hide=(*DRIVER.values(), "msgpack"))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert {"scalekit.caching._cache_aside", "scalekit.caching._cfreq"} <= set(seen)
    raw = {name: message for name, (extra, message, _) in seen.items() if extra == "raw"}
    assert raw == {}
    for name, (extra, message, shown) in seen.items():
        if extra is None:
            assert name in message  # the rendered page
            continue
        hint = f"pip install 'scalekit-primitives[{extra}]'"
        assert hint in message, name
        assert shown.strip() == f"problem in {name} - MissingDependencyError: {message}"
    needs = {name: extra for name, (extra, _, _) in seen.items() if extra is not None}
    for module, extra in BACKEND_MODULES.items():
        assert needs[module] == extra

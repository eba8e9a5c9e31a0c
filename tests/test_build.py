"""Built distributions: the sdist carries the Cython sources, each wheel the implementation it says.

The sdist and the wheel built from it, as `python -m build` makes them
(isolated: its own environment with only the declared build requirements),
are built once for the module and checked by two tests: what each holds, and
that the wheel installs alone. Takes ~30 s (that isolated build, compiling
the extension, then two more wheels from the sdist without isolation, pure
Python and with no working compiler), ~5 s for a fresh environment to install
the wheel into and ~10 s more (two compiles of a one-function module at
once), several times that on a loaded machine; bounded by their timeouts.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import scalekit

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_COMPILED = os.environ.get("SCALEKIT_REQUIRE_COMPILED") == "1"
# What an unpacked wheel says about itself: where scalekit came from, the sketch class's
# module, the modules of LRUCache's, SIEVECache's, TinyLFUCache's, LFUCache's and
# S3FIFOCache's methods and python -m scalekit's implementation line.
_PROBE = (
    "import sys; sys.path.insert(0, sys.argv[1]); import scalekit, scalekit.caching as c; "
    "from scalekit._compiled import implementation; "
    "print(scalekit.__file__); print(type(c.TinyLFUCache(9)._sketch).__module__); "
    "print(c.LRUCache.__mro__[1].__module__, c.SIEVECache.__mro__[1].__module__, "
    "c.TinyLFUCache.__mro__[1].__module__, c.LFUCache.__mro__[1].__module__, "
    "c.S3FIFOCache.__mro__[1].__module__); "
    "print(implementation())"
)
# The compiled modules, as hatch_build.EXTENSIONS lists them.
_MODULES = ("_cfreq", "_clinked", "_csketch", "_ctinylfu")


def _build(source: Path, out: Path, *args: str, **env_vars: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALEKIT_")}
    env.update(env_vars)
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *args, "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )


def _probe(wheel: Path, into: Path) -> list[str]:
    zipfile.ZipFile(wheel).extractall(into)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALEKIT_")}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", _PROBE, str(into)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=into,
    ).stdout.splitlines()


def _require_a_compiler() -> None:
    if not REQUIRE_COMPILED:
        try:
            importlib.import_module("scalekit.caching._csketch")
        except ImportError as exc:
            pytest.skip(f"no compiled extension here, so no compiler assumed ({exc})")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel `python -m build` builds from it, isolated, as a user would."""
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALEKIT_")}
    if REQUIRE_COMPILED:
        env["SCALEKIT_REQUIRE_COMPILED"] = "1"
    # The isolated environments fetch hatchling, Cython and setuptools: 10-60 s.
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    (sdist,) = out.glob("scalekit_primitives-*.tar.gz")
    (wheel,) = out.glob("scalekit_primitives-*.whl")
    return sdist, wheel


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sdist_and_wheels_hold_the_implementation_they_were_built_for(
    tmp_path: Path, dists: tuple[Path, Path]
) -> None:
    _require_a_compiler()
    version = scalekit.__version__
    # The wheel `python -m build` made from the sdist is the compiled one.
    sdist, compiled = dists
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
        names = {name.split("/", 1)[-1] for name in tar.getnames()}
    assert {"hatch_build.py"} | {f"src/scalekit/caching/{m}.pyx" for m in _MODULES} <= names
    assert not [n for n in names if n.endswith((".c", ".so", ".pyd"))], (
        "generated files in the sdist"
    )
    unpacked = tmp_path / "src" / f"scalekit_primitives-{version}"

    # From the sdist, as pip installs from source: asked for pure Python, and with
    # no working compiler (setuptools takes CC from the environment).
    _build(unpacked, tmp_path / "pure", "--wheel", SCALEKIT_PURE_PYTHON="1")
    _build(unpacked, tmp_path / "no-cc", "--wheel", CC=str(tmp_path / "no-such-cc"))
    (pure,) = (tmp_path / "pure").glob("*.whl")
    (no_cc,) = (tmp_path / "no-cc").glob("*.whl")

    assert pure.name == no_cc.name == f"scalekit_primitives-{version}-py3-none-any.whl"
    assert zipfile.ZipFile(no_cc).namelist() == zipfile.ZipFile(pure).namelist()
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert compiled.name.startswith(f"scalekit_primitives-{version}-{tag}-{tag}-")
    assert not compiled.name.endswith("-any.whl")
    compiled_names = zipfile.ZipFile(compiled).namelist()
    pure_names = zipfile.ZipFile(pure).namelist()
    binaries = sorted(n for n in compiled_names if n.endswith((".so", ".pyd")))
    assert [n.split(".")[0] for n in binaries] == [f"scalekit/caching/{m}" for m in _MODULES]
    # Built without debug information (-g0): no DWARF sections, and a fraction of
    # the size (the four modules were 4.2 MB with it, about 0.7 MB without).
    with zipfile.ZipFile(compiled) as wheel:
        for name in binaries:
            assert b".debug_info" not in wheel.read(name), name
        assert sum(wheel.getinfo(name).file_size for name in binaries) < 1_000_000
    assert not [n for n in pure_names if n.endswith((".so", ".pyd"))]
    for names in (compiled_names, pure_names):
        assert not [n for n in names if n.endswith((".pyx", ".c"))]
    # The wheels differ only by the extension (and their metadata).
    assert {n for n in compiled_names if ".dist-info/" not in n} - set(pure_names) == {
        n for n in compiled_names if n.endswith((".so", ".pyd"))
    }

    out = _probe(compiled, tmp_path / "compiled-site")
    assert out[0] == str(tmp_path / "compiled-site" / "scalekit" / "__init__.py")
    assert out[1] == "scalekit.caching._csketch"
    assert out[2].split() == [
        "scalekit.caching._clinked",
        "scalekit.caching._clinked",
        "scalekit.caching._ctinylfu",
        "scalekit.caching._cfreq",
        "scalekit.caching._cfreq",
    ]
    assert out[3].startswith("compiled extension for TinyLFU's frequency sketch")
    assert "not built" not in out[3]
    out = _probe(pure, tmp_path / "pure-site")
    assert out[0] == str(tmp_path / "pure-site" / "scalekit" / "__init__.py")
    assert out[1:] == [
        "scalekit.caching._sketch",
        "scalekit.caching._ordered scalekit.caching.base scalekit.caching._tinylfu_sizing "
        "scalekit.caching.base scalekit.caching.base",
        "pure Python (the compiled extension is not built)",
    ]


_COMPILE_ONE = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import hatch_build
hatch_build.EXTENSIONS = (("tiny", "tiny.pyx"),)
((module, path),) = hatch_build.CythonBuildHook._compile(Path(sys.argv[2]))
sys.path.insert(0, str(path.parent))
import tiny
print(path, path.stat().st_size, tiny.answer())
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_builds_running_at_once_each_compile_in_their_own_directory(tmp_path: Path) -> None:
    # Two builds of one tree at once (an editable install next to a wheel build)
    # once wrote the same build/ files, and a module came out empty.
    _require_a_compiler()
    (tmp_path / "tiny.pyx").write_text("def answer():\n    return 42\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALEKIT_")}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _COMPILE_ONE, str(ROOT), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = []
    for run in runs:
        out, err = run.communicate(timeout=100)
        assert run.returncode == 0, err
        outputs.append(out.split())
    (first, size1, answer1), (second, size2, answer2) = outputs
    assert Path(first).parent != Path(second).parent
    assert int(size1) > 0 and int(size2) > 0 and answer1 == answer2 == "42"
    # Each build's directory is removed when its process ends.
    assert not Path(first).exists() and not Path(second).exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_installs_alone_and_holds_only_the_package(
    tmp_path: Path, dists: tuple[Path, Path]
) -> None:
    # The wheel of `dists`, installed with its core dependencies only into a
    # fresh environment (by this interpreter's pip, which pip 22.3 and newer
    # can point at another environment: no second pip to bootstrap there).
    sdist, wheel = dists
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"scalekit", f"scalekit_primitives-{scalekit.__version__}.dist-info"}
    assert "scalekit/py.typed" in names
    metadata = zipfile.ZipFile(wheel).read(
        f"scalekit_primitives-{scalekit.__version__}.dist-info/METADATA"
    )
    assert b"\nName: scalekit-primitives\n" in metadata and b"Project-URL" not in metadata
    with tarfile.open(sdist) as tar:
        members = {name.split("/", 1)[-1] for name in tar.getnames()}
    assert {"LICENSE", "data/traces/README.md", "data/traces/cache2k-LICENSE.txt"} <= members

    env_dir = tmp_path / "venv"
    pip_version = tuple(
        int(part) for part in importlib.import_module("pip").__version__.split(".")[:2]
    )
    venv.create(env_dir, with_pip=pip_version < (22, 3))
    py = env_dir / "bin" / "python"
    pip = (
        [sys.executable, "-m", "pip", "--python", str(py)]
        if pip_version >= (22, 3)
        else [str(py), "-m", "pip"]
    )
    subprocess.run(
        [*pip, "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import importlib.util as u, scalekit, scalekit.caching, scalekit.balancing, "
        "scalekit.sharding, scalekit.locking, scalekit.testing\n"
        "print(scalekit.__version__, u.find_spec('redis') is None, u.find_spec('kazoo') is None)\n"
        "try:\n"
        "    from scalekit.locking import RedisLock\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.splitlines()
    assert out[0].split() == [scalekit.__version__, "True", "True"]
    assert out[1] == (
        "MissingDependencyError scalekit.locking.RedisLock needs redis-py, which is not "
        "installed; install it with pip install 'scalekit-primitives[redis]'"
    )
    for package in ("tests", "benchmarks", "examples"):
        found = subprocess.run(
            [str(py), "-c", f"import importlib.util as u; print(u.find_spec({package!r}))"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        ).stdout.strip()
        assert found == "None", f"the wheel installed {package}"

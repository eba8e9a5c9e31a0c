"""Built distributions: the sdist carries the Cython sources, each wheel the implementation it says.

Takes ~20 s (four builds without isolation, one of them compiling the
extension) and ~10 s more (two compiles of a one-function module at
once), several times that on a loaded machine; bounded by their timeouts.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
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


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sdist_and_wheels_hold_the_implementation_they_were_built_for(tmp_path: Path) -> None:
    if not REQUIRE_COMPILED:
        try:
            importlib.import_module("scalekit.caching._csketch")
        except ImportError as exc:
            pytest.skip(f"no compiled extension here, so no compiler assumed ({exc})")
    version = scalekit.__version__
    _build(ROOT, tmp_path / "sdist", "--sdist", SCALEKIT_REQUIRE_COMPILED="1")
    (sdist,) = (tmp_path / "sdist").glob("scalekit_primitives-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
        names = {name.split("/", 1)[-1] for name in tar.getnames()}
    assert {"hatch_build.py"} | {f"src/scalekit/caching/{m}.pyx" for m in _MODULES} <= names
    assert not [n for n in names if n.endswith((".c", ".so", ".pyd"))], (
        "generated files in the sdist"
    )
    unpacked = tmp_path / "src" / f"scalekit_primitives-{version}"

    # From the sdist, as pip installs from source: with a compiler, asked for pure
    # Python, and with no working compiler (setuptools takes CC from the environment).
    _build(unpacked, tmp_path / "compiled", "--wheel", SCALEKIT_REQUIRE_COMPILED="1")
    _build(unpacked, tmp_path / "pure", "--wheel", SCALEKIT_PURE_PYTHON="1")
    _build(unpacked, tmp_path / "no-cc", "--wheel", CC=str(tmp_path / "no-such-cc"))
    (compiled,) = (tmp_path / "compiled").glob("*.whl")
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
    if not REQUIRE_COMPILED:
        try:
            importlib.import_module("scalekit.caching._csketch")
        except ImportError as exc:
            pytest.skip(f"no compiled extension here, so no compiler assumed ({exc})")
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

"""The package itself: version, exports, no optional driver on import."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import scalekit
from scalekit import exceptions
from scalekit.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent


def test_version_and_sorted_exports() -> None:
    assert scalekit.__version__.count(".") == 2
    assert list(scalekit.__all__) == sorted(scalekit.__all__)
    for name in scalekit.__all__:
        assert hasattr(scalekit, name)


def test_install_hints_name_the_distribution_not_the_import_package() -> None:
    # `pip install scalekit` installs Scalekit Inc.'s SDK, not this library.
    assert 'name = "scalekit-primitives"' in (ROOT / "pyproject.toml").read_text()
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("src/**/*.py")]
    # The README's warning about that name is the one mention allowed.
    hints = re.compile(r"pip install[ '\"]+scalekit(?!-primitives|` installs a different)\b")
    for path in files:
        text = path.read_text()
        assert not hints.search(text), f"{path.relative_to(ROOT)}: {hints.search(text)}"
    readme = (ROOT / "README.md").read_text()
    assert "pip install scalekit-primitives" in readme and "scalekit-sdk-python" in readme


def test_exception_hierarchy_matches_builtins() -> None:
    assert issubclass(exceptions.ConfigurationError, ValueError)
    assert issubclass(exceptions.BackendUnavailableError, exceptions.BackendError)
    assert issubclass(exceptions.BackendUnavailableError, ConnectionError)
    assert issubclass(exceptions.LockTimeoutError, TimeoutError)
    assert issubclass(exceptions.LockTimeoutError, exceptions.LockError)
    for cls in (exceptions.LockNotOwnedError, exceptions.LockLostError):
        assert issubclass(cls, exceptions.LockError)
    assert issubclass(exceptions.RoutingError, LookupError)
    assert issubclass(exceptions.NoAvailableEndpointError, LookupError)
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.ScaleKitError)
    err = exceptions.LockNotOwnedError("not held", name="stock:42")
    assert err.name == "stock:42"
    assert exceptions.RoutingError("no shard", key=7).key == 7


def test_import_does_not_load_optional_drivers() -> None:
    code = (
        "import sys, scalekit, scalekit.testing; "
        "print(sorted(m for m in ('redis', 'kazoo') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_python_m_scalekit_prints_version_and_backends() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scalekit"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith(f"scalekit {scalekit.__version__}")
    labels = [line.split()[0] for line in out.splitlines()[1:]]
    for backend in ("redis", "zookeeper", "msgpack", "prometheus", "opentelemetry", "psycopg"):
        assert backend in labels, out


def test_python_m_scalekit_has_help_and_refuses_unknown_arguments() -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "scalekit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m scalekit")
    assert "scalekit 0" not in helped.stdout  # the help, not the report
    bogus = subprocess.run(
        [sys.executable, "-m", "scalekit", "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert bogus.returncode == 2 and bogus.stdout == ""
    assert "unrecognized arguments: --bogus" in bogus.stderr


def test_every_exception_is_importable_from_scalekit() -> None:
    for name in exceptions.__all__:
        assert getattr(scalekit, name) is getattr(exceptions, name)
        assert name in scalekit.__all__


def test_fake_clock_moves_only_forward() -> None:
    clock = FakeClock(5.0)
    assert clock() == 5.0
    assert clock.advance(1.5) == 6.5
    clock.set(10.0)
    assert clock.time() == 10.0
    with pytest.raises(ValueError, match="must not go backwards"):
        clock.set(9.0)
    with pytest.raises(ValueError, match="seconds must be a non-negative"):
        clock.advance(-1)


def test_fake_clock_copies_and_pickles_with_its_time() -> None:
    import copy
    import pickle

    clock = FakeClock(3.5)
    for clone in (copy.copy(clock), copy.deepcopy(clock), pickle.loads(pickle.dumps(clock))):
        assert clone() == 3.5
        clone.advance(1)
        assert clone() == 4.5 and clock() == 3.5


#: The sdist's top level: pyproject.toml's only-include, plus what hatchling adds.
SDIST_TOP = {
    "src", "tests", "benchmarks", "examples", "docs", "data", "scripts", "hatch_build.py",
    "mkdocs.yml", "README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "PKG-INFO",
    ".gitignore",
}  # fmt: skip


def test_the_sdist_ships_the_project_files_not_whatever_lies_in_the_tree(tmp_path: Path) -> None:
    # Builds in-process with hatchling from a copy of the tracked files plus
    # strays (about 2 s): an untracked folder at the top and the CI runner's
    # folder stay out; everything else shipped is a tracked file.
    builders = pytest.importorskip("hatchling.builders.sdist")
    import shutil

    tracked = (
        subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        )
        .stdout.decode()
        .split("\0")
    )
    tree = tmp_path / "tree"
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    (tree / "repro").mkdir()
    (tree / "repro" / "notes.py").write_text("print('a reviewer's scratch file')\n")
    (tree / "stray.txt").write_text("left behind\n")
    (sdist,) = builders.SdistBuilder(str(tree)).build(directory=str(tmp_path / "dist"))
    with tarfile.open(sdist) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {name.split("/")[0] for name in members} == SDIST_TOP
    assert members - {"PKG-INFO"} <= set(tracked)
    assert {"src/scalekit/__init__.py", "data/traces/README.md", "LICENSE"} <= members


def test_the_cli_stops_quietly_when_its_reader_goes_away() -> None:
    # `python -m scalekit | head -1`: the pipe closes after one line
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-m", "scalekit"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # nothing reads: every print meets a closed pipe
    err = child.stderr.read().decode()
    child.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err

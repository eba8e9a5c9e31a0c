"""Hatch build hook: compile scalekit's optional Cython extension when it can.

The pure-Python modules are the reference implementation and the fallback;
the extension holds compiled twins of a few hot paths (see `EXTENSIONS`).
For a wheel (standard or editable), this hook cythonizes and compiles them
with setuptools' `build_ext`:

* built: a standard wheel includes the modules and is tagged for this
  interpreter and platform; an editable install gets them next to their
  `.pyx` sources in `src/` (ignored by git), where the editable path finds them;
* not built, because `SCALEKIT_PURE_PYTHON=1` is set, Cython or setuptools
  is missing, or there is no working C compiler or no Python headers: the
  wheel is the pure-Python `py3-none-any` one (`python -m scalekit` says so),
  unless `SCALEKIT_REQUIRE_COMPILED=1` is set, which makes that an error.

The sdist always carries the `.pyx` sources and this hook, never generated C.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# (module, source) of every compiled twin; each source sits next to its pure module.
EXTENSIONS = (
    ("scalekit.caching._csketch", "src/scalekit/caching/_csketch.pyx"),
    ("scalekit.caching._clinked", "src/scalekit/caching/_clinked.pyx"),
    ("scalekit.caching._ctinylfu", "src/scalekit/caching/_ctinylfu.pyx"),
    ("scalekit.caching._cfreq", "src/scalekit/caching/_cfreq.pyx"),
)

_TRUE = ("1", "true", "yes", "on")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


class CythonBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles `EXTENSIONS` into the wheel when a compiler is available."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        editable = version == "editable"
        if editable:
            self._remove_inplace(root)
        if _flag("SCALEKIT_PURE_PYTHON"):
            self.app.display_info("scalekit: SCALEKIT_PURE_PYTHON is set; building pure Python")
            return
        try:
            built = self._compile(root)
        except Exception as exc:
            if _flag("SCALEKIT_REQUIRE_COMPILED"):
                raise RuntimeError(
                    f"scalekit: the compiled extension did not build ({exc}) and "
                    "SCALEKIT_REQUIRE_COMPILED is set"
                ) from exc
            self.app.display_warning(
                f"scalekit: building pure Python, the compiled extension did not build: {exc}"
            )
            return
        for module, path in built:
            relative = module.replace(".", "/") + path.name[path.name.index(".") :]
            if editable:
                # Renamed into place: a running process keeps the module it mapped.
                target = root / "src" / relative
                staged = target.with_name(target.name + ".new")
                shutil.copy2(path, staged)
                os.replace(staged, target)
            else:
                build_data["force_include"][str(path)] = relative
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    @staticmethod
    def _remove_inplace(root: Path) -> None:
        # A previous editable build's modules would shadow a pure-Python reinstall.
        suffixes = (".so", ".pyd")
        for module, _ in EXTENSIONS:
            package = root / "src" / Path(*module.split(".")[:-1])
            for stale in package.glob(module.rsplit(".", 1)[1] + ".*"):
                if stale.suffix in suffixes:
                    stale.unlink()

    @staticmethod
    def _compile(root: Path) -> list[tuple[str, Path]]:
        include = Path(sysconfig.get_paths()["include"])
        if not (include / "Python.h").exists():
            raise RuntimeError(f"no Python headers ({include / 'Python.h'} is missing)")
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension

        # A directory of its own per build: two builds at once (an editable
        # install next to a wheel build) must not write the same files.
        parent = root / "build"
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"cython-{sys.implementation.cache_tag}-", dir=parent))
        atexit.register(shutil.rmtree, work, ignore_errors=True)
        # No debug information: it would make the modules several times larger
        # (Python's own CFLAGS carry -g); MSVC keeps it apart, in .pdb files.
        flags = [] if sys.platform == "win32" else ["-g0"]
        extensions = [
            Extension(module, [str(root / source)], extra_compile_args=flags)
            for module, source in EXTENSIONS
        ]
        modules = cythonize(  # type: ignore[no-untyped-call]
            extensions,
            build_dir=str(work / "c"),
            compiler_directives={"language_level": 3},
            quiet=True,
        )
        dist = Distribution({"ext_modules": modules})
        command: Any = dist.get_command_obj("build_ext")
        command.build_lib = str(work / "lib")
        command.build_temp = str(work / "temp")
        # Always compile: a module left by an earlier build may be from another compiler.
        command.force = True
        command.ensure_finalized()
        command.run()
        built = []
        for module, _ in EXTENSIONS:
            path = work / "lib" / command.get_ext_filename(module)
            if not path.exists():
                raise RuntimeError(f"build_ext did not produce {path}")
            built.append((module, path))
        return built

"""The API reference renders every docstring as written.

Builds the MkDocs site (or reads the one named by ``SCALEKIT_DOCS_SITE``,
which ``scripts/test`` sets after its strict build) and reads the HTML the
way a visitor sees it: no raw reST roles or field lists, doctest prompts
kept inside code blocks, and the prose after a section left outside the
tables that mkdocstrings draws for parameters and exceptions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: A Sphinx role or field list: `:class:`, `:raises:`, and the forms that name
#: something before the closing colon (`:raises KeyError:`, `:param key:`,
#: `:type key: str`), plus reST's double-backtick literals.
RAW_MARKUP = re.compile(
    r":(class|meth|func|mod|attr|data|exc|obj|param|raises?|returns?|rtype|type|var|ivar|cvar)"
    r"(\s+[\w.\[\], |*]+)?:|``"
)


def test_the_raw_markup_check_sees_fields_that_name_their_subject() -> None:
    for raw in (":raises KeyError: if absent", ":param key: the key", ":class:`Cache`", "``x``"):
        assert RAW_MARKUP.search(raw), raw
    for clean in ("Raises:", "Args:", "key: the key", '`{"a": 1}`'):
        assert not RAW_MARKUP.search(clean), clean


def test_no_docstring_in_the_source_carries_sphinx_fields() -> None:
    import ast

    found = []
    for path in sorted((ROOT / "src" / "scalekit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = (ast.get_docstring(node, clean=False) or "").replace("```", "")  # fences
                found += [f"{path.name}: {m.group(0)}" for m in RAW_MARKUP.finditer(doc)]
    assert found == []


class _Page(HTMLParser):
    """Splits a page's text into what is in tables, code blocks, quotes and elsewhere."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = {"table": 0, "pre": 0, "blockquote": 0}
        self.text: dict[str, list[str]] = {"table": [], "pre": [], "blockquote": [], "prose": []}
        self.code_blocks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.depth:
            self.depth[tag] += 1
        if tag == "pre" and self.depth["pre"] == 1:
            self.code_blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.depth:
            self.depth[tag] -= 1

    def handle_data(self, data: str) -> None:
        if self.depth["pre"]:
            self.code_blocks[-1] += data
        for where in ("pre", "table", "blockquote"):
            if self.depth[where]:
                self.text[where].append(data)
                return
        self.text["prose"].append(data)

    def joined(self, where: str) -> str:
        return "".join(self.text[where])


def _build(project: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Run the strict build `scripts/test` runs; never `--quiet`, which hides
    the warnings that `--strict` counts."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    return subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("SCALEKIT_DOCS_SITE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("site")
    built = _build(ROOT, out)
    warnings = [line for line in built.stderr.splitlines() if "WARNING" in line]
    assert built.returncode == 0 and not warnings, built.stderr[-3000:]
    return out


def test_the_strict_build_runs_without_quiet() -> None:
    # `--quiet` drops the warnings before `--strict` can count them
    lines = (ROOT / "scripts" / "test").read_text().splitlines()
    build = next(line for line in lines if '/mkdocs" build' in line)
    assert "--strict" in build and "--quiet" not in build and "-q" not in build.split()


_BAD_DOCSTRINGS = {
    "a broken Raises pair": '''
def f() -> None:
    """Do nothing.

    Raises:
        ValueError: never.

        Afterwards nothing changes: a paragraph at the items' indent
        whose second line is no exception and its description.
    """
''',
    "a missing cross-reference": '''
def f() -> None:
    """Do nothing, unlike [g][badmod.g]."""
''',
}


@pytest.mark.parametrize("fault", sorted(_BAD_DOCSTRINGS))
def test_a_bad_docstring_fails_the_strict_build(fault: str, tmp_path: Path) -> None:
    # a small project with the reference's own mkdocs configuration
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["nav"] = [{"Home": "index.md"}]
    handler = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    handler["paths"] = ["src"]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "badmod.py").write_text(_BAD_DOCSTRINGS[fault])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# bad\n\n::: badmod.f\n")
    built = _build(tmp_path, tmp_path / "site")
    assert built.returncode != 0, built.stderr[-2000:]
    assert "WARNING" in built.stderr


def _reference_pages(site: Path) -> list[Path]:
    pages = sorted((site / "api").glob("*/index.html"))
    assert len(pages) >= 7, pages
    return pages


def _read(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_no_raw_rest_markup_anywhere(site: Path) -> None:
    for path in _reference_pages(site):
        page = _read(path)
        for where in ("prose", "table"):
            text = page.joined(where)
            hits = RAW_MARKUP.findall(text)
            assert not hits, f"{path.parent.name}: raw markup {hits[:5]} in {where}"
            # a backtick left in rendered text is a code span that did not close
            stray = [text[max(0, i - 30) : i + 30] for i, c in enumerate(text) if c == "`"]
            assert not stray, f"{path.parent.name}: stray backticks in {where}: {stray[:3]}"


def test_doctests_render_as_code_with_their_prompts(site: Path) -> None:
    total = 0
    for path in _reference_pages(site):
        page = _read(path)
        assert ">>>" not in page.joined("prose"), path
        assert not page.joined("blockquote").strip(), f"{path}: text rendered as a quote"
        total += page.joined("pre").count(">>> ")
    assert total >= 40
    caching = _read(site / "api" / "caching" / "index.html").joined("pre")
    # LRUCache's example, one statement per line, prompts intact
    assert '>>> cache = LRUCache(maxsize=2)\n>>> cache["a"], cache["b"] = 1, 2\n' in caching


def test_prose_after_a_section_stays_out_of_its_table(site: Path) -> None:
    locking = _read(site / "api" / "locking" / "index.html")
    # RedisLock's and Redlock's "Guarantees" paragraphs follow their Raises sections
    assert locking.joined("prose").count("Guarantees") >= 2
    tables = locking.joined("table")
    assert "Guarantees" not in tables
    for path in _reference_pages(site):
        tables = _read(path).joined("table")
        for later in ("Thread-safe", "Runtime complexity", "Guarantees:"):
            assert later not in tables, f"{path.parent.name}: {later!r} swallowed into a table"


class _RaisesTables(HTMLParser):
    """Collects the rows of every Raises table: each cell's text and paragraph count."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[tuple[str, int]]] = []
        self.title = ""  # text of the latest section title
        self.in_title = self.in_raises = False
        self.cell: list[str] | None = None
        self.paragraphs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "span" and ("class", "doc-section-title") in attrs:
            self.in_title, self.title = True, ""
        elif tag == "table":
            self.in_raises = self.title.strip() == "Raises:"
            self.title = ""
        elif self.in_raises and tag == "tr":
            self.rows.append([])
        elif self.in_raises and tag == "td":
            self.cell, self.paragraphs = [], 0
        elif self.cell is not None and tag == "p":
            self.paragraphs += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self.in_title = False
        elif tag == "table":
            self.in_raises = False
        elif tag == "td" and self.cell is not None:
            self.rows[-1].append((" ".join("".join(self.cell).split()), self.paragraphs))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        if self.cell is not None:
            self.cell.append(data)


#: A Raises row's first cell: one exception class, maybe dotted.
EXCEPTION_NAME = re.compile(r"[A-Za-z_][\w.]*")


def _swallowed(html: str) -> list[str]:
    """Rows of Raises tables that hold anything but one exception and its one paragraph."""
    tables = _RaisesTables()
    tables.feed(html)
    bad = []
    for row in tables.rows:
        if row and (len(row) != 2 or not EXCEPTION_NAME.fullmatch(row[0][0]) or row[1][1] > 1):
            bad.append(" | ".join(text for text, _ in row)[:120])
    return bad


def test_the_raises_check_sees_a_swallowed_paragraph() -> None:
    def table(*rows: str) -> str:
        return (
            '<p><span class="doc-section-title">Raises:</span></p><table><tbody>'
            + "".join(rows)
            + "</tbody></table>"
        )

    good = "<tr><td><code>KeyError</code></td><td><div><p>absent.</p></div></td></tr>"
    assert _swallowed(table(good)) == []
    # a paragraph after the section, parsed as one more `exception: description` pair
    pair = "<tr><td><code>On any of these errors nothing changes</code></td><td><p>x</p></td></tr>"
    assert _swallowed(table(good, pair))
    # or appended to the last exception's description
    appended = "<tr><td><code>KeyError</code></td><td><p>absent.</p><p>Later text.</p></td></tr>"
    assert _swallowed(table(appended))


def test_no_paragraph_sits_inside_a_raises_table(site: Path) -> None:
    found = {}
    for path in _reference_pages(site):
        rows = _swallowed(path.read_text())
        if rows:
            found[path.parent.name] = rows[:5]
    assert found == {}


def test_no_code_block_shows_a_markdown_fence(site: Path) -> None:
    # A fenced example the docstring parser missed (a blank line after
    # `Example:`) renders as an indented code block holding the fence itself.
    for path in _reference_pages(site):
        fenced = [
            block.strip().splitlines()[0]
            for block in _read(path).code_blocks
            if any(line.lstrip().startswith("```") for line in block.splitlines())
        ]
        assert not fenced, f"{path.parent.name}: literal fences in code blocks: {fenced[:3]}"


def _docstrings() -> list[tuple[str, str]]:
    import ast

    found = []
    for path in sorted((ROOT / "src" / "scalekit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)}"
                    found.append((where, doc))
    return found


def test_an_example_section_is_followed_by_its_content() -> None:
    # mkdocstrings' Google parser drops a section whose first line is blank.
    blank = [where for where, doc in _docstrings() if re.search(r"^Example:\n[ \t]*\n", doc, re.M)]
    assert blank == []


FENCED_PYTHON = re.compile(
    r"^(?P<indent>[ \t]*)```python\n(?P<body>.*?)^(?P=indent)```$", re.MULTILINE | re.DOTALL
)


def test_every_fenced_python_example_compiles_and_names_real_api() -> None:
    # The fenced examples need a server and the reader's own objects (a
    # client, a database), so they are compiled here, and every class they
    # call must be one scalekit defines; the doctests run in test_doctests.
    import ast
    import textwrap

    public = {
        node.name
        for path in (ROOT / "src" / "scalekit").rglob("*.py")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_")
    }
    examples = 0
    for where, doc in _docstrings():
        for match in FENCED_PYTHON.finditer(doc):
            code = textwrap.dedent(match.group("body"))
            tree = ast.parse(code, filename=where)  # a SyntaxError names the docstring
            examples += 1
            called = {
                node.func.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            }
            unknown = {name for name in called if name[0].isupper() and name not in public}
            assert not unknown, f"{where}: the example calls {sorted(unknown)}, not in scalekit"
    assert examples >= 5


def test_parameters_render_as_tables(site: Path) -> None:
    locking = _read(site / "api" / "locking" / "index.html").joined("table")
    for name in ("op_timeout", "waiter_ttl", "ConfigurationError"):
        assert name in locking

"""The README and docs/ hold to the tree: every link is relative and points at
a file that exists, every test guarantees.md names exists, and the README's
layout and docs/architecture.md name every source file (and only files that
exist). mkdocs build --strict (scripts/test.sh, stage 1) checks the site: its
pages, their links and anchors."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_links_stay_in_the_repository_and_resolve():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            assert not re.match(r"^[a-z]+://", target), f"{doc.name} links outside the repository: {target}"
            path = (doc.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{doc.name} links to a missing file: {target}"


def test_every_test_the_guarantees_name_exists():
    """Each Python test is named as `file.py::test_name` and defined in that
    file; each C++ test after its file, as `test_x.cpp` `Name`."""
    text = (ROOT / "docs" / "guarantees.md").read_text()
    cpp_tests = "\n".join(p.read_text() for p in (ROOT / "tests" / "cpp").glob("test_*.cpp"))
    qualified = re.findall(r"`(test_\w+\.py)::(test_\w+)`", text)
    assert qualified, "no file.py::test_name found in guarantees.md: the pattern is stale"
    missing = sorted(
        f"{file}::{name}"
        for file, name in qualified
        if not (ROOT / "tests" / "python" / file).exists()
        or not re.search(rf"^(async )?def {name}\(", (ROOT / "tests" / "python" / file).read_text(), re.MULTILINE)
    )
    assert not missing, f"guarantees.md names Python tests that are not in the file it names: {missing}"
    unqualified = sorted(set(re.findall(r"(?<![\w:])(test_\w+)\b(?![.*:(])", text)))  # not files, not globs
    assert not unqualified, f"guarantees.md names Python tests without their file (write file.py::name): {unqualified}"
    cpp_named = set()
    for run in re.findall(r"test_\w+\.cpp` ((?:`\w+`(?:, )?)+)", text):
        cpp_named.update(re.findall(r"`(\w+)`", run))
    assert cpp_named, "no C++ test found in guarantees.md: the pattern is stale"
    cpp_missing = sorted(n for n in cpp_named if not re.search(rf"TEST(_F|_P)?\(\w+, {n}\)", cpp_tests))
    assert not cpp_missing, f"guarantees.md names C++ tests that do not exist: {cpp_missing}"


def _expand_braces(text):
    """`src/copy.{hpp,cpp}` -> `src/copy.hpp src/copy.cpp`."""
    return re.sub(
        r"([\w./]*)\{([\w,]+)\}", lambda m: " ".join(m.group(1) + part for part in m.group(2).split(",")), text
    )


# The source trees each layout list covers, and where docs/architecture.md
# describes each.
TREES = {
    "include/tritonshm": "## The C++ core",
    "src": "## The C++ core",
    "python/binding": "## The binding",
    "python/tritonshm": "## The Python package",
}


def _source_files():
    """Every source file of TREES, relative to the root (packages' __init__.py
    and __main__.py aside; generated files are not sources)."""
    files = []
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            if path.suffix in (".cpp", ".hpp", ".h", ".py") and path.name not in ("__init__.py", "__main__.py"):
                files.append(path.relative_to(ROOT).as_posix())
    return files


def _names(name, text, after=r"[\w./]"):
    """Whether text names the file `name` (not a longer name ending or
    beginning with it; `after`: what may not come just before it)."""
    return re.search(rf"(?<!{after}){re.escape(name)}(?![\w/])", text)


def test_architecture_names_every_source_file_and_only_files_that_exist():
    """docs/architecture.md is the map of the tree: every source file of the
    core, the binding and the package is on it, and nothing it names is gone."""
    text = _expand_braces((ROOT / "docs" / "architecture.md").read_text())
    sources = _source_files()
    unnamed = [f for f in sources if not _names(f.rsplit("/", 1)[-1], text, after=r"[\w.]")]
    assert not unnamed, "docs/architecture.md does not say what these files own:\n" + "\n".join(
        f"  {f}: add it to the table under '{TREES[next(t for t in TREES if f.startswith(t + '/'))]}'" for f in unnamed
    )
    tests = [
        p.relative_to(ROOT).as_posix() for p in (*(ROOT / "tests").rglob("*.py"), *(ROOT / "tests").rglob("*.[ch]pp"))
    ]
    relative = {*sources, *tests}
    named = set(re.findall(r"[\w./]+\.(?:cpp|hpp|h|py)\b", text))
    gone = sorted(n for n in named if not any(r == n or r.endswith("/" + n) for r in relative))
    assert not gone, f"docs/architecture.md names files that do not exist: {gone}"


def _readme_layout():
    """The README's `## Layout` block as {folder: its text}: an entry starts at
    a line whose first word is a path and goes on over the indented lines."""
    text = (ROOT / "README.md").read_text()
    assert "\n## Layout\n" in text, "README.md has no '## Layout' section"
    block = text.split("\n## Layout\n", 1)[1].split("```", 2)[1]
    entries, folder = {}, None
    for line in block.splitlines():
        if line.strip() and not line[0].isspace():
            folder, _, rest = line.partition(" ")
            entries[folder] = rest
        elif line.strip() and folder:
            entries[folder] += "\n" + line
    return {folder: _expand_braces(text) for folder, text in entries.items()}


def test_readme_layout_names_every_source_file_and_only_files_that_exist():
    """Each file of TREES is named, by its path from its folder, in the entry
    of the deepest folder of it that the README's layout lists; and every file
    an entry names exists there."""
    entries = _readme_layout()
    problems = []
    for source in _source_files():
        folder = max((f for f in entries if f.endswith("/") and source.startswith(f)), key=len, default=None)
        if folder is None:
            problems.append(f"  {source}: no entry for its folder ({source.rsplit('/', 1)[0]}/)")
        elif not _names(source[len(folder) :], entries[folder]):
            problems.append(f"  {source}: the entry '{folder}' does not name {source[len(folder) :]}")
    assert not problems, "README.md, '## Layout':\n" + "\n".join(problems)
    sources = set(_source_files())
    gone = [
        f"  the entry '{folder}' names {name}, but {folder}{name} does not exist"
        for folder, text in entries.items()
        if any(folder.startswith(tree + "/") for tree in TREES)
        for name in re.findall(r"(?<![\w./])[\w./]+\.(?:cpp|hpp|h|py)\b", text)
        if folder + name not in sources and not (ROOT / folder / name).exists()
    ]
    assert not gone, "README.md, '## Layout':\n" + "\n".join(gone)

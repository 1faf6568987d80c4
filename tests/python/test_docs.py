"""The README and docs/ stay inside the repository: every link is relative and
points at a file that exists."""

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
    text = (ROOT / "docs" / "guarantees.md").read_text()
    python_tests = "\n".join(p.read_text() for p in (ROOT / "tests" / "python").glob("test_*.py"))
    cpp_tests = "\n".join(p.read_text() for p in (ROOT / "tests" / "cpp").glob("test_*.cpp"))
    named = set(re.findall(r"\b(test_\w+)\b(?![.*])", text))  # not files, not globs (test_bad_*)
    missing = sorted(n for n in named if f"def {n}(" not in python_tests)
    assert not missing, f"guarantees.md names Python tests that do not exist: {missing}"
    cpp_named = set()
    for run in re.findall(r"test_\w+\.cpp` ((?:`\w+`(?:, )?)+)", text):
        cpp_named.update(re.findall(r"`(\w+)`", run))
    assert cpp_named, "no C++ test found in guarantees.md: the pattern is stale"
    cpp_missing = sorted(n for n in cpp_named if not re.search(rf"TEST(_F)?\(\w+, {n}\)", cpp_tests))
    assert not cpp_missing, f"guarantees.md names C++ tests that do not exist: {cpp_missing}"


def _expand_braces(text):
    """`src/copy.{hpp,cpp}` -> `src/copy.hpp src/copy.cpp`."""
    return re.sub(
        r"([\w./]*)\{([\w,]+)\}", lambda m: " ".join(m.group(1) + part for part in m.group(2).split(",")), text
    )


def test_architecture_names_every_source_file_and_only_files_that_exist():
    """docs/architecture.md is the map of the tree: every source file of the
    core, the binding and the package is on it, and nothing it names is gone."""
    text = _expand_braces((ROOT / "docs" / "architecture.md").read_text())
    sources = [
        *(ROOT / "src").glob("*.[ch]pp"),
        *(ROOT / "include" / "tritonshm").rglob("*.hpp"),
        *(ROOT / "python" / "binding").glob("*.[ch]pp"),
        *(p for p in (ROOT / "python" / "tritonshm").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")),
    ]
    unnamed = sorted(
        str(p.relative_to(ROOT)) for p in sources if not re.search(rf"(?<![\w.]){re.escape(p.name)}\b", text)
    )
    assert not unnamed, f"docs/architecture.md does not say what these files own: {unnamed}"
    tests = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "tests").rglob("*.[ch]pp")]
    relative = {str(p.relative_to(ROOT)) for p in (*sources, *tests)}
    named = set(re.findall(r"[\w./]+\.(?:cpp|hpp|py)\b", text))
    gone = sorted(n for n in named if not any(r == n or r.endswith("/" + n) for r in relative))
    assert not gone, f"docs/architecture.md names files that do not exist: {gone}"

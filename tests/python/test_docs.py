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

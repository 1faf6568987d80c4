"""The package is typed for its users: mypy --strict accepts a program written
from the README and docs/ (tests/typing/user_program.py) and rejects wrong calls
(tests/typing/wrong_call.py, each marked line), against the installed package
and its generated stubs of the compiled module."""

import pathlib
import re
import subprocess
import sys

import pytest

TYPING = pathlib.Path(__file__).resolve().parents[1] / "typing"
mypy = pytest.importorskip("mypy", reason="the typing check needs mypy (test extra)")
# The running interpreter's version: the matrix checks the oldest and the newest.
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"


def run_mypy(path):
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version", RUNNING, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=TYPING,
    )


def test_compiled_module_ships_stubs():
    import tritonshm

    stub = pathlib.Path(tritonshm.__file__).with_name("_core.pyi")
    assert stub.exists(), "the wheel must carry _core.pyi (nanobind_add_stub)"
    text = stub.read_text()
    assert "class RegionHandle" in text and "class Arena" in text and "class Lease" in text


@pytest.mark.slow
def test_mypy_strict_accepts_a_program_written_from_the_readme():
    result = run_mypy(TYPING / "user_program.py")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_rejects_wrong_calls():
    result = run_mypy(TYPING / "wrong_call.py")
    assert result.returncode == 1, result.stdout
    expected = {
        i + 1: m.group(1)
        for i, line in enumerate((TYPING / "wrong_call.py").read_text().splitlines())
        if (m := re.search(r"# E: ([\w-]+)", line))
    }
    found = {
        int(m.group(1)): m.group(2) for m in re.finditer(r"wrong_call\.py:(\d+): error: .*\[([\w-]+)\]", result.stdout)
    }
    assert found == expected, result.stdout

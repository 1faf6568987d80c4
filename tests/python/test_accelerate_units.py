"""The accelerator's parts that need no server: patches put back exactly, a
module patched as its import finishes, the runner's sizes, and how a server's
address and a failure are read."""

import argparse
import sys

import pytest

from tritonshm.accelerate import _size
from tritonshm.triton.patches import Patches
from tritonshm.triton.server_pools import lasting, loopback


class Owner:
    def method(self):
        return "original"


def test_patches_put_back_the_same_objects_and_remove_what_was_not_there():
    original = Owner.__dict__["method"]
    before = dict(Owner.__dict__)
    patches = Patches()
    patches.set(Owner, "method", lambda self: "patched")
    patches.set(Owner, "added", property(lambda self: 1))
    assert Owner().method() == "patched" and Owner().added == 1
    patches.restore()
    assert Owner.__dict__["method"] is original and "added" not in Owner.__dict__
    assert dict(Owner.__dict__) == before
    patches.set(Owner, "method", lambda self: "late")  # an import that finished as restore() ran
    assert Owner.__dict__["method"] is original
    patches.restore()  # twice: nothing more to do


def test_a_module_not_imported_yet_is_patched_as_its_import_finishes(tmp_path, monkeypatch):
    (tmp_path / "later_module.py").write_text("class Client:\n    def infer(self):\n        return 'original'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    patches = Patches()
    meta_path = list(sys.meta_path)

    def patch(module):
        patches.set(module.Client, "infer", lambda self: "patched")

    patches.when_imported(["later_module"], patch)
    try:
        import later_module

        assert later_module.Client().infer() == "patched"
        assert type(later_module.__loader__).__name__ == "SourceFileLoader", "the module keeps the real loader"
        assert later_module.__spec__.loader is later_module.__loader__
    finally:
        patches.restore()
        sys.modules.pop("later_module", None)
    assert later_module.Client().infer() == "original" and sys.meta_path == meta_path


@pytest.mark.parametrize(
    "text,expected",
    [("0", 0), ("65536", 65536), ("64K", 64 << 10), ("64KiB", 64 << 10), ("16m", 16 << 20), ("1GB", 1 << 30)],
)
def test_the_runner_reads_sizes_as_people_write_them(text, expected):
    assert _size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "1.5M", "K", "64X"])
def test_the_runner_refuses_what_is_not_a_size(text):
    with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
        _size(text)


def test_loopback_addresses_are_told_from_others():
    assert [loopback(a) for a in ("127.0.0.1:8000", "localhost:8001/base", "[::1]:8000")] == [True, True, True]
    assert [loopback(a) for a in ("triton:8000", "10.0.0.2:8001", "[fe80::1]:8000", None)] == [False] * 4


def test_lasting_causes_are_the_environments_not_the_requests():
    from tritonshm import SharedMemoryException

    for words in (
        "[500] Unable to open shared memory region: '/k'",
        "[403] This API is restricted, expecting header 'triton-access-token'",
        "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable.",
    ):
        assert lasting(Exception(words)), words
    for words in ("[400] inference input 'INPUT0' data-type is 'INT32'", "Unable to find shared memory region: 'x'"):
        assert not lasting(Exception(words)), words
    assert not lasting(SharedMemoryException("unable to lease shared memory: the pool is closed"))


def test_a_tritonclient_module_it_does_not_know_is_left_as_it_is_with_a_warning():
    import types
    import warnings

    from tritonshm.triton.accelerate import _Accelerator
    from tritonshm.triton.config import PoolConfig

    accelerator = _Accelerator(PoolConfig.make(1 << 20), {})
    unknown = types.ModuleType("tritonclient.http")  # no InferenceServerClient: another tritonclient
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accelerator._patch(unknown)  # an import hook must never fail the import
    assert len(caught) == 1 and "tritonclient.http is not accelerated" in str(caught[0].message)
    accelerator.close()


@pytest.mark.parametrize(
    "words,start",
    [
        (["app.py", "--stats"], 0),
        (["--stats", "--inline-threshold", "0", "app.py", "-m", "x"], 3),
        (["--inline-threshold=64K", "-m", "pkg.mod", "--capacity", "1"], 1),
        (["-mpkg.mod", "-v"], 0),
        (["--capacity", "1M", "--", "-odd-name.py"], 3),
    ],
)
def test_the_runners_options_end_where_the_program_begins(words, start):
    """Everything after SCRIPT or -m MODULE is the program's, options too."""
    from tritonshm.accelerate import _program_starts

    assert _program_starts(words) == start


@pytest.mark.parametrize(
    "options,message",
    [
        (["--capacity", "0"], "capacity must be an int from 1"),
        (["--inline-threshold", str(1 << 70)], "inline_threshold must be an int from 0"),
    ],
)
def test_the_runner_refuses_a_size_the_pool_refuses_in_one_line(tmp_path, options, message):
    import subprocess

    script = tmp_path / "app.py"
    script.write_text("print('ran')\n")
    done = subprocess.run(
        [sys.executable, "-m", "tritonshm.accelerate", *options, str(script)], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and message in done.stderr.splitlines()[-1]


def test_the_runner_runs_folders_and_zip_applications_and_refuses_as_python_does(tmp_path):
    """What `python PATH` runs (a script, a folder or zip file with a
    __main__.py), the runner runs; what python refuses, it refuses with
    python's words and exit code."""
    import subprocess
    import zipfile

    app = tmp_path / "app"
    app.mkdir()
    (app / "__main__.py").write_text("import sys\nprint('ran', sys.argv[1:])\n")
    (tmp_path / "empty").mkdir()
    with zipfile.ZipFile(tmp_path / "app.pyz", "w") as archive:
        archive.write(app / "__main__.py", "__main__.py")
    with zipfile.ZipFile(tmp_path / "none.zip", "w") as archive:
        archive.writestr("other.py", "")
    for target in ("app", "app.pyz", "empty", "none.zip", "missing.py"):
        python = subprocess.run([sys.executable, target, "x"], capture_output=True, text=True, cwd=tmp_path)
        runner = subprocess.run(
            [sys.executable, "-m", "tritonshm.accelerate", target, "x"], capture_output=True, text=True, cwd=tmp_path
        )
        assert (runner.returncode, runner.stdout, runner.stderr) == (python.returncode, python.stdout, python.stderr)
        assert python.returncode == (0 if target.startswith("app") else 1 if target != "missing.py" else 2)

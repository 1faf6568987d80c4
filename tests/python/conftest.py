"""Fixtures shared by the Python tests.

Every key a test uses comes from `make_key`, unique per process and call, and
every region a test creates is destroyed or unlinked when the test ends, even
when it fails.
"""

from __future__ import annotations

import itertools
import os
import pathlib
from typing import Callable, Iterator, List

import pytest

import tritonshm as shm

PREFIX = f"tshm_test_{os.getpid()}_"
_counter = itertools.count()


def new_key(tag: str = "k") -> str:
    return f"/{PREFIX}{tag}_{next(_counter)}"


def shm_path(key: str) -> pathlib.Path:
    return pathlib.Path("/dev/shm") / key.lstrip("/")


@pytest.fixture
def make_key() -> Iterator[Callable[..., str]]:
    """Returns unique keys; at teardown releases our handles and unlinks the keys."""
    made: List[str] = []

    def make(tag: str = "k") -> str:
        key = new_key(tag)
        made.append(key)
        return key

    yield make
    left = []
    for key in made:
        try:
            shm_path(key).unlink()
            left.append(key)
        except FileNotFoundError:
            pass
    assert not left, f"test left regions in /dev/shm (now removed): {left}"


@pytest.fixture
def region(make_key):
    """A fresh 1 KiB region, destroyed at teardown if the test did not."""
    handle = shm.create_shared_memory_region("test_region", make_key("region"), 1024, create_only=True)
    yield handle
    if handle.live:
        shm.destroy_shared_memory_region(handle)


@pytest.fixture(autouse=True)
def no_leftover_regions() -> Iterator[None]:
    """Fails a test that leaves a region of this process in /dev/shm or in the registry."""
    before = set(shm.mapped_shared_memory_regions())
    files_before = {p.name for p in pathlib.Path("/dev/shm").glob(PREFIX + "*")}  # e.g. a module's region
    yield
    leaked = [p.name for p in pathlib.Path("/dev/shm").glob(PREFIX + "*") if p.name not in files_before]
    held = [k for k in shm.mapped_shared_memory_regions() if k not in before]
    for name in leaked:  # clean up so the next test starts clean, then fail this one
        (pathlib.Path("/dev/shm") / name).unlink(missing_ok=True)
    assert not leaked, f"test left regions in /dev/shm: {leaked}"
    assert not held, f"test left handles in the registry: {held}"


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """On parallel workers (pytest-xdist), the slow end-to-end tests come
    first (each waits tens of seconds for servers of its own): the workers
    start on them side by side and the short tests fill in around them, so
    the run is not left waiting on one handed out last. A run on one process
    keeps the files' order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: not (item.get_closest_marker("slow") and item.get_closest_marker("e2e")))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def triton():
    """A real Triton server (PyTriton's, tests/triton_server.py) in this
    process, on loopback, for the whole session: its HTTP and gRPC addresses."""
    import importlib.util

    root = pathlib.Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("pytriton_server", root / "tests/triton_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ports = {"http": free_port(), "grpc": free_port()}
    server = module.start(ports["http"], ports["grpc"])
    try:
        yield {"http": f"127.0.0.1:{ports['http']}", "grpc": f"127.0.0.1:{ports['grpc']}"}
    finally:
        server.stop()


@pytest.fixture(params=["http", "grpc"])
def client(request, triton):
    """A tritonclient client of the session's server, once per protocol
    (`client.protocol` says which)."""
    import importlib

    module = importlib.import_module(f"tritonclient.{request.param}")
    c = module.InferenceServerClient(url=triton[request.param])
    c.protocol = request.param
    yield c
    c.close()


def run(*cmd, cwd=None):
    import subprocess

    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout}\n{result.stderr}"
    return result


def run_folder(tmp_path_factory, name: str) -> pathlib.Path:
    """A folder for this test run: shared by the parallel workers of one
    pytest-xdist run (their temporary folders have one parent), else this
    session's own."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run_id:
        return tmp_path_factory.mktemp(name)
    folder = tmp_path_factory.getbasetemp().parent / f"{name}-{run_id}"
    folder.mkdir(exist_ok=True)
    return folder


def build_once(folder: pathlib.Path, build: Callable[[], None]) -> None:
    """Runs `build` into `folder` unless it was done there: parallel workers
    wait for the first one (a lock on the folder) and use what it built."""
    import fcntl

    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            build()
            (folder / ".built").touch()


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    """The C++ library installed with `cmake --install`, and examples/cpp built
    against the installed package as a separate project: their build folder
    (built once per run, also with parallel workers)."""
    import shutil

    cmake = shutil.which("cmake")
    assert cmake, "cmake is required (scripts/test.sh installs it)"
    root = pathlib.Path(__file__).resolve().parents[2]
    work = run_folder(tmp_path_factory, "cpp")
    prefix = work / "prefix"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []

    def build() -> None:
        release = ["-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={prefix}"]
        run(cmake, "-S", root, "-B", work / "build", *gen, *release)
        run(cmake, "--build", work / "build")
        run(cmake, "--install", work / "build")
        # The examples see only the installed package, never this source tree.
        run(cmake, "-S", root / "examples/cpp", "-B", work / "examples", *gen, f"-DCMAKE_PREFIX_PATH={prefix}")
        run(cmake, "--build", work / "examples")

    build_once(work, build)
    assert (prefix / "include/tritonshm/tritonshm.hpp").exists()
    assert list(prefix.glob("lib*/cmake/tritonshm/tritonshmConfig.cmake"))
    return work / "examples"


def can_unshare() -> bool:
    """Whether this process may make a private mount namespace (`unshare -m`,
    root): a /dev/shm of a test's own."""
    import subprocess

    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except FileNotFoundError:
        return False


# Runs a command as the user nobody (tests of permissions; needs root).
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def skip_unless_nobody_can_run_python() -> None:
    """Skips, saying why, where this interpreter cannot start as nobody: an
    interpreter under a home directory only its owner may enter (pyenv's in
    /root) is the machine, not tritonshm."""
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as the user nobody (setpriv)")
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", "import tritonshm"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        pytest.skip(
            f"the user nobody cannot run {sys.executable} with tritonshm: {probe.stderr.strip().splitlines()[-1:]}"
        )

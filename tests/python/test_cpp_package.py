"""The C++ library as a C++ user gets it: installed with `cmake --install`,
found by a separate project with find_package(tritonshm), and exchanging
tensors with Python.

Also shm_utils.h, the drop-in for the helpers of Triton's C++ client library:
a program written the way Triton's simple_http_shm_client.cc calls them, built
against the installed package in C++17, once with a stand-in of the client
library's common.h (Error is the client library's) and once standalone; and
examples/cpp/shm_utils_client through a real server. The calls' own behaviour
and each difference from the original are proved in tests/cpp/test_shm_utils.cpp."""

import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import tritonshm as shm

from conftest import build_once, run, shm_path

# Each test needs the C++ package built (tens of seconds, once per run): slow.
pytestmark = pytest.mark.slow


def test_python_reads_what_cpp_wrote(examples, make_key):
    key = make_key("cpp_writer")
    writer = subprocess.Popen(
        [examples / "write_tensors", key], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        ready = writer.stdout.readline().split()
        assert ready[:3] == ["READY", key, "1024"], ready
        handle = shm.create_shared_memory_region("py", key, 1024)
        assert shm.get_contents_as_numpy(handle, np.int32, [16]).tolist() == list(range(16))
        assert shm.get_contents_as_numpy(handle, np.float32, [4], offset=64).tolist() == [0.5, 1.5, 2.5, 3.5]
        assert shm.get_contents_as_numpy(handle, np.object_, [3], offset=80).tolist() == [b"tensor", b"", b"from C++"]
        shm.destroy_shared_memory_region(handle)
        assert shm_path(key).exists(), "Python only attached"
        out, _ = writer.communicate("\n", timeout=60)
        assert "DESTROYED" in out and writer.returncode == 0
        assert not shm_path(key).exists(), "the C++ creator's destroy unlinked it"
    finally:
        if writer.poll() is None:
            writer.kill()


def test_cpp_reads_what_python_wrote(examples, make_key):
    key = make_key("cpp_reader")
    handle = shm.create_shared_memory_region("py", key, 512)
    try:
        shm.set_shared_memory_region(handle, [np.arange(1, 9, dtype=np.int64)])
        shm.set_shared_memory_region(
            handle, [shm.serialize_byte_tensor(np.array(["héllo", b"world"], dtype=object))], offset=64
        )
        out = run(examples / "read_tensors", key).stdout
        assert "INT64 1 2 3 4 5 6 7 8" in out and "SUM 36" in out
        assert "BYTES héllo" in out and "BYTES world" in out
        assert shm.get_contents_as_numpy(handle, np.int64, [1], offset=256)[0] == 36
        assert shm_path(key).exists(), "the C++ reader only attached"
    finally:
        shm.destroy_shared_memory_region(handle)


def test_cpp_reader_reports_missing_region_clearly(examples, make_key):
    result = subprocess.run([examples / "read_tensors", make_key("absent")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "unable to open the shared memory region" in result.stderr and "No such file or directory" in result.stderr


ROOT = pathlib.Path(__file__).resolve().parents[2]
# Each program: where its Error and its shm_utils.h come from.
PROGRAMS = {
    "with_client_library": ("the client library's common.h", "tritonshm"),
    "with_client_library_header": ("the client library's common.h", "the client library"),
    "standalone": ("tritonshm (standalone)", "tritonshm"),
}


@pytest.fixture(scope="session")
def shm_utils_programs(examples):
    """tests/cpp_package built against the package that `examples` installed
    (once per run, also with parallel workers)."""
    prefix = examples.parent / "prefix"
    build = examples.parent / "shm_utils_programs"
    build.mkdir(exist_ok=True)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []

    def configure_and_build():
        run("cmake", "-S", ROOT / "tests/cpp_package", "-B", build, *gen, f"-DCMAKE_PREFIX_PATH={prefix}")
        run("cmake", "--build", build)

    build_once(build, configure_and_build)
    return build


@pytest.mark.parametrize("variant", sorted(PROGRAMS))
def test_python_reads_what_shm_utils_wrote(shm_utils_programs, make_key, variant):
    key = make_key("shm_utils_writer")
    writer = subprocess.Popen(
        [shm_utils_programs / f"shm_utils_{variant}", "write", key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        error_from, header_from = PROGRAMS[variant]
        assert writer.stdout.readline().strip() == f"ERROR FROM {error_from}"
        assert writer.stdout.readline().strip() == f"HEADER FROM {header_from}"
        assert writer.stdout.readline().split() == ["READY", key], writer.stderr.read()
        handle = shm.create_shared_memory_region("py", key, 128)
        assert shm.get_contents_as_numpy(handle, np.int32, [16]).tolist() == list(range(16))
        assert shm.get_contents_as_numpy(handle, np.int32, [16], offset=64).tolist() == [1] * 16
        shm.destroy_shared_memory_region(handle)
        out, err = writer.communicate("\n", timeout=60)
        assert writer.returncode == 0 and "UNLINKED" in out, err
        assert not shm_path(key).exists(), "UnlinkSharedMemoryRegion removed it"
    finally:
        if writer.poll() is None:
            writer.kill()


@pytest.mark.parametrize("variant", sorted(PROGRAMS))
def test_shm_utils_reads_what_python_wrote_and_never_shrinks_it(shm_utils_programs, make_key, variant):
    key = make_key("shm_utils_reader")
    handle = shm.create_shared_memory_region("py", key, 512)
    try:
        shm.set_shared_memory_region(handle, [np.arange(1, 9, dtype=np.int64)])
        # Asks for 128 bytes of Python's 512: the original would cut the region to 128.
        out = run(shm_utils_programs / f"shm_utils_{variant}", "read", key, "128").stdout
        assert "SUM 36" in out
        assert shm.get_contents_as_numpy(handle, np.int64, [1], offset=64)[0] == 36
        assert shm_path(key).stat().st_size == 512
        assert shm.get_contents_as_numpy(handle, np.uint8, [1], offset=511)[0] == 0, "still backed to its end"
    finally:
        shm.destroy_shared_memory_region(handle)


def test_shm_utils_failure_reads_as_the_original_then_says_why(shm_utils_programs):
    result = subprocess.run(
        [shm_utils_programs / "shm_utils_with_client_library", "read", "/no/such/key", "64"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: create: unable to get shared memory descriptor for shared-memory key '/no/such/key': "
        "invalid shared memory key '/no/such/key': '/' is only allowed as the first character"
    ), result.stderr


@pytest.mark.e2e
def test_shm_utils_client_infers_through_a_real_server(examples, triton):
    """examples/cpp/shm_utils_client: Triton's simple_http_shm_client on our
    shm_utils.h, with regions made by CreateSharedMemoryRegion and registered
    with a real server."""
    http = pytest.importorskip("tritonclient.http", reason="e2e needs the test extras: pip install .[test]")
    out = subprocess.run([examples / "shm_utils_client", triton["http"]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 + 1 = 1" in out.stdout and "15 - 1 = 14" in out.stdout
    names = out.stdout.split("PASS : System Shared Memory ")[1].split()
    with http.InferenceServerClient(triton["http"]) as client:
        registered = {r["name"] for r in client.get_system_shared_memory_status()}
    assert not set(names) & registered, "unregistered"
    assert not any(shm_path("/" + name).exists() for name in names), "unlinked"

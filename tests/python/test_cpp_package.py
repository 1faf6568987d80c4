"""The C++ library as a C++ user gets it: installed with `cmake --install`,
found by a separate project with find_package(tritonshm), and exchanging
tensors with Python."""

import subprocess

import numpy as np

import tritonshm as shm

from conftest import run, shm_path


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

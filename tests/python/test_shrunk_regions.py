"""Regions another process shrinks below our mapping, before or during a
copy: set, get and the BYTES decoder raise "the object was shrunk to N
bytes" instead of dying of SIGBUS, and a source array that stops being
readable is told apart from the region. test_fault_guard.py holds the guard
against other signal handlers and signal masks."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import tritonshm as shm

from conftest import shm_path

PY = sys.executable


def test_region_shrunk_by_another_process_raises_clearly(make_key):
    key = make_key("shrunk")
    handle = shm.create_shared_memory_region("n", key, 1 << 20)
    try:
        subprocess.run([PY, "-c", f"import os; os.truncate('/dev/shm/{key[1:]}', 4096)"], check=True)
        with pytest.raises(shm.SharedMemoryException, match=r"shrunk to 4096 bytes by another process"):
            shm.set_shared_memory_region(handle, [np.ones(1 << 16, np.uint8)])
        with pytest.raises(shm.SharedMemoryException, match=r"shrunk to 4096 bytes"):
            shm.get_contents_as_numpy(handle, np.float32, [1 << 14])
        with pytest.raises(shm.SharedMemoryException, match=r"shrunk"):
            shm.get_contents_as_numpy(handle, np.object_, [2], offset=8192)
        shm.set_shared_memory_region(handle, [np.arange(4, dtype=np.int32)])  # the part still backed works
        assert shm.get_contents_as_numpy(handle, np.int32, [4]).tolist() == [0, 1, 2, 3]
    finally:
        shm.destroy_shared_memory_region(handle)


def test_region_shrunk_during_a_large_write_raises_instead_of_sigbus(make_key):
    key = make_key("shrunk_during")
    size = 64 << 20
    handle = shm.create_shared_memory_region("n", key, size)
    data = np.ones(size, np.uint8)
    shrinker = subprocess.Popen(
        [PY, "-c", f"import os, time; time.sleep(0.05); os.truncate('/dev/shm/{key[1:]}', 4096)"]
    )
    try:
        with pytest.raises(shm.SharedMemoryException, match="shrunk to 4096 bytes"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # raises once the truncate lands, during or between copies
                shm.set_shared_memory_region(handle, [data])
    finally:
        shrinker.wait(timeout=30)
        shm.destroy_shared_memory_region(handle)


SHRINK_DURING_BYTES_READ = """
import os, subprocess, sys, time, numpy as np, tritonshm as shm
key = sys.argv[1]
count = 1 << 21  # 2 Mi elements: the decode takes tens of milliseconds
h = shm.create_shared_memory_region("b", key, count * 8, create_only=True)
shm.set_shared_memory_region(h, [shm.serialize_byte_tensor(np.array([b"abcd"] * count, dtype=np.object_))])
shm.get_contents_as_numpy(h, np.object_, [count])  # first touch
start = time.perf_counter()
shm.get_contents_as_numpy(h, np.object_, [count])
took = time.perf_counter() - start
# Another process (a thread would wait for our GIL): told to go, it truncates
# in the middle of the next decode, after that call's checks have passed.
shrinker = subprocess.Popen([sys.executable, "-c",
    "import os, sys, time; sys.stdin.readline(); time.sleep(float(sys.argv[2])); os.truncate(sys.argv[1], 4096)",
    "/dev/shm" + key, str(took / 2)], stdin=subprocess.PIPE)
time.sleep(0.5)  # let it start
shrinker.stdin.write(b"go\\n")
shrinker.stdin.flush()
try:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shm.get_contents_as_numpy(h, np.object_, [count])
    print("NEVER RAISED")
except shm.SharedMemoryException as e:
    print("RAISED", e)
finally:
    shrinker.wait()
    shm.destroy_shared_memory_region(h)
"""


def test_bytes_read_of_a_region_shrunk_meanwhile_raises_instead_of_sigbus(make_key):
    """The BYTES decoder reads lengths and elements straight from the mapping:
    both run under the SIGBUS guard, so a shrink during the decode is an
    exception, never death by SIGBUS (exit 135)."""
    key = make_key("bytes_shrunk")
    result = subprocess.run([PY, "-c", SHRINK_DURING_BYTES_READ, key], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert (
        f"RAISED unable to read the shared memory region '{key}': the object was shrunk to 4096 bytes" in result.stdout
    )


def test_fault_in_the_source_array_is_not_blamed_on_the_region(make_key):
    """A source that stops being readable (a view of another region its owner
    shrank) raises, and the message says it was the source."""
    source_key, target_key = make_key("source"), make_key("target")
    source = shm.create_shared_memory_region("s", source_key, 1 << 20)
    target = shm.create_shared_memory_region("t", target_key, 1 << 20)
    try:
        view = shm.get_contents_as_numpy(source, np.uint8, [1 << 20])
        os.truncate(shm_path(source_key), 4096)
        with pytest.raises(shm.SharedMemoryException) as info:
            shm.set_shared_memory_region(target, [view])
        message = str(info.value)
        assert message.startswith(
            f"unable to set the shared memory region '{target_key}': the source data stopped being readable"
        ), message
        assert "shrunk" not in message
        del view
        shm.set_shared_memory_region(target, [np.ones(16, np.uint8)])  # the target is fine
    finally:
        shm.destroy_shared_memory_region(source)
        shm.destroy_shared_memory_region(target)

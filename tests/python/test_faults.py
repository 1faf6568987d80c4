"""Faults that kill processes with the reference: a full /dev/shm, a region
shrunk underneath us, a writer killed mid-write, another user's process."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tritonshm as shm

from conftest import AS_NOBODY, shm_path, skip_unless_nobody_can_run_python

PY = sys.executable


def can_unshare():
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except FileNotFoundError:
        return False


needs_mount_namespace = pytest.mark.skipif(
    not can_unshare(), reason="needs `unshare -m` (root): a private mount namespace with a 1 MiB /dev/shm"
)


def in_small_dev_shm(code, size="1M"):
    """Runs Python `code` in a private mount namespace whose /dev/shm is a `size` tmpfs."""
    script = f'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec {PY} -c "$0"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


@needs_mount_namespace
def test_full_dev_shm_raises_at_create_instead_of_sigbus():
    ours = in_small_dev_shm(
        """
        import os, tritonshm as shm
        try:
            shm.create_shared_memory_region("big", "/too_big", 4 << 20)
        except shm.SharedMemoryException as e:
            print("RAISED:", e)
            print("LEFT:", os.listdir("/dev/shm"))
        """
    )
    assert ours.returncode == 0, ours.stderr
    message = ours.stdout
    assert "RAISED: unable to create the shared memory region '/too_big': reserving 4194304 bytes" in message
    assert "bytes free of 1048576" in message and "--shm-size" in message and "No space left on device" in message
    assert "LEFT: []" in message, "a failed create leaves nothing behind"


@needs_mount_namespace
def test_prefault_without_reserve_on_a_full_dev_shm_raises_and_leaves_nothing():
    """reserve=False leaves the pages to be found at first touch; prefault
    touches them all at creation, under the guard: an exception, not SIGBUS."""
    ours = in_small_dev_shm(
        """
        import os, tritonshm as shm
        try:
            shm.create_shared_memory_region("big", "/no_room", 4 << 20, reserve=False, prefault=True)
        except shm.SharedMemoryException as e:
            print("RAISED:", e)
        print("LEFT:", os.listdir("/dev/shm"))
        """
    )
    assert (ours.returncode, ours.stderr) == (0, ""), (ours.returncode, ours.stderr)
    assert ours.stdout.splitlines() == [
        "RAISED: unable to create the shared memory region '/no_room': faulting its 4194304 bytes in (prefault): a "
        "page could not be backed (/dev/shm is full and the region was created without reserving its pages, or "
        "another process shrank it)",
        "LEFT: []",
    ]


@needs_mount_namespace
def test_reference_dies_of_sigbus_where_we_raise():
    reference = in_small_dev_shm(
        """
        import numpy as np, tritonclient.utils.shared_memory as ref
        h = ref.create_shared_memory_region("big", "/too_big", 4 << 20)   # succeeds: tmpfs is sparse
        ref.set_shared_memory_region(h, [np.ones(4 << 20, np.uint8)])      # first touch past 1 MiB
        print("survived")
        """
    )
    assert reference.returncode == -signal.SIGBUS, (reference.returncode, reference.stdout, reference.stderr)
    assert "survived" not in reference.stdout


@needs_mount_namespace
def test_regions_that_fit_still_work_in_small_dev_shm():
    result = in_small_dev_shm(
        """
        import numpy as np, tritonshm as shm
        h = shm.create_shared_memory_region("ok", "/fits", 512 << 10)
        shm.set_shared_memory_region(h, [np.ones(512 << 10, np.uint8)])
        assert shm.get_contents_as_numpy(h, np.uint8, [512 << 10]).sum() == 512 << 10
        try:
            shm.create_shared_memory_region("second", "/second", 768 << 10)   # only ~512 KiB left
        except shm.SharedMemoryException as e:
            print("RAISED", "free of" in str(e))
        shm.destroy_shared_memory_region(h)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "RAISED True" in result.stdout


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


WRITER = """
import sys, numpy as np, tritonshm as shm
h = shm.create_shared_memory_region("w", sys.argv[1], 64 << 20)
data = np.full(64 << 20, 7, np.uint8)
print("WRITING", flush=True)
while True:
    shm.set_shared_memory_region(h, [data])
"""


def test_writer_killed_mid_write_leaves_readers_and_cleanup_working(make_key):
    key = make_key("killed")
    writer = subprocess.Popen([PY, "-c", WRITER, key], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "WRITING"
        time.sleep(0.2)
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
    reader = shm.attach_shared_memory_region("r", key)  # the orphan is still readable
    values = shm.get_contents_as_numpy(reader, np.uint8, [64 << 20])
    assert set(np.unique(values[::4096]).tolist()) <= {0, 7}, "only bytes the writer wrote, or zeros"
    del values
    from tritonshm.inventory import collect_garbage, region_info

    assert region_info(key).mapped_by == [os.getpid()]
    report = collect_garbage(prefix=key, trust_uninspected=True)
    assert [k.region.key for k in report.kept] == [key], "we still map it: kept"
    shm.destroy_shared_memory_region(reader)
    report = collect_garbage(prefix=key, trust_uninspected=True)
    assert [i.key for i in report.removed] == [key]
    assert not shm_path(key).exists()


def test_other_user_cannot_open_default_region(make_key):
    skip_unless_nobody_can_run_python()
    private, shared = make_key("private"), make_key("shared")
    a = shm.create_shared_memory_region("p", private, 64)
    b = shm.create_shared_memory_region("s", shared, 64, mode=0o666)
    try:
        shm.set_shared_memory_region(b, [np.arange(4, dtype=np.int32)])
        code = textwrap.dedent(
            """
            import sys, numpy as np, tritonshm as shm
            try:
                shm.attach_shared_memory_region("x", sys.argv[1])
                print("OPENED PRIVATE")
            except shm.SharedMemoryException as e:
                print("DENIED", e.errno, e)
            h = shm.attach_shared_memory_region("y", sys.argv[2])
            print("SHARED", shm.get_contents_as_numpy(h, np.int32, [4]).tolist())
            shm.destroy_shared_memory_region(h)
            """
        )
        result = subprocess.run(
            [*AS_NOBODY, PY, "-c", code, private, shared],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert f"DENIED 13 unable to open the shared memory region '{private}': Permission denied" in result.stdout
        assert "SHARED [0, 1, 2, 3]" in result.stdout
    finally:
        shm.destroy_shared_memory_region(a)
        shm.destroy_shared_memory_region(b)


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
    exception (the process used to die with exit 135)."""
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

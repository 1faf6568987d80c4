"""Regions shared with other processes: opened by key, by raw POSIX calls,
after the creator exited, across fork(), after a writer was killed in the
middle of a write, and refused to another user."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

import tritonshm as shm

from conftest import AS_NOBODY, shm_path, skip_unless_nobody_can_run_python

PY = sys.executable


def run_python(code, *args):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


def test_child_reads_and_writes_region_by_key(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 64)
    try:
        shm.set_shared_memory_region(handle, [np.arange(8, dtype=np.int32)])
        run_python(
            """
            import sys, numpy as np, tritonshm as shm
            h = shm.create_shared_memory_region("child", sys.argv[1], 64)
            got = shm.get_contents_as_numpy(h, np.int32, [8])
            assert got.tolist() == list(range(8)), got
            shm.set_shared_memory_region(h, [got * 10], offset=32)
            shm.destroy_shared_memory_region(h)
            """,
            key,
        )
        assert shm_path(key).exists(), "the child only attached: it must not unlink"
        assert shm.get_contents_as_numpy(handle, np.int32, [8], offset=32).tolist() == [i * 10 for i in range(8)]
    finally:
        shm.destroy_shared_memory_region(handle)


def test_child_with_raw_posix_calls_sees_our_bytes(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 4096)
    try:
        payload = np.random.default_rng(7).integers(0, 255, 4096, dtype=np.uint8)
        shm.set_shared_memory_region(handle, [payload])
        result = run_python(
            """
            import _posixshmem, mmap, os, sys, hashlib
            fd = _posixshmem.shm_open(sys.argv[1], os.O_RDWR, 0)
            m = mmap.mmap(fd, 4096); os.close(fd)
            print(hashlib.sha256(m[:]).hexdigest()); m.close()
            """,
            key,
        )
        import hashlib

        assert result.stdout.strip() == hashlib.sha256(payload.tobytes()).hexdigest()
    finally:
        shm.destroy_shared_memory_region(handle)


def test_no_resource_tracker_and_no_leak_warnings_at_exit(make_key):
    key = make_key()
    result = run_python(
        """
        import sys, numpy as np, tritonshm as shm
        a = shm.create_shared_memory_region("a", sys.argv[1], 1024)
        b = shm.create_shared_memory_region("b", sys.argv[1], 1024)
        shm.set_shared_memory_region(a, [np.ones(4)])
        shm.destroy_shared_memory_region(a)
        shm.destroy_shared_memory_region(b)
        import multiprocessing.resource_tracker as rt
        assert rt._resource_tracker._fd is None, "resource tracker was started"
        """,
        key,
    )
    assert "leaked" not in result.stderr and "resource_tracker" not in result.stderr, result.stderr
    assert not shm_path(key).exists()


def test_region_created_by_child_that_exits_stays_for_attachers(make_key):
    """A created region outlives its creator's process when not destroyed (POSIX semantics,
    like Triton's C++ client): no tracker removes it behind the user's back."""
    key = make_key()
    run_python(
        """
        import sys, numpy as np, tritonshm as shm
        h = shm.create_shared_memory_region("c", sys.argv[1], 16)
        shm.set_shared_memory_region(h, [np.arange(4, dtype=np.int32)])
        import os; os._exit(0)  # exits without destroying
        """,
        key,
    )
    handle = shm.create_shared_memory_region("n", key, 16)
    assert shm.get_contents_as_numpy(handle, np.int32, [4]).tolist() == [0, 1, 2, 3]
    shm.destroy_shared_memory_region(handle)
    assert shm_path(key).exists()
    os.unlink(shm_path(key))


def test_demo_prints_results_and_leaves_dev_shm_clean():
    demo = subprocess.Popen(
        [sys.executable, "-m", "tritonshm.cli", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stdout, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 0, stderr
    assert "15 +   3 =  18     15 -   3 =  12" in stdout
    assert "PASS" in stdout
    # The demo's keys end with its pid; other demos (parallel tests, a
    # benchmark) come and go in /dev/shm meanwhile.
    ours = [f"tritonshm_demo_in_{demo.pid}", f"tritonshm_demo_out_{demo.pid}"]
    assert [name for name in ours if os.path.exists(f"/dev/shm/{name}")] == []


def test_forked_child_releases_but_never_unlinks_the_parents_region(make_key):
    """gunicorn --preload, multiprocessing with fork: a child inherits the
    parent's handles. It may use and destroy them; the region stays the
    parent's, who alone unlinks it."""
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 64, create_only=True)
    try:
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status, never return into pytest
            status = 1
            try:
                shm.set_shared_memory_region(handle, [np.arange(4, dtype=np.int32)])
                shm.destroy_shared_memory_region(handle)
                status = 0 if shm_path(key).exists() else 3
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "3: the child unlinked the parent's region"
        assert shm_path(key).exists()
        assert shm.get_contents_as_numpy(handle, np.int32, [4]).tolist() == [0, 1, 2, 3]
    finally:
        shm.destroy_shared_memory_region(handle)
    assert not shm_path(key).exists(), "the parent, which created it, unlinks it"


_INHERITED = {}


def _child_destroys_inherited_handle(key):
    shm.set_shared_memory_region(_INHERITED[key], [np.full(4, 7, dtype=np.int32)])
    shm.destroy_shared_memory_region(_INHERITED[key])
    del _INHERITED[key]


def test_multiprocessing_fork_child_never_unlinks_the_parents_region(make_key):
    import multiprocessing

    key = make_key()
    _INHERITED[key] = handle = shm.create_shared_memory_region("n", key, 64, create_only=True)
    try:
        child = multiprocessing.get_context("fork").Process(target=_child_destroys_inherited_handle, args=(key,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        assert shm_path(key).exists(), "the forked child unlinked the parent's region"
        assert shm.get_contents_as_numpy(handle, np.int32, [4]).tolist() == [7, 7, 7, 7]
    finally:
        _INHERITED.pop(key, None)
        shm.destroy_shared_memory_region(handle)
    assert not shm_path(key).exists()


def test_interpreter_exits_cleanly_after_every_kind_of_input(make_key):
    """Nothing the binding keeps may be released after the interpreter is gone
    (a static Python object freed by C++'s exit-time destructors aborted the
    process at exit once: 'PyThreadState_Get: ... the GIL is released')."""
    key = make_key()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
            import array, sys, numpy as np, tritonshm as shm
            h = shm.create_shared_memory_region("n", sys.argv[1], 1024)
            sources = [np.ones(4), b"ab", memoryview(b"cd")[::1], array.array("i", [1])]
            try:
                import array_api_strict as xp
                sources.append(xp.asarray([1.0]))
            except ImportError:
                pass
            shm.set_shared_memory_region(h, sources)
            shm.get_contents_as_numpy(h, np.object_, [0])
            shm.destroy_shared_memory_region(h)
            """
            ),
            key,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "Fatal Python error" not in result.stderr, result.stderr


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

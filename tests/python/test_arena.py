"""The C++ arena through its binding (tritonshm._core.Arena), without a server:
pending regions, a forked child's hands off, close() unmapping, and leases
bounded by their slice."""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Iterator, List, Set

import numpy as np
import pytest

import tritonshm as shm
from tritonshm import _core

from conftest import PREFIX, shm_path

# GCC 12's AddressSanitizer (stage 5 preloads it) has no fork handlers: a
# child forked while a parent thread is inside its allocator can hang in ASan's
# lock, not ours. Under it the forked children skip the calls that raise (and
# so allocate in C++); the plain build runs them all.
_SANITIZER_ALLOCATOR_IS_FORK_UNSAFE = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture
def arena() -> Iterator[_core.Arena]:
    a = _core.Arena(PREFIX + "arena", 2**40, 64, 0o600, False)
    yield a
    a.close()


def committed(arena: _core.Arena, size: int) -> str:
    name, _, _ = arena.add_region(size)
    arena.commit_region(name)
    return name


def mappings_of(inode: int) -> int:
    """How many of this process's mappings are of the /dev/shm file with `inode`
    (a region created unnamed shows the path it had when mapped, not its key)."""
    count = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and int(fields[4]) == inode and fields[5].startswith("/dev/shm/"):
                count += 1
    return count


def test_pending_region_is_not_leasable_until_committed(arena):
    name, key, size = arena.add_region(4096)
    assert shm_path(key).exists() and size == 4096
    assert arena.capacity == 4096 and arena.region_count == 0
    assert arena.try_lease(64) is None
    assert arena.regions() == [] and arena.pending_regions() == [(name, key, 4096)]
    arena.commit_region(name)
    assert arena.regions() == [(name, key, 4096)] and arena.pending_regions() == []
    assert arena.region_count == 1
    assert arena.lease(64).name == name
    with pytest.raises(
        shm.SharedMemoryException,
        match=f"^unable to lease shared memory: the arena has no pending region named '{name}'$",
    ):
        arena.commit_region(name)


def test_failed_registration_removes_the_pending_region_while_threads_lease(arena):
    """Issue 16, faults 2 and 3: requests racing a growth never land in the
    region the server has not registered yet, so its failed registration can
    always take it back."""
    committed(arena, 4096)
    seen: Set[str] = set()
    stop = threading.Event()

    def lease_in_a_loop() -> None:
        while not stop.is_set():
            lease = arena.try_lease(3000)  # one at a time fits in the first region
            if lease is not None:
                seen.add(lease.name)
                lease.release()

    threads = [threading.Thread(target=lease_in_a_loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        name, key, _ = arena.add_region(1 << 20)
        time.sleep(0.2)  # the server takes its time registering
        assert name not in seen
        assert arena.remove_region(name), "nobody can hold a lease in a pending region"
        assert not shm_path(key).exists()
        grown = committed(arena, 1 << 20)
        deadline = time.monotonic() + 10
        while grown not in seen and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert grown in seen
    assert arena.leased_bytes == 0 and arena.high_water_bytes >= 3008


def test_high_water_and_counts(arena):
    committed(arena, 1 << 20)
    a, b = arena.lease(1000), arena.lease(3000)
    assert (arena.leased_bytes, arena.lease_count, arena.high_water_bytes) == (1024 + 3008, 2, 1024 + 3008)
    a.release()
    b.release()
    assert (arena.leased_bytes, arena.lease_count, arena.high_water_bytes) == (0, 0, 1024 + 3008)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+: fork() with threads running
def test_forked_child_never_locks_unlinks_nor_leases_from_the_parents_arena(arena):
    """Issue 16, fault 1: children forked while a thread grows and shrinks the
    arena (the GIL is released inside add_region) release their inherited
    lease, close and drop the arena, and exit; none hangs, none leases, none
    unlinks the parent's region."""
    name = committed(arena, 1 << 20)
    key = "/" + name
    inherited = arena.lease(4096)
    stop = threading.Event()

    def grow_and_shrink() -> None:
        while not stop.is_set():
            grown, _, _ = arena.add_region(4096)
            arena.remove_region(grown)

    grower = threading.Thread(target=grow_and_shrink)
    grower.start()
    children = []
    try:
        for _ in range(40):
            pid = os.fork()
            if pid == 0:  # the child: exit codes say what went wrong
                code = 0
                try:
                    code |= 1 if arena.owned_here else 0
                    refused = () if _SANITIZER_ALLOCATOR_IS_FORK_UNSAFE else (arena.try_lease, arena.add_region)
                    for call in refused:
                        try:
                            call(4096)
                            code |= 2
                        except shm.SharedMemoryException as e:
                            if f"this is a forked child (pid {os.getpid()})" not in str(e):
                                code |= 4
                    inherited.release()
                    arena.close()
                    code |= 0 if shm_path(key).exists() else 8
                except BaseException:
                    code |= 16
                os._exit(code)
            children.append(pid)
            time.sleep(0.002)
    finally:
        stop.set()
        grower.join()
    hung, failed = 0, []
    deadline = time.monotonic() + 30
    for pid in children:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if not done:
            hung += 1
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        elif os.waitstatus_to_exitcode(status) != 0:
            failed.append(os.waitstatus_to_exitcode(status))
    assert hung == 0, "children deadlocked on the arena's lock"
    assert failed == []
    assert arena.owned_here and shm_path(key).exists()
    assert arena.lease_count == 1  # the children's releases did not touch the parent's arena
    inherited.release()
    assert arena.lease_count == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_child_drops_the_arena_without_unlinking_and_makes_its_own(arena):
    name = committed(arena, 4096)
    lease = arena.lease(64)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            lease.release()
            child_arena = arena  # the fixture's reference stays; drop this one and collect
            child_arena.close()
            del child_arena
            gc.collect()
            code = 0 if shm_path("/" + name).exists() else 1
            own = _core.Arena(PREFIX + "arena", 2**40, 64, 0o600, False)  # the child's own works as any
            own_name = committed(own, 4096)
            code |= 0 if own.owned_here and f"_{os.getpid()}_" in own_name and own.lease(64).name == own_name else 4
            own.close()
            code |= 0 if not shm_path("/" + own_name).exists() else 8
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert shm_path("/" + name).exists() and arena.lease_count == 1
    lease.release()


def test_close_unmaps_each_region_once_its_last_lease_is_gone(arena):
    """Issue 16, fault 6: after close() the arena holds no region; a region's
    mapping goes with its last lease, not with the arena object."""
    idle = committed(arena, 1 << 20)
    lease_holder = arena.lease(1 << 20)  # fills `idle`
    busy = committed(arena, 1 << 20)
    lease = arena.lease(4096)
    assert (lease_holder.name, lease.name) == (idle, busy)
    lease_holder.release()
    idle_inode, busy_inode = (os.stat(shm_path("/" + n)).st_ino for n in (idle, busy))
    assert mappings_of(idle_inode) == 1 and mappings_of(busy_inode) == 1
    arena.close()
    assert not shm_path("/" + idle).exists() and not shm_path("/" + busy).exists()
    assert mappings_of(idle_inode) == 0, "no lease in it: unmapped by close()"
    assert mappings_of(busy_inode) == 1, "its lease keeps it mapped"
    assert lease.write(0, np.arange(4, dtype=np.int32)) == 16
    assert arena.regions() == [] and arena.capacity == 0
    lease.release()
    assert mappings_of(busy_inode) == 0
    assert not lease.live


def test_view_keeps_its_memory_through_release_and_close(arena):
    committed(arena, 4096)
    lease = arena.lease(64)
    lease.write(0, np.arange(16, dtype=np.int32))
    view = lease.read(0, np.int32, [16], False)
    lease.release()
    arena.close()
    del lease
    gc.collect()
    assert view.tolist() == list(range(16))  # still mapped: the view holds the mapping


def test_lease_methods_refuse_ranges_outside_the_lease(arena):
    committed(arena, 4096)
    first, second = arena.lease(64), arena.lease(64)
    assert (first.offset, second.offset) == (0, 64)
    second.write(0, np.full(16, 7, dtype=np.int32))
    with pytest.raises(shm.SharedMemoryException, match="^unable to set the shared memory region"):
        first.write(0, np.zeros(17, dtype=np.int32))  # 68 bytes: 4 into the neighbour
    with pytest.raises(shm.SharedMemoryException, match="^unable to set the shared memory region"):
        first.write(64, np.zeros(1, dtype=np.int8))
    with pytest.raises(shm.SharedMemoryException, match="^unable to set the shared memory region"):
        first.write_bytes(0, _core.BytesTensor(np.array([b"x" * 61], dtype=np.object_)))  # 4 + 61 bytes
    with pytest.raises(shm.SharedMemoryException, match="^unable to read the shared memory region"):
        first.read(0, np.int32, [17], True)
    with pytest.raises(shm.SharedMemoryException, match="^unable to read the shared memory region"):
        first.read(65, np.int8, [0], True)
    # A BYTES element whose length runs from the first lease into the second.
    first.write(60, np.array([8], dtype=np.uint32))
    with pytest.raises(shm.SharedMemoryException, match="^unable to read the shared memory region"):
        first.read(60, np.object_, [1], True)
    assert second.read(0, np.int32, [16], True).tolist() == [7] * 16, "the neighbour's bytes are untouched"
    assert first.write(60, np.zeros(1, dtype=np.int32)) == 4  # the very end still fits
    first.release()
    with pytest.raises(shm.SharedMemoryException, match="the lease was released"):
        first.write(0, np.zeros(1, dtype=np.int8))


def test_release_and_close_while_another_thread_copies_never_crash():
    """A lease released and its arena closed by one thread while another copies
    into it (without the GIL): the copy holds the region until it returns, so
    it finishes or is refused, never touches unmapped memory."""
    big = np.ones(8 << 20, dtype=np.float32)  # 32 MiB: copied without the GIL

    def copy_in_a_loop(lease: _core.Lease, copying: threading.Event, refused: List[str]) -> None:
        while True:
            copying.set()
            try:
                lease.write(0, big)
            except shm.SharedMemoryException as error:
                refused.append(str(error))
                return

    for _ in range(5):
        arena = _core.Arena(PREFIX + "arena", 2**40, 64, 0o600, False)
        committed(arena, 32 << 20)
        lease = arena.lease(32 << 20)
        copying, refused = threading.Event(), []
        writer = threading.Thread(target=copy_in_a_loop, args=(lease, copying, refused))
        writer.start()
        copying.wait()
        time.sleep(0.01)
        lease.release()
        arena.close()
        writer.join()
        assert "the lease was released" in refused[0]


def test_a_lease_part_names_its_bytes_as_the_server_sees_them_and_is_bounded_by_them(arena):
    name = committed(arena, 1 << 16)
    first = arena.try_lease(4096)
    lease = arena.try_lease(4096)  # not at the region's start: offsets differ
    part = lease.part(128, 64)
    assert (part.name, part.offset, part.size) == (name, lease.offset + 128, 64)
    x = np.arange(16, dtype=np.float32)
    assert part.write(x) == 64
    np.testing.assert_array_equal(lease.read(128, np.float32, [16], True), x)
    view = part.read(np.float32, [16], False)
    np.testing.assert_array_equal(view, x)
    with pytest.raises(shm.SharedMemoryException, match="do not fit in the slice of 64 bytes"):
        part.write(np.zeros(17, np.float32))
    with pytest.raises(shm.SharedMemoryException, match="do not fit in the slice of 4096 bytes"):
        lease.part(4096 - 32, 64)
    first.release()
    lease.release()
    with pytest.raises(shm.SharedMemoryException, match="the lease was released"):
        part.write(x)  # its bytes may be another request's now
    with pytest.raises(shm.SharedMemoryException, match="the lease was released"):
        part.read(np.float32, [16], True)
    del view


def test_refusals_carry_a_reason_that_code_reads_without_matching_text(arena):
    small = _core.Arena(PREFIX + "small", 1 << 16, 64, 0o600, False)
    try:
        committed(small, 1 << 16)
        with pytest.raises(shm.SharedMemoryException) as limit:
            small.add_region(1)
        assert limit.value.reason == "limit_reached"
        small.close()
        with pytest.raises(shm.SharedMemoryException) as closed:
            small.try_lease(1)
        assert closed.value.reason == "closed"
    finally:
        small.close()
    with pytest.raises(shm.SharedMemoryException) as other:
        arena.commit_region("no such region")
    assert other.value.reason is None


def test_a_retired_region_leases_nothing_again_and_is_removed_after_its_last_lease(arena):
    name = committed(arena, 1 << 16)
    abandoned, live = arena.try_lease(1024), arena.try_lease(1024)
    assert arena.retire_region(name)
    abandoned.release()
    assert arena.try_lease(64) is None
    assert [r[0] for r in arena.retired_regions()] == [name] and arena.regions() == []
    live.write(0, np.ones(256, np.float32))
    assert not arena.remove_region(name)
    live.release()
    assert arena.remove_region(name)
    assert not shm_path("/" + name).exists()

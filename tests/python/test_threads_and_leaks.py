"""Concurrency, the GIL and resource leaks."""

import os
import threading
import time

import numpy as np

import tritonshm as shm


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def mapped_lines():
    with open("/proc/self/maps") as maps:
        return sum(1 for line in maps if "/dev/shm/" in line)


def test_thousands_of_cycles_leak_no_fd_and_no_mapping(make_key):
    key = make_key()
    data = np.arange(256, dtype=np.float32)
    fds, maps = open_fds(), mapped_lines()
    for _ in range(3000):
        handle = shm.create_shared_memory_region("n", key, 1024)
        shm.set_shared_memory_region(handle, [data])
        view = shm.get_contents_as_numpy(handle, np.float32, [256])
        assert view[255] == 255
        shm.destroy_shared_memory_region(handle)
        del view
    assert open_fds() == fds
    assert mapped_lines() == maps
    assert shm.mapped_shared_memory_regions() == []


def test_destroy_unmaps_while_the_handle_object_lives(make_key):
    # get_contents_as_numpy keeps one base object per handle for its views:
    # destroy must drop it, or the mapping would stay until the handle is gone.
    maps = mapped_lines()
    handle = shm.create_shared_memory_region("n", make_key(), 4096)
    view = shm.get_contents_as_numpy(handle, np.uint8, [4096])
    again = shm.get_contents_as_numpy(handle, np.uint8, [16], offset=8)
    assert view.base is again.base, "views share one owner"
    shm.destroy_shared_memory_region(handle)
    view[0] = 7  # views outlive destroy
    assert mapped_lines() == maps + 1
    del view, again
    assert mapped_lines() == maps
    assert handle is not None  # the handle object was alive through the checks above


def test_errors_leak_nothing(make_key):
    key = make_key()
    fds, maps = open_fds(), mapped_lines()
    holder = shm.create_shared_memory_region("n", key, 64)
    shm.set_shared_memory_region(holder, [np.full(64, 0xFF, np.uint8)])  # a BYTES length no region can hold
    for _ in range(1000):
        for call in (
            lambda: shm.create_shared_memory_region("n", key, 64, create_only=True),
            lambda: shm.set_shared_memory_region(holder, [np.zeros(65, np.uint8)]),
            lambda: shm.get_contents_as_numpy(holder, np.object_, [3]),
        ):
            try:
                call()
            except shm.SharedMemoryException:
                pass
            else:
                raise AssertionError("expected SharedMemoryException")
    shm.destroy_shared_memory_region(holder)
    assert (open_fds(), mapped_lines()) == (fds, maps)


def test_threads_sharing_keys_keep_counts_and_bytes_right(make_key):
    keys = [make_key() for _ in range(3)]
    errors = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        try:
            for i in range(300):
                key = keys[int(rng.integers(0, len(keys)))]
                handle = shm.create_shared_memory_region("t", key, 4096)
                slot = seed * 64  # each thread owns 64 bytes of every region
                value = np.full(16, seed * 1000 + i, np.int32)
                shm.set_shared_memory_region(handle, [value], offset=slot)
                got = shm.get_contents_as_numpy(handle, np.int32, [16], offset=slot)
                if not np.array_equal(got, value):
                    errors.append((seed, i, got.copy()))
                shm.destroy_shared_memory_region(handle)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert shm.mapped_shared_memory_regions() == []


def test_concurrent_destroy_of_one_handle_succeeds_once(region):
    results = []
    barrier = threading.Barrier(4)

    def destroy():
        barrier.wait()
        try:
            shm.destroy_shared_memory_region(region)
            results.append("ok")
        except shm.SharedMemoryException:
            results.append("raised")

    threads = [threading.Thread(target=destroy) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "raised", "raised", "raised"]


def test_large_copy_releases_the_gil(make_key):
    size = 256 << 20
    handle = shm.create_shared_memory_region("n", make_key(), size, prefault=True)
    data = np.ones(size, np.uint8)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    try:
        thread = threading.Thread(target=ticker)
        thread.start()
        time.sleep(0.01)
        for _ in range(3):  # several tries: the other thread may simply not be scheduled once
            start = time.perf_counter()
            shm.set_shared_memory_region(handle, [data])
            end = time.perf_counter()
            inside = [t for t in ticks if start + 0.001 < t < end - 0.001]
            if end - start > 0.01 and len(inside) > 10:
                break
        stop.set()
        thread.join()
        assert end - start > 0.01, "copy too short to tell"
        assert len(inside) > 10, f"the other thread ran {len(inside)} times during a {end - start:.3f} s copy"
    finally:
        stop.set()
        shm.destroy_shared_memory_region(handle)

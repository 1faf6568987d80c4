"""close() against PyTriton's server: only the pool's own names are
unregistered, the regions are unmapped at once, a pool left open is closed at
interpreter exit; close() during a registration in flight, a heal, traffic, or
requests at the server longer than it waits leaves nothing of the pool
registered once they end."""

import os
import pathlib
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import tritonshm as shm

from conftest import new_key
from e2e_clients import (
    MIB,
    add_sub,
    assert_gone,
    grpc,
    http,
    pool_files,
    run_in_threads,
    server_names,
    slowed,
    unique_prefix,
    unregister_all,
)

pytestmark = pytest.mark.e2e

from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import SharedMemoryPool, register, shared_memory_status  # noqa: E402


def test_close_unregisters_only_its_own_regions_and_a_new_pool_opens(client):
    key = new_key("bystander")
    bystander = shm.create_shared_memory_region(f"bystander_{client.protocol}", key, 4096, create_only=True)
    try:
        register(client, bystander)
        pool = SharedMemoryPool(client, 1 << 20)
        names = pool.region_names
        pool.close()
        pool.close()  # idempotent
        assert_gone(client, names)
        registered = {r["name"] for r in shared_memory_status(client) if r["name"]}
        assert f"bystander_{client.protocol}" in registered, "close() unregistered only the pool's own names"
        with pytest.raises(shm.SharedMemoryException, match="the pool is closed"):
            pool.lease(64)
        with SharedMemoryPool(client, 1 << 20) as again:
            add_sub(again, np.int32, 1)
            assert again.region_names != names
    finally:
        client.unregister_system_shared_memory(f"bystander_{client.protocol}")
        shm.destroy_shared_memory_region(bystander)


EXITS_WITHOUT_CLOSE = """
import sys, tritonclient.http as http
from tritonshm.triton import SharedMemoryPool
pool = SharedMemoryPool(http.InferenceServerClient(sys.argv[1]), 1 << 20)
print(*pool.region_names, flush=True)
"""


def test_a_pool_left_open_is_closed_at_interpreter_exit(triton):
    result = subprocess.run(
        [sys.executable, "-c", EXITS_WITHOUT_CLOSE, triton["http"]], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert names
    with http.InferenceServerClient(triton["http"]) as client:
        assert_gone(client, names)


def test_close_while_a_registration_is_in_flight_leaves_nothing_registered(triton):
    client = grpc.InferenceServerClient(triton["grpc"])
    prefix = unique_prefix("closing")
    pool = SharedMemoryPool(client, 64 << 10, max_capacity=4 << 20, prefix=prefix, inline_threshold=0)
    client.register_system_shared_memory = slowed(client.register_system_shared_memory, 1.0)
    outcome = []

    def grow():
        try:
            pool.lease(1 << 20)
            outcome.append("leased")
        except shm.SharedMemoryException as error:
            outcome.append(str(error))

    grower = threading.Thread(target=grow)
    grower.start()
    time.sleep(0.3)  # the registration is in flight
    pool.close()
    grower.join()
    assert outcome == ["unable to lease shared memory: the pool is closed"], outcome
    assert not [n for n in server_names(client) if n.startswith(prefix)], "nothing of the pool stays registered"
    assert pool_files(prefix) == []
    client.close()


def mappings_of(inodes):
    """Lines of /proc/self/maps that map one of these inodes (whatever name the kernel shows)."""
    lines = pathlib.Path("/proc/self/maps").read_text().splitlines()
    return [line for line in lines if len(line.split()) >= 5 and int(line.split()[4]) in inodes]


def test_close_unmaps_the_regions_without_waiting_for_the_pool_object(client):
    prefix = unique_prefix("unmap")
    pool = SharedMemoryPool(client, 4 << 20, prefix=prefix)
    inodes = {os.stat(f"/dev/shm/{name}").st_ino for name in pool.region_names}
    assert mappings_of(inodes), "mapped while open"
    pool.close()
    assert mappings_of(inodes) == [], "the pool object is alive, its regions must be unmapped"
    del pool


def test_close_during_traffic_waits_for_the_server_and_leaves_nothing_registered(triton):
    """Triton refuses to unregister a region while a request uses it: close()
    under load waits for the server, and leaves none of the names registered."""
    client = grpc.InferenceServerClient(triton["grpc"])
    prefix = unique_prefix("busy")
    pool = SharedMemoryPool(client, 1 << 20, max_capacity=32 << 20, prefix=prefix)
    x = np.ones(100_000, np.float32)
    stop = threading.Event()

    def work(_):
        while not stop.is_set():
            try:
                pool.infer("double_fp32", {"INPUT0": x})
            except shm.SharedMemoryException:
                return  # the pool closed under it: expected
            except InferenceServerException:
                return  # the region went away under a request in flight: expected

    workers = threading.Thread(target=lambda: run_in_threads(work, 6))
    workers.start()
    time.sleep(1.5)
    pool.close()
    stop.set()
    workers.join(60)
    assert not [n for n in server_names(client) if n.startswith(prefix)], "close() left names registered"
    assert pool_files(prefix) == []
    client.close()


@pytest.mark.parametrize("traffic", [False, True], ids=["idle", "traffic"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_close_on_another_thread_leaves_nothing_registered(triton, protocol, traffic):
    """A tritonclient.http client works only on the thread that made it: close()
    on another (a `with` block in a worker, the garbage collector) unregisters
    through a client of its own, also while threads with their own clients
    run requests."""
    module = http if protocol == "http" else grpc
    client = module.InferenceServerClient(triton[protocol])
    prefix = unique_prefix(f"elsewhere_{protocol}")
    pool = SharedMemoryPool(client, 4 << 20, prefix=prefix)
    stop = threading.Event()
    x = np.ones(100_000, np.float32)

    def work(_):
        own = module.InferenceServerClient(triton[protocol])
        try:
            while not stop.is_set():
                try:
                    result = pool.infer("double_fp32", {"INPUT0": x}, client=own)
                except shm.SharedMemoryException:
                    return  # the pool closed under it: expected
                np.testing.assert_array_equal(result["OUTPUT0"], 2 * x)
        finally:
            own.close()

    errors = []
    workers = threading.Thread(target=lambda: errors.extend(run_in_threads(work, 6 if traffic else 0)))
    workers.start()
    time.sleep(0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        closer = threading.Thread(target=pool.close)
        closer.start()
        closer.join(30)
    stop.set()
    workers.join(60)
    assert errors == []
    assert [str(w.message) for w in caught] == []
    time.sleep(0.2)  # the last request unregisters what close() left to it
    assert not [n for n in server_names(client) if n.startswith(prefix)], "close() left names registered"
    assert pool_files(prefix) == []
    client.close()


def test_a_heal_that_close_overtakes_leaves_nothing_registered(triton):
    """close() unregisters the pool's names while another thread's request,
    refused after an unregister-all, is registering them again."""
    other = grpc.InferenceServerClient(triton["grpc"])
    client = grpc.InferenceServerClient(triton["grpc"])
    pool = SharedMemoryPool(client, 1 * MIB, prefix=unique_prefix("race"), inline_threshold=0)
    pool.infer("double_fp32", {"INPUT0": np.ones(64, np.float32)})
    names = set(pool.region_names)
    healing, unregistered = threading.Event(), threading.Event()
    register, unregister = client.register_system_shared_memory, client.unregister_system_shared_memory

    def register_after_close(*args, **kwargs):
        healing.set()
        assert unregistered.wait(10)
        return register(*args, **kwargs)

    def unregister_then_linger(*args, **kwargs):
        unregister(*args, **kwargs)
        unregistered.set()
        time.sleep(0.3)  # the heal's registration lands here, before the regions are unlinked

    client.register_system_shared_memory = register_after_close
    client.unregister_system_shared_memory = unregister_then_linger
    unregister_all(other)
    outcome = []

    def request():
        try:
            pool.infer("double_fp32", {"INPUT0": np.ones(64, np.float32)})
            outcome.append("served")
        except Exception as error:  # noqa: BLE001 - examined below
            outcome.append(str(error))

    worker = threading.Thread(target=request)
    worker.start()
    assert healing.wait(10)
    pool.close()
    worker.join()
    assert outcome == ["unable to lease shared memory: the pool is closed"], outcome
    assert not names & server_names(other), "the heal's registration outlived close()"


def test_close_with_requests_in_flight_longer_than_it_waits_leaves_nothing_registered_once_they_end(triton):
    client = grpc.InferenceServerClient(triton["grpc"])
    pool = SharedMemoryPool(client, 8 * MIB, inline_threshold=0)
    x = np.ones(1 << 16, np.float32)
    results, started = [], threading.Barrier(7)

    def request():
        started.wait()
        results.append(pool.infer("slow", {"INPUT0": x}, output_sizes={"OUTPUT0": x.nbytes}))

    workers = [threading.Thread(target=request) for _ in range(6)]  # 6 x 0.6 s queued at the server
    for worker in workers:
        worker.start()
    started.wait()
    time.sleep(0.2)
    names = set(pool.region_names)
    pool.close()  # gives up waiting after about 2.5 s: the requests at the server unregister as they end
    for worker in workers:
        worker.join()
    assert len(results) == 6
    for out in results:
        np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
    assert not names & server_names(client)

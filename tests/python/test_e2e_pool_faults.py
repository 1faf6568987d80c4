"""Faults found in the pool, each produced for real against PyTriton's server
(HTTP and gRPC where the protocol matters): fork, growth racing requests, a
registration that fails or is in flight at close(), a failed copy=False
request, mappings after close(), unexplained refusals, the async pool on
several event loops. Each test failed before its fix."""

import asyncio
import gc
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import tritonshm as shm

from e2e_clients import ASYNC, PROTOCOLS, grpc, grpc_aio, http, run_in_threads  # noqa: E402, F401

pytestmark = pytest.mark.e2e

from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import AsyncSharedMemoryPool, SharedMemoryPool, shared_memory_status  # noqa: E402


def server_names(client):
    return {r["name"] for r in shared_memory_status(client) if r["name"]}


def pool_files(prefix):
    return sorted(p.name for p in pathlib.Path("/dev/shm").glob(prefix + "_*"))


def unique_prefix(tag):
    return f"tshm_{tag}_{os.getpid()}_{time.monotonic_ns() % 10**9}"


def slow(method, seconds, fail_on=None):
    """The client's method, taking `seconds` (a busy server); raising on call number `fail_on`."""
    calls = [0]

    def call(*args, **kwargs):
        calls[0] += 1
        time.sleep(seconds)
        if fail_on is not None and calls[0] == fail_on:
            raise InferenceServerException("[400] refused for the test")
        return method(*args, **kwargs)

    return call


def double(pool, n, client=None):
    x = np.random.default_rng(n).random(n, dtype=np.float32)
    np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": x}, client=client)["OUTPUT0"], 2 * x)


FORK = """
import os, sys, numpy as np, tritonclient.http as http
import tritonshm
from tritonshm.triton import SharedMemoryPool
url = sys.argv[1]
pool = SharedMemoryPool(http.InferenceServerClient(url), 1 << 20, inline_threshold=0)
x = np.ones(16, np.float32)
assert (pool.infer("double_fp32", {"INPUT0": x})["OUTPUT0"] == 2).all()
parent_names = pool.region_names
pid = os.fork()
if pid == 0:
    try:
        pool.infer("double_fp32", {"INPUT0": x})
        print("CHILD used the parent's pool", flush=True)
    except tritonshm.SharedMemoryException as error:
        assert "forked child" in str(error), error
    import gevent
    gevent.reinit()  # tritonclient.http runs on gevent, whose hub needs this in a forked child
    with SharedMemoryPool(http.InferenceServerClient(url), 1 << 20, inline_threshold=0) as own:
        assert (own.infer("double_fp32", {"INPUT0": x})["OUTPUT0"] == 2).all()
        assert not set(own.region_names) & set(parent_names), "the child's keys are its own"
        assert str(os.getpid()) in own.region_names[0]
    print("CHILD OK", flush=True)
    sys.exit(0)  # a normal exit: atexit and the pool's finalizer run in the child
_, status = os.waitpid(pid, 0)
assert status == 0, status
for i in range(3):  # the parent's registrations and regions are untouched
    assert (pool.infer("double_fp32", {"INPUT0": x + i})["OUTPUT0"] == 2 * (x + i)).all()
assert pool.region_names == parent_names
pool.close()
print("PARENT OK", flush=True)
"""


def test_a_forked_child_never_touches_the_parents_pool(triton):
    result = subprocess.run([sys.executable, "-c", FORK, triton["http"]], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CHILD OK" in result.stdout and "PARENT OK" in result.stdout, result.stdout + result.stderr
    assert "CHILD used" not in result.stdout


FORK_DURING_GROWTH = """
import os, sys, threading, time, numpy as np, tritonclient.grpc as grpc
from tritonshm.triton import SharedMemoryPool
client = grpc.InferenceServerClient(sys.argv[1])  # thread-safe, and the child never uses it
pool = SharedMemoryPool(client, 64 << 10, max_capacity=1 << 30, region_size=64 << 10, inline_threshold=0)
stop = threading.Event()
def grow():
    while not stop.is_set():
        held = [pool.lease(48 << 10) for _ in range(4)]  # each one a new region
        for lease in held:
            lease.release()
grower = threading.Thread(target=grow)
grower.start()
children = []
for _ in range(40):
    time.sleep(0.005)
    pid = os.fork()
    if pid == 0:
        pool.close()  # in the child: does nothing, and must not wait for the parent's locks
        os._exit(0)
    children.append(pid)
deadline = time.monotonic() + 60
for pid in children:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert status == 0
            break
        assert time.monotonic() < deadline, "a forked child hung"
        time.sleep(0.01)
stop.set()
grower.join()
pool.close()
print("OK", len(children))
"""


def test_fork_while_the_pool_grows_never_hangs_the_child(triton):
    result = subprocess.run(
        [sys.executable, "-c", FORK_DURING_GROWTH, triton["grpc"]], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0 and "OK 40" in result.stdout, result.stdout + result.stderr


def test_growth_is_registered_before_any_request_uses_it(triton):
    """8 threads on a pool too small for them, registrations taking 0.3 s: no
    request may be routed to a region the server does not have yet."""
    client = grpc.InferenceServerClient(triton["grpc"])  # thread-safe: shared
    client.register_system_shared_memory = slow(client.register_system_shared_memory, 0.3)
    with SharedMemoryPool(client, 64 << 10, max_capacity=64 << 20, inline_threshold=0) as pool:

        def work(seed):
            for i in range(5):
                double(pool, 4096 + 1024 * ((seed + i) % 4))

        errors = run_in_threads(work, 8)
        assert not errors, errors[:3]
        assert len(pool.region_names) > 1, "the pool grew"
    client.close()


def test_a_failed_registration_leaves_no_region_behind_and_the_pool_goes_on(triton):
    client = grpc.InferenceServerClient(triton["grpc"])
    prefix = unique_prefix("failreg")
    client.register_system_shared_memory = slow(client.register_system_shared_memory, 0.05, fail_on=2)
    with SharedMemoryPool(client, 64 << 10, max_capacity=64 << 20, prefix=prefix, inline_threshold=0) as pool:
        # 48 KiB in and out: two requests cannot share the first region
        errors = run_in_threads(lambda _: double(pool, 12_000), 4)
        assert len(errors) <= 1 and all("refused for the test" in str(e) for e in errors), errors
        assert pool_files(prefix) == sorted(pool.region_names), "every region in /dev/shm is a registered one"
        assert set(pool.region_names) <= server_names(client)
        for _ in range(4):
            double(pool, 12_000)
    assert pool_files(prefix) == []
    client.close()


def test_close_while_a_registration_is_in_flight_leaves_nothing_registered(triton):
    client = grpc.InferenceServerClient(triton["grpc"])
    prefix = unique_prefix("closing")
    pool = SharedMemoryPool(client, 64 << 10, max_capacity=4 << 20, prefix=prefix, inline_threshold=0)
    client.register_system_shared_memory = slow(client.register_system_shared_memory, 1.0)
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


def test_a_failed_copy_false_request_releases_its_lease_at_once(client):
    gc.disable()  # the lease must not wait for the cyclic collector
    try:
        with SharedMemoryPool(client, 4096, max_capacity=4096, inline_threshold=0) as pool:
            bad = np.ones((1, 16), np.float32)  # `simple` wants INT32
            for _ in range(40):
                with pytest.raises(Exception):  # noqa: B017 - the server's own refusal
                    pool.infer("simple", {"INPUT0": bad, "INPUT1": bad}, copy=False)
                assert pool.leased_bytes == 0
            a = np.ones((1, 16), np.int32)
            out = pool.infer("simple", {"INPUT0": a, "INPUT1": a}, copy=False)
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * a)
            del out
    finally:
        gc.enable()


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


def test_an_unexplained_refusal_is_the_servers_own_error(client):
    with SharedMemoryPool(client, 1 << 20) as pool:
        with pytest.raises(InferenceServerException) as info:
            pool.infer("no_such_model", {"INPUT0": np.ones(4, np.float32)})
        assert info.value.__cause__ is not info.value


async def make_client(url):
    return grpc_aio.InferenceServerClient(url)


@pytest.mark.parametrize("protocol", ["grpc"])
def test_async_pool_serves_event_loops_in_several_threads(triton, protocol):
    """One pool, a loop per thread, each with its own aio client (client=), all growing it."""
    owner_loop = asyncio.new_event_loop()  # the pool's own client lives on this loop
    owner_client = owner_loop.run_until_complete(make_client(triton[protocol]))
    pool = AsyncSharedMemoryPool(owner_client, 64 << 10, max_capacity=256 << 20, inline_threshold=0)
    owner_loop.run_until_complete(pool.open())
    errors = []

    def loop_in_thread(seed):
        async def main():
            own = grpc_aio.InferenceServerClient(triton[protocol])
            try:

                async def one(i):
                    x = np.full(8192 + 1024 * ((seed + i) % 8), seed + i, np.float32)
                    out = await pool.infer_async("double_fp32", {"INPUT0": x}, client=own)
                    np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)

                await asyncio.gather(*(one(i) for i in range(8)))
            finally:
                await own.close()

        try:
            asyncio.run(main())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=loop_in_thread, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def finish():
        names = pool.region_names
        await pool.close()
        await owner_client.close()
        return names

    names = owner_loop.run_until_complete(finish())
    owner_loop.close()
    assert not errors, errors[:3]
    with grpc.InferenceServerClient(triton[protocol]) as sync_client:
        assert not set(names) & server_names(sync_client), "close() on the owner's loop unregistered everything"


def test_http_threads_with_their_own_clients_make_the_pools_calls_through_them(triton):
    """tritonclient's HTTP client belongs to its thread (gevent): growth, model
    configs and healing for a request go through that request's client=, never
    the pool's own from another thread (which failed with "Cannot switch to a
    different thread", or hung)."""
    shared = http.InferenceServerClient(triton["http"])
    with SharedMemoryPool(shared, 4096, max_capacity=1 << 30, region_size=4096, inline_threshold=0) as pool:
        barrier = threading.Barrier(6)

        def work(i):
            own = http.InferenceServerClient(triton["http"])
            try:
                barrier.wait()
                for k in range(4):
                    x = np.full(1024 * (i + k + 1), i + k, np.float32)
                    model = ("double_fp32", "bytes_upper")[i % 2]
                    if model == "bytes_upper":
                        words = np.array([[b"w" * (i + k + 1)] * 3], dtype=np.object_)
                        out = pool.infer(model, {"INPUT0": words}, client=own)
                        assert out["OUTPUT1"].tolist() == [[i + k + 1] * 3]
                    else:
                        np.testing.assert_array_equal(pool.infer(model, {"INPUT0": x}, client=own)["OUTPUT0"], 2 * x)
            finally:
                own.close()

        errors = run_in_threads(work, 6)
        assert not errors, errors[:3]
        assert len(pool.region_names) > 1, "the pool grew from the threads"
    shared.close()


def test_an_interrupted_request_releases_its_lease_at_once(client):
    """KeyboardInterrupt (or a cancelled task) inside the client's infer: the
    lease comes back before the exception is even handled, not when the
    traceback that holds the request's frame is collected."""
    with SharedMemoryPool(client, 1 << 20, inline_threshold=0) as pool:
        real_infer = client.infer

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        client.infer = interrupted
        try:
            with pytest.raises(KeyboardInterrupt) as info:
                pool.infer("double_fp32", {"INPUT0": np.ones(256, np.float32)})
            assert info.traceback, "the traceback (and the frames it holds) is still alive here"
            assert pool.leased_bytes == 0
        finally:
            client.infer = real_infer
        x = np.ones(256, np.float32)
        np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": x})["OUTPUT0"], 2 * x)


def test_a_cancelled_async_request_releases_its_lease_at_once(triton):
    async def main():
        aclient = grpc_aio.InferenceServerClient(triton["grpc"])
        try:
            async with AsyncSharedMemoryPool(aclient, 1 << 20, inline_threshold=0) as pool:
                real_infer = aclient.infer

                async def slow_infer(*args, **kwargs):
                    await asyncio.sleep(30)
                    return await real_infer(*args, **kwargs)

                aclient.infer = slow_infer
                task = asyncio.ensure_future(pool.infer_async("double_fp32", {"INPUT0": np.ones(256, np.float32)}))
                await asyncio.sleep(0.2)
                assert pool.leased_bytes > 0
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                leased = pool.leased_bytes
                aclient.infer = real_infer
                return leased
        finally:
            await aclient.close()

    assert asyncio.run(main()) == 0


def test_a_pool_at_its_limit_makes_room_from_idle_regions_and_never_fails_where_tritonclient_would_not(client):
    """Found by the red team: once the output size was learned, the same request
    needed more room than the limit left while idle regions held it; and a
    tensor above max_capacity failed though plain tritonclient sends it inline."""
    with SharedMemoryPool(client, 1 << 20) as pool:  # max_capacity 4 MiB
        pool.infer("double_fp32", {"INPUT0": np.ones(1 << 18, np.float32)})  # grows by a 2 MiB region
        x = np.arange(300_000, dtype=np.float32)  # 1.2 MB in, 1.2 MB out once learned
        for _ in range(3):
            np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": x})["OUTPUT0"], 2 * x)
        assert pool.capacity <= 4 << 20 and pool.stats()["inline_fallbacks"] == 0
        big = np.arange(3 << 20, dtype=np.float32)  # 12 MiB: more than the pool may ever hold
        np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": big})["OUTPUT0"], 2 * big)
        assert pool.stats()["inline_fallbacks"] == 1 and pool.leased_bytes == 0
        assert set(pool.region_names) <= server_names(client), "regions removed to make room were unregistered"


def test_close_during_traffic_waits_for_the_server_and_leaves_nothing_registered(triton):
    """Triton refuses to unregister a region while a request uses it: close()
    under load used to give up and leave the names registered."""
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


def test_a_task_cancelled_while_the_pool_grows_leaves_nothing_registered_after_close(triton):
    async def main():
        aclient = grpc_aio.InferenceServerClient(triton["grpc"])
        prefix = unique_prefix("cancelgrow")
        try:
            pool = AsyncSharedMemoryPool(aclient, 4096, prefix=prefix, inline_threshold=0)
            await pool.open()
            real_register = aclient.register_system_shared_memory

            async def register_then_wait(*args, **kwargs):
                result = await real_register(*args, **kwargs)
                await asyncio.sleep(30)  # the server has it; the task is cancelled before it hears back
                return result

            aclient.register_system_shared_memory = register_then_wait
            task = asyncio.ensure_future(pool.infer_async("double_fp32", {"INPUT0": np.ones(4096, np.float32)}))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            aclient.register_system_shared_memory = real_register
            assert pool.leased_bytes == 0
            await pool.close()
            return prefix
        finally:
            await aclient.close()

    prefix = asyncio.run(main())
    with grpc.InferenceServerClient(triton["grpc"]) as check:
        assert not [n for n in server_names(check) if n.startswith(prefix)], "the cancelled growth stayed registered"
    assert pool_files(prefix) == []

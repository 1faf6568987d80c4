"""One pool used at once, against PyTriton's server: threads (a shared gRPC
client, or an HTTP client per thread given as client=), 32 asyncio requests,
an async pool used from event loops in several threads, and two pools in two
processes. Each request gets its own results."""

import asyncio
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from e2e_clients import (
    ASYNC,
    PROTOCOLS,
    add_sub,
    assert_gone,
    grpc,
    grpc_aio,
    http,
    pool_files,
    run_in_threads,
    server_names,
    unique_prefix,
)

pytestmark = pytest.mark.e2e

from tritonshm.triton import AsyncSharedMemoryPool, SharedMemoryPool  # noqa: E402


def test_eight_threads_each_get_their_own_results(client, triton):
    """One pool shared by 8 threads. gRPC clients are thread-safe and shared;
    tritonclient's HTTP client is not (gevent), so each thread has its own."""
    errors = []
    with SharedMemoryPool(client, 1 << 20) as pool:

        def work(seed):
            own = http.InferenceServerClient(triton["http"]) if client.protocol == "http" else None
            try:
                for i in range(25):
                    add_sub(pool, np.int32 if i % 2 else np.float32, seed * 100 + i, client=own)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                if own is not None:
                    own.close()

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert pool.leased_bytes == 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_thirty_two_concurrent_async_requests_each_get_their_own_results(triton, protocol):
    async def main():
        aclient = ASYNC[protocol].InferenceServerClient(url=triton[protocol])
        try:
            async with AsyncSharedMemoryPool(aclient, 64 << 10) as pool:

                async def one(seed):
                    a = (np.arange(16) * seed).astype(np.float32).reshape(1, 16)
                    b = np.full((1, 16), seed, np.float32)
                    out = await pool.infer_async("simple_fp32", {"INPUT0": a, "INPUT1": b})
                    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
                    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
                    words = np.array([[f"w{seed}".encode()] * 3], dtype=np.object_)
                    out = await pool.infer_async("bytes_upper", {"INPUT0": words})
                    assert out["OUTPUT0"].tolist() == [[f"W{seed}".encode()] * 3]

                await asyncio.gather(*(one(s) for s in range(32)))
                names = pool.region_names
                assert pool.leased_bytes == 0
            return names
        finally:
            await aclient.close()

    names = asyncio.run(main())
    with PROTOCOLS[protocol].InferenceServerClient(url=triton[protocol]) as sync_client:
        assert_gone(sync_client, names)


SIDE_BY_SIDE = """
import sys, numpy as np, tritonclient.http as http
from tritonshm.triton import SharedMemoryPool
client = http.InferenceServerClient(sys.argv[1])
with SharedMemoryPool(client, 1 << 20) as pool:
    print("NAMES", *pool.region_names, flush=True)
    for i in range(200):
        a = np.full((1, 16), i, np.int32)
        out = pool.infer("simple", {"INPUT0": a, "INPUT1": a})
        assert (out["OUTPUT0"] == 2 * i).all(), (i, out)
print("OK", flush=True)
"""


def test_two_pools_in_two_processes_do_not_disturb_each_other(triton):
    client = http.InferenceServerClient(triton["http"])
    other = subprocess.Popen([sys.executable, "-c", SIDE_BY_SIDE, triton["http"]], stdout=subprocess.PIPE, text=True)
    try:
        with SharedMemoryPool(client, 1 << 20) as pool:
            theirs = other.stdout.readline().split()[1:]
            assert theirs and not set(theirs) & set(pool.region_names), "keys and names are unique per process"
            for i in range(200):
                add_sub(pool, np.int32, i)
            mine = pool.region_names
        assert_gone(client, mine)
        out, _ = other.communicate(timeout=120)
        assert other.returncode == 0 and "OK" in out
        assert_gone(client, theirs)
    finally:
        if other.poll() is None:
            other.kill()
        client.close()


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
    the pool's own from another thread (gevent raises "Cannot switch to a
    different thread" there, or hangs)."""
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


def test_http_threads_that_pass_no_client_get_one_of_their_own(triton):
    """Threads sharing an HTTP pool without client= (lease, model_outputs and
    infer): the pool's client works only on the thread that made the pool, so
    each other thread gets one of its own for the same server, with its
    timeouts. Before, lease() raised greenlet's "Cannot switch to a different
    thread" as the pool grew, and model_outputs() hung."""
    shared = http.InferenceServerClient(triton["http"], network_timeout=30.0)
    prefix = unique_prefix("nohint_http")
    pool = SharedMemoryPool(shared, 64 << 10, max_capacity=256 << 20, prefix=prefix)
    models = ["double_fp32", "slow", "detect", "detect2", "sample", "counted", "bytes_upper", "simple"]

    def work(i):
        held = []
        for k in range(30):
            held.append(pool.lease(200_000))  # the pool grows: registrations from this thread
            if len(held) > 3:
                held.pop(0).release()
            assert pool.model_outputs(models[(i + k) % len(models)]) is not None
            x = np.full(50_000 + 1000 * i + k, i + k, np.float32)
            np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": x})["OUTPUT0"], 2 * x)
        for lease in held:
            lease.release()

    errors = []
    workers = [
        threading.Thread(target=lambda i=i: errors.extend(run_in_threads(lambda _: work(i), 1)), daemon=True)
        for i in range(4)
    ]
    for t in workers:
        t.start()
    deadline = time.monotonic() + 120
    for t in workers:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in workers), "a thread hung"
    assert errors == []
    assert pool.stats()["regions"] > 1, "the pool grew from the threads"
    pool.close()
    assert not [n for n in server_names(shared) if n.startswith(prefix)]
    assert pool_files(prefix) == []
    shared.close()

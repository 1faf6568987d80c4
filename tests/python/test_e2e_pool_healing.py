"""Registrations that heal: when the server forgets the pool's regions (another
client unregistered everything, or the server restarted), the pool registers
them again, once per incident, and runs the request that found out once more;
a request that must run once heals too (the server refuses it before its model
runs). Against PyTriton's real server, HTTP and gRPC, sync and asyncio."""

import asyncio
import os
import threading

import numpy as np
import pytest

import tritonshm as shm

from e2e_clients import (
    ASYNC,
    MIB,
    PROTOCOLS,
    double,
    grpc,
    http,
    run_in_threads,
    server_module,
    server_names,
    unregister_all,
    unregister_all_async,
)

pytestmark = pytest.mark.e2e

from tritonshm.triton import AsyncSharedMemoryPool, SharedMemoryPool, shared_memory_status  # noqa: E402


def test_unregister_all_by_another_client_heals_on_the_next_request(client, triton):
    with SharedMemoryPool(client, 1 << 20) as pool:
        double(pool)
        with PROTOCOLS[client.protocol].InferenceServerClient(triton[client.protocol]) as other:
            unregister_all(other)
        double(pool)
        stats = pool.stats()
        assert stats["reregistrations"] == 1 and stats["retries"] == 1
        registered = {r["name"] for r in shared_memory_status(client) if r["name"]}
        assert set(pool.region_names) <= registered
        double(pool)
        assert pool.stats()["reregistrations"] == 1


def test_many_threads_that_find_out_at_once_heal_once(triton):
    client = grpc.InferenceServerClient(triton["grpc"])  # shared by the threads
    with SharedMemoryPool(client, 4 << 20) as pool:
        double(pool)
        with grpc.InferenceServerClient(triton["grpc"]) as other:
            unregister_all(other)
        barrier = threading.Barrier(8)

        def work(seed):
            barrier.wait()
            double(pool, seed=seed)

        errors = run_in_threads(work, 8)
        assert not errors, errors[:3]
        assert pool.stats()["reregistrations"] == 1, "one incident, one healing"
    client.close()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_server_restarted_on_the_same_ports_is_healed(protocol):
    module = server_module()
    ports = module.free_ports()
    with module.spawn(ports=ports) as urls:
        client = PROTOCOLS[protocol].InferenceServerClient(urls[protocol])
        pool = SharedMemoryPool(client, 1 << 20)
        double(pool)
    with module.spawn(ports=ports):  # a new server: it knows nothing of the pool
        try:
            if protocol == "http":  # the old connection died with the old server
                client = http.InferenceServerClient(urls[protocol])
            double(pool, client=client)
            assert pool.stats()["reregistrations"] == 1
        finally:
            names = pool.region_names
            pool.close()
        with PROTOCOLS[protocol].InferenceServerClient(urls[protocol]) as check:
            assert not {r["name"] for r in shared_memory_status(check) if r["name"]} & set(names)
    assert not [p for p in os.listdir("/dev/shm") if p in names]


@pytest.mark.slow
def test_a_server_that_cannot_see_the_regions_any_more_is_explained():
    """Restarted in another IPC namespace: registering again fails, and says why."""
    module = server_module()
    ports = module.free_ports()
    with module.spawn(ports=ports) as urls:
        client = grpc.InferenceServerClient(urls["grpc"])
        pool = SharedMemoryPool(client, 1 << 20)
        double(pool)
    try:
        with module.spawn(ports=ports, private_dev_shm=True):
            with pytest.raises(shm.SharedMemoryException, match="--ipc=host"):
                double(pool)
    finally:
        pool.close()
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_pool_heals_too(triton, protocol):
    async def main():
        aclient = ASYNC[protocol].InferenceServerClient(url=triton[protocol])
        try:
            async with AsyncSharedMemoryPool(aclient, 1 << 20) as pool:
                x = np.ones(1 << 14, np.float32)
                await pool.infer_async("double_fp32", {"INPUT0": x})
                await unregister_all_async(aclient)
                results = await asyncio.gather(*(pool.infer_async("double_fp32", {"INPUT0": x}) for _ in range(8)))
                for out in results:
                    np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
                return pool.stats()
        finally:
            await aclient.close()

    stats = asyncio.run(main())
    assert stats["reregistrations"] == 1


@pytest.mark.parametrize("once", [{"sequence_id": 42, "sequence_start": True}, {"retry": False}])
def test_a_request_that_must_run_once_heals_after_an_unregister_all(client, triton, once):
    """`counted` returns how many times it ran (RUNS): a refused attempt must not count."""
    other = PROTOCOLS[client.protocol].InferenceServerClient(triton[client.protocol])
    x = np.ones(1 << 15, np.float32)
    with SharedMemoryPool(client, 8 * MIB) as pool:
        first = pool.infer("counted", {"INPUT0": x}, **once)["RUNS"][0]
        unregister_all(other)
        out = pool.infer("counted", {"INPUT0": 3 * x}, **once)
        np.testing.assert_array_equal(out["OUTPUT0"], 6 * x)
        assert out["RUNS"][0] == first + 1, "refused before it ran, then ran once"
        assert pool.stats()["reregistrations"] == 1
        assert set(pool.region_names) <= server_names(client)


def test_a_request_that_meets_a_forgotten_registration_and_an_outgrown_output_runs_again_for_each(client, triton):
    """Each cause has its own rerun: a request that meets both is sent again twice."""
    words = [np.array([[b"y" * n] * 2], dtype=np.object_) for n in (100_000, 100_000, 300_000)]
    with SharedMemoryPool(client, 8 << 20) as pool:
        pool.infer("bytes_upper", {"INPUT0": words[0]})
        pool.infer("bytes_upper", {"INPUT0": words[1]})  # OUTPUT0 now in the lease, sized for 100 KB words
        with PROTOCOLS[client.protocol].InferenceServerClient(triton[client.protocol]) as other:
            unregister_all(other)
        out = pool.infer("bytes_upper", {"INPUT0": words[2]})
        assert out["OUTPUT0"].tolist() == [[b"Y" * 300_000] * 2]
        stats = pool.stats()
        assert stats["reregistrations"] == 1 and stats["retries"] == 2

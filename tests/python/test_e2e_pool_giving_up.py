"""Requests the client gives up on, against PyTriton's server: a client timeout
(gRPC client_timeout, HTTP network_timeout), asyncio.wait_for, a cancelled
task, KeyboardInterrupt. The lease comes back at once, memory the server may
still write is never lent again, and a task cancelled while the pool grows
leaves nothing registered after close()."""

import asyncio

import numpy as np
import pytest

from e2e_clients import (
    MIB,
    PROTOCOLS,
    assert_every_element,
    grpc,
    grpc_aio,
    http,
    pool_files,
    server_names,
    unique_prefix,
)

pytestmark = pytest.mark.e2e

from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import AsyncSharedMemoryPool, SharedMemoryPool  # noqa: E402

A_VALUES, B_VALUES = 1 << 18, 1 << 19  # 1 MiB of 7.0 given up on, then 2 MiB of 1.0


def give_up_sync(pool, url, protocol):
    """Request A through a client that gives up after 0.2 s while the model runs 0.6 s."""
    x = np.full(A_VALUES, 7.0, np.float32)
    if protocol == "grpc":
        with pytest.raises(InferenceServerException, match=r"^\[StatusCode\.DEADLINE_EXCEEDED\] Deadline Exceeded$"):
            pool.infer("slow", {"INPUT0": x}, output_sizes={"OUTPUT0": x.nbytes}, client_timeout=0.2)
    else:
        impatient = http.InferenceServerClient(url, network_timeout=0.2)
        with pytest.raises(TimeoutError):
            pool.infer("slow", {"INPUT0": x}, output_sizes={"OUTPUT0": x.nbytes}, client=impatient)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_that_timed_out_never_has_its_memory_lent_to_the_next(triton, protocol):
    """A's output slot would be B's input: the server writes A's 14.0 there at 0.6 s."""
    client = PROTOCOLS[protocol].InferenceServerClient(triton[protocol])
    with SharedMemoryPool(client, 8 * MIB) as pool:
        give_up_sync(pool, triton[protocol], protocol)
        out = pool.infer("slow", {"INPUT0": np.ones(B_VALUES, np.float32)}, output_sizes={"OUTPUT0": 4 * B_VALUES})
        assert_every_element(out["OUTPUT0"], 2.0, B_VALUES)
        assert pool.stats()["abandoned"] == 1
        for _ in range(3):  # and the requests after it
            out = pool.infer("slow", {"INPUT0": np.ones(B_VALUES, np.float32)}, output_sizes={"OUTPUT0": 4 * B_VALUES})
            assert_every_element(out["OUTPUT0"], 2.0, B_VALUES)
        names = set(pool.region_names)
    assert not names & server_names(client), "close() left nothing registered"


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
def test_an_async_request_given_up_on_never_has_its_memory_lent_to_the_next(triton, how):
    async def main():
        client = grpc_aio.InferenceServerClient(triton["grpc"])
        try:
            async with AsyncSharedMemoryPool(client, 8 * MIB) as pool:
                x = np.full(A_VALUES, 7.0, np.float32)
                request = pool.infer_async("slow", {"INPUT0": x}, output_sizes={"OUTPUT0": x.nbytes})
                if how == "wait_for":
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(request, 0.2)
                else:
                    task = asyncio.ensure_future(request)
                    await asyncio.sleep(0.2)
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                for _ in range(2):
                    out = await pool.infer_async(
                        "slow", {"INPUT0": np.ones(B_VALUES, np.float32)}, output_sizes={"OUTPUT0": 4 * B_VALUES}
                    )
                    assert_every_element(out["OUTPUT0"], 2.0, B_VALUES)
                return pool.stats()["abandoned"]
        finally:
            await client.close()

    assert asyncio.run(main()) == 1


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

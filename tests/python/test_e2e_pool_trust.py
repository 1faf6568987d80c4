"""Never wrong, never worse than tritonclient, against PyTriton's real server:
a request given up on (client timeouts, wait_for, cancelled tasks) never gets
its memory lent again; outputs that grow together, vary per run or overflow
their configuration cost at most one rerun and never a failure;
InferRequestedOutput objects keep their classes and JSON; sequences heal;
close() leaves nothing registered; async growth stays off the event loop.
test_request_flow.py drives the same rules through a scripted server."""

import asyncio
import os
import threading
import time

import numpy as np
import pytest

from e2e_clients import ASYNC, PROTOCOLS, grpc, grpc_aio, http  # noqa: F401

pytestmark = pytest.mark.e2e

from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import AsyncSharedMemoryPool, SharedMemoryPool, shared_memory_status  # noqa: E402

MIB = 1 << 20


def server_names(client):
    return {r["name"] for r in shared_memory_status(client) if r["name"]}


def unique_prefix(tag):
    return f"tshm_{tag}_{os.getpid()}_{time.monotonic_ns() % 10**9}"


def assert_every_element(array, value, count):
    assert array.shape == (count,), array.shape
    wrong = int(np.count_nonzero(array != np.float32(value)))
    assert wrong == 0, f"{wrong} of {count} values are not {value}: {np.unique(array)[:5]}"


# -- a request given up on ------------------------------------------------------

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


# -- never worse than tritonclient ------------------------------------------------


def unregister_all(client):
    """An unregister-all, as perf_analyzer does when it starts. The server lets
    go of a region a moment after its response, and refuses meanwhile."""
    for _ in range(100):
        try:
            client.unregister_system_shared_memory()
            return
        except InferenceServerException as refused:
            assert "Failed to unregister the following system shared memory regions" in str(refused), refused
            time.sleep(0.01)
    raise AssertionError("the server kept refusing to unregister")


def test_outputs_that_outgrow_together_cost_one_rerun(client):
    rng = np.random.default_rng(5)
    with SharedMemoryPool(client, 8 * MIB, inline_threshold=0) as pool:
        for _ in range(2):  # learn the sizes, then both outputs in shared memory
            x = rng.random(1 << 14, dtype=np.float32) * 0.6  # about 1/6 above 0.5
            out = pool.infer("detect2", {"INPUT0": x})
            np.testing.assert_array_equal(out["SCORES"], x[x > 0.5])
        assert pool.stats()["outputs_in_shm"] == 2
        x = rng.random(1 << 14, dtype=np.float32)  # half above 0.5: both outputs three times larger
        out = pool.infer("detect2", {"INPUT0": x})
        np.testing.assert_array_equal(out["SCORES"], x[x > 0.5])
        np.testing.assert_array_equal(out["BOXES"], np.repeat(x[x > 0.5][:, None], 4, axis=1))
        assert pool.stats()["retries_output_size"] == 1 and pool.stats()["retries"] == 1


def test_an_output_whose_length_changes_every_run_never_fails_and_settles(client):
    with SharedMemoryPool(client, 8 * MIB, inline_threshold=0) as pool:
        reruns = []
        for i in range(30):
            before = pool.stats()["retries"]
            out = pool.infer("sample", {"INPUT0": np.full(4, i, np.float32)})["OUTPUT0"]
            assert 900 <= out.shape[0] < 1100
            assert_every_element(out, 2.0 * i, out.shape[0])
            reruns.append(pool.stats()["retries"] - before)
        assert sum(reruns) <= 3 and sum(reruns[15:]) == 0, reruns
        assert pool.stats()["outputs_in_shm"] >= 25


def test_a_model_that_returns_more_than_its_configuration_says_is_served(client):
    x = np.arange(16, dtype=np.float32)[None]
    with SharedMemoryPool(client, 8 * MIB, inline_threshold=0) as pool:
        for _ in range(3):
            out = pool.infer("overflowing", {"INPUT0": x})
            np.testing.assert_array_equal(out["OUTPUT0"], np.concatenate([x, x], axis=1) * 2)
        stats = pool.stats()
        assert stats["retries_output_size"] == 1, "once: the size the server named won after that"
        assert stats["outputs_in_shm"] == 2


def test_an_empty_tensor_with_no_inline_threshold(client):
    with SharedMemoryPool(client, 1 * MIB, inline_threshold=0) as pool:
        out = pool.infer("double_fp32", {"INPUT0": np.zeros(0, np.float32)})
        assert out["OUTPUT0"].shape == (0,) and out["OUTPUT0"].dtype == np.float32


def test_requested_output_objects_keep_their_classes_and_json(client):
    module = PROTOCOLS[client.protocol]
    x = np.arange(1 << 15, dtype=np.float32)
    plain_input = module.InferInput("INPUT0", [x.size], "FP32")
    plain_input.set_data_from_numpy(x)
    classes = module.InferRequestedOutput("OUTPUT0", class_count=3)
    expected = client.infer("double_fp32", [plain_input], outputs=[classes]).as_numpy("OUTPUT0")
    with SharedMemoryPool(client, 8 * MIB) as pool:
        for _ in range(2):
            out = pool.infer("double_fp32", {"INPUT0": x}, outputs=[classes])
            np.testing.assert_array_equal(out["OUTPUT0"], expected)
        if client.protocol == "http":
            as_json = module.InferRequestedOutput("OUTPUT0", binary_data=False)
            out = pool.infer("double_fp32", {"INPUT0": x}, outputs=[as_json])
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
        plain = module.InferRequestedOutput("OUTPUT0")
        for _ in range(2):  # a plain one may go to shared memory once its size is known
            out = pool.infer("double_fp32", {"INPUT0": x}, outputs=[plain])
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
        assert pool.stats()["outputs_in_shm"] == 1


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


# -- close --------------------------------------------------------------------------


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


# -- the event loop ----------------------------------------------------------------


def test_async_growth_leaves_the_event_loop_free(triton):
    async def main():
        client = grpc_aio.InferenceServerClient(triton["grpc"])
        gaps = []
        try:
            async with AsyncSharedMemoryPool(client, 64 << 10, max_capacity=1 << 30, prefault=True) as pool:

                async def tick():
                    last = time.monotonic()
                    while True:
                        await asyncio.sleep(0.002)
                        now = time.monotonic()
                        gaps.append(now - last)
                        last = now

                ticker = asyncio.ensure_future(tick())
                await asyncio.sleep(0.05)
                started = time.monotonic()
                # A new region of 192 MiB, every page populated (by one thread: below 256 MiB)
                (await pool.lease(192 * MIB)).release()
                growth = time.monotonic() - started
                await asyncio.sleep(0.01)
                ticker.cancel()
                return growth, max(gaps)
        finally:
            await client.close()

    growth, worst_gap = asyncio.run(main())
    assert growth > 0.05, f"the growth took {growth:.3f} s: too short to tell"
    assert worst_gap < growth / 2, f"the loop stalled {worst_gap:.3f} s during a growth of {growth:.3f} s"

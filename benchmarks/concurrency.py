"""Requests per second under concurrency, against the `scale` model (variable
dims, the output's size not in the configuration), every result checked:

  threads   8 threads sharing one tritonclient.grpc client
  aio       32 requests in flight on one tritonclient.grpc.aio client

Contenders: plain gRPC (tensors in the request), shared memory by hand (one
registered input/output region pair per thread or in-flight request, written
and read with tritonshm's functions: the strongest hand-rolled baseline), and
the pool as a user calls it (SharedMemoryPool / AsyncSharedMemoryPool, no
output_sizes). Each worker first runs one checked request outside the timing
(the pool learns there), then all run for the same wall time.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from typing import Any, Callable, Dict, List, Mapping

import numpy as np

from .timing import summary
from .triton_cases import VARIABLE_MODEL, pool_stats

SIZES = [64 << 10, 1 << 20, 16 << 20]
THREADS, IN_FLIGHT = 8, 32
_keys = itertools.count()


def _inputs(workers: int, size: int) -> List[np.ndarray]:
    rng = np.random.default_rng(size)
    return [rng.random((1, size // 4), dtype=np.float32) for _ in range(workers)]


class _HandRegions:
    """One registered input/output region pair per worker (tritonshm's functions)."""

    def __init__(self, workers: int, size: int) -> None:
        import tritonshm as shm

        self.shm, self.size = shm, size
        tag = f"{os.getpid()}_{next(_keys)}"
        self.names = [(f"bench_cc_in_{tag}_{i}", f"bench_cc_out_{tag}_{i}") for i in range(workers)]
        self.regions: List[Any] = []
        self.registered: List[str] = []

    def open(self) -> List[tuple]:
        for pair in self.names:
            self.regions.append(tuple(self.shm.create_shared_memory_region(n, "/" + n, self.size) for n in pair))
        return list(zip(self.names, self.regions))

    def close_regions(self) -> None:
        for pair in self.regions:
            for region in pair:
                self.shm.destroy_shared_memory_region(region)


def _request_parts(grpc: Any, x: np.ndarray, names: Any, size: int, shm: Any, regions: Any) -> tuple:
    """The InferInput/InferRequestedOutput of one request, inline (names None) or through a region pair."""
    item = grpc.InferInput("INPUT0", list(x.shape), "FP32")
    out = grpc.InferRequestedOutput("OUTPUT0")
    if names is None:
        item.set_data_from_numpy(x)
    else:
        shm.set_shared_memory_region(regions[0], [x])
        item.set_shared_memory(names[0], size)
        out.set_shared_memory(names[1], size)
    return [item], [out]


def _result(result: Any, x: np.ndarray, shm: Any, regions: Any) -> np.ndarray:
    if regions is None:
        return result.as_numpy("OUTPUT0")
    return np.array(shm.get_contents_as_numpy(regions[1], np.float32, list(x.shape)))


def _threads_rps(
    work: Callable[[int, np.ndarray], np.ndarray], inputs: List[np.ndarray], seconds: float
) -> Dict[str, Any]:
    """Runs work(worker, x) in one thread per input for `seconds` after a
    checked warm-up each; every result is checked. Requests per second."""
    expected = [2 * x for x in inputs]
    start_line = threading.Barrier(len(inputs) + 1)
    done = [0] * len(inputs)
    errors: List[BaseException] = []
    stop = threading.Event()

    def run(i: int) -> None:
        try:
            np.testing.assert_array_equal(work(i, inputs[i]), expected[i])
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)
        start_line.wait()
        while not stop.is_set() and not errors:
            try:
                result = work(i, inputs[i])
                if not np.array_equal(result, expected[i]):
                    raise AssertionError(f"worker {i}: wrong result")
            except BaseException as error:  # noqa: BLE001
                errors.append(error)
                return
            done[i] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started  # requests in flight at the stop count: they ran in this time
    if errors:
        raise errors[0]
    return {"rps": sum(done) / elapsed, "requests": sum(done)}


async def _aio_rps(work: Callable[..., Any], inputs: List[np.ndarray], seconds: float) -> Dict[str, Any]:
    """The same with one coroutine per input, all in flight at once."""
    expected = [2 * x for x in inputs]
    for i, x in enumerate(inputs):  # checked warm-up, one at a time
        np.testing.assert_array_equal(await work(i, x), expected[i])
    done = [0] * len(inputs)
    deadline = time.perf_counter() + seconds

    async def run(i: int) -> None:
        while time.perf_counter() < deadline:
            result = await work(i, inputs[i])
            if not np.array_equal(result, expected[i]):
                raise AssertionError(f"request slot {i}: wrong result")
            done[i] += 1

    started = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(len(inputs))))
    return {"rps": sum(done) / (time.perf_counter() - started), "requests": sum(done)}


def _bench_threads(url: str, size: int, seconds: float) -> Dict[str, Dict[str, Any]]:
    import tritonclient.grpc as grpc

    import tritonshm as shm
    from tritonshm.triton import SharedMemoryPool

    inputs = _inputs(THREADS, size)
    results: Dict[str, Dict[str, Any]] = {}
    with grpc.InferenceServerClient(url) as client:

        def plain(i: int, x: np.ndarray) -> np.ndarray:
            items, outs = _request_parts(grpc, x, None, size, shm, None)
            return client.infer(VARIABLE_MODEL, items, outputs=outs).as_numpy("OUTPUT0")

        results["grpc (b)"] = _threads_rps(plain, inputs, seconds)

        hand = _HandRegions(THREADS, size)
        try:
            pairs = hand.open()
            for pair in hand.names:
                for name in pair:
                    client.register_system_shared_memory(name, "/" + name, size)
                    hand.registered.append(name)

            def by_hand(i: int, x: np.ndarray) -> np.ndarray:
                names, regions = pairs[i]
                items, outs = _request_parts(grpc, x, names, size, shm, regions)
                return _result(client.infer(VARIABLE_MODEL, items, outputs=outs), x, shm, regions)

            results["shm by hand"] = _threads_rps(by_hand, inputs, seconds)
        finally:
            for name in hand.registered:
                client.unregister_system_shared_memory(name)
            hand.close_regions()

        with SharedMemoryPool(client, 2 * size * THREADS + (1 << 20)) as pool:
            results["tritonshm"] = _threads_rps(
                lambda i, x: pool.infer(VARIABLE_MODEL, {"INPUT0": x})["OUTPUT0"], inputs, seconds
            )
            results["tritonshm"]["pool_stats"] = pool_stats(pool)
    return results


async def _bench_aio(url: str, size: int, seconds: float) -> Dict[str, Dict[str, Any]]:
    import tritonclient.grpc as grpc
    import tritonclient.grpc.aio as grpc_aio

    import tritonshm as shm
    from tritonshm.triton import AsyncSharedMemoryPool

    inputs = _inputs(IN_FLIGHT, size)
    results: Dict[str, Dict[str, Any]] = {}
    client = grpc_aio.InferenceServerClient(url)
    try:

        async def plain(i: int, x: np.ndarray) -> np.ndarray:
            items, outs = _request_parts(grpc, x, None, size, shm, None)
            return (await client.infer(VARIABLE_MODEL, items, outputs=outs)).as_numpy("OUTPUT0")

        results["grpc (b)"] = await _aio_rps(plain, inputs, seconds)

        hand = _HandRegions(IN_FLIGHT, size)
        try:
            pairs = hand.open()
            for pair in hand.names:
                for name in pair:
                    await client.register_system_shared_memory(name, "/" + name, size)
                    hand.registered.append(name)

            async def by_hand(i: int, x: np.ndarray) -> np.ndarray:
                names, regions = pairs[i]
                items, outs = _request_parts(grpc, x, names, size, shm, regions)
                return _result(await client.infer(VARIABLE_MODEL, items, outputs=outs), x, shm, regions)

            results["shm by hand"] = await _aio_rps(by_hand, inputs, seconds)
        finally:
            for name in hand.registered:
                await client.unregister_system_shared_memory(name)
            hand.close_regions()

        async with AsyncSharedMemoryPool(client, 2 * size * IN_FLIGHT + (1 << 20)) as pool:

            async def pooled(i: int, x: np.ndarray) -> np.ndarray:
                return (await pool.infer_async(VARIABLE_MODEL, {"INPUT0": x}))["OUTPUT0"]

            results["tritonshm"] = await _aio_rps(pooled, inputs, seconds)
            results["tritonshm"]["pool_stats"] = pool_stats(pool)
    finally:
        await client.close()
    return results


def bench_concurrency(
    urls: Mapping[str, str], sizes: List[int], seconds: float, repeat: int = 3
) -> List[Dict[str, Any]]:
    """Per mode and size, each contender's requests per second (the median of
    `repeat` runs, the contenders' order the same each time)."""
    rows: List[Dict[str, Any]] = []
    for size in sizes:
        window = seconds * (2 if size >= 16 << 20 else 1)  # at 16 MiB a 2 s window holds ~20-60 requests
        for case, measure in (
            (f"concurrency_threads_{THREADS}", lambda: _bench_threads(urls["grpc"], size, window)),
            (f"concurrency_aio_{IN_FLIGHT}", lambda: asyncio.run(_bench_aio(urls["grpc"], size, window))),
        ):
            runs = [measure() for _ in range(repeat)]
            for name in runs[0]:
                rps = [run[name]["rps"] for run in runs]
                row = {
                    "case": case,
                    "size": size,
                    "contender": name,
                    "rps": summary(rps)["median"],
                    "rps_runs": rps,
                    "requests": sum(run[name]["requests"] for run in runs),
                }
                if "pool_stats" in runs[-1][name]:
                    row["pool_stats"] = runs[-1][name]["pool_stats"]
                rows.append(row)
    return rows

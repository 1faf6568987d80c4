"""Inference against a real Triton server (PyTriton's, on loopback, in its own
process): the ways a tritonclient user can send a tensor, side by side.

  (a) http binary   tritonclient.http, tensors in the request body (binary data)
  (b) grpc          tritonclient.grpc, tensors in the request
  (c) shm/request   tritonclient's shared memory done per request: create,
                    register, set, infer, read, unregister, destroy
  (d) shm reused    tritonclient's shared memory, regions registered once by hand
  (e) tritonshm     tritonshm.triton.SharedMemoryPool.infer

The model is double_fp32 (OUTPUT0 = 2 * INPUT0, FP32). Each sample also reads
the server's own time per request from its statistics, so the client's share
shows; for the pool, the time outside the client's infer call (lease, write,
read, release) is measured too.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Dict, List

import numpy as np

from .fixture import server_module
from .timing import interleaved, summary

MODEL = "double_fp32"
_keys = itertools.count()


def _server_module() -> Any:
    return server_module()


def _server_ns(client: Any) -> tuple:
    stats = client.get_inference_statistics(MODEL)["model_stats"][0]["inference_stats"]["success"]
    return int(stats["count"]), int(stats["ns"])


def _contenders(
    http: Any, grpc: Any, urls: Dict[str, str], size: int, pool: Any
) -> Dict[str, Callable[[np.ndarray], np.ndarray]]:
    import tritonclient.utils.shared_memory as ref

    hc = http.InferenceServerClient(urls["http"])
    gc = grpc.InferenceServerClient(urls["grpc"])
    n = size // 4

    def http_binary(x: np.ndarray) -> np.ndarray:
        item = http.InferInput("INPUT0", [n], "FP32")
        item.set_data_from_numpy(x, binary_data=True)
        return hc.infer(MODEL, [item], outputs=[http.InferRequestedOutput("OUTPUT0", binary_data=True)]).as_numpy(
            "OUTPUT0"
        )

    def grpc_plain(x: np.ndarray) -> np.ndarray:
        item = grpc.InferInput("INPUT0", [n], "FP32")
        item.set_data_from_numpy(x)
        return gc.infer(MODEL, [item], outputs=[grpc.InferRequestedOutput("OUTPUT0")]).as_numpy("OUTPUT0")

    def shm_infer(in_name: str, out_name: str, in_handle: Any, out_handle: Any, x: np.ndarray) -> np.ndarray:
        ref.set_shared_memory_region(in_handle, [x])
        item = http.InferInput("INPUT0", [n], "FP32")
        item.set_shared_memory(in_name, size)
        out = http.InferRequestedOutput("OUTPUT0", binary_data=True)
        out.set_shared_memory(out_name, size)
        hc.infer(MODEL, [item], outputs=[out])
        return np.array(ref.get_contents_as_numpy(out_handle, np.float32, [n]))  # a copy: the region is reused

    def shm_per_request(x: np.ndarray) -> np.ndarray:
        tag = f"{os.getpid()}_{next(_keys)}"
        names = (f"bench_in_{tag}", f"bench_out_{tag}")
        handles = [ref.create_shared_memory_region(name, "/" + name, size) for name in names]
        try:
            for name in names:
                hc.register_system_shared_memory(name, "/" + name, size)
            try:
                return shm_infer(names[0], names[1], handles[0], handles[1], x)
            finally:
                for name in names:
                    hc.unregister_system_shared_memory(name)
        finally:
            for handle in handles:
                ref.destroy_shared_memory_region(handle)

    tag = f"{os.getpid()}_{next(_keys)}"
    reused_names = (f"bench_in_{tag}", f"bench_out_{tag}")
    reused = [ref.create_shared_memory_region(name, "/" + name, size) for name in reused_names]
    for name in reused_names:
        hc.register_system_shared_memory(name, "/" + name, size)

    def shm_reused(x: np.ndarray) -> np.ndarray:
        return shm_infer(reused_names[0], reused_names[1], reused[0], reused[1], x)

    def pooled(x: np.ndarray) -> np.ndarray:
        return pool.infer(MODEL, {"INPUT0": x}, output_sizes={"OUTPUT0": size})["OUTPUT0"]

    def close() -> None:
        for name in reused_names:
            hc.unregister_system_shared_memory(name)
        for handle in reused:
            ref.destroy_shared_memory_region(handle)
        hc.close()
        gc.close()

    return {
        "tritonshm": pooled,
        "http binary (a)": http_binary,
        "grpc (b)": grpc_plain,
        "shm per request (c)": shm_per_request,
        "shm reused by hand (d)": shm_reused,
        "_close": close,
    }


def bench_triton(sizes: List[int], repeat: int) -> List[Dict[str, Any]]:
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    from tritonshm.triton import SharedMemoryPool

    rows: List[Dict[str, Any]] = []
    with _server_module().spawn("--open-statistics") as urls:
        stats_client = http.InferenceServerClient(urls["http"])
        pool_client = http.InferenceServerClient(urls["http"])
        # The pool's own work: everything outside the client's infer call.
        inside = [0.0]
        real_infer = pool_client.infer

        def timed_infer(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return real_infer(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - start

        pool_client.infer = timed_infer  # type: ignore[method-assign]
        with SharedMemoryPool(pool_client, 2 * max(sizes) + (1 << 20)) as pool:
            for size in sizes:
                x = np.random.default_rng(size).random(size // 4, dtype=np.float32)
                contenders = _contenders(http, grpc, urls, size, pool)
                close = contenders.pop("_close")
                try:
                    for name, fn in contenders.items():  # each checked once, and warmed up
                        np.testing.assert_array_equal(fn(x), 2 * x, err_msg=name)
                    start = time.perf_counter()
                    contenders["http binary (a)"](x)
                    calls = max(1, min(40, int(0.25 / (time.perf_counter() - start))))
                    server: Dict[str, List[float]] = {name: [] for name in contenders}
                    pool_work: List[float] = []

                    def sample(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[], float]:
                        def run() -> float:
                            count0, ns0 = _server_ns(stats_client)
                            inside[0] = 0.0
                            start = time.perf_counter()
                            for _ in range(calls):
                                fn(x)
                            took = (time.perf_counter() - start) / calls
                            count1, ns1 = _server_ns(stats_client)
                            server[name].append((ns1 - ns0) / 1e9 / max(1, count1 - count0))
                            if name == "tritonshm":
                                pool_work.append(took - inside[0] / calls)
                            return took

                        return run

                    samples = interleaved({name: sample(name, fn) for name, fn in contenders.items()}, repeat)
                finally:
                    close()
                for name, values in samples.items():
                    extra: Dict[str, Any] = {"server_median": summary(server[name])["median"]}
                    if name == "tritonshm":
                        extra["pool_work_median"] = summary(pool_work)["median"]
                    rows.append({"case": "triton_infer", "size": size, "contender": name, **summary(values), **extra})
        stats_client.close()
    return rows

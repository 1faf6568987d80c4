"""Inference against a real Triton server (PyTriton's, on loopback, in its own
process, tests/triton_server.py): the ways a tritonclient user can send a
tensor, side by side, on the two ways models are declared.

Models: `scale` (FP32 INPUT0 [-1], max_batch_size 1, OUTPUT0 = 2 * INPUT0: the
output's size is not in the configuration, as with most PyTriton, ONNX and
TorchScript models) and `scale_fixed_<n>` (the same with the shape fixed).
Requests are [1, n].

  (a) http binary   tritonclient.http, tensors in the request body (binary data)
  (b) grpc          tritonclient.grpc, tensors in the request
  (c) shm/request   tritonclient's shared memory done per request (HTTP): create,
                    register, set, infer, read, unregister, destroy
  (d) shm reused    tritonclient's shared memory (HTTP), regions registered once by hand
  tritonshm         SharedMemoryPool.infer over HTTP, called as a user calls it:
                    no hints (no output_sizes)
  tritonshm grpc    the same pool over gRPC

Each sample also reads the server's own time per request from its statistics,
so the client's share shows; for the pool, the time outside the client's infer
call (lease, write, read, release) and, where the pool has stats(), where its
outputs went.

`bench_inline` measures one tensor sent in the request vs through a registered
region, per size and direction, so that the pool's inline threshold comes from
a measurement.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .fixture import server_module
from .timing import interleaved, summary

TABLE_SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]
INLINE_SIZES = [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20]
KINDS = ("variable", "fixed")
VARIABLE_MODEL = "scale"
POOL_CONTENDERS = ("tritonshm", "tritonshm grpc")
STATS_PER_REQUEST = ("inputs_in_shm", "outputs_in_shm", "retries")
OTHERS = ("http binary (a)", "grpc (b)", "shm per request (c)", "shm reused by hand (d)")
_keys = itertools.count()


def model_name(kind: str, size: int) -> str:
    return VARIABLE_MODEL if kind == "variable" else server_module().fixed_model(size // 4)


def _server_stats(client: Any, model: str) -> Tuple[int, int]:
    """(successful requests, their total ns) of one model, from the server's statistics."""
    stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]["success"]
    return int(stats["count"]), int(stats["ns"])


class _TimedClient:
    """Counts the time spent inside a client's infer, so that the pool's own
    work (everything else in pool.infer) shows."""

    def __init__(self, client: Any) -> None:
        self.inside = 0.0
        real = client.infer

        def infer(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.inside += time.perf_counter() - start

        client.infer = infer


def pool_stats(pool: Any) -> Optional[Dict[str, Any]]:
    """pool.stats() where the pool has it (older pools do not), else None."""
    stats = getattr(pool, "stats", None)
    return dict(stats()) if callable(stats) else None


def _hand_contenders(http: Any, grpc: Any, hc: Any, gc: Any, model: str, size: int) -> Tuple[Dict[str, Any], Any]:
    """(a)-(d) for one model and size, and a function that undoes (d)'s registration."""
    import tritonclient.utils.shared_memory as ref

    shape = [1, size // 4]

    def http_binary(x: np.ndarray) -> np.ndarray:
        item = http.InferInput("INPUT0", shape, "FP32")
        item.set_data_from_numpy(x, binary_data=True)
        out = http.InferRequestedOutput("OUTPUT0", binary_data=True)
        return hc.infer(model, [item], outputs=[out]).as_numpy("OUTPUT0")

    def grpc_plain(x: np.ndarray) -> np.ndarray:
        item = grpc.InferInput("INPUT0", shape, "FP32")
        item.set_data_from_numpy(x)
        return gc.infer(model, [item], outputs=[grpc.InferRequestedOutput("OUTPUT0")]).as_numpy("OUTPUT0")

    def shm_infer(names: Tuple[str, str], handles: List[Any], x: np.ndarray) -> np.ndarray:
        ref.set_shared_memory_region(handles[0], [x])
        item = http.InferInput("INPUT0", shape, "FP32")
        item.set_shared_memory(names[0], size)
        out = http.InferRequestedOutput("OUTPUT0", binary_data=True)
        out.set_shared_memory(names[1], size)
        hc.infer(model, [item], outputs=[out])
        return np.array(ref.get_contents_as_numpy(handles[1], np.float32, shape))  # a copy: the region is reused

    def shm_per_request(x: np.ndarray) -> np.ndarray:
        tag = f"{os.getpid()}_{next(_keys)}"
        names = (f"bench_in_{tag}", f"bench_out_{tag}")
        handles = [ref.create_shared_memory_region(name, "/" + name, size) for name in names]
        try:
            for name in names:
                hc.register_system_shared_memory(name, "/" + name, size)
            try:
                return shm_infer(names, handles, x)
            finally:
                for name in names:
                    hc.unregister_system_shared_memory(name)
        finally:
            for handle in handles:
                ref.destroy_shared_memory_region(handle)

    tag = f"{os.getpid()}_{next(_keys)}"
    reused_names = (f"bench_in_{tag}", f"bench_out_{tag}")
    reused = [ref.create_shared_memory_region(name, "/" + name, size) for name in reused_names]
    try:
        for name in reused_names:
            hc.register_system_shared_memory(name, "/" + name, size)
    except BaseException:
        for handle in reused:
            ref.destroy_shared_memory_region(handle)
        raise

    def close() -> None:
        for name in reused_names:
            hc.unregister_system_shared_memory(name)
        for handle in reused:
            ref.destroy_shared_memory_region(handle)

    contenders = {
        "http binary (a)": http_binary,
        "grpc (b)": grpc_plain,
        "shm per request (c)": shm_per_request,
        "shm reused by hand (d)": lambda x: shm_infer(reused_names, reused, x),
    }
    return contenders, close


def bench_triton(urls: Mapping[str, str], sizes: List[int], repeat: int, kinds=KINDS) -> List[Dict[str, Any]]:
    """The issue's table: per model kind and size, every contender's median
    latency, the server's share, and the pool's own work."""
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    from tritonshm.triton import SharedMemoryPool

    rows: List[Dict[str, Any]] = []
    hc = http.InferenceServerClient(urls["http"])
    gc = grpc.InferenceServerClient(urls["grpc"])
    stats_client = http.InferenceServerClient(urls["http"])
    pool_clients = {
        "tritonshm": http.InferenceServerClient(urls["http"]),
        "tritonshm grpc": grpc.InferenceServerClient(urls["grpc"]),
    }
    timers = {name: _TimedClient(client) for name, client in pool_clients.items()}
    capacity = 2 * max(sizes) + (1 << 20)
    pools = {name: SharedMemoryPool(client, capacity) for name, client in pool_clients.items()}
    try:
        for kind in kinds:
            for size in sizes:
                rows += _bench_one(kind, size, repeat, http, grpc, hc, gc, stats_client, pools, timers)
    finally:
        for pool in pools.values():
            pool.close()
        for client in (hc, gc, stats_client, *pool_clients.values()):
            client.close()
    return rows


def _bench_one(
    kind: str,
    size: int,
    repeat: int,
    http: Any,
    grpc: Any,
    hc: Any,
    gc: Any,
    stats_client: Any,
    pools: Dict[str, Any],
    timers: Dict[str, _TimedClient],
) -> List[Dict[str, Any]]:
    model = model_name(kind, size)
    x = np.random.default_rng(size).random((1, size // 4), dtype=np.float32)
    expected = 2 * x
    hand, close = _hand_contenders(http, grpc, hc, gc, model, size)
    contenders: Dict[str, Callable[[np.ndarray], np.ndarray]] = dict(hand)
    for name, pool in pools.items():
        # As a user calls it: no output_sizes, no hints.
        contenders[name] = lambda x, pool=pool: pool.infer(model, {"INPUT0": x})["OUTPUT0"]
    server: Dict[str, List[float]] = {name: [] for name in contenders}
    own_work: Dict[str, List[float]] = {name: [] for name in pools}
    # Per request, from the pool's stats() where it has them: how its tensors travelled, and reruns.
    per_request: Dict[str, Dict[str, List[float]]] = {name: {k: [] for k in STATS_PER_REQUEST} for name in pools}
    try:
        for name, fn in contenders.items():  # each checked, and warmed up (the pool learns here)
            for _ in range(2):
                np.testing.assert_array_equal(fn(x), expected, err_msg=f"{name} on {model}")
        start = time.perf_counter()
        contenders["http binary (a)"](x)
        calls = max(1, min(40, int(0.25 / (time.perf_counter() - start))))

        def sample(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[], float]:
            def run() -> float:
                count0, ns0 = _server_stats(stats_client, model)
                pool = pools.get(name)
                before = pool_stats(pool) if pool is not None else None
                if name in timers:
                    timers[name].inside = 0.0
                start = time.perf_counter()
                for _ in range(calls):
                    result = fn(x)
                took = (time.perf_counter() - start) / calls
                np.testing.assert_array_equal(result, expected, err_msg=f"{name} on {model}")
                count1, ns1 = _server_stats(stats_client, model)
                server[name].append((ns1 - ns0) / 1e9 / max(1, count1 - count0))
                if name in timers:
                    own_work[name].append(took - timers[name].inside / calls)
                after = pool_stats(pool) if pool is not None else None
                for key in STATS_PER_REQUEST if before is not None and after is not None else ():
                    if key in after and key in before:
                        per_request[name][key].append((after[key] - before[key]) / calls)
                return took

            return run

        samples = interleaved({name: sample(name, fn) for name, fn in contenders.items()}, repeat)
    finally:
        close()
    rows = []
    for name, values in samples.items():
        extra: Dict[str, Any] = {"model": model, "kind": kind, "server_median": summary(server[name])["median"]}
        if name in own_work and own_work[name]:
            extra["pool_work_median"] = summary(own_work[name])["median"]
        for key, counts in per_request.get(name, {}).items():
            if counts:
                extra[f"{key}_per_request"] = summary(counts)["median"]
        if name in pools:
            extra["pool_stats"] = pool_stats(pools[name])
        rows.append({"case": f"triton_{kind}", "size": size, "contender": name, **summary(values), **extra})
    return rows


# -- one tensor inline or through a registered region ------------------------------

INLINE_VARIANTS = {
    # name: (input through shm, output through shm)
    "in inline, out inline": (False, False),
    "in shm, out inline": (True, False),
    "in inline, out shm": (False, True),
    "in shm, out shm": (True, True),
}


def bench_inline(urls: Mapping[str, str], sizes: List[int], repeat: int) -> List[Dict[str, Any]]:
    """Per protocol and size, the `scale` model's request with its input and
    its output each either in the request/response or in a region registered
    once (tritonshm's functions, as the pool would use them). Nothing else
    changes between the variants, so their difference is the transport's.
    Every (protocol, size, variant) is one contender of one interleaved run,
    so that a burst of load on this shared machine falls on all sizes alike
    instead of spoiling one."""
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    import tritonshm as shm

    modules = {"http": http, "grpc": grpc}
    clients = {protocol: module.InferenceServerClient(urls[protocol]) for protocol, module in modules.items()}
    regions: List[Any] = []
    registered: List[Tuple[Any, str]] = []

    def measurement(protocol: str, size: int, in_shm: bool, out_shm: bool) -> Callable[[], float]:
        module, client = modules[protocol], clients[protocol]
        shape = [1, size // 4]
        x = np.random.default_rng(size).random(shape, dtype=np.float32)
        expected = 2 * x
        tag = f"{os.getpid()}_{next(_keys)}"
        names = (f"bench_inline_in_{tag}", f"bench_inline_out_{tag}")
        pair = [shm.create_shared_memory_region(name, "/" + name, size) for name in names]
        regions.extend(pair)
        for name in names:
            client.register_system_shared_memory(name, "/" + name, size)
            registered.append((client, name))

        def request() -> np.ndarray:
            item = module.InferInput("INPUT0", shape, "FP32")
            if in_shm:
                shm.set_shared_memory_region(pair[0], [x])
                item.set_shared_memory(names[0], size)
            elif protocol == "http":
                item.set_data_from_numpy(x, binary_data=True)
            else:
                item.set_data_from_numpy(x)
            out = (
                module.InferRequestedOutput("OUTPUT0", binary_data=True)
                if protocol == "http"
                else module.InferRequestedOutput("OUTPUT0")
            )
            if out_shm:
                out.set_shared_memory(names[1], size)
            result = client.infer(VARIABLE_MODEL, [item], outputs=[out])
            if out_shm:
                return np.array(shm.get_contents_as_numpy(pair[1], np.float32, shape))
            return result.as_numpy("OUTPUT0")

        np.testing.assert_array_equal(request(), expected)  # checked, and warmed up
        start = time.perf_counter()
        request()
        calls = max(2, min(60, int(0.12 / (time.perf_counter() - start))))

        def run() -> float:
            start = time.perf_counter()
            for _ in range(calls):
                result = request()
            took = (time.perf_counter() - start) / calls
            np.testing.assert_array_equal(result, expected)
            return took

        return run

    rows: List[Dict[str, Any]] = []
    try:
        contenders = {
            (protocol, size, variant): measurement(protocol, size, *where)
            for protocol in modules
            for size in sizes
            for variant, where in INLINE_VARIANTS.items()
        }
        samples = interleaved(contenders, repeat)
    finally:
        for client, name in registered:
            client.unregister_system_shared_memory(name)
        for region in regions:
            shm.destroy_shared_memory_region(region)
        for client in clients.values():
            client.close()
    for (protocol, size, variant), values in samples.items():
        rows.append(
            {"case": f"inline_{protocol}", "size": size, "contender": variant, "protocol": protocol} | summary(values)
        )
    return rows

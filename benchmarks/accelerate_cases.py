"""tritonshm.triton.accelerate() against the same code without it, and against
pool.infer, through a real Triton server (PyTriton's, on loopback, in its own
process), HTTP and gRPC, on `scale` (FP32 INPUT0 [-1], max_batch_size 1,
OUTPUT0 = 2 * INPUT0: variable dims, so output sizes are learned).

The request is written as Triton's example clients write it: InferInput +
set_data_from_numpy, InferRequestedOutput, infer, as_numpy.

  plain        that code with tritonclient's own functions (captured before
               accelerate(), so both run in one process, interleaved)
  accelerated  the same code while accelerated
  pool.infer   SharedMemoryPool.infer(model, {"INPUT0": x}), as a user calls it

Each sample also reads the server's time per request from its statistics (the
rest is the client's: its median is robust to a server slowed by other load on
this machine), and for the accelerated code the time spent in
set_data_from_numpy (where a large array is copied into shared memory) and
how its tensors travelled.

`new shapes`: every request has another length (n, n + 1, ...), as NLP and
vision clients send: the outputs' sizes are predicted from earlier shapes
(learned_outputs.py) instead of coming back inline once per shape.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Mapping, Tuple

import numpy as np

from .timing import interleaved, summary

SIZES = [4 << 10, 1 << 20, 16 << 20, 64 << 20]
NEW_SHAPE_SIZES = [1 << 20, 16 << 20]
MODEL = "scale"
CONTENDERS = ("plain", "accelerated", "pool.infer")
PER_REQUEST = ("inputs_in_shm", "outputs_in_shm", "outputs_inline", "outputs_predicted", "inputs_staged", "retries")


def _server_stats(client: Any) -> Tuple[int, int]:
    stats = client.get_inference_statistics(MODEL)["model_stats"][0]["inference_stats"]["success"]
    return int(stats["count"]), int(stats["ns"])


def bench_accelerate(
    urls: Mapping[str, str], sizes: List[int], repeat: int, new_shapes: bool = True
) -> List[Dict[str, Any]]:
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    from tritonshm.triton import SharedMemoryPool, accelerate

    modules = {"http": http, "grpc": grpc}
    # tritonclient's own functions, before accelerate() replaces them on the classes.
    plain_set = {p: m.InferInput.set_data_from_numpy for p, m in modules.items()}
    plain_infer = {p: m.InferenceServerClient.infer for p, m in modules.items()}
    handle = accelerate()
    clients = {(p, who): m.InferenceServerClient(urls[p]) for p, m in modules.items() for who in CONTENDERS}
    stats_client = http.InferenceServerClient(urls["http"])
    capacity = 2 * max(sizes) + (1 << 20)
    pools = {p: SharedMemoryPool(clients[(p, "pool.infer")], capacity) for p in modules}
    rows: List[Dict[str, Any]] = []
    try:
        for protocol, module in modules.items():
            for size in sizes:
                rows += _bench_one(
                    protocol, module, size, repeat, clients, stats_client, pools, handle, plain_set, plain_infer, False
                )
            for size in NEW_SHAPE_SIZES if new_shapes else ():
                if size <= max(sizes):
                    rows += _bench_one(
                        protocol,
                        module,
                        size,
                        repeat,
                        clients,
                        stats_client,
                        pools,
                        handle,
                        plain_set,
                        plain_infer,
                        True,
                    )
    finally:
        for pool in pools.values():
            pool.close()
        handle.close()
        for client in (*clients.values(), stats_client):
            client.close()
    return rows


def _bench_one(
    protocol: str,
    module: Any,
    size: int,
    repeat: int,
    clients: Dict[Tuple[str, str], Any],
    stats_client: Any,
    pools: Dict[str, Any],
    handle: Any,
    plain_set: Dict[str, Any],
    plain_infer: Dict[str, Any],
    new_shapes: bool,
) -> List[Dict[str, Any]]:
    n = size // 4
    rng = np.random.default_rng(size)
    base = rng.random((1, n + 4096), dtype=np.float32)  # new shapes are prefixes of it
    lengths = iter(range(10**9))
    staging: Dict[str, float] = {"inside": 0.0}

    def next_x() -> np.ndarray:
        if not new_shapes:
            return base[:, :n]
        return base[:, : n - 4096 + next(lengths) % 4096]

    fixed = np.ascontiguousarray(base[:, :n])

    def examples_way(client: Any, set_data: Callable[..., Any], infer: Callable[..., Any], timed: bool) -> Any:
        def request(x: np.ndarray) -> np.ndarray:
            item = module.InferInput("INPUT0", list(x.shape), "FP32")
            start = time.perf_counter()
            set_data(item, x)
            if timed:
                staging["inside"] += time.perf_counter() - start
            out = module.InferRequestedOutput("OUTPUT0")
            return infer(client, MODEL, [item], outputs=[out]).as_numpy("OUTPUT0")

        return request

    pool = pools[protocol]
    contenders: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "plain": examples_way(clients[(protocol, "plain")], plain_set[protocol], plain_infer[protocol], False),
        "accelerated": examples_way(
            clients[(protocol, "accelerated")],
            lambda item, x: item.set_data_from_numpy(x),
            lambda client, *args, **kwargs: client.infer(*args, **kwargs),
            True,
        ),
        "pool.infer": lambda x: pool.infer(MODEL, {"INPUT0": x})["OUTPUT0"],
    }
    for name, fn in contenders.items():  # each checked, and warmed up (the pools learn here)
        for _ in range(3):
            x = np.ascontiguousarray(next_x()) if new_shapes else fixed
            np.testing.assert_array_equal(fn(x), 2 * x, err_msg=f"{name} {protocol} {size}")
    start = time.perf_counter()
    contenders["plain"](fixed)
    calls = max(2, min(40, int(0.3 / (time.perf_counter() - start))))
    server: Dict[str, List[float]] = {name: [] for name in contenders}
    client_side: Dict[str, List[float]] = {name: [] for name in contenders}  # each sample less the server's time
    in_set: List[float] = []
    per_request: Dict[str, List[float]] = {key: [] for key in PER_REQUEST}
    pool_per_request: Dict[str, List[float]] = {key: [] for key in PER_REQUEST}

    def sample(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[], float]:
        def run() -> float:
            xs = [np.ascontiguousarray(next_x()) if new_shapes else fixed for _ in range(calls)]
            count0, ns0 = _server_stats(stats_client)
            before = handle.stats() if name == "accelerated" else pool.stats() if name == "pool.infer" else None
            staging["inside"] = 0.0
            start = time.perf_counter()
            for x in xs:
                result = fn(x)
            took = (time.perf_counter() - start) / calls
            np.testing.assert_array_equal(result, 2 * xs[-1], err_msg=f"{name} {protocol} {size}")
            count1, ns1 = _server_stats(stats_client)
            server[name].append((ns1 - ns0) / 1e9 / max(1, count1 - count0))
            client_side[name].append(took - server[name][-1])
            if before is not None:
                after = handle.stats() if name == "accelerated" else pool.stats()
                into = per_request if name == "accelerated" else pool_per_request
                for key in PER_REQUEST:
                    if key in after:
                        into[key].append((after[key] - before[key]) / calls)
            if name == "accelerated":
                in_set.append(staging["inside"] / calls)
            return took

        return run

    samples = interleaved({name: sample(name, fn) for name, fn in contenders.items()}, repeat)
    rows = []
    case = "accelerate_new_shapes" if new_shapes else "accelerate"
    for name, values in samples.items():
        extra: Dict[str, Any] = {
            "protocol": protocol,
            "server_median": summary(server[name])["median"],
            "client_median": summary(client_side[name])["median"],
        }
        if name == "accelerated":
            extra["set_data_median"] = summary(in_set)["median"]
        counts = per_request if name == "accelerated" else pool_per_request if name == "pool.infer" else {}
        for key, values_ in counts.items():
            if values_:
                extra[f"{key}_per_request"] = summary(values_)["median"]
        rows.append({"case": f"{case}_{protocol}", "size": size, "contender": name, **summary(values), **extra})
    return rows

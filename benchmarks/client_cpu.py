"""The client's CPU time per request, plain tritonclient against the pool,
for requests whose tensors all travel inline (4 KiB): what the pool's own
work costs, without the server's share, which moves by more than that
between contenders in a wall-clock run on this machine.

Run: python -m benchmarks.client_cpu [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Dict, List

import numpy as np

from .fixture import server_module


def _cpu_per_request(send: Callable[[], Any], requests: int) -> float:
    start = time.process_time()
    for _ in range(requests):
        send()
    return (time.process_time() - start) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="requests per sample (default 500)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved samples per contender (default 7)")
    args = parser.parse_args()

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from tritonshm.triton import SharedMemoryPool

    x = np.ones((1, 1024), np.float32)  # 4 KiB: below the pool's inline threshold
    with server_module().spawn() as urls:
        results: Dict[str, List[float]] = {}
        for protocol, module in (("http", httpclient), ("grpc", grpcclient)):
            client = module.InferenceServerClient(urls[protocol])
            with SharedMemoryPool(client, 1 << 20) as pool:

                def plain(module: Any = module, client: Any = client) -> Any:
                    item = module.InferInput("INPUT0", list(x.shape), "FP32")
                    item.set_data_from_numpy(x)
                    return client.infer("scale", [item]).as_numpy("OUTPUT0")

                def pooled(pool: Any = pool) -> Any:
                    return pool.infer("scale", {"INPUT0": x})["OUTPUT0"]

                contenders: Dict[str, Callable[[], Any]] = {f"plain {protocol}": plain, f"pool {protocol}": pooled}
                for send in contenders.values():
                    np.testing.assert_array_equal(send(), 2 * x)  # warm, and right
                for round_ in range(args.rounds):
                    names = list(contenders)
                    for name in names[round_ % 2 :] + names[: round_ % 2]:
                        results.setdefault(name, []).append(_cpu_per_request(contenders[name], args.requests))
            client.close()
    print(f"client CPU time per request, 4 KiB all inline, medians of {args.rounds} x {args.requests} requests:")
    for protocol in ("http", "grpc"):
        plain_us = statistics.median(results[f"plain {protocol}"]) * 1e6
        pool_us = statistics.median(results[f"pool {protocol}"]) * 1e6
        print(f"  {protocol}: plain {plain_us:.0f} us, pool {pool_us:.0f} us, pool / plain {pool_us / plain_us:.3f}")


if __name__ == "__main__":
    main()

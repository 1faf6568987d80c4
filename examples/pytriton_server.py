"""A real Triton Inference Server on this machine (CPU only), through PyTriton,
with two models to try tritonshm against:

  simple  INT32 INPUT0, INPUT1 [16] -> OUTPUT0 = sum, OUTPUT1 = difference
          (Triton's classic shared memory example model)
  scale   FP32 INPUT0 [-1] -> OUTPUT0 = 2 * INPUT0, max_batch_size 1
          (variable dims, as most models are declared: requests are [1, n])

Run:  python examples/pytriton_server.py --http-port 8000 --grpc-port 8001
then: tritonshm demo --url localhost:8000            (or --url localhost:8001 --protocol grpc)
or:   SharedMemoryPool(tritonclient.http.InferenceServerClient("localhost:8000"), 64 << 20)
          .infer("scale", {"INPUT0": np.ones((1, 1024), np.float32)})

Needs `pip install nvidia-pytriton` (Linux, Python < 3.13).
"""

from __future__ import annotations

import argparse
import os
import sysconfig

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig


@batch
def add_sub(INPUT0, INPUT1):
    return {"OUTPUT0": INPUT0 + INPUT1, "OUTPUT1": INPUT0 - INPUT1}


@batch
def scale(INPUT0):
    return {"OUTPUT0": INPUT0 * np.float32(2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--access-token", help="keep the shared-memory API behind this token")
    parser.add_argument("--open-statistics", action="store_true", help="also open the statistics API")
    args = parser.parse_args()

    # PyTriton's model stubs load libpython3.X through the dynamic loader: make
    # it find this interpreter's own (pyenv and Debian may both have one).
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)

    # PyTriton guards Triton's shared-memory API with an access token by
    # default, and a plain tritonclient sends none: open it (loopback only)
    # unless a token is given; the other admin APIs stay guarded.
    if args.access_token is None:
        opened = {"shared-memory", "statistics"} if args.open_statistics else {"shared-memory"}
        security = TritonSecurityConfig(
            restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e not in opened]
        )
    else:
        security = TritonSecurityConfig(access_token=args.access_token)
    config = TritonConfig(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        allow_metrics=False,
        http_address="127.0.0.1",
        grpc_address="127.0.0.1",
    )
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name="simple",
            infer_func=add_sub,
            inputs=[
                Tensor(name="INPUT0", dtype=np.int32, shape=(16,)),
                Tensor(name="INPUT1", dtype=np.int32, shape=(16,)),
            ],
            outputs=[
                Tensor(name="OUTPUT0", dtype=np.int32, shape=(16,)),
                Tensor(name="OUTPUT1", dtype=np.int32, shape=(16,)),
            ],
            config=ModelConfig(max_batch_size=8),
            strict=True,
        )
        triton.bind(
            model_name="scale",
            infer_func=scale,
            inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(-1,))],
            outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=1),
        )
        print(f"Triton serving on http 127.0.0.1:{args.http_port}, grpc 127.0.0.1:{args.grpc_port}; Ctrl-C stops it")
        triton.serve()


if __name__ == "__main__":
    main()

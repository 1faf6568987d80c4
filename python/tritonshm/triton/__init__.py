"""Shared-memory inference with Triton: a pool of regions registered once,
leased per request, and errors that say what the server's refusals mean.

    import tritonclient.http as httpclient
    from tritonshm.triton import SharedMemoryPool

    client = httpclient.InferenceServerClient("localhost:8000")
    with SharedMemoryPool(client, 64 << 20) as pool:
        outputs = pool.infer("simple", {"INPUT0": a, "INPUT1": b})

Existing tritonclient code gets the same with one line, unchanged otherwise:

    tritonshm.triton.accelerate()

(or none: python -m tritonshm.accelerate app.py).
"""

from .accelerate import Acceleration, accelerate
from .aio import AsyncSharedMemoryPool
from .pool import SharedMemoryPool
from .refusals import explain
from .registration import register
from .status import server_regions, shared_memory_status

__all__ = [
    "Acceleration",
    "AsyncSharedMemoryPool",
    "SharedMemoryPool",
    "accelerate",
    "explain",
    "register",
    "server_regions",
    "shared_memory_status",
]

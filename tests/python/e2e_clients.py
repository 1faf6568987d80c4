"""What the e2e tests of the pool share: tritonclient's modules (the tests are
skipped without the test extras), threads that collect their errors, what the
server and /dev/shm hold of a pool, clients slowed or made to fail, and the
test server in a process of its own. The `client` fixture (one per protocol)
is in conftest.py."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pathlib
import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Set

import numpy as np
import pytest

from conftest import shm_path

http = pytest.importorskip("tritonclient.http", reason="e2e needs the test extras: pip install .[test]")
grpc = pytest.importorskip("tritonclient.grpc", reason="e2e needs the test extras: pip install .[test]")
pytest.importorskip("pytriton", reason="e2e needs nvidia-pytriton (test extra; Linux, Python < 3.13)")
import tritonclient.grpc.aio as grpc_aio  # noqa: E402
import tritonclient.http.aio as http_aio  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import shared_memory_status  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOCOLS = {"http": http, "grpc": grpc}
ASYNC = {"http": http_aio, "grpc": grpc_aio}
MIB = 1 << 20
# How tritonclient's exception for a refusal begins: the server's status, per protocol.
INVALID = {"http": "[400]", "grpc": "[StatusCode.INVALID_ARGUMENT]"}
NOT_FOUND = {"http": "[404]", "grpc": "[StatusCode.NOT_FOUND]"}
INTERNAL = {"http": "[500]", "grpc": "[StatusCode.INTERNAL]"}


def run_in_threads(work: Callable[[int], None], count: int) -> List[BaseException]:
    """Runs work(0) ... work(count - 1) in threads at once; the errors they raised."""
    errors: List[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except Exception as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# -- what the server and /dev/shm hold ------------------------------------------


def server_names(client: Any) -> Set[str]:
    """The names of the regions the server has registered."""
    return {r["name"] for r in shared_memory_status(client) if r["name"]}


def assert_gone(client: Any, names: Iterable[str]) -> None:
    """Neither the server nor /dev/shm has these regions any more."""
    names = list(names)
    assert not set(names) & server_names(client)
    for name in names:
        assert not shm_path("/" + name).exists()


def unique_prefix(tag: str) -> str:
    """A pool prefix no other test or process uses: its regions can be told apart."""
    return f"tshm_{tag}_{os.getpid()}_{time.monotonic_ns() % 10**9}"


def pool_files(prefix: str) -> List[str]:
    """The files in /dev/shm of the pool with this prefix."""
    return sorted(p.name for p in pathlib.Path("/dev/shm").glob(prefix + "_*"))


UNREGISTER_REFUSED = "Failed to unregister the following system shared memory regions"


def unregister_all(client: Any) -> None:
    """An unregister-all, as perf_analyzer does when it starts. The server lets
    go of a region a moment after its response, and refuses meanwhile."""
    for _ in range(100):
        try:
            client.unregister_system_shared_memory()
            return
        except InferenceServerException as refused:
            assert UNREGISTER_REFUSED in str(refused), refused
            time.sleep(0.01)
    raise AssertionError("the server kept refusing to unregister")


async def unregister_all_async(client: Any) -> None:
    """unregister_all through an asyncio client."""
    for _ in range(100):
        try:
            await client.unregister_system_shared_memory()
            return
        except InferenceServerException as refused:
            assert UNREGISTER_REFUSED in str(refused), refused
            await asyncio.sleep(0.01)
    raise AssertionError("the server kept refusing to unregister")


# -- requests -----------------------------------------------------------------------


def add_sub(pool: Any, dtype: Any, seed: int, client: Any = None) -> None:
    """`simple` (INT32) or `simple_fp32` through the pool: both outputs right."""
    a = (np.arange(16) + seed).astype(dtype).reshape(1, 16)
    b = np.full((1, 16), seed % 7 + 1, dtype=dtype)
    model = {np.int32: "simple", np.float32: "simple_fp32"}[dtype]
    out = pool.infer(model, {"INPUT0": a, "INPUT1": b}, client=client)
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def double(pool: Any, n: int = 1 << 14, client: Any = None, seed: int = 0) -> None:
    """`double_fp32` of n random values through the pool: the result right."""
    x = np.random.default_rng(seed).random(n, dtype=np.float32)
    np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": x}, client=client)["OUTPUT0"], 2 * x)


def long_words(n: int, length: int) -> np.ndarray:
    """A BYTES tensor of shape (1, n), each element `length` bytes."""
    return np.array([b"x" * length] * n, dtype=np.object_).reshape(1, n)


def assert_every_element(array: np.ndarray, value: float, count: int) -> None:
    assert array.shape == (count,), array.shape
    wrong = int(np.count_nonzero(array != np.float32(value)))
    assert wrong == 0, f"{wrong} of {count} values are not {value}: {np.unique(array)[:5]}"


def slowed(method: Callable[..., Any], seconds: float, fail_on: Optional[int] = None) -> Callable[..., Any]:
    """The client's method, taking `seconds` (a busy server); raising on call number `fail_on`."""
    calls = [0]

    def call(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        time.sleep(seconds)
        if fail_on is not None and calls[0] == fail_on:
            raise InferenceServerException("[400] refused for the test")
        return method(*args, **kwargs)

    return call


# -- servers of a test's own ----------------------------------------------------------


def server_module() -> Any:
    """tests/triton_server.py as a module: `spawn` starts the test server in a
    process of its own (on given ports, or in a /dev/shm of its own)."""
    spec = importlib.util.spec_from_file_location("triton_server", ROOT / "tests" / "triton_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

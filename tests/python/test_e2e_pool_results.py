"""Requests through the pool against PyTriton's server with the real
tritonclient, over HTTP and gRPC: INT32, FP32 and BYTES tensors; results as
copies (the lease released before infer returns) or as views that hold their
lease until the last one dies, also when the request failed; outputs and
keyword arguments passed through to tritonclient."""

import gc
import os

import numpy as np
import pytest

from e2e_clients import INVALID, add_sub, assert_gone

pytestmark = pytest.mark.e2e

from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import SharedMemoryPool, shared_memory_status  # noqa: E402


def test_pool_infers_int32_fp32_and_bytes(client):
    with SharedMemoryPool(client, 1 << 20) as pool:
        names = pool.region_names
        assert len(names) == 1 and names[0].startswith(f"tritonshm_{os.getpid()}_")
        add_sub(pool, np.int32, 3)
        add_sub(pool, np.float32, 5)
        words = np.array([[b"shared", b"", "memory"]], dtype=np.object_)
        out = pool.infer("bytes_upper", {"INPUT0": words})
        assert out["OUTPUT0"].tolist() == [[b"SHARED", b"", b"MEMORY"]]
        assert out["OUTPUT1"].tolist() == [[6, 0, 6]]
        assert pool.leased_bytes == 0, "copy=True releases the lease before returning"
        status = {r["name"]: r for r in shared_memory_status(client) if r["name"]}
        assert status[names[0]]["state"] == "registered"
    assert pool.closed
    assert_gone(client, names)


def test_copy_false_views_keep_their_lease_until_they_die(client):
    with SharedMemoryPool(client, 1 << 20, inline_threshold=0) as pool:  # small tensors in shared memory too
        a = np.arange(16, dtype=np.float32).reshape(1, 16)
        out = pool.infer("simple_fp32", {"INPUT0": a, "INPUT1": a}, copy=False)
        assert pool.leased_bytes > 0 and out["OUTPUT0"].base is not None
        np.testing.assert_array_equal(out["OUTPUT0"], 2 * a)
        first = out["OUTPUT0"]
        del out
        assert pool.leased_bytes > 0, "a view is alive: its lease stays"
        np.testing.assert_array_equal(first, 2 * a)
        del first
        assert pool.leased_bytes == 0


def test_outputs_and_keyword_arguments_pass_through(client):
    with SharedMemoryPool(client, 1 << 20) as pool:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        out = pool.infer(
            "simple",
            {"INPUT0": a, "INPUT1": a},
            outputs=["OUTPUT1"],
            request_id="42",
            priority=0,
            timeout=30_000_000 if client.protocol == "http" else None,
        )
        assert list(out) == ["OUTPUT1"] and not out["OUTPUT1"].any()


def test_a_failed_copy_false_request_releases_its_lease_at_once(client):
    gc.disable()  # the lease must not wait for the cyclic collector
    try:
        with SharedMemoryPool(client, 4096, max_capacity=4096, inline_threshold=0) as pool:
            a = np.ones((1, 16), np.int32)
            bad = np.ones((1, 16), np.float32)  # `simple` wants INT32
            refusal = (
                f"{INVALID[client.protocol]} [request id: <id_unknown>] inference input 'INPUT1' data-type is "
                "'FP32', but model 'simple' expects 'INT32'"
            )
            for _ in range(40):
                with pytest.raises(InferenceServerException) as info:  # the server's own, as tritonclient raises it
                    pool.infer("simple", {"INPUT0": a, "INPUT1": bad}, copy=False)
                assert str(info.value) == refusal
                assert pool.leased_bytes == 0
            out = pool.infer("simple", {"INPUT0": a, "INPUT1": a}, copy=False)
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * a)
            del out
    finally:
        gc.enable()

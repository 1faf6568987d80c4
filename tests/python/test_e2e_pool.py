"""The request layer (tritonshm.triton) against a real Triton server
(PyTriton's, on loopback) with the real tritonclient, over HTTP and gRPC, sync
and asyncio: leases, inference through them, and the server's refusals
produced for real and explained."""

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import tritonshm as shm

from conftest import new_key, shm_path

pytestmark = pytest.mark.e2e

http = pytest.importorskip("tritonclient.http", reason="e2e needs the test extras: pip install .[test]")
grpc = pytest.importorskip("tritonclient.grpc", reason="e2e needs the test extras: pip install .[test]")
pytest.importorskip("pytriton", reason="e2e needs nvidia-pytriton (test extra; Linux, Python < 3.13)")
import tritonclient.grpc.aio as grpc_aio  # noqa: E402
import tritonclient.http.aio as http_aio  # noqa: E402

from tritonshm.triton import AsyncSharedMemoryPool, SharedMemoryPool, register, shared_memory_status  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOCOLS = {"http": http, "grpc": grpc}
ASYNC = {"http": http_aio, "grpc": grpc_aio}


@pytest.fixture(params=["http", "grpc"])
def client(request, triton):
    c = PROTOCOLS[request.param].InferenceServerClient(url=triton[request.param])
    c.protocol = request.param
    yield c
    c.close()


def pool_keys(pool):
    return ["/" + name for name in pool.region_names]


def assert_gone(client, names):
    """Neither the server nor /dev/shm has these regions any more."""
    registered = {r["name"] for r in shared_memory_status(client) if r["name"]}
    assert not set(names) & registered
    for name in names:
        assert not shm_path("/" + name).exists()


def add_sub(pool, dtype, seed, client=None):
    a = (np.arange(16) + seed).astype(dtype).reshape(1, 16)
    b = np.full((1, 16), seed % 7 + 1, dtype=dtype)
    model = {np.int32: "simple", np.float32: "simple_fp32"}[dtype]
    out = pool.infer(model, {"INPUT0": a, "INPUT1": b}, client=client)
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


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


def test_eight_threads_each_get_their_own_results(client, triton):
    """One pool shared by 8 threads. gRPC clients are thread-safe and shared;
    tritonclient's HTTP client is not (gevent), so each thread has its own."""
    errors = []
    with SharedMemoryPool(client, 1 << 20) as pool:

        def work(seed):
            own = http.InferenceServerClient(triton["http"]) if client.protocol == "http" else None
            try:
                for i in range(25):
                    add_sub(pool, np.int32 if i % 2 else np.float32, seed * 100 + i, client=own)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                if own is not None:
                    own.close()

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert pool.leased_bytes == 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_thirty_two_concurrent_async_requests_each_get_their_own_results(triton, protocol):
    async def main():
        aclient = ASYNC[protocol].InferenceServerClient(url=triton[protocol])
        try:
            async with AsyncSharedMemoryPool(aclient, 64 << 10) as pool:

                async def one(seed):
                    a = (np.arange(16) * seed).astype(np.float32).reshape(1, 16)
                    b = np.full((1, 16), seed, np.float32)
                    out = await pool.infer_async("simple_fp32", {"INPUT0": a, "INPUT1": b})
                    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
                    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
                    words = np.array([[f"w{seed}".encode()] * 3], dtype=np.object_)
                    out = await pool.infer_async("bytes_upper", {"INPUT0": words})
                    assert out["OUTPUT0"].tolist() == [[f"W{seed}".encode()] * 3]

                await asyncio.gather(*(one(s) for s in range(32)))
                names = pool.region_names
                assert pool.leased_bytes == 0
            return names
        finally:
            await aclient.close()

    names = asyncio.run(main())
    with PROTOCOLS[protocol].InferenceServerClient(url=triton[protocol]) as sync_client:
        assert_gone(sync_client, names)


def test_sixty_four_mib_tensor_round_trips_and_the_pool_grows(client):
    x = np.random.default_rng(1).random(16 << 20, dtype=np.float32)  # 64 MiB
    with SharedMemoryPool(client, 1 << 20, max_capacity=256 << 20) as pool:
        out = pool.infer("double_fp32", {"INPUT0": x}, output_sizes={"OUTPUT0": x.nbytes})
        np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
        assert len(pool.region_names) == 2, "grew by a region big enough for the request"
        assert pool.capacity >= (1 << 20) + 2 * x.nbytes


def test_full_pool_grows_to_its_limit_then_says_how_much_is_leased(client):
    with SharedMemoryPool(client, 64 << 10, max_capacity=192 << 10) as pool:
        held = [pool.lease(60 << 10) for _ in range(3)]
        assert len(pool.region_names) == 3
        with pytest.raises(
            shm.SharedMemoryException,
            match=r"^unable to lease shared memory: .*184320 bytes leased in "
            r"3 lease\(s\), of 196608 bytes in 3 region\(s\); the limit "
            r"is 196608 bytes",
        ):
            pool.lease(60 << 10)
        held.pop().release()
        assert pool.lease(60 << 10).size == 60 << 10


SIDE_BY_SIDE = """
import sys, numpy as np, tritonclient.http as http
from tritonshm.triton import SharedMemoryPool
client = http.InferenceServerClient(sys.argv[1])
with SharedMemoryPool(client, 1 << 20) as pool:
    print("NAMES", *pool.region_names, flush=True)
    for i in range(200):
        a = np.full((1, 16), i, np.int32)
        out = pool.infer("simple", {"INPUT0": a, "INPUT1": a})
        assert (out["OUTPUT0"] == 2 * i).all(), (i, out)
print("OK", flush=True)
"""


def test_two_pools_in_two_processes_do_not_disturb_each_other(triton):
    client = http.InferenceServerClient(triton["http"])
    other = subprocess.Popen([sys.executable, "-c", SIDE_BY_SIDE, triton["http"]], stdout=subprocess.PIPE, text=True)
    try:
        with SharedMemoryPool(client, 1 << 20) as pool:
            theirs = other.stdout.readline().split()[1:]
            assert theirs and not set(theirs) & set(pool.region_names), "keys and names are unique per process"
            for i in range(200):
                add_sub(pool, np.int32, i)
            mine = pool.region_names
        assert_gone(client, mine)
        out, _ = other.communicate(timeout=120)
        assert other.returncode == 0 and "OK" in out
        assert_gone(client, theirs)
    finally:
        if other.poll() is None:
            other.kill()
        client.close()


def test_close_unregisters_only_its_own_regions_and_a_new_pool_opens(client):
    key = new_key("bystander")
    bystander = shm.create_shared_memory_region(f"bystander_{client.protocol}", key, 4096, create_only=True)
    try:
        register(client, bystander)
        pool = SharedMemoryPool(client, 1 << 20)
        names = pool.region_names
        pool.close()
        pool.close()  # idempotent
        assert_gone(client, names)
        registered = {r["name"] for r in shared_memory_status(client) if r["name"]}
        assert f"bystander_{client.protocol}" in registered, "close() unregistered only the pool's own names"
        with pytest.raises(shm.SharedMemoryException, match="the pool is closed"):
            pool.lease(64)
        with SharedMemoryPool(client, 1 << 20) as again:
            add_sub(again, np.int32, 1)
            assert again.region_names != names
    finally:
        client.unregister_system_shared_memory(f"bystander_{client.protocol}")
        shm.destroy_shared_memory_region(bystander)


EXITS_WITHOUT_CLOSE = """
import sys, tritonclient.http as http
from tritonshm.triton import SharedMemoryPool
pool = SharedMemoryPool(http.InferenceServerClient(sys.argv[1]), 1 << 20)
print(*pool.region_names, flush=True)
"""


def test_a_pool_left_open_is_closed_at_interpreter_exit(triton):
    result = subprocess.run(
        [sys.executable, "-c", EXITS_WITHOUT_CLOSE, triton["http"]], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert names
    with http.InferenceServerClient(triton["http"]) as client:
        assert_gone(client, names)


# -- refusals, produced for real ---------------------------------------------


def server_process(*extra, private_dev_shm=False):
    """The test server (tests/triton_server.py) started in a process of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pytriton_server", ROOT / "tests/triton_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.spawn(*extra, private_dev_shm=private_dev_shm)


def can_unshare():
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not can_unshare(), reason="needs `unshare -m` (root) to give the server its own /dev/shm")
def test_server_in_another_ipc_namespace_is_explained():
    with server_process(private_dev_shm=True) as urls:
        for protocol, module in PROTOCOLS.items():
            with module.InferenceServerClient(urls[protocol]) as client:
                with pytest.raises(shm.SharedMemoryException) as info:
                    SharedMemoryPool(client, 64 << 10)
                message = str(info.value)
                assert "Unable to open shared memory region" in message, message  # the server's words first
                assert "exists on this host" in message and "--ipc=host" in message, message
                assert not [p for p in os.listdir("/dev/shm") if p.startswith(f"tritonshm_{os.getpid()}_")], (
                    "a pool that failed to start leaves nothing behind"
                )


@pytest.mark.slow
def test_access_token_refusal_is_explained_and_the_token_fixes_it():
    token = "tshm-test-token"
    with server_process("--access-token", token) as urls:
        for protocol, module in PROTOCOLS.items():
            with module.InferenceServerClient(urls[protocol]) as client:
                with pytest.raises(shm.SharedMemoryException) as info:
                    SharedMemoryPool(client, 64 << 10)
                # The server names the header it wants (gRPC's differs), and so do we.
                header = "triton-access-token" if protocol == "http" else "triton-grpc-protocol-triton-access-token"
                assert "access token" in str(info.value) and f"headers={{'{header}': TOKEN}}" in str(info.value), str(
                    info.value
                )
                with SharedMemoryPool(client, 64 << 10, headers={header: token}) as pool:
                    add_sub(pool, np.int32, 2)
                    names = pool.region_names
                status = shared_memory_status(client, headers={header: token})
                assert not {r["name"] for r in status} & set(names)


def test_registration_larger_than_the_region_is_explained(client):
    key = new_key("small")
    handle = shm.create_shared_memory_region(f"small_{client.protocol}", key, 4096, create_only=True)
    try:
        with pytest.raises(shm.SharedMemoryException) as info:
            register(client, handle, byte_size=8192)
        message = str(info.value)
        assert "invalid args" in message and "the region holds 4096 bytes, the registration asked for 8192" in message
    finally:
        shm.destroy_shared_memory_region(handle)


def test_output_slot_too_small_is_explained_with_the_size_needed(client):
    with SharedMemoryPool(client, 1 << 20) as pool:
        with pytest.raises(shm.SharedMemoryException) as info:
            pool.infer("double_fp32", {"INPUT0": np.ones(100, np.float32)}, output_sizes={"OUTPUT0": 4})
        assert "holds 4 bytes and the result needs 400: give output_sizes={'OUTPUT0': 400}" in str(info.value)
        assert pool.leased_bytes == 0, "a failed request releases its lease"


def test_status_joins_the_servers_regions_with_dev_shm(triton):
    client = http.InferenceServerClient(triton["http"])
    gone_key, small_key, lonely_key = new_key("gone"), new_key("shrunk"), new_key("lonely")
    handles = [
        shm.create_shared_memory_region(n, k, 8192, create_only=True)
        for n, k in (("status_gone", gone_key), ("status_small", small_key), ("status_lonely", lonely_key))
    ]
    try:
        with SharedMemoryPool(client, 1 << 20) as pool:
            register(client, handles[0])
            register(client, handles[1])
            os.unlink(shm_path(gone_key))  # removed behind the server's back
            os.truncate(shm_path(small_key), 4096)
            out = subprocess.run(
                [sys.executable, "-m", "tritonshm.cli", "status", "--url", triton["http"], "--json"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            rows = {r["key"]: r for r in json.loads(out.stdout)["regions"]}
            assert rows["/" + pool.region_names[0]]["state"] == "registered"
            assert os.getpid() in rows["/" + pool.region_names[0]]["mapped_by"]
            assert rows[gone_key]["state"] == "gone_locally"
            assert rows[small_key]["state"] == "too_small" and rows[small_key]["local_size"] == 4096
            assert rows[lonely_key]["state"] == "not_registered" and rows[lonely_key]["name"] is None
            grpc_out = subprocess.run(
                [sys.executable, "-m", "tritonshm.cli", "status", "--url", triton["grpc"], "--protocol", "grpc"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert grpc_out.returncode == 0, grpc_out.stderr
            assert "gone_locally" in grpc_out.stdout and "too_small" in grpc_out.stdout
    finally:
        client.unregister_system_shared_memory("status_gone")
        client.unregister_system_shared_memory("status_small")
        for handle in handles:
            shm.destroy_shared_memory_region(handle)
        client.close()


def test_cpp_example_leases_from_an_arena_and_infers_through_its_own_client(triton, examples):
    """examples/cpp/pooled_inference: a C++ Arena, registered through the
    example's own (HTTP/JSON) client, one lease per request."""
    out = subprocess.run(
        [examples / "pooled_inference", triton["http"], "50"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "PASS 50 requests" in out.stdout
    name = out.stdout.split()[1]
    assert name.startswith("tritonshm_cpp_example_")
    with http.InferenceServerClient(triton["http"]) as client:
        assert_gone(client, [name])

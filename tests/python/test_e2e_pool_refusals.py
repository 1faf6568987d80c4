"""The server's refusals, produced for real against PyTriton's server and
explained: a server in another IPC namespace, an access token, a
registration larger than its region, an output slot too small. A refusal the
pool cannot explain is the server's own exception."""

import os

import numpy as np
import pytest

import tritonshm as shm

from conftest import can_unshare, new_key
from e2e_clients import PROTOCOLS, add_sub, server_module

pytestmark = pytest.mark.e2e

from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import SharedMemoryPool, register, shared_memory_status  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(not can_unshare(), reason="needs `unshare -m` (root) to give the server its own /dev/shm")
def test_server_in_another_ipc_namespace_is_explained():
    with server_module().spawn(private_dev_shm=True) as urls:
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
    with server_module().spawn("--access-token", token) as urls:
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


def test_an_unexplained_refusal_is_the_servers_own_error(client):
    with SharedMemoryPool(client, 1 << 20) as pool:
        with pytest.raises(InferenceServerException) as info:
            pool.infer("no_such_model", {"INPUT0": np.ones(4, np.float32)})
        assert info.value.__cause__ is not info.value

"""`tritonshm status` against PyTriton's server: the server's registrations
joined with /dev/shm and the processes that map each region."""

import json
import os
import subprocess
import sys

import pytest

import tritonshm as shm

from conftest import new_key, shm_path
from e2e_clients import http

pytestmark = pytest.mark.e2e

from tritonshm.triton import SharedMemoryPool, register  # noqa: E402


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

"""The C++ Arena against PyTriton's server: examples/cpp/pooled_inference
registers through its own (HTTP/JSON) client and runs each request in a
lease of its own."""

import subprocess

import pytest

from e2e_clients import assert_gone, http

pytestmark = pytest.mark.e2e


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

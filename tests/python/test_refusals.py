"""The explanations of server refusals, on the servers' exact words.

test_e2e_pool_refusals.py produces each refusal for real against
PyTriton's server. One it cannot: PyTriton 0.7.0 bundles a Triton older than
2.69, which has no --allow-client-shm switch, so that text is checked here as
Triton's source writes it (src/common.h)."""

from tritonclient.utils import InferenceServerException

import tritonshm as shm
from tritonshm.triton import explain
from tritonshm.triton.refusals import server_refusal

from conftest import new_key


def test_client_shared_memory_disabled():
    error = InferenceServerException(
        "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."
    )
    assert "--allow-client-shm=true" in explain(error)


def test_unable_to_open_depends_on_whether_the_key_exists_here(make_key):
    key = make_key()
    error = InferenceServerException(f"Unable to open shared memory region: '{key}'")
    assert "does not exist on this host either" in explain(error)
    handle = shm.create_shared_memory_region("n", key, 64)
    try:
        assert "--ipc=host" in explain(error)
    finally:
        shm.destroy_shared_memory_region(handle)


def test_grpc_access_token_names_the_grpc_header():
    error = InferenceServerException(
        "[StatusCode.UNAVAILABLE] This protocol is restricted, expecting header 'triton-grpc-protocol-triton-access-token'"
    )
    assert "headers={'triton-grpc-protocol-triton-access-token': TOKEN}" in explain(error)


def test_unknown_errors_pass_through_unchanged():
    error = InferenceServerException("[400] something else entirely")
    assert explain(error) is None
    assert server_refusal(error, "doing it") is error


def test_explained_refusal_starts_with_what_we_did_then_the_servers_words():
    error = InferenceServerException(f"Unable to open shared memory region: '{new_key()}'")
    refusal = server_refusal(error, "unable to register shared memory region 'r'")
    assert isinstance(refusal, shm.SharedMemoryException)
    assert str(refusal).startswith("unable to register shared memory region 'r': the server said: Unable to open")

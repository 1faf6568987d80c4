"""Which tensors travel inline and which through shared memory, against
PyTriton's server: small tensors inline and no lease, an empty tensor inline
even with inline_threshold=0, InferRequestedOutput objects asked as classes or
as JSON come back as asked."""

import numpy as np
import pytest

from e2e_clients import MIB, PROTOCOLS

pytestmark = pytest.mark.e2e

from tritonshm.triton import SharedMemoryPool  # noqa: E402


def test_small_tensors_travel_inline_and_need_no_lease(client):
    with SharedMemoryPool(client, 1 << 20) as pool:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        for _ in range(2):
            out = pool.infer("simple", {"INPUT0": a, "INPUT1": a})
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * a)
        stats = pool.stats()
        assert stats["inputs_inline"] == 4 and stats["outputs_inline"] == 4
        assert stats["inputs_in_shm"] == 0 and stats["high_water_bytes"] == 0
        with SharedMemoryPool(client, 1 << 20, inline_threshold=0) as everything_in_shm:
            out = everything_in_shm.infer("simple", {"INPUT0": a, "INPUT1": a})
            np.testing.assert_array_equal(out["OUTPUT1"], 0 * a)
            assert everything_in_shm.stats()["inputs_in_shm"] == 2
            assert everything_in_shm.stats()["outputs_in_shm"] == 2, "fixed dims: sizes from the config"


def test_an_empty_tensor_with_no_inline_threshold(client):
    with SharedMemoryPool(client, 1 * MIB, inline_threshold=0) as pool:
        out = pool.infer("double_fp32", {"INPUT0": np.zeros(0, np.float32)})
        assert out["OUTPUT0"].shape == (0,) and out["OUTPUT0"].dtype == np.float32


def test_requested_output_objects_keep_their_classes_and_json(client):
    module = PROTOCOLS[client.protocol]
    x = np.arange(1 << 15, dtype=np.float32)
    plain_input = module.InferInput("INPUT0", [x.size], "FP32")
    plain_input.set_data_from_numpy(x)
    classes = module.InferRequestedOutput("OUTPUT0", class_count=3)
    expected = client.infer("double_fp32", [plain_input], outputs=[classes]).as_numpy("OUTPUT0")
    with SharedMemoryPool(client, 8 * MIB) as pool:
        for _ in range(2):
            out = pool.infer("double_fp32", {"INPUT0": x}, outputs=[classes])
            np.testing.assert_array_equal(out["OUTPUT0"], expected)
        if client.protocol == "http":
            as_json = module.InferRequestedOutput("OUTPUT0", binary_data=False)
            out = pool.infer("double_fp32", {"INPUT0": x}, outputs=[as_json])
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
        plain = module.InferRequestedOutput("OUTPUT0")
        for _ in range(2):  # a plain one may go to shared memory once its size is known
            out = pool.infer("double_fp32", {"INPUT0": x}, outputs=[plain])
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
        assert pool.stats()["outputs_in_shm"] == 1

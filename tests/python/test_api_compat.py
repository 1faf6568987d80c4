"""The public surface matches tritonclient.utils.shared_memory and tritonclient.utils."""

import inspect

import pytest
import tritonclient.utils as reference_utils  # noqa: E402  (a test extra: missing is a failure, not a skip)
import tritonclient.utils.shared_memory as reference  # noqa: E402

import tritonshm
import tritonshm.shared_memory

SEED_FUNCTIONS = [
    "create_shared_memory_region",
    "destroy_shared_memory_region",
    "get_contents_as_numpy",
    "mapped_shared_memory_regions",
    "set_shared_memory_region",
]
HELPERS = [
    "serialize_byte_tensor",
    "deserialize_bytes_tensor",
    "serialized_byte_size",
    "np_to_triton_dtype",
    "triton_to_np_dtype",
]


def positional_signature(fn):
    return [
        (p.name, p.default)
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)
    ]


@pytest.mark.parametrize("name", SEED_FUNCTIONS)
def test_seed_function_has_reference_arguments_and_defaults(name):
    ours = getattr(tritonshm, name)
    assert getattr(tritonshm.shared_memory, name) is ours
    assert positional_signature(ours) == positional_signature(getattr(reference, name))


@pytest.mark.parametrize("name", HELPERS)
def test_tensor_helper_has_reference_arguments(name):
    assert positional_signature(getattr(tritonshm, name)) == positional_signature(getattr(reference_utils, name))


def test_region_class_and_exception_match_reference():
    assert positional_signature(tritonshm.SharedMemoryRegion.__init__) == positional_signature(
        reference.SharedMemoryRegion.__init__
    )
    handle = tritonshm.SharedMemoryRegion("name", "/key")
    assert (handle._triton_shm_name, handle._shm_key) == ("name", "/key")
    assert issubclass(tritonshm.SharedMemoryException, Exception)
    assert tritonshm.SharedMemoryException.__module__.startswith("tritonshm")


def test_keyword_calls_as_documented(make_key):
    key = make_key()
    handle = tritonshm.create_shared_memory_region(triton_shm_name="n", shm_key=key, byte_size=64, create_only=True)
    import numpy as np

    tritonshm.set_shared_memory_region(shm_handle=handle, input_values=[np.arange(4, dtype=np.int32)], offset=16)
    out = tritonshm.get_contents_as_numpy(shm_handle=handle, datatype=np.int32, shape=[4], offset=16)
    assert out.tolist() == [0, 1, 2, 3]
    tritonshm.destroy_shared_memory_region(shm_handle=handle)

"""BYTES and BF16 codecs and dtype names, checked against tritonclient.utils."""

import struct

import numpy as np
import pytest
import tritonclient.utils as reference

import tritonshm as shm

BYTES_TENSORS = [
    np.array([b"a", b"", b"hello world", bytes(range(256))], dtype=np.object_),
    np.array([["x", "ünïcode"], ["", "日本"]], dtype=np.object_),
    np.array([1, 2.5, None, b"raw"], dtype=np.object_),
    np.array([b"ab\x00", b"\x00\x00", b"c"], dtype=np.bytes_),
    np.array([[b"one", b"two"], [b"three", b"four"]], dtype=np.object_).T,  # non-contiguous
    np.array(["only"], dtype=np.object_),
]


@pytest.mark.parametrize("tensor", BYTES_TENSORS, ids=range(len(BYTES_TENSORS)))
def test_serialize_byte_tensor_matches_reference(tensor):
    ours = shm.serialize_byte_tensor(tensor)
    theirs = reference.serialize_byte_tensor(tensor)
    assert ours.dtype == theirs.dtype == np.object_
    assert ours.shape == theirs.shape
    assert ours.item() == theirs.item()


@pytest.mark.parametrize("tensor", BYTES_TENSORS, ids=range(len(BYTES_TENSORS)))
def test_deserialize_round_trips_and_matches_reference(tensor):
    encoded = reference.serialize_byte_tensor(tensor).item()
    ours = shm.deserialize_bytes_tensor(encoded)
    theirs = reference.deserialize_bytes_tensor(encoded)
    assert ours.dtype == np.object_ and ours.shape == theirs.shape
    assert ours.tolist() == theirs.tolist()
    assert shm.deserialize_bytes_tensor(shm.serialize_byte_tensor(tensor)).tolist() == theirs.tolist()


def test_serialize_empty_and_wrong_dtype():
    empty = shm.serialize_byte_tensor(np.array([], dtype=np.object_))
    assert empty.shape == (0,) and empty.dtype == np.object_
    with pytest.raises(shm.SharedMemoryException, match="invalid datatype"):
        shm.serialize_byte_tensor(np.array([1, 2], dtype=np.int32))
    with pytest.raises(shm.SharedMemoryException, match="numpy array"):
        shm.serialize_byte_tensor([b"a"])


@pytest.mark.parametrize(
    "encoded, message",
    [
        (b"\x01\x00", "needs a 4-byte length"),
        (b"\x05\x00\x00\x00abc", "declares 5 bytes, only 3 remain"),
        (struct.pack("<I", 0xFFFFFFFF), "declares 4294967295 bytes"),
    ],
)
def test_deserialize_malformed_raises(encoded, message):
    with pytest.raises(shm.SharedMemoryException, match=message):
        shm.deserialize_bytes_tensor(encoded)


def test_deserialize_accepts_buffers():
    encoded = struct.pack("<I", 2) + b"hi"
    for form in (encoded, bytearray(encoded), memoryview(encoded), np.frombuffer(encoded, np.uint8)):
        assert shm.deserialize_bytes_tensor(form).tolist() == [b"hi"]


@pytest.mark.parametrize(
    "tensor",
    [
        np.array([b"a", b"bcd"], dtype=np.object_),
        np.array([["ab", "c"]], dtype=np.object_),
        np.array([], dtype=np.object_),
        shm.serialize_byte_tensor(np.array([b"xyz"], dtype=np.object_)),
    ],
)
def test_serialized_byte_size_matches_reference(tensor):
    assert shm.serialized_byte_size(tensor) == reference.serialized_byte_size(tensor)


def test_serialized_byte_size_rejects_non_object():
    with pytest.raises(shm.SharedMemoryException, match="np.object_"):
        shm.serialized_byte_size(np.zeros(3))


def reference_bf16(values):
    # tritonclient 2.50's serialize_bf16_tensor: the upper two bytes of each float32.
    return b"".join(struct.pack("<f", v)[2:4] for v in values.reshape(-1))


def test_bf16_serialize_truncates_like_reference():
    values = np.array([[1.0, -2.5, 3.14159], [1e-30, np.inf, -0.0]], dtype=np.float32)
    ours = shm.serialize_bf16_tensor(values)
    assert ours.dtype == np.object_ and ours.shape == ()
    assert ours.item() == reference_bf16(values)
    assert shm.serialize_bf16_tensor(values.T).item() == reference_bf16(np.ascontiguousarray(values.T))


def test_bf16_round_trip_keeps_upper_bits():
    values = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    back = shm.deserialize_bf16_tensor(shm.serialize_bf16_tensor(values))
    assert back.dtype == np.float32 and back.shape == (1000,)
    np.testing.assert_array_equal(back.view(np.uint32), values.view(np.uint32) & 0xFFFF0000)


def test_bf16_matches_ml_dtypes_truncation_for_exact_values():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes comes with tritonclient")
    values = np.array([1.0, 0.5, -256.0, 3.0], dtype=np.float32)  # exactly representable: no rounding question
    expected = values.astype(ml_dtypes.bfloat16).tobytes()
    assert shm.serialize_bf16_tensor(values).item() == expected


def test_bf16_errors():
    with pytest.raises(shm.SharedMemoryException, match="invalid datatype"):
        shm.serialize_bf16_tensor(np.zeros(2, np.float64))
    with pytest.raises(shm.SharedMemoryException, match="not a whole number"):
        shm.deserialize_bf16_tensor(b"\x00\x01\x02")
    assert shm.serialize_bf16_tensor(np.zeros(0, np.float32)).shape == (0,)


@pytest.mark.parametrize(
    "dtype",
    [
        bool,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.object_,
    ],
)
def test_dtype_names_match_reference(dtype):
    name = reference.np_to_triton_dtype(dtype)
    assert shm.np_to_triton_dtype(dtype) == name
    assert shm.triton_to_np_dtype(name) == reference.triton_to_np_dtype(name)


def test_dtype_names_for_bytes_bf16_and_unknown():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes comes with tritonclient")
    assert shm.np_to_triton_dtype(np.dtype("S5")) == "BYTES"
    assert shm.np_to_triton_dtype(ml_dtypes.bfloat16) == "BF16"
    assert shm.triton_to_np_dtype("BF16") == ml_dtypes.bfloat16
    assert shm.np_to_triton_dtype(np.complex64) is None
    assert shm.triton_to_np_dtype("NOPE") is None


def test_large_bytes_tensors_take_the_parallel_path_and_round_trip(make_key):
    # 80 elements of 1 MiB: above the 64 MiB threshold where encoding and
    # decoding split the copying across threads.
    rng = np.random.default_rng(5)
    elements = [bytes(rng.integers(0, 255, (1 << 20) + i, dtype=np.uint8)) for i in range(80)]
    tensor = np.array(elements + [b""], dtype=np.object_)[:80]
    serialized = shm.serialize_byte_tensor(tensor)
    assert serialized.item() == reference.serialize_byte_tensor(tensor).item()
    assert shm.deserialize_bytes_tensor(serialized).tolist() == elements
    handle = shm.create_shared_memory_region("big", make_key("bigbytes"), len(serialized.item()))
    try:
        shm.set_shared_memory_region(handle, [serialized])
        assert shm.get_contents_as_numpy(handle, np.object_, [80]).tolist() == elements
    finally:
        shm.destroy_shared_memory_region(handle)

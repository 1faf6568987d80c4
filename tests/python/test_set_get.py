"""Writing arrays into regions and reading them back."""

import numpy as np
import pytest

import tritonshm as shm


def region_bytes(handle):
    return shm.get_contents_as_numpy(handle, np.uint8, [handle.byte_size]).copy()


def test_set_then_get_round_trips_every_fixed_dtype(region):
    for dtype in (np.bool_, np.int8, np.uint16, np.int32, np.uint64, np.float16, np.float32, np.float64, np.complex64):
        value = (np.arange(24) % 2 == 0) if dtype is np.bool_ else np.arange(24).astype(dtype)
        value = value.reshape(2, 3, 4)
        shm.set_shared_memory_region(region, [value], offset=8)
        out = shm.get_contents_as_numpy(region, dtype, [2, 3, 4], offset=8)
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, value)


def test_every_spelling_of_a_dtype_gives_that_dtype_again_and_again(region):
    # get caches dtype arguments by identity: each spelling, repeated, and
    # more spellings than the cache holds, must still give the right type.
    spellings = [np.float32, np.dtype("float32"), "float32", "f4", "<f4", np.single]
    spellings += ["".join(["int", str(bits)]) for bits in (8, 16, 32, 64)] * 10  # distinct str objects
    spellings += [f"V{n}" for n in range(1, 40)] + ["U2"]
    for _ in range(3):
        for spelling in spellings:
            out = shm.get_contents_as_numpy(region, spelling, [2])
            assert out.dtype == np.dtype(spelling), spelling


def test_arrays_in_list_are_written_back_to_back(region):
    a = np.arange(3, dtype=np.int32)
    b = np.array([1.5, 2.5], dtype=np.float64)
    shm.set_shared_memory_region(region, (a, b), offset=4)
    assert shm.get_contents_as_numpy(region, np.int32, [3], offset=4).tolist() == [0, 1, 2]
    assert shm.get_contents_as_numpy(region, np.float64, [2], offset=16).tolist() == [1.5, 2.5]


def test_non_contiguous_inputs_are_copied_in_c_order(region):
    base = np.arange(64, dtype=np.int16).reshape(8, 8)
    for value in (base[::2, 1::3], base.T, np.asfortranarray(base), base[:, ::-1]):
        shm.set_shared_memory_region(region, [value])
        out = shm.get_contents_as_numpy(region, np.int16, value.shape)
        np.testing.assert_array_equal(out, value)


def test_read_only_and_zero_dim_inputs(region):
    value = np.arange(5, dtype=np.int32)
    value.flags.writeable = False
    scalar = np.array(42, dtype=np.int64)
    shm.set_shared_memory_region(region, [value, scalar])
    assert shm.get_contents_as_numpy(region, np.int32, [5]).tolist() == list(range(5))
    assert shm.get_contents_as_numpy(region, np.int64, [], offset=20).item() == 42


def test_datetime_and_structured_dtypes_round_trip(region):
    dates = np.array(["2026-11-24", "1970-01-01"], dtype="datetime64[D]")
    rec = np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "<i4"), ("b", "<f8")])
    shm.set_shared_memory_region(region, [dates, rec])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(region, dates.dtype, [2]), dates)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(region, rec.dtype, [2], offset=dates.nbytes), rec)


def test_get_returns_zero_copy_writable_view(region):
    view = shm.get_contents_as_numpy(region, np.int32, [4])
    again = shm.get_contents_as_numpy(region, np.int32, [4])
    view[:] = [9, 8, 7, 6]
    assert again.tolist() == [9, 8, 7, 6], "both views see the same memory"
    shm.set_shared_memory_region(region, [np.array([1, 2, 3, 4], np.int32)])
    assert view.tolist() == [1, 2, 3, 4]
    assert not view.flags.owndata


def test_view_outlives_destroy_without_buffer_error(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 1 << 16)
    shm.set_shared_memory_region(handle, [np.arange(1 << 14, dtype=np.int32)])
    view = shm.get_contents_as_numpy(handle, np.int32, [1 << 14])
    shm.destroy_shared_memory_region(handle)  # the reference raises BufferError here
    from conftest import shm_path

    assert not shm_path(key).exists(), "the name goes at destroy"
    assert int(view.sum()) == sum(range(1 << 14)), "the memory stays mapped while the view lives"
    view[0] = 5  # still writable, no crash
    del view


def test_offset_past_end_and_oversized_reads_raise_with_sizes(region):
    with pytest.raises(shm.SharedMemoryException, match=r"4 bytes at offset 1024 do not fit in its 1024 bytes"):
        shm.get_contents_as_numpy(region, np.int32, [1], offset=1024)
    with pytest.raises(shm.SharedMemoryException, match=r"1028 bytes at offset 0"):
        shm.get_contents_as_numpy(region, np.int32, [257])
    with pytest.raises(shm.SharedMemoryException, match="offset"):
        shm.get_contents_as_numpy(region, np.int32, [1], offset=-4)


@pytest.mark.parametrize("offset", [-1, 2**64, 2**64 - 1, 2**63, 1021, "0", 1.0])
def test_bad_offsets_write_nothing(region, offset):
    before = region_bytes(region)
    with pytest.raises(shm.SharedMemoryException):
        shm.set_shared_memory_region(region, [np.ones(4, np.uint8)], offset=offset)
    np.testing.assert_array_equal(region_bytes(region), before)


def test_later_array_that_does_not_fit_means_nothing_is_written(region):
    shm.set_shared_memory_region(region, [np.full(1024, 0xAB, np.uint8)])
    before = region_bytes(region)
    fits = np.zeros(1000, np.uint8)
    too_far = np.zeros(100, np.uint8)
    with pytest.raises(shm.SharedMemoryException, match=r"1100 bytes at offset 0 do not fit in its 1024 bytes"):
        shm.set_shared_memory_region(region, [fits, too_far])
    np.testing.assert_array_equal(region_bytes(region), before)


@pytest.mark.parametrize(
    "values, message",
    [
        (np.zeros(4), "list/tuple"),
        ([np.zeros(4), [1, 2]], "numpy array"),
        (["text"], "numpy array"),
        ([np.array([b"a", b"b"], dtype=object)], "one serialized BYTES buffer"),
        ([np.array(["text"], dtype=object)], "expected serialized bytes"),
    ],
)
def test_bad_input_values_raise_shared_memory_exception(region, values, message):
    with pytest.raises(shm.SharedMemoryException, match=message):
        shm.set_shared_memory_region(region, values)


def test_object_array_is_written_as_serialized_bytes(region):
    tensor = np.array([b"hello", b"", b"world!"], dtype=np.object_)
    serialized = shm.serialize_byte_tensor(tensor)
    shm.set_shared_memory_region(region, [serialized], offset=3)
    out = shm.get_contents_as_numpy(region, np.object_, [3], offset=3)
    assert out.dtype == np.object_ and out.tolist() == [b"hello", b"", b"world!"]
    out = shm.get_contents_as_numpy(region, np.bytes_, [1, 3], offset=3)
    assert out.shape == (1, 3) and out[0, 2] == b"world!"
    shm.set_shared_memory_region(region, [np.empty([0], dtype=np.object_)])  # empty serialized tensor writes nothing


def test_bytes_tensor_then_fixed_tensor_in_one_call(region):
    serialized = shm.serialize_byte_tensor(np.array([b"ab", b"cde"], dtype=np.object_))
    after = np.arange(3, dtype=np.int8)
    shm.set_shared_memory_region(region, [serialized, after])
    n = len(serialized.item())
    assert shm.get_contents_as_numpy(region, np.int8, [3], offset=n).tolist() == [0, 1, 2]


def test_malformed_bytes_tensor_raises_instead_of_reading_out_of_bounds(region):
    header = np.array([2**31], dtype="<u4")  # one element claiming 2 GiB
    shm.set_shared_memory_region(region, [header])
    with pytest.raises(shm.SharedMemoryException, match=r"element 0 at byte 0 declares 2147483648 bytes"):
        shm.get_contents_as_numpy(region, np.object_, [1])
    with pytest.raises(shm.SharedMemoryException, match="elements need at least"):
        shm.get_contents_as_numpy(region, np.object_, [1000])


@pytest.mark.parametrize(
    "dtype, shape, message",
    [
        ("not a dtype", [1], "not a numpy data type"),
        (np.int32, "abc", "shape must be a list of int"),
        (np.int32, [2, -1], "invalid dimension"),
        (np.int32, [1.5], "must be integers"),
        (np.int32, [True], "must be integers, got 'bool'"),  # the reference's numpy raises TypeError
        (np.int32, [2**40, 2**40], "overflows|more elements|multiply past"),
        (np.bool_, [0, 3_036_988_439, 3_037_012_561], "multiply past"),  # empty, yet too big for numpy
        (np.object_, [0, 2**62, 4], "multiply past"),
        (np.str_, [1], "no fixed size"),
        ([("a", "O")], [1], "holds Python objects"),
    ],
)
def test_bad_get_arguments_raise_shared_memory_exception(region, dtype, shape, message):
    with pytest.raises(shm.SharedMemoryException, match=message):
        shm.get_contents_as_numpy(region, dtype, shape)


def test_shape_may_be_int_tuple_or_numpy_ints(region):
    assert shm.get_contents_as_numpy(region, np.int8, 4).shape == (4,)
    assert shm.get_contents_as_numpy(region, np.int8, (2, 2)).shape == (2, 2)
    assert shm.get_contents_as_numpy(region, np.int8, np.array([2, 3])).shape == (2, 3)
    assert shm.get_contents_as_numpy(region, "float32", [np.int64(2)]).dtype == np.float32


def test_unaligned_offset_gives_correct_values(region):
    value = np.arange(10, dtype=np.float64)
    shm.set_shared_memory_region(region, [value], offset=3)
    out = shm.get_contents_as_numpy(region, np.float64, [10], offset=3)
    np.testing.assert_array_equal(out, value)


def test_any_cpu_buffer_is_taken_as_its_bytes_in_c_order(region):
    """Beyond the reference: bytes, bytearray, memoryview and array.array (the
    buffer protocol) are copied as they are; a non-contiguous one in C order."""
    import array

    floats = array.array("f", [1.5, -2.0])
    strided = memoryview(bytearray(range(16)))[::2]  # not contiguous
    shm.set_shared_memory_region(region, [b"abcd", bytearray(b"efgh"), memoryview(b"ijkl"), floats, strided])
    raw = shm.get_contents_as_numpy(region, np.uint8, [28]).tobytes()
    assert raw == b"abcdefghijkl" + floats.tobytes() + bytes(range(0, 16, 2))


def test_dlpack_producer_from_another_library_is_copied_without_numpy(region):
    """A real array library that is not numpy (array-api-strict, a test extra)
    hands its CPU memory over through __dlpack__."""
    xp = pytest.importorskip("array_api_strict", reason="array-api-strict is a test extra (Python 3.10+)")
    values = xp.asarray([[1, 2, 3], [4, 5, 6]], dtype=xp.int32)
    assert not isinstance(values, np.ndarray) and hasattr(values, "__dlpack__")
    shm.set_shared_memory_region(region, [values, xp.asarray([0.5], dtype=xp.float64)])
    assert shm.get_contents_as_numpy(region, np.int32, [2, 3]).tolist() == [[1, 2, 3], [4, 5, 6]]
    assert shm.get_contents_as_numpy(region, np.float64, [1], offset=24).tolist() == [0.5]
    transposed = xp.asarray(np.arange(6, dtype=np.int32).reshape(2, 3)).T  # strided: copied in C order
    shm.set_shared_memory_region(region, [transposed])
    assert shm.get_contents_as_numpy(region, np.int32, [3, 2]).tolist() == [[0, 3], [1, 4], [2, 5]]


class OnAnotherDevice:
    """A DLPack producer whose memory is on a GPU (kDLCUDA): a stand-in, since
    this machine has no GPU. numpy refuses it before touching any memory."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None, **kwargs):
        raise BufferError("this stand-in never exports")


def test_memory_on_another_device_is_a_clear_error_that_writes_nothing(region):
    shm.set_shared_memory_region(region, [np.full(4, 9, np.uint8)])
    with pytest.raises(
        shm.SharedMemoryException,
        match=r"^unable to set the shared memory region .*element 1 "
        r"\(OnAnotherDevice\) cannot be read as CPU memory",
    ):
        shm.set_shared_memory_region(region, [np.zeros(4, np.uint8), OnAnotherDevice()])
    assert shm.get_contents_as_numpy(region, np.uint8, [4]).tolist() == [9, 9, 9, 9], "nothing was written"


def test_objects_with_no_memory_keep_the_reference_text(region):
    for bad in (42, "text", [1, 2], None):
        with pytest.raises(shm.SharedMemoryException, match="^each element of input_values must be a numpy array"):
            shm.set_shared_memory_region(region, [bad])


def test_shapes_past_the_numpy_in_use_raise_our_exception(region):
    """A module built against numpy 2 (64 dimensions) that runs with numpy 1
    (32) must refuse 33-64 dimensions itself, not leave numpy's bare ValueError."""
    limit = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
    assert shm.get_contents_as_numpy(region, np.uint8, [1] * limit).ndim == limit
    for dims in (limit + 1, 64, 65):
        if dims <= limit:
            continue
        for dtype in (np.uint8, np.float32, np.object_):
            with pytest.raises(shm.SharedMemoryException, match=f"shape has more than {limit} dimensions"):
                shm.get_contents_as_numpy(region, dtype, [1] * dims)

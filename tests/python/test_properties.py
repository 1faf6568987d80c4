"""Property-based tests over the whole Python API: every call either does the
right thing or raises SharedMemoryException, and a failed call changes no byte."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tritonshm as shm

from conftest import new_key, shm_path

SIZE = 4096
DTYPES = [
    np.bool_,
    np.int8,
    np.uint8,
    np.int16,
    np.uint16,
    np.int32,
    np.float16,
    np.float32,
    np.float64,
    np.int64,
    np.uint64,
    np.complex128,
]
OFFSETS = st.one_of(
    st.integers(-16, SIZE + 16),
    st.sampled_from([-(2**63), 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70]),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def shared_region():
    handle = shm.create_shared_memory_region("prop", new_key("prop"), SIZE, create_only=True)
    yield handle
    shm.destroy_shared_memory_region(handle)


def snapshot(handle):
    return shm.get_contents_as_numpy(handle, np.uint8, [SIZE]).copy()


def arrays():
    base = st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12))
    )

    def variant(args):
        array, kind = args
        if kind == "strided" and array.ndim >= 1:
            return array[::2]
        if kind == "transposed":
            return array.T
        if kind == "readonly":
            array = array.copy()
            array.flags.writeable = False
        return array

    return st.tuples(base, st.sampled_from(["plain", "strided", "transposed", "readonly"])).map(variant)


@SETTINGS
@given(values=st.lists(arrays(), max_size=4), offset=OFFSETS, fill=st.integers(0, 255))
def test_set_writes_exactly_the_arrays_or_nothing(shared_region, values, offset, fill):
    shm.set_shared_memory_region(shared_region, [np.full(SIZE, fill, np.uint8)])
    before = snapshot(shared_region)
    payload = b"".join(np.ascontiguousarray(v).tobytes() for v in values)
    fits = 0 <= offset and offset + len(payload) <= SIZE
    try:
        shm.set_shared_memory_region(shared_region, values, offset=offset)
    except shm.SharedMemoryException as exc:
        assert not fits, f"a write that fits raised: {exc}"
        assert np.array_equal(snapshot(shared_region), before), "a failed set changed bytes"
        return
    assert fits, "a write that does not fit succeeded"
    after = snapshot(shared_region)
    assert after[offset : offset + len(payload)].tobytes() == payload
    assert np.array_equal(after[:offset], before[:offset])
    assert np.array_equal(after[offset + len(payload) :], before[offset + len(payload) :])


SHAPES = st.one_of(
    st.lists(st.integers(0, 40), max_size=4),
    st.lists(st.integers(-3, 2**62), max_size=3),
    st.sampled_from(["x", None, 3.5, [1.5], [[2]], (2, 2), 7]),
)


@SETTINGS
@given(dtype=st.sampled_from(DTYPES + ["S3", np.object_, "U2", "not-a-type", None]), shape=SHAPES, offset=OFFSETS)
def test_get_returns_the_right_bytes_or_raises(shared_region, dtype, shape, offset):
    rng = np.random.default_rng(0)
    shm.set_shared_memory_region(shared_region, [rng.integers(0, 255, SIZE, dtype=np.uint8)])
    before = snapshot(shared_region)
    try:
        out = shm.get_contents_as_numpy(shared_region, dtype, shape, offset=offset)
    except shm.SharedMemoryException:
        assert np.array_equal(snapshot(shared_region), before)
        return
    assert isinstance(out, np.ndarray)
    if out.dtype != np.object_:
        expected_shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if expected_shape == (-1,):  # numpy's lone -1 over a buffer: every whole item from the offset on
            expected_shape = (max(0, SIZE - offset) // out.itemsize,)
        assert out.shape == expected_shape
        if out.nbytes:  # an empty tensor reads from any offset, as the reference's
            assert 0 <= offset and offset + out.nbytes <= SIZE
        assert out.tobytes() == before[offset : offset + out.nbytes].tobytes()


@SETTINGS
@given(elements=st.lists(st.binary(max_size=40), max_size=30), offset=st.integers(0, 200), extra=st.integers(-3, 3))
def test_bytes_tensors_round_trip_and_wrong_counts_fail_cleanly(shared_region, elements, offset, extra):
    tensor = np.array(elements + [b""], dtype=np.object_)[: len(elements)]
    serialized = shm.serialize_byte_tensor(tensor)
    shm.set_shared_memory_region(shared_region, [np.zeros(SIZE, np.uint8)])
    try:
        shm.set_shared_memory_region(shared_region, [serialized], offset=offset)
    except shm.SharedMemoryException:
        assert offset + sum(4 + len(e) for e in elements) > SIZE
        return
    if elements:
        assert shm.get_contents_as_numpy(shared_region, np.object_, [len(elements)], offset=offset).tolist() == elements
    count = max(0, len(elements) + extra)
    try:
        out = shm.get_contents_as_numpy(shared_region, np.object_, [count], offset=offset)
    except shm.SharedMemoryException:
        return
    assert out.shape == (count,)
    assert out.tolist()[: min(count, len(elements))] == elements[: min(count, len(elements))]


@SETTINGS
@given(data=st.binary(max_size=200))
def test_decoders_never_crash_on_arbitrary_bytes(data):
    for decode in (shm.deserialize_bytes_tensor, shm.deserialize_bf16_tensor):
        try:
            out = decode(data)
        except shm.SharedMemoryException:
            continue
        assert isinstance(out, np.ndarray)


KEY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


def key_refusal(key):
    """How tritonshm's refusal of `key` ends (its rules, in src/key.cpp's
    order), or None for a key it accepts. The keys made here never name no
    object, nor '.' or '..'."""
    name = key[1:] if key.startswith("/") else key
    if "/" in name:
        return "': '/' is only allowed as the first character (POSIX shared memory has no folders)"
    if "\0" in name:
        return "': contains a NUL character"
    if len(name.encode()) > 255:
        return f": invalid shared memory key: {len(name.encode())} bytes long, the limit is 255 (NAME_MAX)"
    return None


@settings(max_examples=200, deadline=None)
@given(suffix=KEY_TEXT, slash=st.booleans())
def test_any_key_either_works_or_raises_shared_memory_exception(suffix, slash):
    key = ("/" if slash else "") + f"tshm_test_{os.getpid()}_anykey-" + suffix  # never a key new_key() makes
    refusal = key_refusal(key)
    try:
        handle = shm.create_shared_memory_region("k", key, 16, create_only=True)
    except shm.SharedMemoryException as exc:
        assert refusal is not None, f"a valid key was refused: {exc}"
        message = str(exc)
        assert message.startswith("unable to create the shared memory region '"), message
        assert "invalid shared memory key" in message and message.endswith(refusal), (message, refusal)
        assert exc.errno == 0, "a key is refused before any system call"
        return
    assert refusal is None, f"{key!r} was accepted; expected a refusal ending {refusal!r}"
    try:
        assert shm_path("/" + key.lstrip("/")).exists()
    finally:
        shm.destroy_shared_memory_region(handle)
    assert not shm_path("/" + key.lstrip("/")).exists()


TEXT, BYTES, SHAPE, FLOAT32 = "text", b"bytes", [1, 2], np.float32(1)
WRONG = st.sampled_from([None, TEXT, BYTES, 1.5, object(), SHAPE, {"a": 1}, FLOAT32])
# The values of WRONG that some arguments take, and the dtype read with each:
# any str is a name or a key, [1, 2] a shape; as a dtype None is float64
# (numpy's default), b"bytes" is np.bytes_ (BYTES, decoded to objects as
# tritonclient does) and np.float32(1) gives its type.
ACCEPTED = [
    ("datatype", None, np.float64),
    ("datatype", BYTES, np.object_),
    ("datatype", FLOAT32, np.float32),
    ("shape", SHAPE, np.int8),
    ("name", TEXT, None),
    ("key", TEXT, None),
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=WRONG, which=st.sampled_from(["handle", "values", "offset", "datatype", "shape", "name", "key", "size"]))
def test_wrong_argument_types_raise_shared_memory_exception(shared_region, bad, which):
    shm.set_shared_memory_region(shared_region, [np.zeros(SIZE, np.uint8)])  # read as BYTES: empty elements
    good_values = [np.zeros(2, np.int8)]
    calls = {
        "handle": lambda: shm.set_shared_memory_region(bad, good_values),
        "values": lambda: shm.set_shared_memory_region(shared_region, bad),
        "offset": lambda: shm.set_shared_memory_region(shared_region, good_values, offset=bad),
        "datatype": lambda: shm.get_contents_as_numpy(shared_region, bad, [2]),
        "shape": lambda: shm.get_contents_as_numpy(shared_region, np.int8, bad),
        "name": lambda: shm.create_shared_memory_region(bad, new_key(), 8),
        "key": lambda: shm.create_shared_memory_region("n", bad, 8),
        "size": lambda: shm.create_shared_memory_region("n", new_key(), bad),
    }
    accepted = [dtype for argument, value, dtype in ACCEPTED if argument == which and value is bad]
    try:
        result = calls[which]()
    except shm.SharedMemoryException:
        assert not accepted, f"{which}={bad!r} was refused"
        return
    assert accepted, f"{which}={bad!r} was accepted"
    if isinstance(result, shm.SharedMemoryRegion):
        shm.destroy_shared_memory_region(result)
    else:
        assert result.dtype == accepted[0], (which, bad, result.dtype)
        assert result.tolist() == ([b"", b""] if result.dtype == np.object_ else np.zeros(result.shape).tolist())

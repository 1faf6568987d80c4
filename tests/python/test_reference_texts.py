"""Error messages begin with tritonclient's own text, word for word.

Code written against tritonclient matches its messages with regexes
(pytest.raises(match=...), assertRaisesRegex; Triton's QA does). Each case
makes the same mistake with the reference and with tritonshm, and checks that
ours starts with exactly what the reference says; our detail follows.
"""

import numpy as np
import pytest
import tritonclient.utils.shared_memory as reference  # noqa: E402  (a test extra)

import tritonshm as shm

CREATE = "unable to create the shared memory region"
SET = "unable to set the shared memory region"
NOT_A_LIST = "input_values must be specified as a list/tuple of numpy arrays"
NOT_AN_ARRAY = "each element of input_values must be a numpy array"


def raised(module, call):
    with pytest.raises(module.SharedMemoryException) as info:
        call(module)
    return str(info.value)


def same_start(call, text, cleanup=lambda module: None):
    """Both libraries raise for `call`; the reference says exactly `text`, ours starts with it."""
    try:
        theirs = raised(reference, call)
        ours = raised(shm, call)
    finally:
        cleanup(reference)
        cleanup(shm)
    assert theirs == text, f"the reference now says {theirs!r}: update this test"
    assert ours.startswith(text), ours
    return ours


def test_create_with_invalid_size(make_key):
    key = make_key()
    ours = same_start(lambda m: m.create_shared_memory_region("n", key, -1), CREATE)
    assert "byte_size -1" in ours and key in ours


def test_create_only_on_an_existing_key(make_key):
    key = make_key()
    handles = {}

    def call(m):
        handles[m] = m.create_shared_memory_region("first", key, 64)
        m.create_shared_memory_region("second", key, 64, create_only=True)

    def cleanup(m):
        if m in handles:
            m.destroy_shared_memory_region(handles.pop(m))

    ours = same_start(call, CREATE, cleanup)
    assert "File exists" in ours


def test_create_failing_in_the_os(make_key):
    key = "/" + "x" * 300  # longer than a file name may be: the OS refuses it
    ours = same_start(lambda m: m.create_shared_memory_region("n", key, 64, create_only=True), CREATE)
    assert "NAME_MAX" in ours


def set_in_fresh_region(key, values):
    """same_start's arguments for a set of `values` into a new 64-byte region
    (ours under key + "_ours": the two libraries' regions must not meet)."""
    handles = {}

    def call(m):
        handles[m] = m.create_shared_memory_region("n", key + ("_ours" if m is shm else ""), 64, create_only=True)
        m.set_shared_memory_region(handles[m], values)

    def cleanup(m):
        if m in handles:
            m.destroy_shared_memory_region(handles.pop(m))

    return call, SET, cleanup


def test_set_out_of_bounds(make_key):
    ours = same_start(*set_in_fresh_region(make_key(), [np.ones(100, np.float32)]))
    assert "400 bytes at offset 0 do not fit in its 64 bytes" in ours


def test_set_with_the_wrong_kind_of_value_inside(make_key):
    ours = same_start(*set_in_fresh_region(make_key(), [np.array(5, dtype=np.object_)]))  # not serialized bytes
    assert "serialize_byte_tensor" in ours


def test_input_values_not_a_list(region):
    same_start(lambda m: m.set_shared_memory_region(region if m is shm else None, np.ones(4)), NOT_A_LIST)


def test_element_not_a_numpy_array(region):
    ours = same_start(lambda m: m.set_shared_memory_region(region if m is shm else None, [42]), NOT_AN_ARRAY)
    assert "int" in ours


def test_input_values_are_checked_before_the_handle():
    """The reference checks input_values first: a bad handle and a bad list say the list."""
    with pytest.raises(shm.SharedMemoryException, match="^" + NOT_A_LIST):
        shm.set_shared_memory_region(None, "not a list")


def test_every_set_failure_starts_with_the_set_text(region):
    for values, offset in (([np.ones(1)], -1), ([np.ones(1)], "x"), ([np.ones(1)], 1 << 70)):
        with pytest.raises(shm.SharedMemoryException, match="^" + SET):
            shm.set_shared_memory_region(region, values, offset)
    shm.destroy_shared_memory_region(region)
    with pytest.raises(shm.SharedMemoryException, match="^" + SET + ".*destroyed"):
        shm.set_shared_memory_region(region, [np.ones(1)])

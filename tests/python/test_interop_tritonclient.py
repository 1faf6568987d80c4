"""Regions made by one library are read and written by the other (the real tritonclient)."""

import numpy as np
import pytest
import tritonclient.utils as tc_utils
import tritonclient.utils.shared_memory as tc_shm

import tritonshm as shm

from conftest import shm_path


@pytest.fixture(autouse=True)
def tritonclient_cleanup():
    yield
    tc_shm._key_mapping.clear()


def test_tritonclient_reads_and_writes_region_created_by_us(make_key):
    key = make_key()
    ours = shm.create_shared_memory_region("ours", key, 256)
    try:
        shm.set_shared_memory_region(ours, [np.arange(16, dtype=np.float32)])
        theirs = tc_shm.create_shared_memory_region("theirs", key, 256)
        got = tc_shm.get_contents_as_numpy(theirs, np.float32, [16])
        assert got.tolist() == list(range(16))
        del got  # the reference cannot close while a view exists
        tc_shm.set_shared_memory_region(theirs, [np.full(4, 7, np.int64)], offset=128)
        tc_shm.destroy_shared_memory_region(theirs)
        assert shm.get_contents_as_numpy(ours, np.int64, [4], offset=128).tolist() == [7] * 4
        assert shm_path(key).exists(), "tritonclient only attached"
    finally:
        shm.destroy_shared_memory_region(ours)
    assert not shm_path(key).exists()


def test_we_read_and_write_region_created_by_tritonclient(make_key):
    key = make_key()
    theirs = tc_shm.create_shared_memory_region("theirs", key, 512, create_only=True)
    strings = np.array([b"alpha", b"", "gamma"], dtype=np.object_)
    tc_shm.set_shared_memory_region(theirs, [tc_utils.serialize_byte_tensor(strings), np.arange(3, dtype=np.int16)])
    ours = shm.create_shared_memory_region("ours", key, 512)
    n = len(tc_utils.serialize_byte_tensor(strings).item())
    assert shm.get_contents_as_numpy(ours, np.object_, [3]).tolist() == [b"alpha", b"", b"gamma"]
    assert shm.get_contents_as_numpy(ours, np.int16, [3], offset=n).tolist() == [0, 1, 2]
    shm.set_shared_memory_region(
        ours, [shm.serialize_byte_tensor(np.array([b"from", b"us"], dtype=np.object_))], offset=256
    )
    shm.destroy_shared_memory_region(ours)
    assert shm_path(key).exists(), "we only attached: tritonclient's region stays"
    back = tc_shm.get_contents_as_numpy(theirs, np.object_, [2], offset=256)
    assert back.tolist() == [b"from", b"us"]
    del back
    tc_shm.destroy_shared_memory_region(theirs)
    assert not shm_path(key).exists()


@pytest.mark.parametrize("shape", [[-1], -1, (-1,), np.array([-1])], ids=["list", "int", "tuple", "numpy"])
@pytest.mark.parametrize("offset", [0, 3, 60, 63, 64, 100])
def test_shape_of_a_lone_minus_one_reads_as_the_reference_does(make_key, shape, offset):
    """The reference hands its shape to numpy's ndarray over the region from
    the offset on, which takes a lone -1 as every whole item there (none past
    the end); for BYTES its string loop reads one element."""
    key = make_key()
    ours = shm.create_shared_memory_region("ours", key, 64)
    theirs = tc_shm.create_shared_memory_region("theirs", key, 64)
    try:
        strings = shm.serialize_byte_tensor(np.array([b"one", b"two"], dtype=np.object_))
        shm.set_shared_memory_region(ours, [np.arange(16, dtype=np.float32)])
        expected = tc_shm.get_contents_as_numpy(theirs, np.float32, shape, offset=offset).copy()
        got = shm.get_contents_as_numpy(ours, np.float32, shape, offset=offset)
        assert got.shape == expected.shape and got.tobytes() == expected.tobytes()
        shm.set_shared_memory_region(ours, [strings])
        expected = tc_shm.get_contents_as_numpy(theirs, np.object_, shape)
        got = shm.get_contents_as_numpy(ours, np.object_, shape)
        assert got.shape == expected.shape == (1,) and got.tolist() == expected.tolist() == [b"one"]
    finally:
        tc_shm.destroy_shared_memory_region(theirs)
        shm.destroy_shared_memory_region(ours)


@pytest.mark.parametrize("shape", [[0], [2, 0], []])
def test_an_empty_tensor_reads_anywhere_as_the_reference_does(make_key, shape):
    key = make_key()
    ours = shm.create_shared_memory_region("ours", key, 64)
    theirs = tc_shm.create_shared_memory_region("theirs", key, 64)
    try:
        for offset in (64, 100):
            expected = tc_shm.get_contents_as_numpy(theirs, np.float32, shape if shape else [0], offset=offset)
            got = shm.get_contents_as_numpy(ours, np.float32, shape if shape else [0], offset=offset)
            assert got.shape == expected.shape and got.size == 0
    finally:
        tc_shm.destroy_shared_memory_region(theirs)
        shm.destroy_shared_memory_region(ours)

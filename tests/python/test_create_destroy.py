"""Creating, attaching, counting and destroying handles."""

import gc
import os
import platform
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tritonshm as shm

from conftest import shm_path


def test_create_makes_region_of_requested_size_in_dev_shm(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 4096)
    try:
        assert shm_path(key).stat().st_size == 4096
        assert handle.byte_size == 4096
        assert shm.mapped_shared_memory_regions() == [key]
    finally:
        shm.destroy_shared_memory_region(handle)
    assert not shm_path(key).exists()
    assert shm.mapped_shared_memory_regions() == []


def test_region_is_private_to_owner_by_default(make_key):
    key = make_key()
    old = os.umask(0)  # the default must not depend on the caller's umask
    try:
        handle = shm.create_shared_memory_region("n", key, 64)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(shm_path(key).stat().st_mode) == 0o600
    finally:
        shm.destroy_shared_memory_region(handle)


def test_explicit_mode_is_applied_exactly(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 64, mode=0o640)
    try:
        assert stat.S_IMODE(shm_path(key).stat().st_mode) == 0o640
    finally:
        shm.destroy_shared_memory_region(handle)


def test_create_only_raises_if_region_exists(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 64)
    try:
        with pytest.raises(shm.SharedMemoryException, match=key.lstrip("/")) as info:
            shm.create_shared_memory_region("n", key, 64, create_only=True)
        assert "File exists" in str(info.value)
        assert info.value.errno == 17
        assert shm.mapped_shared_memory_regions() == [key]
    finally:
        shm.destroy_shared_memory_region(handle)


def test_attach_counts_handles_and_last_destroy_unlinks(make_key):
    key = make_key()
    first = shm.create_shared_memory_region("n", key, 64)
    second = shm.create_shared_memory_region("n", key, 64)
    shm.set_shared_memory_region(first, [np.arange(16, dtype=np.int32)])
    assert shm.get_contents_as_numpy(second, np.int32, [16]).tolist() == list(range(16))
    shm.destroy_shared_memory_region(first)
    assert shm_path(key).exists(), "region must live while another handle holds it"
    assert shm.mapped_shared_memory_regions() == [key]
    assert shm.get_contents_as_numpy(second, np.int32, [16]).tolist() == list(range(16))
    shm.destroy_shared_memory_region(second)
    assert not shm_path(key).exists()
    assert shm.mapped_shared_memory_regions() == []


def test_attach_to_smaller_region_warns_with_both_sizes(make_key):
    key = make_key()
    small = shm.create_shared_memory_region("n", key, 64)
    try:
        with pytest.warns(UserWarning, match=r"region size is 64 instead of requested 128"):
            bigger = shm.create_shared_memory_region("n", key, 128)
        assert bigger.byte_size == 64
        shm.destroy_shared_memory_region(bigger)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            same = shm.create_shared_memory_region("n", key, 32)  # smaller request: no warning
        shm.destroy_shared_memory_region(same)
    finally:
        shm.destroy_shared_memory_region(small)


def test_key_with_and_without_slash_name_same_object(make_key):
    key = make_key()
    with_slash = shm.create_shared_memory_region("n", key, 64)
    without = shm.create_shared_memory_region("n", key.lstrip("/"), 64)
    try:
        shm.set_shared_memory_region(with_slash, [np.array([7, 8], dtype=np.int64)])
        assert shm.get_contents_as_numpy(without, np.int64, [2]).tolist() == [7, 8]
        assert shm.mapped_shared_memory_regions() == [key], "one region, listed under the key first given"
    finally:
        shm.destroy_shared_memory_region(with_slash)
        shm.destroy_shared_memory_region(without)
    assert not shm_path(key).exists()


def _create_in_other_process(key, size):
    code = (
        "import _posixshmem, os, sys; fd = _posixshmem.shm_open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600);"
        "os.ftruncate(fd, int(sys.argv[2])); os.close(fd)"
    )
    subprocess.run([sys.executable, "-c", code, key, str(size)], check=True)


def test_attached_region_is_never_unlinked(make_key):
    key = make_key()
    _create_in_other_process(key, 256)
    handle = shm.create_shared_memory_region("n", key, 256)
    shm.destroy_shared_memory_region(handle)
    assert shm_path(key).exists(), "a region we only attached to belongs to its creator"
    assert shm.mapped_shared_memory_regions() == []
    shm_path(key).unlink()


def test_use_after_destroy_raises(region):
    shm.destroy_shared_memory_region(region)
    with pytest.raises(shm.SharedMemoryException, match="destroyed"):
        shm.set_shared_memory_region(region, [np.zeros(4, np.int8)])
    with pytest.raises(shm.SharedMemoryException, match="destroyed"):
        shm.get_contents_as_numpy(region, np.int8, [4])
    with pytest.raises(shm.SharedMemoryException, match="already destroyed"):
        shm.destroy_shared_memory_region(region)


def test_handle_made_directly_is_not_mapped():
    handle = shm.SharedMemoryRegion("name", "/not_mapped_key")
    for call in (
        lambda: shm.set_shared_memory_region(handle, [np.zeros(1)]),
        lambda: shm.get_contents_as_numpy(handle, np.float64, [1]),
        lambda: shm.destroy_shared_memory_region(handle),
    ):
        with pytest.raises(shm.SharedMemoryException, match="not mapped"):
            call()


def test_wrong_handle_type_raises_shared_memory_exception():
    for bad in (None, "key", 3, object()):
        expected = f"expected a SharedMemoryRegion from create_shared_memory_region, got {type(bad).__name__}"
        with pytest.raises(shm.SharedMemoryException) as info:
            shm.get_contents_as_numpy(bad, np.int8, [1])
        assert str(info.value) == f"unable to read the shared memory region: {expected}"
        with pytest.raises(shm.SharedMemoryException) as info:
            shm.destroy_shared_memory_region(bad)
        assert str(info.value) == f"unable to destroy the shared memory region: {expected}"


@pytest.mark.parametrize("bad_key", ["", "/", "a/b", "/a/b", "x" * 300, "nul\0char", ".."])
def test_invalid_key_raises_naming_the_problem(bad_key):
    with pytest.raises(shm.SharedMemoryException, match="invalid shared memory key"):
        shm.create_shared_memory_region("n", bad_key, 64)
    assert shm.mapped_shared_memory_regions() == []


def test_non_ascii_key_works(make_key):
    key = make_key("ключ_鍵")
    handle = shm.create_shared_memory_region("n", key, 64)
    assert shm_path(key).exists()
    shm.destroy_shared_memory_region(handle)


@pytest.mark.parametrize("bad_size", [-1, 2**64, "64", 1.5, None])
def test_invalid_byte_size_raises(make_key, bad_size):
    with pytest.raises(shm.SharedMemoryException, match="byte_size"):
        shm.create_shared_memory_region("n", make_key(), bad_size)


def test_bad_name_or_key_type_raises():
    with pytest.raises(shm.SharedMemoryException, match="triton_shm_name"):
        shm.create_shared_memory_region(None, "/k", 64)
    with pytest.raises(shm.SharedMemoryException, match="shm_key"):
        shm.create_shared_memory_region("n", b"/k", 64)


def test_zero_byte_region_can_be_created_and_destroyed(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 0)
    assert handle.byte_size == 0
    assert shm.get_contents_as_numpy(handle, np.float32, [0]).shape == (0,)
    with pytest.raises(shm.SharedMemoryException, match="do not fit"):
        shm.set_shared_memory_region(handle, [np.zeros(1, np.int8)])
    shm.destroy_shared_memory_region(handle)
    assert not shm_path(key).exists()


def test_failed_create_leaves_nothing_behind(make_key):
    key = make_key()
    # Larger than any file may be (off_t's largest is 2^63 - 1): refused once
    # the object is open, before it is sized or has its key.
    with pytest.raises(shm.SharedMemoryException) as info:
        shm.create_shared_memory_region("n", key, 2**63 + 5)
    assert str(info.value) == (
        f"unable to create the shared memory region '{key}': sizing it to 9223372036854775813 bytes: "
        "larger than the largest file size"
    )
    assert not shm_path(key).exists()
    assert shm.mapped_shared_memory_regions() == []


def test_dropped_handle_is_released_like_destroy(make_key):
    key = make_key()
    shm.create_shared_memory_region("n", key, 64)  # the handle is dropped at once
    gc.collect()
    assert shm.mapped_shared_memory_regions() == []
    assert not shm_path(key).exists()


def test_unlink_spares_an_object_recreated_under_our_key(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 64)
    shm_path(key).unlink()  # someone removes our name ...
    _create_in_other_process(key, 128)  # ... and creates their own object under it
    shm.destroy_shared_memory_region(handle)
    assert shm_path(key).stat().st_size == 128, "destroy must not remove another owner's object"
    shm_path(key).unlink()


def test_prefault_option_creates_usable_region(make_key):
    key = make_key()
    handle = shm.create_shared_memory_region("n", key, 1 << 20, prefault=True)
    shm.set_shared_memory_region(handle, [np.ones(1 << 18, np.float32)])
    assert shm.get_contents_as_numpy(handle, np.float32, [1 << 18]).sum() == 1 << 18
    shm.destroy_shared_memory_region(handle)


# Creates a 64 MiB region with prefault=True, through the seed API or as an
# arena region, and prints whether every page of the mapping it keeps (the one
# under its key) is mapped in, by one minor fault each (not two: the
# interpreter's own faults meanwhile are a handful). With "without
# MADV_POPULATE_WRITE", a seccomp filter first makes that madvise fail with
# EINVAL, as kernels before 5.14 do.
PREFAULT = """
import ctypes, mmap, os, platform, resource, struct, sys
import tritonshm as shm
from tritonshm import _core
key, made_by, kernel = sys.argv[1:]
if kernel == "without MADV_POPULATE_WRITE":
    arch, madvise = {"x86_64": (0xC000003E, 28), "aarch64": (0xC00000B7, 233)}[platform.machine()]
    LD, JEQ, RET = 0x20, 0x15, 0x06
    program = [  # seccomp_data: nr at 0, arch at 4, args[2] (its low half) at 32
        (LD, 0, 0, 4), (JEQ, 0, 5, arch), (LD, 0, 0, 0), (JEQ, 0, 3, madvise),
        (LD, 0, 0, 32), (JEQ, 0, 1, 23), (RET, 0, 0, 0x00050000 | 22), (RET, 0, 0, 0x7FFF0000),
    ]
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *f) for f in program))
    fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    probe = mmap.mmap(-1, 4096)
    address = ctypes.addressof(ctypes.c_char.from_buffer(probe))
    assert libc.madvise(ctypes.c_void_p(address), 4096, 23) == -1 and ctypes.get_errno() == 22
size = 64 << 20
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
if made_by == "create_shared_memory_region":
    handle = shm.create_shared_memory_region("p", key, size, create_only=True, prefault=True)
else:
    arena = _core.Arena(key[1:] + "_", size, 64, 0o600, True)  # its keys start with this prefix
    arena.add_region(size)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
resident, ours = 0, False
for line in open("/proc/self/smaps"):
    if "-" in line.split(" ")[0]:
        ours = "/dev/shm" + key in line
    elif ours and line.startswith("Rss:"):
        resident += int(line.split()[1]) * 1024
pages = size // mmap.PAGESIZE
print(resident == size, pages <= faults < pages + 256, (resident, faults, pages))
if made_by == "create_shared_memory_region":
    shm.destroy_shared_memory_region(handle)
else:
    arena.close()
"""


@pytest.mark.parametrize("made_by", ["create_shared_memory_region", "an arena region"])
@pytest.mark.parametrize("kernel", ["with MADV_POPULATE_WRITE", "without MADV_POPULATE_WRITE"])
def test_prefault_maps_in_each_page_of_the_mapping_in_use_once(made_by, kernel, make_key):
    """prefault=True faults the pages into the mapping the region keeps, once:
    not into a mapping that is then replaced (its key's descriptor is mapped
    over it), and not twice."""
    if kernel == "without MADV_POPULATE_WRITE" and platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"the seccomp filter knows the system call numbers of x86_64 and aarch64, not {platform.machine()}")
    key = make_key("prefault")
    result = subprocess.run([sys.executable, "-c", PREFAULT, key, made_by, kernel], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr[-2000:]
    assert result.stdout.startswith("True True "), result.stdout


def test_with_statement_destroys_the_region_on_exit(make_key):
    key = make_key()
    with shm.create_shared_memory_region("n", key, 64) as handle:
        shm.set_shared_memory_region(handle, [np.arange(4, dtype=np.int32)])
        assert shm_path(key).exists()
    assert not handle.live and not shm_path(key).exists()
    with pytest.raises(ZeroDivisionError):
        with shm.create_shared_memory_region("n", key, 64) as handle:
            raise ZeroDivisionError
    assert not shm_path(key).exists(), "destroyed on the way out of an exception too"
    with shm.create_shared_memory_region("n", key, 64) as handle:
        shm.destroy_shared_memory_region(handle)  # destroyed inside: the exit leaves it be

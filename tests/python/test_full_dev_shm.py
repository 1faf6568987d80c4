"""A /dev/shm too small for a region (Docker's default is 64 MiB): creation
reserves every page and raises, saying how much /dev/shm has and how to
raise it, and leaves nothing behind, where the reference dies of SIGBUS on
the first write. Each case runs in a private mount namespace with a 1 MiB
tmpfs on /dev/shm (`unshare -m`, root)."""

import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import can_unshare

PY = sys.executable


needs_mount_namespace = pytest.mark.skipif(
    not can_unshare(), reason="needs `unshare -m` (root): a private mount namespace with a 1 MiB /dev/shm"
)


def in_small_dev_shm(code, size="1M"):
    """Runs Python `code` in a private mount namespace whose /dev/shm is a `size` tmpfs."""
    script = f'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec {PY} -c "$0"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


@needs_mount_namespace
def test_full_dev_shm_raises_at_create_instead_of_sigbus():
    ours = in_small_dev_shm(
        """
        import os, tritonshm as shm
        try:
            shm.create_shared_memory_region("big", "/too_big", 4 << 20)
        except shm.SharedMemoryException as e:
            print("RAISED:", e)
            print("LEFT:", os.listdir("/dev/shm"))
        """
    )
    assert ours.returncode == 0, ours.stderr
    message = ours.stdout
    assert "RAISED: unable to create the shared memory region '/too_big': reserving 4194304 bytes" in message
    assert "bytes free of 1048576" in message and "--shm-size" in message and "No space left on device" in message
    assert "LEFT: []" in message, "a failed create leaves nothing behind"


@needs_mount_namespace
def test_prefault_without_reserve_on_a_full_dev_shm_raises_and_leaves_nothing():
    """reserve=False leaves the pages to be found at first touch; prefault
    touches them all at creation, under the guard: an exception, not SIGBUS."""
    ours = in_small_dev_shm(
        """
        import os, tritonshm as shm
        try:
            shm.create_shared_memory_region("big", "/no_room", 4 << 20, reserve=False, prefault=True)
        except shm.SharedMemoryException as e:
            print("RAISED:", e)
        print("LEFT:", os.listdir("/dev/shm"))
        """
    )
    assert (ours.returncode, ours.stderr) == (0, ""), (ours.returncode, ours.stderr)
    assert ours.stdout.splitlines() == [
        "RAISED: unable to create the shared memory region '/no_room': faulting its 4194304 bytes in (prefault): a "
        "page could not be backed (/dev/shm is full and the region was created without reserving its pages, or "
        "another process shrank it)",
        "LEFT: []",
    ]


@needs_mount_namespace
def test_reference_dies_of_sigbus_where_we_raise():
    reference = in_small_dev_shm(
        """
        import numpy as np, tritonclient.utils.shared_memory as ref
        h = ref.create_shared_memory_region("big", "/too_big", 4 << 20)   # succeeds: tmpfs is sparse
        ref.set_shared_memory_region(h, [np.ones(4 << 20, np.uint8)])      # first touch past 1 MiB
        print("survived")
        """
    )
    assert reference.returncode == -signal.SIGBUS, (reference.returncode, reference.stdout, reference.stderr)
    assert "survived" not in reference.stdout


@needs_mount_namespace
def test_regions_that_fit_still_work_in_small_dev_shm():
    result = in_small_dev_shm(
        """
        import numpy as np, tritonshm as shm
        h = shm.create_shared_memory_region("ok", "/fits", 512 << 10)
        shm.set_shared_memory_region(h, [np.ones(512 << 10, np.uint8)])
        assert shm.get_contents_as_numpy(h, np.uint8, [512 << 10]).sum() == 512 << 10
        try:
            shm.create_shared_memory_region("second", "/second", 768 << 10)   # only ~512 KiB left
        except shm.SharedMemoryException as e:
            print("RAISED", "free of" in str(e))
        shm.destroy_shared_memory_region(h)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "RAISED True" in result.stdout

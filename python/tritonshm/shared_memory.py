"""The API of ``tritonclient.utils.shared_memory``, over the C++ core.

``import tritonshm as shm`` (or ``import tritonshm.shared_memory as shm``)
replaces ``import tritonclient.utils.shared_memory as shm``. Each function is
one call into the binding: the checks and the messages live in C++, once.
"""

from __future__ import annotations

import warnings
from typing import Any, List, Sequence

import numpy.typing as npt

from . import _core
from ._core import SharedMemoryException
from ._core import get_contents as _get_contents  # a global: no attribute lookup per call on get's hot path
from ._core import set_region as _set_region

__all__ = [
    "SharedMemoryException",
    "SharedMemoryRegion",
    "attach_shared_memory_region",
    "create_shared_memory_region",
    "destroy_shared_memory_region",
    "get_contents_as_numpy",
    "mapped_shared_memory_regions",
    "set_shared_memory_region",
]


class SharedMemoryRegion(_core.RegionHandle):
    """A handle on a system shared memory region.

    Made by :func:`create_shared_memory_region`. A handle constructed directly
    is mapped to nothing, as in the reference: using it raises.
    """

    def __init__(self, triton_shm_name: str, shm_key: str) -> None:
        super().__init__(triton_shm_name, shm_key)

    def __enter__(self) -> "SharedMemoryRegion":
        """``with create_shared_memory_region(...) as handle:`` destroys it on exit (beyond the reference)."""
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            destroy_shared_memory_region(self)


def create_shared_memory_region(
    triton_shm_name: str,
    shm_key: str,
    byte_size: int,
    create_only: bool = False,
    *,
    mode: int = 0o600,
    prefault: bool = False,
    reserve: bool = True,
) -> SharedMemoryRegion:
    """Return a handle of the system shared memory region with the specified name and size.

    With ``create_only=False`` an existing region with this key is attached to
    (a warning names both sizes when it is smaller than ``byte_size``);
    ``create_only=True`` raises if it exists.

    Beyond the reference: ``mode`` sets the permission bits of a created region
    exactly (default 0o600, owner only); ``reserve`` allocates its pages at once
    so that a full /dev/shm raises here instead of killing the process with
    SIGBUS on write; ``prefault`` also maps every page in (once, into the
    mapping the handle keeps), so the first write runs at warm speed.

    Raises SharedMemoryException if unable to create the shared memory region.
    """
    region = SharedMemoryRegion(triton_shm_name, shm_key)
    _core.create(region, byte_size, create_only, mode, reserve, prefault)
    if byte_size > region.byte_size:
        warnings.warn(
            f"reusing shared memory region with key '{shm_key}', region size is {region.byte_size} "
            f"instead of requested {byte_size}",
            stacklevel=2,
        )
    return region


def set_shared_memory_region(
    shm_handle: SharedMemoryRegion, input_values: Sequence[npt.NDArray[Any]], offset: int = 0
) -> None:
    """Copy the contents of the numpy array into the system shared memory region.

    The arrays are copied in C order one after another from ``offset``. An
    ``np.object_`` array is an already serialized BYTES tensor (the output of
    serialize_byte_tensor). Every bound is checked first: a call that does not
    fit writes nothing. Copies of more than 256 KiB release the GIL.

    Raises SharedMemoryException if unable to mmap or set values in the system
    shared memory region.
    """
    _set_region(shm_handle, input_values, offset)


def get_contents_as_numpy(
    shm_handle: SharedMemoryRegion, datatype: Any, shape: Sequence[int], offset: int = 0
) -> npt.NDArray[Any]:
    """Generates a numpy array using the data stored in the system shared memory region specified with the handle.

    For a fixed-size ``datatype`` the result is a zero-copy, writable view of
    the region that keeps the memory mapped for as long as it lives, even past
    ``destroy_shared_memory_region``. For ``np.object_`` or ``np.bytes_`` the
    region holds a BYTES tensor, decoded into an object array of ``bytes``.
    """
    return _get_contents(shm_handle, datatype, shape, offset)


def attach_shared_memory_region(triton_shm_name: str, shm_key: str) -> SharedMemoryRegion:
    """Return a handle on an existing region; never creates one (beyond the reference).

    Raises SharedMemoryException (errno ENOENT) if no region has this key. A
    handle got this way never unlinks the region.
    """
    region = SharedMemoryRegion(triton_shm_name, shm_key)
    _core.attach(region)
    return region


def mapped_shared_memory_regions() -> List[str]:
    """Return all system shared memory regions that were mapped but not unmapped/destroyed."""
    return _core.mapped_keys()


def destroy_shared_memory_region(shm_handle: SharedMemoryRegion) -> None:
    """Release the handle, unlink a system shared memory region with the specified handle if it is the last managed handle.

    Only a region that this process created is unlinked (a child made by
    ``fork()`` releases its handles but never unlinks its parent's regions).
    Views returned by get_contents_as_numpy stay valid. A second destroy raises.
    """
    _core.destroy_region(shm_handle)

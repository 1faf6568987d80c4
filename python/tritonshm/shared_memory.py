"""The API of ``tritonclient.utils.shared_memory``, over the C++ core.

``import tritonshm as shm`` (or ``import tritonshm.shared_memory as shm``)
replaces ``import tritonclient.utils.shared_memory as shm``.
"""

from __future__ import annotations

import operator
import warnings
from typing import Any, List, Optional, Sequence

import numpy as np

from . import _core
from ._errors import SharedMemoryException

_core._set_exception_class(SharedMemoryException)

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

_UINT64_LIMIT = 1 << 64


class SharedMemoryRegion:
    """A handle on a system shared memory region.

    Made by :func:`create_shared_memory_region`. A handle constructed directly
    is mapped to nothing, as in the reference: using it raises.
    """

    __slots__ = ("_triton_shm_name", "_shm_key", "_handle")

    def __init__(self, triton_shm_name: str, shm_key: str) -> None:
        self._triton_shm_name = triton_shm_name
        self._shm_key = shm_key
        self._handle: Optional[_core.Handle] = None

    @property
    def triton_shm_name(self) -> str:
        """The name the server knows the region by."""
        return self._triton_shm_name

    @property
    def shm_key(self) -> str:
        """The key of the shared memory object, as given."""
        return self._shm_key

    @property
    def byte_size(self) -> int:
        """The size of the region as mapped by this process."""
        return _live(self).byte_size

    def __repr__(self) -> str:
        state = "live" if self._handle is not None and self._handle.live else "not mapped"
        return f"SharedMemoryRegion({self._triton_shm_name!r}, {self._shm_key!r}, {state})"


def _live(shm_handle: Any) -> _core.Handle:
    try:
        handle = shm_handle._handle
    except AttributeError:
        raise SharedMemoryException(
            f"expected a SharedMemoryRegion from create_shared_memory_region, got {type(shm_handle).__name__}"
        ) from None
    if handle is None:
        raise SharedMemoryException(
            f"shared memory handle '{shm_handle._triton_shm_name}' (key '{shm_handle._shm_key}') is not mapped: "
            "make handles with create_shared_memory_region"
        )
    return handle


def _unsigned(value: Any, what: str, key: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise SharedMemoryException(
            f"{what} for shared memory region '{key}' must be an integer, got {type(value).__name__}"
        ) from None
    if number < 0 or number >= _UINT64_LIMIT:
        raise SharedMemoryException(f"{what} {number} for shared memory region '{key}' is out of range [0, 2**64)")
    return number


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
    SIGBUS on write; ``prefault`` also maps every page in now, so the first
    write runs at warm speed.

    Raises SharedMemoryException if unable to create the shared memory region.
    """
    if not isinstance(triton_shm_name, str):
        raise SharedMemoryException(f"triton_shm_name must be a str, got {type(triton_shm_name).__name__}")
    if not isinstance(shm_key, str):
        raise SharedMemoryException(f"shm_key must be a str, got {type(shm_key).__name__}")
    size = _unsigned(byte_size, "byte_size", shm_key)
    file_mode = _unsigned(mode, "mode", shm_key)
    if file_mode > 0o7777:
        raise SharedMemoryException(f"mode {oct(file_mode)} for shared memory region '{shm_key}' is not a permission mode")
    handle = _core.create(triton_shm_name, shm_key, size, bool(create_only), file_mode, bool(reserve), bool(prefault))
    region = SharedMemoryRegion(triton_shm_name, shm_key)
    region._handle = handle
    if size > handle.byte_size:
        warnings.warn(
            f"reusing shared memory region with key '{shm_key}', region size is {handle.byte_size} "
            f"instead of requested {size}",
            stacklevel=2,
        )
    return region


def set_shared_memory_region(shm_handle: SharedMemoryRegion, input_values: Sequence[np.ndarray], offset: int = 0) -> None:
    """Copy the contents of the numpy array into the system shared memory region.

    The arrays are copied in C order one after another from ``offset``. An
    ``np.object_`` array is an already serialized BYTES tensor (the output of
    serialize_byte_tensor). Every bound is checked first: a call that does not
    fit writes nothing. Copies of more than 256 KiB release the GIL.

    Raises SharedMemoryException if unable to mmap or set values in the system
    shared memory region.
    """
    _core.set_region(shm_handle, input_values, offset)


def get_contents_as_numpy(shm_handle: SharedMemoryRegion, datatype: Any, shape: Sequence[int], offset: int = 0) -> np.ndarray:
    """Generates a numpy array using the data stored in the system shared memory region specified with the handle.

    For a fixed-size ``datatype`` the result is a zero-copy, writable view of
    the region that keeps the memory mapped for as long as it lives, even past
    ``destroy_shared_memory_region``. For ``np.object_`` or ``np.bytes_`` the
    region holds a BYTES tensor, decoded into an object array of ``bytes``.
    """
    return _core.get_contents(shm_handle, datatype, shape, offset)


def attach_shared_memory_region(triton_shm_name: str, shm_key: str) -> SharedMemoryRegion:
    """Return a handle on an existing region; never creates one (beyond the reference).

    Raises SharedMemoryException (errno ENOENT) if no region has this key. A
    handle got this way never unlinks the region.
    """
    if not isinstance(triton_shm_name, str) or not isinstance(shm_key, str):
        raise SharedMemoryException("triton_shm_name and shm_key must be str")
    region = SharedMemoryRegion(triton_shm_name, shm_key)
    region._handle = _core.attach(triton_shm_name, shm_key)
    return region


def mapped_shared_memory_regions() -> List[str]:
    """Return all system shared memory regions that were mapped but not unmapped/destroyed."""
    return _core.mapped_keys()


def destroy_shared_memory_region(shm_handle: SharedMemoryRegion) -> None:
    """Release the handle, unlink a system shared memory region with the specified handle if it is the last managed handle.

    Only a region that this process created is unlinked. Views returned by
    get_contents_as_numpy stay valid. A second destroy raises.
    """
    _core.destroy_region(shm_handle)

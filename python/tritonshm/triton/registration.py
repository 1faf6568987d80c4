"""Registering a region made with create_shared_memory_region, with the
server's refusals explained."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..shared_memory import SharedMemoryRegion
from .refusals import server_refusal

__all__ = ["register"]


def register(
    client: Any,
    shm_handle: SharedMemoryRegion,
    *,
    byte_size: Optional[int] = None,
    offset: int = 0,
    headers: Optional[Dict[str, str]] = None,
) -> str:
    """Registers the region of ``shm_handle`` with the server under its
    ``triton_shm_name`` (``byte_size`` defaults to the whole region) and returns
    the name. A refusal raises a SharedMemoryException that says why and how
    to fix it (IPC namespaces, --allow-client-shm, access tokens, sizes)."""
    size = shm_handle.byte_size - offset if byte_size is None else byte_size
    name, key = shm_handle.triton_shm_name, shm_handle.shm_key
    try:
        client.register_system_shared_memory(name, key, size, offset=offset, headers=headers)
    except Exception as error:
        raise server_refusal(
            error,
            f"unable to register shared memory region '{name}' (key '{key}', {size} bytes at offset {offset})",
            key=key,
            region_size=shm_handle.byte_size,
            registered_size=offset + size,
        ) from error
    return str(name)

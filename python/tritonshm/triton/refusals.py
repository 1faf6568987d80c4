"""Server refusals turned into messages that say what is wrong and how to fix it.

Triton's own messages for shared memory are terse and, for the most common
failure, misleading: "Unable to open shared memory region" is almost always a
client and server in different IPC namespaces, not a missing region. Each
explanation starts with the server's words and adds what we found and the fix.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple

from .._core import SharedMemoryException, shm_directory

__all__ = ["explain", "in_use", "missing_region", "needed_output_size", "server_refusal"]


_OUTPUT_TOO_SMALL = re.compile(r"output '([^']*)' \((\d+) bytes\) should be at least (\d+) bytes")
_REGION_NOT_FOUND = re.compile(r"unable to find shared memory region: '([^']*)'", re.IGNORECASE)


def _exists_here(key: str) -> bool:
    return os.path.exists(shm_directory() + "/" + key.lstrip("/"))


def explain(
    error: BaseException,
    *,
    key: Optional[str] = None,
    region_size: Optional[int] = None,
    registered_size: Optional[int] = None,
) -> Optional[str]:
    """The explanation of a server's refusal, or None if it is not one we know.

    `key`, `region_size` and `registered_size` describe the region the failed
    call was about, when there was one."""
    text = str(error)
    lowered = text.lower()
    if "unable to open shared memory region" in lowered:
        quoted = re.search(r"region: '([^']*)'", text)
        missing = key or (quoted.group(1) if quoted else None)
        if missing and _exists_here(missing):
            return (
                f"the server cannot open shared memory key '{missing}', which exists on this host: the client and "
                "the server are in different IPC namespaces (a container started without --ipc=host). Start the "
                "server's container with --ipc=host, or mount the same /dev/shm into both (a shared volume)."
            )
        return (
            f"the server cannot open shared memory key '{missing}', and it does not exist on this host either: "
            "create the region before registering it, and check that the key is spelled the same."
        )
    if "unable to find shared memory region" in lowered:
        name = missing_region(error)
        return (
            f"the server has no registration named '{name}': it restarted, or a client unregistered it "
            "(an unregister-all, as perf_analyzer does when it starts). Register the region again; "
            "SharedMemoryPool does that by itself for its own regions."
        )
    if "client shared memory is disabled" in lowered or "allow-client-shm" in lowered:
        return (
            "the server refuses client shared memory: start tritonserver with --allow-client-shm=true "
            "(off by default since Triton 2.69)."
        )
    if "403" in text or "is restricted" in lowered or "access-token" in lowered:
        expected = re.search(r"expecting header '([^']+)'", text)
        header = expected.group(1) if expected else "triton-access-token"
        return (
            "the server puts its shared-memory API behind an access token (PyTriton and hardened servers do): "
            f"pass it, e.g. headers={{'{header}': TOKEN}} to the pool, or open the 'shared-memory' endpoint "
            "(tritonserver --http-restricted-api / --grpc-restricted-protocol)."
        )
    if "invalid args" in lowered and ("register" in lowered or registered_size is not None):
        sizes = ""
        if region_size is not None and registered_size is not None:
            sizes = f" (the region holds {region_size} bytes, the registration asked for {registered_size})"
        return (
            f"the server refused the registration: the region is smaller than the registration{sizes}, or the "
            "offset is not a multiple of the page size."
        )
    match = _OUTPUT_TOO_SMALL.search(text)
    if match:
        name, given, needed = match.group(1), int(match.group(2)), int(match.group(3))
        return (
            f"the output slot for '{name}' holds {given} bytes and the result needs {needed}: give "
            f"output_sizes={{'{name}': {needed}}} (or more), or let the output come back in the response."
        )
    if "already in manager" in lowered:
        return (
            "a region of this name is already registered with the server (by this or another client): names "
            "must be unique per server; the pool makes its own unique ones."
        )
    return None


def needed_output_size(error: BaseException) -> Optional[Tuple[str, int]]:
    """(output name, bytes it needed) when the server refused an output slot as too small."""
    match = _OUTPUT_TOO_SMALL.search(str(error))
    return (match.group(1), int(match.group(3))) if match else None


def missing_region(error: BaseException) -> Optional[str]:
    """The registered name the server could not find (it restarted, or a
    client unregistered it), or None if the error is not that."""
    match = _REGION_NOT_FOUND.search(str(error))
    return match.group(1) if match else None


def in_use(error: BaseException) -> bool:
    """Whether the server refused to unregister a region because a request
    still uses it (Triton 2.51-2.52; later servers defer the removal)."""
    return "currently in use" in str(error)


def server_refusal(error: BaseException, what: str, **context: object) -> BaseException:
    """A SharedMemoryException for a server's refusal: `what` we tried, the
    server's words, and our explanation when we have one. Anything else is
    returned as it is."""
    explanation = explain(error, **context)  # type: ignore[arg-type]
    if explanation is None:
        return error
    return SharedMemoryException(f"{what}: the server said: {error}; {explanation}")

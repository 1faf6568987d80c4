"""A pool's configuration: every argument checked once, by name, before any
of them reaches C++ or a server, then frozen."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional

from .._core import SharedMemoryException

__all__ = ["DEFAULT_INLINE_THRESHOLD", "DEFAULT_PREFIX", "PoolConfig", "refuse"]

DEFAULT_PREFIX = "tritonshm"
# Tensors below this many bytes travel inline in the request or the response:
# there the server's per-request shared-memory work costs more than the copy
# through the socket saves. Measured with `python -m benchmarks --only inline`
# (docs: "Which tensors go through shared memory").
DEFAULT_INLINE_THRESHOLD = 64 << 10

# Names travel in HTTP paths (/v2/systemsharedmemory/region/<name>/register):
# anything else is percent-encoded there and the server keeps the encoded name.
_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]+")
# NAME_MAX (255) less what the arena adds: "_<pid>_<8 hex>_<n>".
_PREFIX_LIMIT = 200
_UINT64_MAX = (1 << 64) - 1
# A huge page: no lease needs to start at a coarser boundary.
_ALIGNMENT_LIMIT = 2 << 20


def refuse(argument: str, value: Any, rule: str) -> SharedMemoryException:
    """The error for an argument that breaks its rule, naming both."""
    return SharedMemoryException(f"unable to lease shared memory: {argument} must be {rule}, got {value!r}")


def _size(argument: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise refuse(argument, value, f"an int from {low} to {high}")
    return int(value)


@dataclass(frozen=True)
class PoolConfig:
    """What a pool was asked for, valid by construction (use `make`)."""

    capacity: int  # the first region's size
    max_capacity: int  # the most bytes all regions may hold together
    region_size: int  # the size of a region added when none has room
    prefix: str  # of the regions' keys and names
    alignment: int  # every lease starts at a multiple of this
    headers: Optional[Mapping[str, str]]  # sent with the pool's own calls
    mode: int  # permission bits of the regions
    prefault: bool  # map every page of a new region at once
    inline_threshold: int  # tensors below this many bytes travel inline

    @classmethod
    def make(
        cls,
        capacity: Any,
        *,
        max_capacity: Any = None,
        region_size: Any = None,
        prefix: Any = DEFAULT_PREFIX,
        alignment: Any = 64,
        headers: Optional[Mapping[str, str]] = None,
        mode: Any = 0o600,
        prefault: Any = False,
        inline_threshold: Any = None,
    ) -> "PoolConfig":
        capacity = _size("capacity", capacity, 1, _UINT64_MAX)
        if max_capacity is None:
            max_capacity = min(max(4 * capacity, capacity), _UINT64_MAX)
        max_capacity = _size("max_capacity", max_capacity, capacity, _UINT64_MAX)
        region_size = _size("region_size", capacity if region_size is None else region_size, 1, max_capacity)
        if (
            isinstance(alignment, bool)
            or not isinstance(alignment, int)
            or not 0 < alignment <= _ALIGNMENT_LIMIT
            or alignment & (alignment - 1)
        ):
            raise refuse("alignment", alignment, f"a power of two from 1 to {_ALIGNMENT_LIMIT}")
        mode = _size("mode", mode, 0, 0o7777)
        if not isinstance(prefix, str) or not _NAME_CHARACTERS.fullmatch(prefix) or len(prefix) > _PREFIX_LIMIT:
            raise refuse(
                "prefix",
                prefix,
                f"1 to {_PREFIX_LIMIT} ASCII letters, digits, '_', '-' or '.' (the server's HTTP API "
                "percent-encodes anything else in a region's name and then cannot find it)",
            )
        if headers is not None and not isinstance(headers, Mapping):
            raise refuse("headers", headers, "a dict of header names to values")
        threshold = _size(
            "inline_threshold",
            DEFAULT_INLINE_THRESHOLD if inline_threshold is None else inline_threshold,
            0,
            _UINT64_MAX,
        )
        return cls(
            capacity=capacity,
            max_capacity=max_capacity,
            region_size=region_size,
            prefix=prefix,
            alignment=int(alignment),
            headers=MappingProxyType(dict(headers)) if headers else None,
            mode=mode,
            prefault=bool(prefault),
            inline_threshold=threshold,
        )

    def growth_for(self, nbytes: int) -> int:
        """The size of the region to add so that a lease of nbytes fits."""
        return max(self.region_size, align(nbytes, self.alignment))

    def call_headers(self) -> Optional[dict]:  # type: ignore[type-arg]
        """The headers for one client call (tritonclient wants a dict it may change)."""
        return dict(self.headers) if self.headers else None


def align(n: int, alignment: int) -> int:
    """n rounded up to a multiple of alignment."""
    return (n + alignment - 1) // alignment * alignment

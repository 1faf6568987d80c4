"""Everything a pool holds, shared by the sync and the async pool: the arena,
the names it registered, model configurations, learned output sizes, counters
and the process that owns it. The steps that use it are in request_flow.py."""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Dict, List, Optional, Set, Tuple

from .. import _core
from .._core import SharedMemoryException
from .learned_outputs import LearnedOutputs
from .request import ModelOutputs, align, client_module

__all__ = ["DEFAULT_INLINE_THRESHOLD", "DEFAULT_PREFIX", "PoolState"]

DEFAULT_PREFIX = "tritonshm"
# Tensors below this many bytes travel inline in the request or the response:
# there the server's per-request shared-memory work costs more than the copy
# through the socket saves. Measured with `python -m benchmarks --only inline`
# (README, "Which tensors go through shared memory").
DEFAULT_INLINE_THRESHOLD = 64 << 10

# Names travel in HTTP paths (/v2/systemsharedmemory/region/<name>/register):
# anything else is percent-encoded there and the server keeps the encoded name.
_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]+")
# NAME_MAX (255) less what the arena adds: "_<pid>_<8 hex>_<n>".
_PREFIX_LIMIT = 200
_UINT64_MAX = (1 << 64) - 1
# A huge page: no lease needs to start at a coarser boundary.
_ALIGNMENT_LIMIT = 2 << 20

_COUNTERS = (
    "requests",
    "inputs_in_shm",
    "inputs_inline",
    "outputs_in_shm",
    "outputs_inline",
    "retries",
    "inline_fallbacks",
)


def _refuse(argument: str, value: Any, rule: str) -> SharedMemoryException:
    return SharedMemoryException(f"unable to lease shared memory: {argument} must be {rule}, got {value!r}")


def _size_argument(argument: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(argument, value, f"an int from {low} to {high}")
    return int(value)


class PoolState:
    """State without a client call in it: request_flow's steps make the calls."""

    def __init__(
        self,
        client: Any,
        capacity: int,
        max_capacity: Optional[int],
        region_size: Optional[int],
        prefix: str,
        alignment: int,
        headers: Optional[Dict[str, str]],
        mode: int,
        prefault: bool,
        inline_threshold: Optional[int],
        aio: bool,
    ) -> None:
        # Every argument is checked here, naming it, before any of them reaches C++.
        capacity = _size_argument("capacity", capacity, 1, _UINT64_MAX)
        if max_capacity is None:
            max_capacity = min(max(4 * capacity, capacity), _UINT64_MAX)
        self.max_capacity = _size_argument("max_capacity", max_capacity, capacity, _UINT64_MAX)
        self.region_size = _size_argument(
            "region_size", capacity if region_size is None else region_size, 1, self.max_capacity
        )
        if (
            isinstance(alignment, bool)
            or not isinstance(alignment, int)
            or not 0 < alignment <= _ALIGNMENT_LIMIT
            or alignment & (alignment - 1)
        ):
            raise _refuse("alignment", alignment, f"a power of two from 1 to {_ALIGNMENT_LIMIT}")
        _size_argument("mode", mode, 0, 0o7777)
        if not isinstance(prefix, str) or not _NAME_CHARACTERS.fullmatch(prefix) or len(prefix) > _PREFIX_LIMIT:
            raise _refuse(
                "prefix",
                prefix,
                f"1 to {_PREFIX_LIMIT} ASCII letters, digits, '_', '-' or '.' (the server's HTTP API "
                "percent-encodes anything else in a region's name and then cannot find it)",
            )
        if inline_threshold is None:
            inline_threshold = DEFAULT_INLINE_THRESHOLD
        self.inline_threshold = _size_argument("inline_threshold", inline_threshold, 0, _UINT64_MAX)
        self.aio = aio
        self.client = client
        self.module, self.protocol = client_module(client)
        self.check_client(client, "client")
        self.initial_capacity = capacity
        self.arena = _core.Arena(prefix, self.max_capacity, alignment, mode, prefault)
        self.headers = dict(headers) if headers else None
        self.owner_pid = os.getpid()
        self.registered: List[str] = []  # names this pool registered, and only those
        # Names whose registration was sent but not seen through (a cancelled
        # task, an interrupt): the server may have them, so close() unregisters them too.
        self.registering: Set[str] = set()
        self.models: Dict[Tuple[str, str], Optional[ModelOutputs]] = {}
        self.learned = LearnedOutputs()
        # `lock` guards the bookkeeping above (held for microseconds); `grow_lock`
        # serializes growth and healing, which wait for the server.
        self.lock = threading.Lock()
        self.grow_lock = threading.Lock()
        self.registrations = 0  # bumped by each healing: a request knows whether one happened since it began
        self.reregistrations = 0
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.closed = False

    # -- rules -------------------------------------------------------------

    def owned_here(self) -> bool:
        """False in a child forked from the process that made the pool."""
        return os.getpid() == self.owner_pid

    def check_usable(self) -> None:
        if not self.owned_here():
            raise SharedMemoryException(
                f"unable to lease shared memory: this pool belongs to process {self.owner_pid}, which created it; "
                f"this is a forked child (pid {os.getpid()}). Create a pool (and a client) in the child: the "
                "parent's regions, registrations and locks stay the parent's."
            )
        if self.closed:
            raise SharedMemoryException("unable to lease shared memory: the pool is closed")

    def check_client(self, client: Any, argument: str) -> None:
        """A client of the pool's protocol and kind (asyncio or not)."""
        _, protocol = client_module(client)
        aio = ".aio" in type(client).__module__
        if protocol != self.protocol or aio != self.aio:
            wanted = f"tritonclient.{self.protocol}{'.aio' if self.aio else ''}"
            raise SharedMemoryException(
                f"unable to lease shared memory: {argument} must be a {wanted} client (the pool's protocol and "
                f"kind), got {type(client).__module__}.{type(client).__name__}"
            )

    def growth_for(self, nbytes: int) -> int:
        """The size of the region to add so that a lease of nbytes fits."""
        return max(self.region_size, align(nbytes, int(self.arena.alignment)))

    @staticmethod
    def needs_config(outputs: Optional[Any], output_sizes: Dict[str, int]) -> bool:
        """Whether the model's configuration can tell more about the outputs."""
        return outputs is None or any(name not in output_sizes for name in outputs)

    def config_call(self, client: Any, model_name: str, model_version: str) -> Tuple[Any, Dict[str, Any]]:
        kwargs: Dict[str, Any] = {"model_version": model_version, "headers": self.headers}
        if self.protocol == "grpc":
            kwargs["as_json"] = True
        return client.get_model_config, kwargs

    # -- bookkeeping ---------------------------------------------------------

    def registering_begins(self, name: str) -> None:
        with self.lock:
            self.registering.add(name)

    def registering_failed(self, name: str) -> None:
        with self.lock:
            self.registering.discard(name)

    def commit(self, name: str) -> bool:
        """Makes a registered region leasable; False if the pool closed while
        its registration was in flight (the caller then unregisters it)."""
        with self.lock:
            self.registering.discard(name)
            if self.closed:
                return False
            self.arena.commit_region(name)
            self.registered.append(name)
            return True

    def forget(self, name: str) -> None:
        """A region the pool removed and unregisters now (to make room)."""
        with self.lock:
            if name in self.registered:
                self.registered.remove(name)

    def registered_here(self, name: Optional[str]) -> bool:
        """Whether `name` is one of this pool's registrations."""
        with self.lock:
            return name is not None and name in self.registered

    def close_names(self) -> List[str]:
        """Marks the pool closed and hands over the names to unregister (once)."""
        with self.lock:
            self.closed = True
            names, self.registered = self.registered + sorted(self.registering), []
            self.registering = set()
            return names

    def count(self, **added: int) -> None:
        with self.lock:
            for name, n in added.items():
                self.counts[name] += n

    def stats(self) -> Dict[str, int]:
        arena = self.arena
        with self.lock:
            counts = dict(self.counts)
            counts["reregistrations"] = self.reregistrations
        counts.update(
            regions=int(arena.region_count),
            capacity_bytes=int(arena.capacity),
            leased_bytes=int(arena.leased_bytes),
            high_water_bytes=int(arena.high_water_bytes),
            learned_signatures=len(self.learned),
            inline_threshold=self.inline_threshold,
        )
        return counts

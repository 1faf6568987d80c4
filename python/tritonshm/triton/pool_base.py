"""What the sync and the async pool have in common: their arguments, and what
they report about themselves."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .pool_state import DEFAULT_PREFIX, PoolState

__all__ = ["PoolBase"]


class PoolBase:
    """The arguments of both pools, defined once. See SharedMemoryPool."""

    _aio = False  # whether the pool's client calls are awaited

    def __init__(
        self,
        client: Any,
        capacity: int,
        *,
        max_capacity: Optional[int] = None,
        region_size: Optional[int] = None,
        prefix: str = DEFAULT_PREFIX,
        alignment: int = 64,
        headers: Optional[Dict[str, str]] = None,
        mode: int = 0o600,
        prefault: bool = False,
        inline_threshold: Optional[int] = None,
    ) -> None:
        self._state = PoolState(
            client,
            capacity,
            max_capacity,
            region_size,
            prefix,
            alignment,
            headers,
            mode,
            prefault,
            inline_threshold,
            self._aio,
        )
        self._start()

    def _start(self) -> None:
        """What a pool does once its state exists (the sync pool registers its first region)."""

    @property
    def capacity(self) -> int:
        """Bytes in all of the pool's regions."""
        return int(self._state.arena.capacity)

    @property
    def leased_bytes(self) -> int:
        return int(self._state.arena.leased_bytes)

    @property
    def lease_count(self) -> int:
        return int(self._state.arena.lease_count)

    @property
    def region_names(self) -> List[str]:
        """The names this pool registered with the server."""
        with self._state.lock:
            return list(self._state.registered)

    @property
    def inline_threshold(self) -> int:
        """Tensors below this many bytes travel inline in the request or response."""
        return self._state.inline_threshold

    @property
    def closed(self) -> bool:
        return self._state.closed

    def stats(self) -> Dict[str, int]:
        """Counters for a metrics library: requests; inputs_in_shm, inputs_inline,
        outputs_in_shm, outputs_inline (tensors by the way they travelled);
        retries (requests run again); inline_fallbacks (requests sent inline
        because the pool was at max_capacity); reregistrations (times the pool
        registered its regions again after the server forgot them); regions,
        capacity_bytes, leased_bytes, high_water_bytes (the most ever leased at
        once); learned_signatures; inline_threshold."""
        return self._state.stats()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.leased_bytes} of {self.capacity} bytes leased"
        return f"{type(self).__name__}({len(self.region_names)} region(s), {state})"

"""What the sync and the async pool have in common: their arguments, and what
they report about themselves."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy.typing as npt

from .config import DEFAULT_PREFIX, PoolConfig
from .pool_state import PoolState
from .request import InferRequest, from_arrays

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
        config = PoolConfig.make(
            capacity,
            max_capacity=max_capacity,
            region_size=region_size,
            prefix=prefix,
            alignment=alignment,
            headers=headers,
            mode=mode,
            prefault=prefault,
            inline_threshold=inline_threshold,
        )
        self._state = PoolState(client, config, self._aio)
        self._start()

    def _start(self) -> None:
        """What a pool does once its state exists (the sync pool registers its first region)."""

    def _request(
        self,
        model_name: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Optional[Sequence[Any]],
        copy: bool,
        output_sizes: Optional[Mapping[str, int]],
        model_version: str,
        retry: bool,
        kwargs: Dict[str, Any],
    ) -> InferRequest:
        return from_arrays(
            self._state.adapter, model_name, inputs, outputs, output_sizes, copy, model_version, retry, kwargs
        )

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
        ledger = self._state.ledger
        with ledger.lock:
            return list(ledger.registered)

    @property
    def inline_threshold(self) -> int:
        """Tensors below this many bytes travel inline in the request or response."""
        return self._state.config.inline_threshold

    @property
    def closed(self) -> bool:
        return self._state.closed

    def stats(self) -> Dict[str, int]:
        """Counters for a metrics library: requests; inputs_in_shm, inputs_inline,
        outputs_in_shm, outputs_inline (tensors by the way they travelled);
        outputs_predicted (slots sized from other shapes of the request);
        retries (requests run again), of which retries_output_size (a slot
        was too small) and retries_missing_region (the server had forgotten
        the pool's registrations); inline_fallbacks (requests sent inline
        because the pool was at max_capacity); abandoned (requests given up on
        while at the server: their regions retired); reregistrations (times
        the pool registered its regions again); regions, capacity_bytes,
        leased_bytes, high_water_bytes (the most ever leased at once);
        learned_signatures; inline_threshold."""
        return self._state.stats()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.leased_bytes} of {self.capacity} bytes leased"
        return f"{type(self).__name__}({len(self.region_names)} region(s), {state})"

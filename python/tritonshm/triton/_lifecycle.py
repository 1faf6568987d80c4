"""What the sync and async pools share: the arena, the names they registered,
model configurations, and the rules for growing and closing."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple

from .. import _core
from .._core import SharedMemoryException
from .request import ModelOutputs, client_module

DEFAULT_PREFIX = "tritonshm"


class PoolCore:
    """State without a client call in it: each pool makes the calls (sync or awaited)."""

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
    ) -> None:
        if not isinstance(capacity, int) or capacity <= 0:
            raise SharedMemoryException(
                f"unable to lease shared memory: capacity must be a positive int, got {capacity!r}"
            )
        self.client = client
        self.module, self.protocol = client_module(client)
        self.region_size = region_size or capacity
        self.max_capacity = max_capacity if max_capacity is not None else max(4 * capacity, capacity)
        if self.max_capacity < capacity:
            raise SharedMemoryException(
                f"unable to lease shared memory: max_capacity {self.max_capacity} is below capacity {capacity}"
            )
        self.arena = _core.Arena(prefix, self.max_capacity, alignment, mode, prefault)
        self.headers = dict(headers) if headers else None
        self.registered: List[str] = []  # names this pool registered, and only those
        self.models: Dict[Tuple[str, str], Optional[ModelOutputs]] = {}
        self.grow_lock = threading.Lock()
        self.closed = False

    def growth_for(self, nbytes: int) -> int:
        """The size of the region to add so that a lease of nbytes fits."""
        alignment = self.arena.alignment
        needed = (nbytes + alignment - 1) // alignment * alignment
        return max(self.region_size, needed)

    def config_call(self, model_name: str, model_version: str) -> Tuple[Any, Dict[str, Any]]:
        kwargs: Dict[str, Any] = {"model_version": model_version, "headers": self.headers}
        if self.protocol == "grpc":
            kwargs["as_json"] = True
        return self.client.get_model_config, kwargs


def close_quietly(client: Any, arena: Any, registered: List[str], headers: Optional[Dict[str, str]]) -> None:
    """Unregisters this pool's names (never the server's other regions) and
    destroys its regions. Errors are swallowed: this runs at collection and
    interpreter exit too, when the server may be gone."""
    for name in registered:
        try:
            client.unregister_system_shared_memory(name, headers=headers)
        except Exception:  # noqa: BLE001 - the server may be gone; the regions go anyway
            pass
    registered.clear()
    arena.close()

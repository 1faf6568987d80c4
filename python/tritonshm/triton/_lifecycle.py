"""What the sync and async pools share: the arena, the names they registered,
model configurations, and the rules for growing and closing."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import _core
from .._core import SharedMemoryException
from .refusals import server_refusal
from .request import ModelOutputs, RequestPlan, align, client_module

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
        return max(self.region_size, align(nbytes, self.arena.alignment))

    def plan(
        self,
        inputs: Mapping[str, Any],
        outputs: Optional[Sequence[str]],
        model: Optional[ModelOutputs],
        output_sizes: Mapping[str, int],
    ) -> RequestPlan:
        return RequestPlan.make(inputs, outputs, model, output_sizes, self.arena.alignment)

    @staticmethod
    def needs_config(outputs: Optional[Sequence[str]], output_sizes: Mapping[str, int]) -> bool:
        """Whether the model's configuration is needed to place the outputs."""
        return outputs is None or any(name not in output_sizes for name in outputs)

    def infer_arguments(self, plan: RequestPlan, lease: Any, model_version: str) -> Dict[str, Any]:
        """The client's infer arguments for a request laid out in `lease` (after the model name)."""
        return {
            "inputs": plan.infer_inputs(self.module, lease),
            "outputs": plan.requested_outputs(self.module, self.protocol, lease),
            "model_version": model_version,
        }

    @staticmethod
    def inference_refusal(error: Exception, model_name: str) -> BaseException:
        return server_refusal(error, f"inference of model '{model_name}' through shared memory failed")

    def registration_refusal(self, error: Exception, name: str, key: str, byte_size: int) -> BaseException:
        """Explained while the region still exists (whether it does is the clue),
        then the region is removed."""
        refusal = server_refusal(
            error,
            f"unable to register shared memory region '{name}' (key '{key}', {byte_size} bytes)",
            key=key,
            region_size=byte_size,
            registered_size=byte_size,
        )
        self.arena.remove_region(name)
        return refusal

    def config_call(self, model_name: str, model_version: str) -> Tuple[Any, Dict[str, Any]]:
        kwargs: Dict[str, Any] = {"model_version": model_version, "headers": self.headers}
        if self.protocol == "grpc":
            kwargs["as_json"] = True
        return self.client.get_model_config, kwargs


class PoolState:
    """What both pools report about themselves (their state is in `_core`)."""

    _core: PoolCore

    @property
    def capacity(self) -> int:
        """Bytes in all of the pool's regions."""
        return int(self._core.arena.capacity)

    @property
    def leased_bytes(self) -> int:
        return int(self._core.arena.leased_bytes)

    @property
    def lease_count(self) -> int:
        return int(self._core.arena.lease_count)

    @property
    def region_names(self) -> List[str]:
        """The names this pool registered with the server."""
        return list(self._core.registered)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.leased_bytes} of {self.capacity} bytes leased"
        return f"{type(self).__name__}({len(self._core.registered)} region(s), {state})"


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

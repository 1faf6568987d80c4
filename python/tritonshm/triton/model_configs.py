"""What models' configurations say of their outputs, as a pool caches it:
bounded (least recently used first out), a failure to get one retried after a
while, and an entry dropped when the server names an output size its
configuration did not foresee (the model may have been reloaded)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .. import _core

__all__ = ["ModelConfigs", "ModelOutputs", "parse_model_config"]

# Bytes per element of each fixed-size Triton data type (BYTES has none).
_ELEMENT_SIZE = {name: size for name, _, size in _core.data_types()}

Key = Tuple[str, str]  # (model name, version)


@dataclass(frozen=True)
class ModelOutputs:
    """What a model's configuration says of its outputs."""

    max_batch_size: int
    outputs: Tuple[Tuple[str, str, Tuple[int, ...]], ...]  # (name, Triton datatype, dims)

    def names(self) -> Tuple[str, ...]:
        return tuple(name for name, _, _ in self.outputs)

    def output_bytes(self, name: str, batch: Optional[int]) -> Optional[int]:
        """The bytes of output `name` when its dims are fixed (the batch size
        first for a batching model), else None: variable dims or BYTES."""
        for declared, datatype, dims in self.outputs:
            if declared != name:
                continue
            full = ((batch or 1),) + dims if self.max_batch_size > 0 else dims
            size = _ELEMENT_SIZE.get(datatype)
            if not size or any(d < 0 for d in full):
                return None
            return math.prod(full) * size
        return None


def parse_model_config(config: Mapping[str, Any]) -> ModelOutputs:
    """Reads HTTP's config (snake_case) or gRPC's as_json one (camelCase, int64 as strings)."""
    config = config.get("config", config)
    batch = int(config.get("max_batch_size", config.get("maxBatchSize", 0)) or 0)
    outputs = []
    for out in config.get("output", []):
        datatype = str(out.get("data_type", out.get("dataType", ""))).replace("TYPE_", "")
        datatype = {"STRING": "BYTES"}.get(datatype, datatype)
        outputs.append((out["name"], datatype, tuple(int(d) for d in out.get("dims", []))))
    return ModelOutputs(batch, tuple(outputs))


class ModelConfigs:
    """(model, version) -> ModelOutputs, or None where the server would not
    say (then asked again after `retry_after` seconds)."""

    def __init__(self, limit: int = 256, retry_after: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self._limit = limit
        self._retry_after = retry_after
        self._clock = clock
        self._entries: "OrderedDict[Key, Tuple[Optional[ModelOutputs], float]]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> Tuple[bool, Optional[ModelOutputs]]:
        """(whether the answer is known, the outputs or None)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            outputs, when = entry
            if outputs is None and self._clock() - when > self._retry_after:
                del self._entries[key]
                return False, None
            self._entries.move_to_end(key)
            return True, outputs

    def put(self, key: Key, outputs: Optional[ModelOutputs]) -> None:
        with self._lock:
            self._entries[key] = (outputs, self._clock())
            self._entries.move_to_end(key)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def snapshot(self) -> Dict[Key, Optional[ModelOutputs]]:
        with self._lock:
            return {key: outputs for key, (outputs, _) in self._entries.items()}

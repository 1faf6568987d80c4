"""What the pool has learned about outputs from responses: for each request
signature (model, version, the inputs' names, dtypes and shapes, the outputs
asked for), the outputs that came back and the most bytes each needed.

Most models declare variable output dims (-1), so their configuration does not
say how big an output will be; the first response of a signature does. From
the second request of that signature on, its outputs can be placed in the
lease. A content-dependent output that outgrows what was learned makes the
server name the size it needed, which is remembered too (sizes only grow).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Dict, Hashable, Mapping, Optional, Sequence, Tuple

__all__ = ["LearnedOutputs", "signature_of"]

Signature = Tuple[Hashable, ...]


def signature_of(
    model_name: str, model_version: str, inputs: Mapping[str, Any], outputs: Optional[Sequence[str]]
) -> Signature:
    """The key under which a request's outputs are learned. Shapes are part of
    it: an output's size usually follows its inputs' shapes."""
    described = []
    for name, value in inputs.items():
        dtype = getattr(value, "dtype", None)
        described.append((name, dtype.str if dtype is not None else type(value).__name__, getattr(value, "shape", ())))
    return (model_name, model_version, tuple(described), tuple(outputs) if outputs is not None else None)


class LearnedOutputs:
    """A bounded, thread-safe map of signature -> {output name: bytes}; the
    least recently used signature goes first when it is full."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._sizes: "OrderedDict[Signature, Dict[str, int]]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, signature: Signature) -> Optional[Dict[str, int]]:
        with self._lock:
            sizes = self._sizes.get(signature)
            if sizes is None:
                return None
            self._sizes.move_to_end(signature)
            return dict(sizes)

    def learn(self, signature: Signature, observed: Mapping[str, int]) -> None:
        """Records the outputs a response had; a size never shrinks (the
        largest seen is what a later request must have room for)."""
        if not observed:
            return
        with self._lock:
            sizes = self._sizes.get(signature)
            if sizes is None:
                sizes = self._sizes[signature] = {}
                while len(self._sizes) > self._limit:
                    self._sizes.popitem(last=False)
            else:
                self._sizes.move_to_end(signature)
            for name, nbytes in observed.items():
                sizes[name] = max(sizes.get(name, 0), int(nbytes))

    def __len__(self) -> int:
        with self._lock:
            return len(self._sizes)

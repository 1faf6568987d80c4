"""Where each tensor of a request lies in its lease: layout and nothing else.
Which tensors go there, and how big each output's slot is, is transport.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from .config import align

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """Inputs first, then outputs, each at an aligned offset of one lease of
    `total` bytes (0: the request needs no lease). An entry of None stays
    out of the lease."""

    inputs: List[Optional[int]]  # offset of each input in the lease
    outputs: List[Optional[int]]
    input_sizes: List[Optional[int]]
    output_sizes: List[Optional[int]]
    total: int

    @classmethod
    def of(
        cls, input_sizes: Sequence[Optional[int]], output_sizes: Sequence[Optional[int]], alignment: int
    ) -> "Layout":
        offset = 0
        placed: List[List[Optional[int]]] = [[], []]
        for sizes, offsets in ((input_sizes, placed[0]), (output_sizes, placed[1])):
            for size in sizes:
                if size is None:
                    offsets.append(None)
                else:
                    offsets.append(offset)
                    offset = align(offset + size, alignment)
        return cls(placed[0], placed[1], list(input_sizes), list(output_sizes), offset)

    def input_parts(self, lease: Any) -> List[Any]:
        """A LeasePart per input in the lease (None for the others)."""
        return _parts(lease, self.inputs, self.input_sizes)

    def output_parts(self, lease: Any) -> List[Any]:
        return _parts(lease, self.outputs, self.output_sizes)


def _parts(lease: Any, offsets: List[Optional[int]], sizes: List[Optional[int]]) -> List[Any]:
    return [None if at is None else lease.part(at, size) for at, size in zip(offsets, sizes)]

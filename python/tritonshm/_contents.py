"""A tensor in a region as `tritonshm info` shows it, read only as far as it
is shown.

A region can be far larger than the memory of the process that inspects it.
Printed for a person, numpy shows an array of more than ``threshold`` elements
as the first and last ``edgeitems`` along each long axis: only those are read.
As JSON every value is shown, so the values are read and written out a piece
at a time. Everything is read through a read-only descriptor (``pread``), never
a mapping: a region shrunk meanwhile is an error, not SIGBUS.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np
import numpy.typing as npt

from . import _core
from ._core import SharedMemoryException

__all__ = ["Tensor", "hex_pieces", "hexdump_lines"]

# Elements per piece read for JSON: a few MiB of Python objects at most.
PIECE_ELEMENTS = 1 << 16
# Bytes per piece of a hexdump.
PIECE_BYTES = 1 << 16
# A hexdump's text column: printable ASCII as is, every other byte a dot.
_PRINTABLE = bytes(b if 32 <= b < 127 else ord(".") for b in range(256))


class _BytesReader:
    """Reads the elements of a BYTES tensor front to back: each read starts at
    or after the end of the one before, so the lengths are walked once."""

    def __init__(self, key: str, offset: int) -> None:
        self.key, self.element, self.offset = key, 0, offset

    def __call__(self, start: int, count: int) -> npt.NDArray[Any]:
        if start < self.element:
            raise AssertionError("BYTES elements are read front to back")
        found, self.element, self.offset = _core.read_bytes_elements(
            self.key, self.element, self.offset, start - self.element, count
        )
        values = np.empty(len(found), dtype=object)
        values[:] = found
        return values


class Tensor:
    """`shape` elements of `dtype` (a Triton name: FP32, BYTES, ...) from byte
    `offset` of the region `key`, which held `region_size` bytes when listed;
    without a shape, as many elements as fit (BYTES needs one). Messages name
    the region as `label` (its key, escaped for a terminal)."""

    def __init__(
        self, key: str, dtype: str, shape: Optional[Sequence[int]], offset: int, region_size: int, label: str
    ) -> None:
        from .tensor import triton_to_np_dtype

        self.key, self.offset, self.label = key, offset, label
        self.is_bytes = dtype == "BYTES"
        self.dtype = np.dtype(object if self.is_bytes else triton_to_np_dtype(dtype))
        available = max(0, region_size - offset)
        if shape is None:
            if self.is_bytes:  # the command refuses this as a usage error
                raise ValueError("a BYTES tensor needs a shape: its elements vary in size")
            shape = [available // self.dtype.itemsize]
        self.shape = list(shape)
        self.count = math.prod(self.shape)
        if not self.is_bytes and self.count * self.dtype.itemsize > available:
            self._too_small(available)

    @staticmethod
    def itemsize(dtype: str) -> int:
        """The bytes of one element of a fixed-size Triton type (FP32, ...)."""
        from .tensor import triton_to_np_dtype

        return int(np.dtype(triton_to_np_dtype(dtype)).itemsize)

    @property
    def dtype_name(self) -> str:
        return "BYTES" if self.is_bytes else str(self.dtype)

    def _too_small(self, available: int) -> None:
        raise SharedMemoryException(
            f"'{self.label}' holds {available} bytes from offset {self.offset}, "
            f"the shape {self.shape} of {self.dtype} needs {self.count * self.dtype.itemsize}"
        )

    def _reader(self) -> Callable[[int, int], npt.NDArray[Any]]:
        """read(start, count): elements in flat order, each read after the one before."""
        return _BytesReader(self.key, self.offset) if self.is_bytes else self._read_values

    def _read_values(self, start: int, count: int) -> npt.NDArray[Any]:
        size = self.dtype.itemsize
        data = _core.read_region(self.key, self.offset + start * size, count * size)
        if len(data) < count * size:  # shrunk since it was listed
            self._too_small(start * size + len(data))
        return np.frombuffer(data, dtype=self.dtype, count=count)

    def printed(self) -> str:
        """The tensor as numpy prints it, having read only the elements numpy shows."""
        read = self._reader()
        threshold, edge = np.get_printoptions()["threshold"], np.get_printoptions()["edgeitems"]
        if self.count <= threshold or not self.shape:
            return str(read(0, self.count).reshape(self.shape))
        # Along each axis numpy shows all of up to 2*edge elements, else the
        # first and last `edge` with "..." between. `shown` holds them in
        # place, with one placeholder element where numpy prints "...": its
        # axis then has 2*edge+1 elements and numpy, told to summarize, prints
        # exactly the elements read, formatted from those alone.
        axes: List[List[Optional[int]]] = [
            list(range(n)) if n <= 2 * edge else [*range(edge), None, *range(n - edge, n)] for n in self.shape
        ]
        shown = np.full([len(a) for a in axes], b"" if self.is_bytes else 0, dtype=self.dtype)
        strides = [math.prod(self.shape[i + 1 :]) for i in range(len(self.shape))]
        leading = [[(at, i) for at, i in enumerate(a) if i is not None] for a in axes[:-1]]
        for lead in itertools.product(*leading):
            base = sum(i * strides[axis] for axis, (_, i) in enumerate(lead))
            place = tuple(at for at, _ in lead)
            for run in _runs(axes[-1]):
                first_at, first = run[0]
                shown[place + (slice(first_at, first_at + len(run)),)] = read(base + first, len(run))
        with np.printoptions(threshold=0):
            return str(shown)

    def check_decodes(self) -> None:
        """Raises now, having written nothing, where decoding would fail part
        way (a malformed BYTES tensor); reads it once more, a piece at a time."""
        if self.is_bytes:
            read = self._reader()
            for start in range(0, self.count, PIECE_ELEMENTS):
                read(start, min(PIECE_ELEMENTS, self.count - start))

    def json_values(self) -> Iterator[str]:
        """The values as JSON text, in pieces: a nested list of numbers, or for
        BYTES a flat list of strings (latin-1: one character per byte)."""
        read = self._reader()
        if self.is_bytes:
            yield "["
            for start in range(0, self.count, PIECE_ELEMENTS):
                values = read(start, min(PIECE_ELEMENTS, self.count - start))
                yield (", " if start else "") + json.dumps([v.decode("latin-1") for v in values])[1:-1]
            yield "]"
            return
        shape = self.shape
        if self.count == 0:
            # Only the axes before the first 0 have elements, each an empty list.
            shape = self.shape[: self.shape.index(0)]
            read = _empty_lists
        yield from _nested_json(read, shape)


def _runs(indices: List[Optional[int]]) -> Iterator[List[Any]]:
    """(position, index) pairs of consecutive indices, split at the placeholder."""
    run: List[Any] = []
    for at, i in enumerate(indices):
        if i is None:
            yield run
            run = []
        else:
            run.append((at, i))
    if run:
        yield run


def _empty_lists(start: int, count: int) -> npt.NDArray[Any]:
    values = np.empty(count, dtype=object)
    for i in range(count):
        values[i] = []
    return values


def _nested_json(read: Callable[[int, int], npt.NDArray[Any]], shape: List[int]) -> Iterator[str]:
    """JSON of a row-major array of `shape`, read as flat ranges of at most
    about PIECE_ELEMENTS: pieces are whole sub-arrays of the deepest axis whose
    sub-arrays fit, joined inside the brackets of the axes above it."""
    count = math.prod(shape)
    strides = [math.prod(shape[j:]) for j in range(len(shape) + 1)]  # strides[len(shape)] == 1
    level = next(j for j in range(len(shape) + 1) if strides[j] <= PIECE_ELEMENTS)
    if level == 0:
        yield json.dumps(read(0, count).reshape(shape).tolist())
        return
    block, sub = strides[level - 1], strides[level]
    per_piece = max(1, PIECE_ELEMENTS // sub)
    for b in range(count // block):
        start = b * block
        opened = sum(1 for j in range(level) if start % strides[j] == 0)
        yield (", " if b else "") + "[" * opened
        for first in range(0, shape[level - 1], per_piece):
            n = min(per_piece, shape[level - 1] - first)
            values = read(start + first * sub, n * sub).reshape([n, *shape[level:]])
            yield (", " if first else "") + json.dumps(values.tolist())[1:-1]
        yield "]" * sum(1 for j in range(level) if (start + block) % strides[j] == 0)


def hexdump_lines(key: str, offset: int, length: int) -> Iterator[str]:
    """A hexdump of up to `length` bytes from `offset`, read a piece at a time."""
    for data, start in _pieces(key, offset, length):
        for i in range(0, len(data), 16):
            chunk = data[i : i + 16]
            yield f"{start + i:08x}  {chunk.hex(' '):<47}  |{chunk.translate(_PRINTABLE).decode('ascii')}|"


def hex_pieces(key: str, offset: int, length: int) -> Iterator[str]:
    """Up to `length` bytes from `offset` as hex digits, a piece at a time."""
    for data, _ in _pieces(key, offset, length):
        yield data.hex()


def _pieces(key: str, offset: int, length: int) -> Iterator[Any]:
    done = 0
    while done < length:
        data = _core.read_region(key, offset + done, min(PIECE_BYTES, length - done))
        if not data:
            return
        yield data, offset + done
        done += len(data)

"""One inference request as the request layer sees it, whoever made it: its
inputs (each able to write itself into a lease part, or to travel inline),
the outputs asked for, and how the request may be retried. `from_arrays`
builds one from pool.infer's arguments, checking them by name; the
accelerator builds one from tritonclient's own InferInput objects. Nothing
here talks to a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from .. import _core
from .._core import SharedMemoryException
from ..tensor import np_to_triton_dtype
from .adapters import ClientAdapter
from .learned_outputs import Described

__all__ = ["ArrayInput", "InferRequest", "OutputRequest", "RequestInput", "Response", "from_arrays"]


class RequestInput:
    """An input: `name`, `datatype`, `shape`, `nbytes` (as it travels), and
    whether it may travel through shared memory at all (`shareable`)."""

    name: str
    datatype: str
    shape: Tuple[int, ...]
    nbytes: int
    shareable: bool = True
    # A LeasePart of the pool's own registered memory that already holds the
    # input's bytes (the accelerator stages an array there when the caller
    # sets it): sent from where it lies, neither written nor given room in
    # the request's lease.
    placed: Optional[Any] = None

    def write(self, part: Any) -> None:
        """Copies the input's bytes into `part` (a LeasePart of `nbytes`)."""
        raise NotImplementedError

    def inline(self, adapter: ClientAdapter) -> Any:
        """The tritonclient InferInput that carries the input in the request."""
        raise NotImplementedError


class ArrayInput(RequestInput):
    """A numpy array; BYTES (object or bytes arrays) serialized once, here."""

    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self.name = name
        self.array = array
        self.shape = tuple(int(d) for d in array.shape)
        self.encoded: Optional[_core.BytesTensor] = None
        if array.dtype == np.object_ or array.dtype.type == np.bytes_:
            self.datatype = "BYTES"
            self.encoded = _core.BytesTensor(np.ascontiguousarray(array))
            self.nbytes = int(self.encoded.nbytes)
        else:
            datatype = np_to_triton_dtype(array.dtype)
            if datatype is None:
                raise SharedMemoryException(f"input '{name}': numpy dtype {array.dtype} has no Triton data type")
            self.datatype = datatype
            self.nbytes = int(array.nbytes)

    def write(self, part: Any) -> None:
        if self.encoded is not None:
            part.write_bytes(self.encoded)
        else:
            part.write(self.array)

    def inline(self, adapter: ClientAdapter) -> Any:
        return adapter.inline_input(self.name, list(self.shape), self.datatype, self.array)


@dataclass(frozen=True)
class OutputRequest:
    """An output asked for. `size`: the slot size the caller gave
    (output_sizes), which the pool never changes. `shareable`: False for an
    output that must come back as the caller asked it (classes, JSON, the
    caller's own shared memory), sent as `given`, the caller's object."""

    name: str
    size: Optional[int] = None
    shareable: bool = True
    given: Any = None


@dataclass
class InferRequest:
    """Everything about one call that does not change when it runs again."""

    model_name: str
    model_version: str
    inputs: List[RequestInput]
    outputs: Optional[List[OutputRequest]]  # None: every output, as the model's configuration names them
    output_sizes: Dict[str, int] = field(default_factory=dict)  # the caller's slot sizes, by output name
    copy: bool = True  # outputs read from shared memory are arrays of their own (else views holding the lease)
    may_rerun: bool = True  # False: the model must run at most once (retry=False, or a sequence's step)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # for the client's infer, as given

    def described(self) -> Described:
        return tuple((item.name, item.datatype, item.shape) for item in self.inputs)

    def batch(self) -> Optional[int]:
        """The first input's first dim: a batching model's batch size."""
        for item in self.inputs:
            if item.shape:
                return item.shape[0]
        return None

    def output_names(self) -> Optional[List[str]]:
        return None if self.outputs is None else [out.name for out in self.outputs]


@dataclass
class Response:
    """What a request got back: the client's result, and the outputs read from
    the lease (copies, or views that hold it), by name. The other outputs are
    in the result, as tritonclient returns them."""

    result: Any
    arrays: Dict[str, npt.NDArray[Any]]

    def output_arrays(self, adapter: ClientAdapter, names: Optional[List[str]]) -> Dict[str, npt.NDArray[Any]]:
        """Every output by name (those asked for, or all the response has)."""
        arrays: Dict[str, npt.NDArray[Any]] = {}
        for name in names if names is not None else adapter.output_names(self.result):
            array = self.arrays[name] if name in self.arrays else adapter.output_array(self.result, name)
            if array is None:
                raise SharedMemoryException(f"the response has no output '{name}'")
            arrays[name] = array
        return arrays


def from_arrays(
    adapter: ClientAdapter,
    model_name: str,
    inputs: Mapping[str, Any],
    outputs: Optional[Sequence[Any]],
    output_sizes: Optional[Mapping[str, int]],
    copy: bool,
    model_version: str,
    retry: bool,
    kwargs: Dict[str, Any],
) -> InferRequest:
    """pool.infer's arguments as a request, each checked by name."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise SharedMemoryException("inputs must be a non-empty dict of input name to numpy array")
    sizes = dict(output_sizes or {})
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise SharedMemoryException(
                f"output_sizes must map output names to sizes in bytes (ints >= 0), got {name!r}: {size!r}"
            )
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=[ArrayInput(name, np.asarray(value)) for name, value in inputs.items()],
        outputs=None if outputs is None else _output_requests(adapter, outputs, sizes),
        output_sizes=sizes,
        copy=copy,
        may_rerun=bool(retry) and not kwargs.get("sequence_id"),
        kwargs=kwargs,
    )


def _output_requests(adapter: ClientAdapter, outputs: Any, sizes: Mapping[str, int]) -> List[OutputRequest]:
    if isinstance(outputs, (str, bytes)):
        raise SharedMemoryException(f"outputs must be a list of output names, got the string {outputs!r}")
    made: List[OutputRequest] = []
    for out in outputs:
        if isinstance(out, str):
            made.append(OutputRequest(out, sizes.get(out)))
        elif adapter.is_requested_output(out):
            name, shareable = adapter.output_request(out)
            made.append(OutputRequest(name, sizes.get(name), shareable, out))
        else:
            raise SharedMemoryException(
                "outputs must be a list of output names or tritonclient."
                f"{adapter.protocol}.InferRequestedOutput objects, got {out!r}"
            )
    return made

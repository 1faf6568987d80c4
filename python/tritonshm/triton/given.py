"""The caller's own tritonclient request objects as the request layer's
inputs and outputs (for the accelerator), and arrays staged in shared memory
when the caller sets them.

Nothing the caller made is changed here: an input that goes through shared
memory travels as a new InferInput that names the region, while the caller's
object is sent as it is whenever its input goes inline; an output placed in
shared memory is a new InferRequestedOutput.

Staging. tritonclient's `set_data_from_numpy` copies the array into fresh
bytes (`tobytes()`), a snapshot the caller may change the array after. While
accelerated, an array of at least the inline threshold is copied instead into
a lease of a pool's registered memory: the same snapshot, taken once, which
the request then names where it lies (no second copy). The InferInput's data
attribute holds a `Staged` in place of the bytes; tritonclient's own code
reads that attribute through `StagedData` (a descriptor on the InferInput
class while accelerated), which turns it into the bytes it stands for, so
every path that reads it (a request sent over the network, streaming,
`generate_request_body`, a copy or a pickle) sees what tritonclient would
have put there.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from .._core import SharedMemoryException
from ..tensor import np_to_triton_dtype
from .adapters import ClientAdapter
from .pool_state import PoolState
from .request import OutputRequest, RequestInput

__all__ = ["GivenInput", "PassedInput", "Staged", "StagedData", "given_outputs", "stage"]


class Staged:
    """An input's bytes in a lease of a pool's memory: `part` (where the
    server finds them), `array` (a read-only uint8 view that holds the lease),
    and the pool (`state`) whose memory it is."""

    __slots__ = ("__weakref__", "array", "part", "state")

    def __init__(self, state: PoolState, part: Any, array: npt.NDArray[Any]) -> None:
        self.state = state
        self.part = part
        self.array = array

    def __len__(self) -> int:
        return int(self.array.nbytes)

    def tobytes(self) -> bytes:
        return self.array.tobytes()

    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]:
        # copy.copy, copy.deepcopy and pickle of an InferInput give it the bytes, as tritonclient's would have.
        return (bytes, (self.tobytes(),))


class StagedData:
    """The data attribute of tritonclient's InferInput class while
    accelerated (`_raw_data` for HTTP, `_raw_content` for gRPC): it stores
    in the instance as a plain attribute does, and reading a staged value
    gives the bytes it stands for (kept, so it is copied once)."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, item: Any, owner: Any = None) -> Any:
        if item is None:
            return self
        state = item.__dict__
        try:
            value = state[self.attribute]
        except KeyError:
            raise AttributeError(self.attribute) from None
        if type(value) is Staged:
            value = state[self.attribute] = value.tobytes()
        return value

    def __set__(self, item: Any, value: Any) -> None:
        item.__dict__[self.attribute] = value

    def __delete__(self, item: Any) -> None:
        try:
            del item.__dict__[self.attribute]
        except KeyError:
            raise AttributeError(self.attribute) from None


def stage(adapter: ClientAdapter, item: Any, tensor: Any, state: PoolState) -> Optional[Staged]:
    """Copies `tensor` into a lease of `state`'s memory if it is an array
    tritonclient would accept for `item` as binary data, not BYTES, and the
    pool has room without growing (growing needs the server, and there is
    none to ask here). None: do as tritonclient does."""
    if not isinstance(tensor, np.ndarray) or tensor.dtype == np.object_ or tensor.dtype.type == np.bytes_:
        return None
    _, datatype, shape = adapter.declared_input(item)
    if np_to_triton_dtype(tensor.dtype) != datatype or datatype == "BYTES" or len(shape) != tensor.ndim:
        return None  # tritonclient raises its own error for these
    if any(declared != actual for declared, actual in zip(shape, tensor.shape)):
        return None
    nbytes = int(tensor.nbytes)
    if nbytes == 0:
        return None
    try:
        lease = state.arena.try_lease(nbytes)
        if lease is None:
            return None
        part = lease.part(0, nbytes)
        part.write(tensor)
        array = part.read(np.uint8, (nbytes,), False)  # the view holds the lease
    except SharedMemoryException:
        return None  # the pool closed meanwhile, or this is a forked child: tritonclient's copy
    array.flags.writeable = False
    return Staged(state, part, array)


class GivenInput(RequestInput):
    """A caller's InferInput whose bytes travel in the request. Through shared
    memory they are copied into the request's lease, or, staged in this pool's
    memory, named where they lie; inline, the caller's object goes as it is."""

    def __init__(
        self, item: Any, name: str, datatype: str, shape: Tuple[int, ...], data: Any, state: PoolState
    ) -> None:
        self.item = item
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.nbytes = len(data)
        if type(data) is Staged:
            self.array = data.array
            # Its region must still be registered: one retired after a request was given up on is not.
            if data.state is state and state.ledger.is_registered(data.part.name):
                self.placed = data.part
        else:
            self.array = np.frombuffer(data, np.uint8)

    def write(self, part: Any) -> None:
        part.write(self.array)

    def inline(self, adapter: ClientAdapter) -> Any:
        return self.item


class PassedInput(RequestInput):
    """A caller's InferInput that travels as the caller made it: JSON data, or
    the caller's own shared memory (whose region is the caller's alone)."""

    shareable = False

    def __init__(self, item: Any, name: str, datatype: str, shape: Sequence[int]) -> None:
        self.item = item
        self.name = name
        self.datatype = datatype
        self.shape = tuple(int(d) for d in shape)
        self.nbytes = 0

    def write(self, part: Any) -> None:
        raise AssertionError("an input passed as the caller made it is never written to shared memory")

    def inline(self, adapter: ClientAdapter) -> Any:
        return self.item


def given_inputs(adapter: ClientAdapter, inputs: Any, state: PoolState) -> Optional[List[RequestInput]]:
    """The caller's InferInputs as request inputs; None if one is not a
    tritonclient InferInput of the adapter's protocol (the request then goes
    to tritonclient as it is, which says what is wrong)."""
    if not isinstance(inputs, (list, tuple)) or not inputs:
        return None
    kind = adapter.module.InferInput
    made: List[RequestInput] = []
    for item in inputs:
        if not isinstance(item, kind):
            return None
        given = adapter.given_input(item)
        if given is None:
            made.append(PassedInput(item, *adapter.declared_input(item)))
        else:
            made.append(GivenInput(item, *given, state))
    return made


def given_outputs(adapter: ClientAdapter, outputs: Any) -> Tuple[bool, Optional[List[OutputRequest]]]:
    """(understood, the caller's InferRequestedOutputs as output requests, or
    None for every output). Not understood: something else than a list of
    tritonclient InferRequestedOutputs of the adapter's protocol."""
    if outputs is None:
        return True, None
    if not isinstance(outputs, (list, tuple)):
        return False, None
    kind = adapter.module.InferRequestedOutput
    made = []
    for out in outputs:
        if not isinstance(out, kind):
            return False, None
        name, shareable = adapter.output_request(out)
        made.append(OutputRequest(name, None, shareable, out))
    return True, made

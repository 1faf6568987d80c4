"""One inference request laid out in one lease: where each input and each
output goes, writing the inputs, building tritonclient's request objects and
reading the results. Shared by the sync and the async pool; nothing here
talks to the server."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from .. import _core
from .._core import SharedMemoryException
from ..tensor import np_to_triton_dtype, triton_to_np_dtype

__all__ = ["ModelOutputs", "RequestPlan", "client_module", "parse_model_config"]

# Triton's config names its types TYPE_FP32; the protocol calls them FP32.
_ELEMENT_SIZE = {name: size for name, _, size in _core.data_types()}


def client_module(client: Any) -> Tuple[Any, str]:
    """tritonclient.http or tritonclient.grpc (their aio clients use the same
    request classes), and the protocol's name."""
    module_name = type(client).__module__
    if module_name.startswith("tritonclient.grpc"):
        import tritonclient.grpc as grpc

        return grpc, "grpc"
    if module_name.startswith("tritonclient.http"):
        import tritonclient.http as http

        return http, "http"
    raise SharedMemoryException(
        f"expected a tritonclient.http or tritonclient.grpc client, got {type(client).__name__}"
    )


@dataclass(frozen=True)
class ModelOutputs:
    """What a model's configuration says of its outputs."""

    max_batch_size: int
    outputs: Tuple[Tuple[str, str, Tuple[int, ...]], ...]  # (name, Triton datatype, dims)


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


def align(n: int, alignment: int) -> int:
    """n rounded up to a multiple of alignment."""
    return (n + alignment - 1) // alignment * alignment


@dataclass
class _Input:
    name: str
    datatype: str
    shape: List[int]
    value: Any  # a numpy array, or a BytesTensor for BYTES
    nbytes: int
    offset: int = 0


@dataclass
class _Output:
    name: str
    nbytes: Optional[int]  # None: returned in the response
    offset: int = 0


@dataclass
class RequestPlan:
    """The layout of one request in its lease: inputs, then the outputs whose
    size is known, each at an aligned offset."""

    inputs: List[_Input]
    outputs: List[_Output]
    total: int
    requested_names: Optional[List[str]] = field(default=None)

    @classmethod
    def make(
        cls,
        inputs: Mapping[str, Any],
        outputs: Optional[Sequence[str]],
        model: Optional[ModelOutputs],
        output_sizes: Mapping[str, int],
        alignment: int,
    ) -> "RequestPlan":
        if not isinstance(inputs, Mapping) or not inputs:
            raise SharedMemoryException("inputs must be a non-empty dict of input name to numpy array")
        planned: List[_Input] = []
        batch: Optional[int] = None
        for name, value in inputs.items():
            array = np.asarray(value)
            if array.dtype == np.object_ or array.dtype.type == np.bytes_:
                encoded = _core.BytesTensor(np.ascontiguousarray(array))
                planned.append(_Input(name, "BYTES", list(array.shape), encoded, encoded.nbytes))
            else:
                datatype = np_to_triton_dtype(array.dtype)
                if datatype is None:
                    raise SharedMemoryException(f"input '{name}': numpy dtype {array.dtype} has no Triton data type")
                planned.append(_Input(name, datatype, list(array.shape), array, array.nbytes))
            if batch is None and array.ndim > 0:
                batch = int(array.shape[0])
        outs: List[_Output] = []
        known = {name: (datatype, dims) for name, datatype, dims in (model.outputs if model else ())}
        names = list(outputs) if outputs is not None else list(known)
        for name in names:
            nbytes = output_sizes.get(name)
            if nbytes is None and name in known:
                datatype, dims = known[name]
                full = ((batch or 1),) + dims if model and model.max_batch_size > 0 else dims
                if datatype != "BYTES" and all(d >= 0 for d in full) and _ELEMENT_SIZE.get(datatype):
                    nbytes = math.prod(full) * _ELEMENT_SIZE[datatype]
            outs.append(_Output(name, int(nbytes) if nbytes is not None else None))
        offset = 0
        for item in planned:
            item.offset = offset
            offset = align(offset + item.nbytes, alignment)
        for out in outs:
            if out.nbytes is not None:
                out.offset = offset
                offset = align(offset + max(out.nbytes, 1), alignment)
        return cls(planned, outs, max(offset, 1), names if outputs is not None or names else None)

    def write(self, lease: Any) -> None:
        for item in self.inputs:
            if item.datatype == "BYTES":
                lease.write_bytes(item.offset, item.value)
            else:
                lease.write(item.offset, item.value)

    def infer_inputs(self, module: Any, lease: Any) -> List[Any]:
        made = []
        for item in self.inputs:
            infer_input = module.InferInput(item.name, item.shape, item.datatype)
            infer_input.set_shared_memory(lease.name, item.nbytes, offset=lease.offset + item.offset)
            made.append(infer_input)
        return made

    def requested_outputs(self, module: Any, protocol: str, lease: Any) -> Optional[List[Any]]:
        if self.requested_names is None:
            return None  # the server returns every output in the response
        made = []
        for out in self.outputs:
            requested = (
                module.InferRequestedOutput(out.name, binary_data=True)
                if protocol == "http"
                else module.InferRequestedOutput(out.name)
            )
            if out.nbytes is not None:
                requested.set_shared_memory(lease.name, max(out.nbytes, 1), offset=lease.offset + out.offset)
            made.append(requested)
        return made

    def results(self, result: Any, lease: Any, copy: bool) -> Dict[str, npt.NDArray[Any]]:
        arrays: Dict[str, npt.NDArray[Any]] = {}
        in_lease = {out.name: out for out in self.outputs if out.nbytes is not None}
        names = [out.name for out in self.outputs] if self.requested_names is not None else _output_names(result)
        for name in names:
            out = in_lease.get(name)
            if out is None:
                arrays[name] = result.as_numpy(name)
                continue
            datatype, shape = _output_type(result, name)
            dtype = np.object_ if datatype == "BYTES" else triton_to_np_dtype(datatype)
            arrays[name] = lease.read(out.offset, dtype, shape, copy)
        return arrays


def _output_names(result: Any) -> List[str]:
    response = result.get_response()
    outputs = response.get("outputs", []) if isinstance(response, dict) else response.outputs
    return [o["name"] if isinstance(o, dict) else o.name for o in outputs]


def _output_type(result: Any, name: str) -> Tuple[str, List[int]]:
    output = result.get_output(name)
    if output is None:
        raise SharedMemoryException(f"the response has no output '{name}'")
    if isinstance(output, dict):  # HTTP
        return output["datatype"], [int(d) for d in output["shape"]]
    return output.datatype, [int(d) for d in output.shape]  # gRPC

"""One inference request laid out in one lease: which tensors travel in shared
memory and which inline, where each goes in the lease, writing the inputs,
building tritonclient's request objects and reading the results. Nothing here
talks to the server."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from .. import _core
from .._core import SharedMemoryException
from ..tensor import np_to_triton_dtype, triton_to_np_dtype

__all__ = ["ModelOutputs", "RequestPlan", "align", "client_module", "parse_model_config"]

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
    value: Any  # the array as given (inline), or what goes into the lease (a BytesTensor for BYTES)
    nbytes: int
    offset: Optional[int] = None  # None: sent inline, in the request


@dataclass
class _Output:
    name: str
    nbytes: Optional[int]  # the slot's size when known
    from_caller: bool = False  # the size came from output_sizes: never grown behind the caller's back
    offset: Optional[int] = None  # None: returned inline, in the response


@dataclass
class RequestPlan:
    """The layout of one request: inputs, then the outputs placed in shared
    memory, each at an aligned offset of one lease of `total` bytes (0: the
    request needs no lease)."""

    inputs: List[_Input]
    outputs: List[_Output]
    total: int
    explicit_outputs: bool  # False: no output named, the server returns all of them inline

    @classmethod
    def make(
        cls,
        inputs: Mapping[str, Any],
        outputs: Optional[Sequence[str]],
        model: Optional[ModelOutputs],
        output_sizes: Mapping[str, int],
        learned: Optional[Mapping[str, int]],
        inline_threshold: int,
        alignment: int,
    ) -> "RequestPlan":
        """Tensors of at least `inline_threshold` bytes go to shared memory,
        smaller ones inline. An output's size comes from output_sizes, else the
        model's configuration (fixed dims), else what earlier responses of the
        same signature needed; an output of unknown size comes back inline."""
        if not isinstance(inputs, Mapping) or not inputs:
            raise SharedMemoryException("inputs must be a non-empty dict of input name to numpy array")
        if isinstance(outputs, (str, bytes)):
            raise SharedMemoryException(f"outputs must be a list of output names, got the string {outputs!r}")
        for name, size in output_sizes.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise SharedMemoryException(
                    f"output_sizes must map output names to sizes in bytes (ints >= 0), got {name!r}: {size!r}"
                )
        planned: List[_Input] = []
        batch: Optional[int] = None
        for name, value in inputs.items():
            array = np.asarray(value)
            if array.dtype == np.object_ or array.dtype.type == np.bytes_:
                encoded = _core.BytesTensor(np.ascontiguousarray(array))
                item = _Input(name, "BYTES", list(array.shape), encoded, encoded.nbytes)
                if item.nbytes < inline_threshold:
                    item.value = array
            else:
                datatype = np_to_triton_dtype(array.dtype)
                if datatype is None:
                    raise SharedMemoryException(f"input '{name}': numpy dtype {array.dtype} has no Triton data type")
                item = _Input(name, datatype, list(array.shape), array, array.nbytes)
            planned.append(item)
            if batch is None and array.ndim > 0:
                batch = int(array.shape[0])
        declared = {name: (datatype, dims) for name, datatype, dims in (model.outputs if model else ())}
        if outputs is not None:
            names = list(outputs)
        elif declared:
            names = list(declared)
        else:
            names = list(learned or ())
        outs: List[_Output] = []
        for name in names:
            if name in output_sizes:
                outs.append(_Output(name, int(output_sizes[name]), from_caller=True))
                continue
            nbytes: Optional[int] = None
            if name in declared:
                datatype, dims = declared[name]
                full = ((batch or 1),) + dims if model and model.max_batch_size > 0 else dims
                if datatype != "BYTES" and all(d >= 0 for d in full) and _ELEMENT_SIZE.get(datatype):
                    nbytes = math.prod(full) * _ELEMENT_SIZE[datatype]
            if nbytes is None and learned:
                nbytes = learned.get(name)
            outs.append(_Output(name, nbytes))
        offset = 0
        for item in planned:
            if item.nbytes >= inline_threshold:
                item.offset = offset
                offset = align(offset + item.nbytes, alignment)
        for out in outs:
            if out.nbytes is not None and (out.from_caller or out.nbytes >= inline_threshold):
                out.offset = offset
                offset = align(offset + max(out.nbytes, 1), alignment)
        return cls(planned, outs, offset, bool(names))

    @property
    def inputs_in_shm(self) -> int:
        return sum(item.offset is not None for item in self.inputs)

    @property
    def outputs_in_shm(self) -> int:
        return sum(out.offset is not None for out in self.outputs)

    def output(self, name: str) -> Optional[_Output]:
        for out in self.outputs:
            if out.name == name:
                return out
        return None

    def write(self, lease: Any) -> None:
        for item in self.inputs:
            if item.offset is None:
                continue
            if item.datatype == "BYTES":
                lease.write_bytes(item.offset, item.value)
            else:
                lease.write(item.offset, item.value)

    def infer_arguments(self, module: Any, protocol: str, lease: Any, model_version: str) -> Dict[str, Any]:
        """The client's infer arguments for this request (after the model name)."""
        return {
            "inputs": self._infer_inputs(module, protocol, lease),
            "outputs": self._requested_outputs(module, protocol, lease),
            "model_version": model_version,
        }

    def _infer_inputs(self, module: Any, protocol: str, lease: Any) -> List[Any]:
        made = []
        for item in self.inputs:
            infer_input = module.InferInput(item.name, item.shape, item.datatype)
            if item.offset is None:
                if protocol == "http":
                    infer_input.set_data_from_numpy(item.value, binary_data=True)
                else:
                    infer_input.set_data_from_numpy(item.value)
            else:
                infer_input.set_shared_memory(lease.name, item.nbytes, offset=lease.offset + item.offset)
            made.append(infer_input)
        return made

    def _requested_outputs(self, module: Any, protocol: str, lease: Any) -> Optional[List[Any]]:
        if not self.explicit_outputs:
            return None  # the server returns every output in the response
        made = []
        for out in self.outputs:
            requested = (
                module.InferRequestedOutput(out.name, binary_data=True)
                if protocol == "http"
                else module.InferRequestedOutput(out.name)
            )
            if out.offset is not None:
                requested.set_shared_memory(lease.name, max(out.nbytes or 0, 1), offset=lease.offset + out.offset)
            made.append(requested)
        return made

    def results(self, result: Any, lease: Any, copy: bool) -> Tuple[Dict[str, npt.NDArray[Any]], Dict[str, int]]:
        """The outputs as arrays, and the bytes each one needed (to learn from)."""
        arrays: Dict[str, npt.NDArray[Any]] = {}
        needed: Dict[str, int] = {}
        names = [out.name for out in self.outputs] if self.explicit_outputs else _output_names(result)
        for name in names:
            out = self.output(name)
            if out is None or out.offset is None:
                array = result.as_numpy(name)
                if array is None:
                    raise SharedMemoryException(f"the response has no output '{name}'")
            else:
                datatype, shape = _output_type(result, name)
                dtype = np.object_ if datatype == "BYTES" else triton_to_np_dtype(datatype)
                array = lease.read(out.offset, dtype, shape, copy)
            arrays[name] = array
            needed[name] = _serialized_size(array)
        return arrays, needed


def _serialized_size(array: npt.NDArray[Any]) -> int:
    """The bytes an output takes in shared memory (BYTES: with its 4-byte lengths)."""
    if array.dtype == np.object_ or array.dtype.type == np.bytes_:
        return int(_core.BytesTensor(np.ascontiguousarray(array)).nbytes)
    return int(array.nbytes)


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

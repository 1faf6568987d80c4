"""One adapter per kind of tritonclient client (HTTP, gRPC, and their asyncio
clients): everything the request layer needs to know about tritonclient's
objects and calls lives here, so that the flow and the plan stay free of
protocol cases. An adapter makes no call itself: it returns what to call."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

from .._core import SharedMemoryException, serialized_byte_size

__all__ = ["ClientAdapter", "adapter_for", "serialized_size"]

# gRPC statuses the server sends once it has dealt with the request (refused
# it or ran it to the end); Triton reports most failures as INTERNAL. Any
# other failure (a deadline, a cancellation, a broken connection) may leave
# the request running at the server.
_GRPC_ANSWERED = frozenset(
    "StatusCode." + code
    for code in (
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
    )
)
# What gRPC itself says, as INTERNAL, when a stream breaks: not the server's answer.
_GRPC_TRANSPORT_WORDS = ("RST_STREAM", "Stream removed", "Received http2 header", "Failed parsing")
# HTTP statuses a proxy sends when it gave up on the server, which may still run the request.
_HTTP_UNANSWERED = frozenset({"502", "503", "504"})


def serialized_size(array: npt.NDArray[Any]) -> int:
    """The bytes a tensor takes on the wire and in shared memory (BYTES: with its 4-byte lengths)."""
    if array.dtype == np.object_ or array.dtype.type == np.bytes_:
        return int(serialized_byte_size(array))
    return int(array.nbytes)


class ClientAdapter:
    """What differs between tritonclient's clients. `module` is
    tritonclient.http or tritonclient.grpc (their aio clients share its
    request classes); `aio` tells whether the client's calls are awaited."""

    protocol = ""

    def __init__(self, module: Any, aio: bool) -> None:
        self.module = module
        self.aio = aio

    @property
    def kind(self) -> str:
        """The client kind's module, as users import it."""
        return f"tritonclient.{self.protocol}{'.aio' if self.aio else ''}"

    def check(self, client: Any, argument: str) -> None:
        """Refuses a client of another protocol or kind, naming the argument."""
        other = adapter_for(client)
        if other.protocol != self.protocol or other.aio != self.aio:
            raise SharedMemoryException(
                f"unable to lease shared memory: {argument} must be a {self.kind} client (the pool's protocol and "
                f"kind), got {type(client).__module__}.{type(client).__name__}"
            )

    # A client that only the thread which made it may use (tritonclient.http's
    # runs on that thread's gevent hub; from another, each call fails with
    # greenlet's "Cannot switch to a different thread").
    thread_bound = False

    def address(self, client: Any) -> Optional[str]:
        """host:port[/path] of the client's server as tritonclient takes it; None
        where it cannot be read or the connection is HTTPS (a server on another
        host, whose shared memory could not be ours anyway)."""
        try:
            if self.protocol == "http":
                url = str(client._url if self.aio else client._parsed_url)
                return url[len("http://") :].rstrip("/") if url.startswith("http://") else None
            channel = client._channel
            target = channel._channel.target if self.aio else channel._target
            if isinstance(target, bytes):
                target = target.decode()
            target = str(target)
            return target[len("dns:///") :] if target.startswith("dns:///") else target
        except Exception:  # noqa: BLE001 - a client this module does not know: its requests pass through
            return None

    def client_like(self, client: Any) -> Optional[Any]:
        """A new client of the same kind for the same server, with the same
        timeouts, usable on this thread; None where none can be made. Only a
        thread-bound kind needs one: the others return None."""
        return None

    # -- the client's calls: (function, args, kwargs) ------------------------

    def register(
        self, client: Any, name: str, key: str, byte_size: int, headers: Optional[Dict[str, str]]
    ) -> Tuple[Any, tuple, Dict[str, Any]]:  # type: ignore[type-arg]
        return client.register_system_shared_memory, (name, key, byte_size), {"headers": headers}

    def unregister(
        self, client: Any, name: str, headers: Optional[Dict[str, str]]
    ) -> Tuple[Any, tuple, Dict[str, Any]]:  # type: ignore[type-arg]
        return client.unregister_system_shared_memory, (name,), {"headers": headers}

    def model_config(
        self, client: Any, model_name: str, model_version: str, headers: Optional[Dict[str, str]]
    ) -> Tuple[Any, tuple, Dict[str, Any]]:  # type: ignore[type-arg]
        return client.get_model_config, (model_name,), {"model_version": model_version, "headers": headers}

    # -- request objects -------------------------------------------------------

    def inline_input(self, name: str, shape: List[int], datatype: str, array: npt.NDArray[Any]) -> Any:
        made = self.module.InferInput(name, shape, datatype)
        made.set_data_from_numpy(array)
        return made

    def shm_input(self, name: str, shape: List[int], datatype: str, part: Any) -> Any:
        """An input whose bytes are in `part` (a LeasePart: the server's name and offset)."""
        made = self.module.InferInput(name, shape, datatype)
        made.set_shared_memory(part.name, part.size, offset=part.offset)
        return made

    def requested_output(self, name: str, part: Any = None) -> Any:
        """An output returned in the response, or written to `part` when given."""
        made = self.module.InferRequestedOutput(name)
        if part is not None:
            made.set_shared_memory(part.name, part.size, offset=part.offset)
        return made

    def is_requested_output(self, candidate: Any) -> bool:
        """Whether `candidate` is the client kind's InferRequestedOutput."""
        return isinstance(candidate, self.module.InferRequestedOutput)

    def output_request(self, requested: Any) -> Tuple[str, bool]:
        """(name, whether it may go to shared memory) of a tritonclient
        InferRequestedOutput: not one asked as classes (class_count) or as
        JSON, which must come back as the caller asked."""
        raise NotImplementedError

    # -- results ---------------------------------------------------------------

    def output_names(self, result: Any) -> List[str]:
        raise NotImplementedError

    def output_type(self, result: Any, name: str) -> Optional[Tuple[str, List[int]]]:
        """The output's datatype and shape as the server sent them, or None if it sent no such output."""
        raise NotImplementedError

    def output_array(self, result: Any, name: str) -> Optional[npt.NDArray[Any]]:
        """An output returned in the response, or None if there is none of that name."""
        return result.as_numpy(name)  # type: ignore[no-any-return]

    def inline_nbytes(self, result: Any, name: str) -> Optional[int]:
        """The bytes of an output returned in the response, as they travelled
        (BYTES with its lengths), without decoding it; None if not binary."""
        raise NotImplementedError

    def answered(self, error: BaseException) -> bool:
        """Whether the server answered the request that failed with `error`: it
        refused it or ran it to the end, and so will not touch its memory again."""
        raise NotImplementedError

    # -- the caller's own request objects (the accelerator) --------------------

    # The InferInput attribute that holds an input's bytes as they travel in the request.
    data_attribute = ""

    def given_input(self, item: Any) -> Optional[Tuple[str, str, Tuple[int, ...], Any]]:
        """(name, datatype, shape, data) of a tritonclient InferInput whose
        bytes travel in the request, `data` being what its data attribute
        holds (bytes, or what the accelerator staged); None for one that must
        travel exactly as the caller made it: JSON data, the caller's own
        shared memory, no data, or parameters this layer does not know."""
        raise NotImplementedError

    def declared_input(self, item: Any) -> Tuple[str, str, List[int]]:
        """(name, datatype, shape) of a tritonclient InferInput, as set."""
        raise NotImplementedError

    def set_input_data(self, item: Any, data: Any) -> None:
        """What the InferInput's set_data_from_numpy does once it has the
        bytes (binary data), with `data` in their place."""
        raise NotImplementedError

    def largest_inline_output(self, result: Any) -> int:
        """The bytes of the largest output the response carried (0 if none)."""
        raise NotImplementedError


class _HttpAdapter(ClientAdapter):
    protocol = "http"

    def __init__(self, module: Any, aio: bool) -> None:
        super().__init__(module, aio)
        self.thread_bound = not aio

    def inline_input(self, name: str, shape: List[int], datatype: str, array: npt.NDArray[Any]) -> Any:
        made = self.module.InferInput(name, shape, datatype)
        made.set_data_from_numpy(array, binary_data=True)
        return made

    def requested_output(self, name: str, part: Any = None) -> Any:
        made = self.module.InferRequestedOutput(name, binary_data=True)
        if part is not None:
            made.set_shared_memory(part.name, part.size, offset=part.offset)
        return made

    def client_like(self, client: Any) -> Optional[Any]:
        address = self.address(client)
        if address is None:
            return None
        # Its timeouts and connection count live in geventhttpclient's pool.
        connections = getattr(getattr(client, "_client_stub", None), "_connection_pool", None)
        options = {
            option: getattr(connections, attribute)
            for option, attribute in (
                ("connection_timeout", "connection_timeout"),
                ("network_timeout", "network_timeout"),
                ("concurrency", "size"),
            )
            if getattr(connections, attribute, None) is not None
        }
        return self.module.InferenceServerClient(address, verbose=bool(getattr(client, "_verbose", False)), **options)

    data_attribute = "_raw_data"

    def given_input(self, item: Any) -> Optional[Tuple[str, str, Tuple[int, ...], Any]]:
        state = item.__dict__  # read around the accelerator's descriptor: staged data stays staged
        data = state.get("_raw_data")
        if data is None or any(key != "binary_data_size" for key in state.get("_parameters") or ()):
            return None
        return str(state["_name"]), str(state["_datatype"]), tuple(int(d) for d in state["_shape"]), data

    def declared_input(self, item: Any) -> Tuple[str, str, List[int]]:
        return str(item._name), str(item._datatype), list(item._shape)

    def set_input_data(self, item: Any, data: Any) -> None:
        parameters = item._parameters
        for key in ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"):
            parameters.pop(key, None)
        item._data = None
        item.__dict__["_raw_data"] = data
        parameters["binary_data_size"] = len(data)

    def largest_inline_output(self, result: Any) -> int:
        return max(
            (
                int((output.get("parameters") or {}).get("binary_data_size", 0))
                for output in result.get_response().get("outputs", ())
            ),
            default=0,
        )

    def output_request(self, requested: Any) -> Tuple[str, bool]:
        parameters = getattr(requested, "_parameters", {})
        binary = bool(parameters.get("binary_data", False))
        plain = binary and not parameters.get("classification") and "shared_memory_region" not in parameters
        return str(requested.name()), plain

    def output_names(self, result: Any) -> List[str]:
        return [output["name"] for output in result.get_response().get("outputs", [])]

    def output_type(self, result: Any, name: str) -> Optional[Tuple[str, List[int]]]:
        output = result.get_output(name)
        if output is None:
            return None
        return str(output["datatype"]), [int(d) for d in output["shape"]]

    def inline_nbytes(self, result: Any, name: str) -> Optional[int]:
        output = result.get_output(name)
        size = (output or {}).get("parameters", {}).get("binary_data_size")
        return None if size is None else int(size)

    def answered(self, error: BaseException) -> bool:
        status = _status(error)
        return status is not None and status.isdigit() and status not in _HTTP_UNANSWERED


class _GrpcAdapter(ClientAdapter):
    protocol = "grpc"

    def model_config(
        self, client: Any, model_name: str, model_version: str, headers: Optional[Dict[str, str]]
    ) -> Tuple[Any, tuple, Dict[str, Any]]:  # type: ignore[type-arg]
        call, args, kwargs = super().model_config(client, model_name, model_version, headers)
        return call, args, {**kwargs, "as_json": True}

    data_attribute = "_raw_content"

    def given_input(self, item: Any) -> Optional[Tuple[str, str, Tuple[int, ...], Any]]:
        data = item.__dict__.get("_raw_content")  # around the accelerator's descriptor, as for HTTP
        tensor = item._input  # the protobuf InferInputTensor: binary data leaves its parameters empty
        if data is None or len(tensor.parameters):
            return None
        return str(tensor.name), str(tensor.datatype), tuple(int(d) for d in tensor.shape), data

    def declared_input(self, item: Any) -> Tuple[str, str, List[int]]:
        tensor = item._input
        return str(tensor.name), str(tensor.datatype), list(tensor.shape)

    def set_input_data(self, item: Any, data: Any) -> None:
        parameters = item._input.parameters
        for key in ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"):
            parameters.pop(key, None)
        item.__dict__["_raw_content"] = data

    def largest_inline_output(self, result: Any) -> int:
        return max(map(len, result.get_response().raw_output_contents), default=0)

    def output_request(self, requested: Any) -> Tuple[str, bool]:
        tensor = requested._output  # the protobuf InferRequestedOutputTensor
        parameters = tensor.parameters
        plain = "classification" not in parameters and "shared_memory_region" not in parameters
        return str(tensor.name), plain

    def output_names(self, result: Any) -> List[str]:
        return [output.name for output in result.get_response().outputs]

    def output_type(self, result: Any, name: str) -> Optional[Tuple[str, List[int]]]:
        output = result.get_output(name)
        if output is None:
            return None
        return str(output.datatype), [int(d) for d in output.shape]

    def inline_nbytes(self, result: Any, name: str) -> Optional[int]:
        response = result.get_response()
        contents = response.raw_output_contents
        for index, output in enumerate(response.outputs):
            if output.name == name:
                return len(contents[index]) if index < len(contents) else None
        return None

    def answered(self, error: BaseException) -> bool:
        status = _status(error)
        if status == "StatusCode.INTERNAL":
            return not any(words in str(error) for words in _GRPC_TRANSPORT_WORDS)
        return status in _GRPC_ANSWERED


def _status(error: BaseException) -> Optional[str]:
    """The status of a tritonclient InferenceServerException, else None."""
    status = getattr(error, "status", None)
    if not callable(status) or type(error).__name__ != "InferenceServerException":
        return None
    value = status()
    return None if value is None else str(value)


_ADAPTERS: Dict[Tuple[str, bool], ClientAdapter] = {}


def adapter_for(client: Any) -> ClientAdapter:
    """The adapter for a tritonclient.http or tritonclient.grpc client, or one of their aio clients."""
    module_name = type(client).__module__
    aio = ".aio" in module_name
    if module_name.startswith("tritonclient.grpc"):
        protocol = "grpc"
    elif module_name.startswith("tritonclient.http"):
        protocol = "http"
    else:
        raise SharedMemoryException(
            f"expected a tritonclient.http or tritonclient.grpc client, got {type(client).__name__}"
        )
    adapter = _ADAPTERS.get((protocol, aio))
    if adapter is None:
        if protocol == "grpc":
            import tritonclient.grpc as grpc

            adapter = _GrpcAdapter(grpc, aio)
        else:
            import tritonclient.http as http

            adapter = _HttpAdapter(http, aio)
        _ADAPTERS[(protocol, aio)] = adapter
    return adapter

"""A scripted stand-in for a Triton server and its client, to drive the pool's
request flow through every rule in milliseconds, without PyTriton.

It keeps Triton's rules that the flow depends on: a region is mapped by key at
registration (so it outlives an unlink), a missing name is refused before the
model runs, an output slot that is too small is refused after it ran and
names the size needed, an input must fill its slot exactly, unregistering a
region a request still uses is refused ("currently in use", as Triton 2.51-2.52
do), and a request the client gave up on still runs to the end and writes its
outputs. Tests script what the real server does only now and then: forget
every registration, refuse, run slowly. The same rules are tested against the
real server (PyTriton) in test_e2e_*.py.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from tritonshm.tensor import np_to_triton_dtype, triton_to_np_dtype
from tritonshm.triton.adapters import ClientAdapter


class InferenceServerException(Exception):
    """As tritonclient's: a status ("400", or None for a client-side failure) and a message."""

    def __init__(self, msg: str, status: Optional[str] = "400") -> None:
        super().__init__(msg)
        self._msg, self._status = msg, status

    def status(self) -> Optional[str]:
        return self._status

    def __str__(self) -> str:
        return f"[{self._status}] {self._msg}" if self._status else self._msg


@dataclass
class Model:
    fn: Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]
    outputs: Tuple[Tuple[str, str, Tuple[int, ...]], ...] = ()  # the configuration's (name, datatype, dims)
    max_batch_size: int = 0
    has_config: bool = True


@dataclass
class Result:
    described: Dict[str, Tuple[str, List[int]]]  # every output returned: datatype, shape
    inline: Dict[str, np.ndarray]  # those returned in the response


@dataclass
class _Region:
    key: str
    size: int
    view: mmap.mmap


@dataclass
class ScriptedServer:
    models: Dict[str, Model] = field(default_factory=dict)
    runs: "Counter[str]" = field(default_factory=Counter)
    registrations: Dict[str, _Region] = field(default_factory=dict)
    in_use: "Counter[str]" = field(default_factory=Counter)
    # Actions for the next infer calls, one per call: "forget" (every
    # registration, before the request is read), "give_up" (the client
    # times out while the model still runs: its outputs are written when
    # the next request has written its own), or a callable run first.
    script: List[Any] = field(default_factory=list)
    abandoned: List[Callable[[], None]] = field(default_factory=list)
    registers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, name: str, key: str, byte_size: int) -> None:
        with self.lock:
            self.registers += 1
            if name in self.registrations:
                raise InferenceServerException(f"shared memory region '{name}' already in manager")
            path = "/dev/shm/" + key.lstrip("/")
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                raise InferenceServerException(f"Unable to open shared memory region: '{key}'") from None
            try:
                if os.fstat(fd).st_size < byte_size:
                    raise InferenceServerException(f"failed to register shared memory region '{name}': invalid args")
                view = mmap.mmap(fd, byte_size)
            finally:
                os.close(fd)
            self.registrations[name] = _Region(key, byte_size, view)

    def unregister(self, name: str) -> None:
        with self.lock:
            if self.in_use[name] > 0:
                raise InferenceServerException(
                    f"Cannot unregister shared memory region '{name}', it is currently in use."
                )
            self.registrations.pop(name, None)

    def forget_everything(self) -> None:
        with self.lock:
            self.registrations.clear()

    def region(self, name: str) -> _Region:
        found = self.registrations.get(name)
        if found is None:
            raise InferenceServerException(f"Unable to find shared memory region: '{name}'", "404")
        return found

    def infer(self, model_name: str, inputs: List[dict], outputs: Optional[List[dict]]) -> Result:
        action = self.script.pop(0) if self.script else None
        if action == "forget":
            self.forget_everything()
        elif callable(action):
            action()
        model = self.models[model_name]
        with self.lock:  # resolved before the model runs, as Triton does
            arrays = {}
            used = []
            for tensor in inputs:
                dtype = np.object_ if tensor["datatype"] == "BYTES" else triton_to_np_dtype(tensor["datatype"])
                if "region" in tensor:
                    region = self.region(tensor["region"])
                    expected = int(np.prod(tensor["shape"])) * np.dtype(dtype).itemsize
                    if tensor["size"] != expected:
                        raise InferenceServerException(
                            f"input byte size mismatch for input '{tensor['name']}' for model '{model_name}'. "
                            f"Expected {expected}, got {tensor['size']}"
                        )
                    raw = region.view[tensor["offset"] : tensor["offset"] + tensor["size"]]
                    arrays[tensor["name"]] = np.frombuffer(raw, dtype).reshape(tensor["shape"]).copy()
                    used.append(tensor["region"])
                else:
                    arrays[tensor["name"]] = np.asarray(tensor["data"])
            slots = {}
            for wanted in outputs or ():
                if "region" in wanted:
                    slots[wanted["name"]] = (self.region(wanted["region"]), wanted["offset"], wanted["size"])
                    used.append(wanted["region"])
            for name in used:
                self.in_use[name] += 1
        try:
            self.runs[model_name] += 1
            produced = model.fn(arrays)
            names = [w["name"] for w in outputs] if outputs is not None else list(produced)
            for name, (_, _, size) in slots.items():
                needed = produced[name].nbytes
                if needed > size:
                    raise InferenceServerException(
                        f"shared memory size specified with the request for output '{name}' ({size} bytes) should "
                        f"be at least {needed} bytes to hold the results"
                    )
            result = Result({}, {})
            writes = []
            for name in names:
                array = np.ascontiguousarray(produced[name])
                result.described[name] = (np_to_triton_dtype(array.dtype), list(array.shape))
                if name in slots:
                    region, offset, _ = slots[name]
                    writes.append((region, offset, array.tobytes()))
                else:
                    result.inline[name] = array
        finally:
            if action != "give_up":
                with self.lock:
                    for name in used:
                        self.in_use[name] -= 1

        def write(writes: list = writes, used: list = used) -> None:  # noqa: B006 - bound now, on purpose
            for region, offset, data in writes:
                region.view[offset : offset + len(data)] = data
            if action == "give_up":
                with self.lock:
                    for name in used:
                        self.in_use[name] -= 1

        if action == "give_up":
            self.abandoned.append(write)  # the server finishes it while the next request runs
            raise TimeoutError("the client gave up waiting (scripted)")
        write()
        late, self.abandoned = self.abandoned, []
        for finish in late:
            finish()
        return result

    def model_config(self, model_name: str) -> dict:
        model = self.models.get(model_name)
        if model is None or not model.has_config:
            raise InferenceServerException(f"model '{model_name}' has no configuration to give")
        return {
            "config": {
                "max_batch_size": model.max_batch_size,
                "output": [
                    {"name": name, "data_type": "TYPE_" + datatype, "dims": list(dims)}
                    for name, datatype, dims in model.outputs
                ],
            }
        }


class ScriptedClient:
    """The client's calls the pool makes, on a ScriptedServer."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.calls: "Counter[str]" = Counter()

    def register_system_shared_memory(self, name: str, key: str, byte_size: int, headers: Any = None) -> None:
        self.calls["register"] += 1
        self.server.register(name, key, byte_size)

    def unregister_system_shared_memory(self, name: str = "", headers: Any = None) -> None:
        self.calls["unregister"] += 1
        self.server.unregister(name)

    def get_model_config(self, model_name: str, model_version: str = "", headers: Any = None) -> dict:
        self.calls["config"] += 1
        return self.server.model_config(model_name)

    def infer(self, model_name: str, inputs: List[dict], outputs: Any = None, model_version: str = "", **kw: Any):
        self.calls["infer"] += 1
        return self.server.infer(model_name, inputs, outputs)


class ScriptedAsyncClient:
    """The same calls, awaited; each records the thread it ran on."""

    def __init__(self, server: ScriptedServer) -> None:
        self.sync = ScriptedClient(server)
        self.threads: List[int] = []

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.get_ident())
        await asyncio.sleep(0)
        return fn(*args, **kwargs)

    async def register_system_shared_memory(self, *args: Any, **kwargs: Any) -> None:
        return await self._call(self.sync.register_system_shared_memory, *args, **kwargs)

    async def unregister_system_shared_memory(self, *args: Any, **kwargs: Any) -> None:
        return await self._call(self.sync.unregister_system_shared_memory, *args, **kwargs)

    async def get_model_config(self, *args: Any, **kwargs: Any) -> dict:
        return await self._call(self.sync.get_model_config, *args, **kwargs)

    async def infer(self, *args: Any, **kwargs: Any) -> Result:
        return await self._call(self.sync.infer, *args, **kwargs)


class ScriptedAdapter(ClientAdapter):
    protocol = "scripted"

    def __init__(self, aio: bool = False) -> None:
        super().__init__(None, aio)

    def check(self, client: Any, argument: str) -> None:
        assert isinstance(client, ScriptedAsyncClient if self.aio else ScriptedClient), argument

    def inline_input(self, name, shape, datatype, array):
        return {"name": name, "shape": shape, "datatype": datatype, "data": array}

    def shm_input(self, name, shape, datatype, part):
        return {
            "name": name,
            "shape": shape,
            "datatype": datatype,
            "region": part.name,
            "offset": part.offset,
            "size": part.size,
        }

    def requested_output(self, name, part=None):
        if part is None:
            return {"name": name}
        return {"name": name, "region": part.name, "offset": part.offset, "size": part.size}

    def is_requested_output(self, candidate):
        return isinstance(candidate, dict)

    def output_request(self, requested):
        return requested["name"], requested.get("shareable", True)

    def output_names(self, result):
        return list(result.described)

    def output_type(self, result, name):
        return result.described.get(name)

    def output_array(self, result, name):
        return result.inline.get(name)

    def inline_nbytes(self, result, name):
        array = result.inline.get(name)
        return None if array is None else int(array.nbytes)

    def answered(self, error):
        return isinstance(error, InferenceServerException) and error.status() is not None

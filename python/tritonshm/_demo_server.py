"""A stand-in for Triton's system shared memory path, run as its own process.

It does what the server does with a registered region, and nothing of
tritonshm: shm_open the key, mmap byte_size bytes, check that offset and size
fit, read inputs and write outputs, munmap on unregister. Requests arrive as
JSON lines on stdin; each gets one JSON line on stdout.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
from typing import Any, Dict

import numpy as np
import numpy.typing as npt

try:  # the shm_open binding of CPython's multiprocessing.shared_memory, without its resource tracker
    import _posixshmem
except ImportError:  # pragma: no cover - not Linux
    _posixshmem = None


class RegisteredRegion:
    def __init__(self, name: str, key: str, offset: int, byte_size: int) -> None:
        fd = _posixshmem.shm_open(key if key.startswith("/") else "/" + key, os.O_RDWR, 0o600)
        try:
            actual = os.fstat(fd).st_size
            if offset + byte_size > actual:
                raise ValueError(
                    f"failed to register '{name}': offset {offset} + byte_size {byte_size} exceeds the "
                    f"{actual} bytes of shared memory region '{key}'"
                )
            self.map = mmap.mmap(fd, offset + byte_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)  # the mapping keeps the memory, as in Triton
        self.name, self.key, self.offset, self.byte_size = name, key, offset, byte_size

    def span(self, offset: int, byte_size: int) -> slice:
        if offset + byte_size > self.byte_size:
            raise ValueError(
                f"{byte_size} bytes at offset {offset} exceed the {self.byte_size} bytes registered for '{self.name}'"
            )
        start = self.offset + offset
        return slice(start, start + byte_size)


def _add_sub(inputs: Dict[str, npt.NDArray[Any]]) -> Dict[str, npt.NDArray[Any]]:
    return {"OUTPUT0": inputs["INPUT0"] + inputs["INPUT1"], "OUTPUT1": inputs["INPUT0"] - inputs["INPUT1"]}


def serve(stdin: Any = sys.stdin, stdout: Any = sys.stdout) -> None:
    regions: Dict[str, RegisteredRegion] = {}

    def handle(request: Dict[str, Any]) -> Dict[str, Any]:
        op = request["op"]
        if op == "register":
            if request["name"] in regions:
                raise ValueError(f"shared memory region '{request['name']}' already registered")
            regions[request["name"]] = RegisteredRegion(
                request["name"], request["key"], request.get("offset", 0), request["byte_size"]
            )
            return {}
        if op == "unregister":
            region = regions.pop(request["name"])
            region.map.close()
            return {}
        if op == "infer":
            inputs = {}
            for spec in request["inputs"]:
                region = regions[spec["region"]]
                dtype = np.dtype(spec["dtype"])
                count = int(np.prod(spec["shape"]))
                raw = region.map[region.span(spec["offset"], count * dtype.itemsize)]
                inputs[spec["name"]] = np.frombuffer(raw, dtype=dtype).reshape(spec["shape"])
            outputs = _add_sub(inputs)
            for spec in request["outputs"]:
                region = regions[spec["region"]]
                data = np.ascontiguousarray(outputs[spec["name"]]).tobytes()
                region.map[region.span(spec["offset"], len(data))] = data
            return {"outputs": [{"name": n, "dtype": str(v.dtype), "shape": list(v.shape)} for n, v in outputs.items()]}
        if op == "shutdown":
            return {}
        raise ValueError(f"unknown op {op!r}")

    for line in stdin:
        request = json.loads(line)
        try:
            reply = {"ok": True, **handle(request)}
        except Exception as exc:  # every failure goes back to the client as its error text
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
        if request.get("op") == "shutdown":
            break
    for region in regions.values():
        region.map.close()


if __name__ == "__main__":
    serve()

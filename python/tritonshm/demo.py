"""`tritonshm demo`: Triton's classic add/sub system shared memory flow.

The client creates an input and an output region, writes INPUT0 and INPUT1
(16 x INT32) at offsets 0 and 64, registers both regions with a server that
opens them by key, asks it to compute OUTPUT0 = INPUT0 + INPUT1 and
OUTPUT1 = INPUT0 - INPUT1 into the output region, reads the results with
get_contents_as_numpy, checks them and destroys the regions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

import numpy as np
import numpy.typing as npt

import tritonshm as shm


class EmbeddedServer:
    """The stand-in server (tritonshm._demo_server) in a child process."""

    def __init__(self) -> None:
        # Run by its path, not with -m: -m would put the working directory
        # first on the child's sys.path and import whatever lies there.
        server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_demo_server.py")
        self.process = subprocess.Popen(
            [sys.executable, server],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, **request: Any) -> Dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"demo server exited with code {self.process.wait()}")
        reply: Dict[str, Any] = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"demo server: {reply['error']}")
        return reply

    def register(self, name: str, key: str, byte_size: int) -> None:
        self.call(op="register", name=name, key=key, offset=0, byte_size=byte_size)

    def unregister(self, name: str) -> None:
        self.call(op="unregister", name=name)

    def infer(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        self.call(op="infer", inputs=inputs, outputs=outputs)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call(op="shutdown")
            finally:
                self.process.wait(timeout=10)


class TritonServer:
    """A running Triton Inference Server, driven with the real tritonclient."""

    def __init__(self, url: str, protocol: str = "http", model: str = "simple") -> None:
        try:
            if protocol == "grpc":
                import tritonclient.grpc as client_module
            else:
                import tritonclient.http as client_module
        except ImportError as exc:
            raise RuntimeError(f"--url needs tritonclient: pip install 'tritonclient[{protocol}]' ({exc})") from exc
        self.module, self.protocol, self.model = client_module, protocol, model
        self.client = client_module.InferenceServerClient(url=url)
        if not self.client.is_server_live():
            raise RuntimeError(f"Triton at {url} is not live")

    def register(self, name: str, key: str, byte_size: int) -> None:
        self.client.register_system_shared_memory(name, key, byte_size)

    def unregister(self, name: str) -> None:
        self.client.unregister_system_shared_memory(name)

    def infer(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        from tritonshm import np_to_triton_dtype

        infer_inputs = []
        for spec in inputs:
            item = self.module.InferInput(spec["name"], spec["shape"], np_to_triton_dtype(np.dtype(spec["dtype"])))
            nbytes = int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize
            item.set_shared_memory(spec["region"], nbytes, offset=spec["offset"])
            infer_inputs.append(item)
        infer_outputs = []
        for spec in outputs:
            item = (
                self.module.InferRequestedOutput(spec["name"], binary_data=True)
                if self.protocol == "http"
                else self.module.InferRequestedOutput(spec["name"])
            )
            item.set_shared_memory(spec["region"], spec["byte_size"], offset=spec["offset"])
            infer_outputs.append(item)
        self.client.infer(self.model, infer_inputs, outputs=infer_outputs)

    def close(self) -> None:
        self.client.close()


def run_add_sub(
    server: Any, tag: Optional[str] = None, verbose: bool = True, shm: Any = shm
) -> Dict[str, npt.NDArray[Any]]:
    """One add/sub request through shared memory; returns the outputs (copies).
    `shm` is the client library: tritonshm, or tritonclient.utils.shared_memory
    for comparison (the benchmarks run both)."""
    tag = tag or str(os.getpid())
    input0 = np.arange(0, 16, dtype=np.int32)  # numpy 2.5 types start as positional-only
    input1 = np.full(shape=16, fill_value=3, dtype=np.int32)
    byte_size = input0.nbytes
    in_key, out_key = f"/tritonshm_demo_in_{tag}", f"/tritonshm_demo_out_{tag}"
    in_name, out_name = f"input_data_{tag}", f"output_data_{tag}"

    out_handle = shm.create_shared_memory_region(out_name, out_key, byte_size * 2, create_only=True)
    in_handle = None
    registered = []
    try:
        in_handle = shm.create_shared_memory_region(in_name, in_key, byte_size * 2, create_only=True)
        shm.set_shared_memory_region(in_handle, [input0])
        shm.set_shared_memory_region(in_handle, [input1], offset=byte_size)
        for name, key in ((out_name, out_key), (in_name, in_key)):
            server.register(name, key, byte_size * 2)
            registered.append(name)
        server.infer(
            inputs=[
                {"name": "INPUT0", "region": in_name, "offset": 0, "dtype": "int32", "shape": [1, 16]},
                {"name": "INPUT1", "region": in_name, "offset": byte_size, "dtype": "int32", "shape": [1, 16]},
            ],
            outputs=[
                {"name": "OUTPUT0", "region": out_name, "offset": 0, "byte_size": byte_size},
                {"name": "OUTPUT1", "region": out_name, "offset": byte_size, "byte_size": byte_size},
            ],
        )
        output0 = shm.get_contents_as_numpy(out_handle, np.int32, [1, 16])
        output1 = shm.get_contents_as_numpy(out_handle, np.int32, [1, 16], offset=byte_size)
        if verbose:
            for i in range(16):
                print(
                    f"{input0[i]:3d} + {input1[i]:3d} = {output0[0][i]:3d}    "
                    f"{input0[i]:3d} - {input1[i]:3d} = {output1[0][i]:3d}"
                )
        if not (np.array_equal(output0[0], input0 + input1) and np.array_equal(output1[0], input0 - input1)):
            raise RuntimeError(f"wrong results: OUTPUT0={output0[0]} OUTPUT1={output1[0]}")
        results = {"OUTPUT0": output0.copy(), "OUTPUT1": output1.copy()}
        del output0, output1  # tritonclient cannot destroy a region while views of it exist
        return results
    finally:
        for name in registered:
            server.unregister(name)
        if in_handle is not None:
            shm.destroy_shared_memory_region(in_handle)
        shm.destroy_shared_memory_region(out_handle)


def run(args: Any) -> int:
    try:
        if args.url:
            server: Any = TritonServer(args.url, args.protocol, args.model)
            print(
                f"tritonshm demo: add/sub through system shared memory with Triton at {args.url} "
                f"({args.protocol}, model '{args.model}')"
            )
        else:
            server = EmbeddedServer()
            print(
                "tritonshm demo: add/sub through system shared memory with an embedded server process "
                f"(pid {server.process.pid})"
            )
    except Exception as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 1
    try:
        run_add_sub(server)
    except Exception as exc:
        print(f"demo FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        server.close()
    left = shm.mapped_shared_memory_regions()
    if left:
        print(f"demo FAILED: regions still mapped: {left}", file=sys.stderr)
        return 1
    print("PASS: OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1; both regions destroyed")
    return 0

"""The test and benchmark fixture: a real Triton Inference Server through
PyTriton (CPU only), serving the models the tests and benchmarks use. Imported
by tests/python/conftest.py and benchmarks/ (by file path: tests/ is no
package), and run as a script by `spawn`, which starts it in a process of its
own.

  simple          INT32 INPUT0, INPUT1 [16] -> OUTPUT0 = sum, OUTPUT1 = difference
                  (Triton's classic shared memory example model), max_batch_size 8
  simple_fp32     the same in FP32
  simple_fp16     the same in FP16
  bytes_upper     BYTES INPUT0 [n] -> OUTPUT0 = upper-cased, OUTPUT1 = lengths (INT32)
  double_fp32     FP32 INPUT0 [n] (no batching, any length) -> OUTPUT0 = 2 * INPUT0
  scale           FP32 INPUT0 [-1] -> OUTPUT0 = 2 * INPUT0, max_batch_size 1, as
                  PyTriton users declare models (requests are [1, n]); the output's
                  size is not in the configuration.
  scale_fixed_<n> the same with the shape fixed at (n,), for n in FIXED_ELEMENTS
                  (the benchmark table's sizes: 4 KiB .. 64 MiB of FP32), or the n
                  given; bound only when asked (--fixed-shape-models [N ...],
                  fixed_elements=...), as each model adds about 2 s to the server's start
  detect          FP32 INPUT0 [n] (no batching) -> OUTPUT0 = the elements > 0.5, in
                  order: the output's length depends on the content
  detect2         the same with two outputs that grow together: BOXES [k, 4] (each
                  detection repeated) and SCORES [k]
  sample          FP32 INPUT0 [n] -> OUTPUT0 of a length drawn anew on every run
                  (900-1099 elements of 2 * INPUT0[0]), as sampling and generation do
  slow            FP32 INPUT0 [n] -> OUTPUT0 = 2 * INPUT0 after SLOW_SECONDS: a client
                  timeout gives up while the server still runs it
  counted         FP32 INPUT0 [n] -> OUTPUT0 = 2 * INPUT0, RUNS = [how many times it ran],
                  to count model runs through the server
  overflowing     FP32 INPUT0 [16] (max_batch_size 1) -> OUTPUT0 of 32 elements: more than
                  its configuration's fixed dims (16,), which Triton lets through

Run:  python tests/triton_server.py --http-port 8000 --grpc-port 8001 [--open-statistics] [--fixed-shape-models]
(examples/pytriton_server.py is the short example for users.)

Needs `pip install nvidia-pytriton` (Linux, Python < 3.13).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np

# The benchmark table's sizes (4 KiB, 64 KiB, 1 MiB, 16 MiB, 64 MiB) in FP32 elements.
FIXED_ELEMENTS = (1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 24)
DETECT_THRESHOLD = np.float32(0.5)


SLOW_SECONDS = 0.6
SAMPLE_LENGTHS = (900, 1100)


def fixed_model(elements: int) -> str:
    """The name of the fixed-shape `scale` model for `elements` FP32 elements."""
    return f"scale_fixed_{elements}"


def detect_expected(x: np.ndarray) -> np.ndarray:
    """What `detect` returns for x (a 1-D FP32 array)."""
    return x[x > DETECT_THRESHOLD]


def use_this_interpreters_libpython() -> None:
    """PyTriton runs each model in a stub process linked against
    libpython3.X.so, found through the dynamic loader. If the system has
    another libpython3.X (e.g. Debian's) than the one running us (e.g. pyenv's),
    the stub loads that one under our standard library and fails at model
    load (seen: "'_thread.RLock' object has no attribute '_recursion_count'").
    Putting this interpreter's LIBDIR first makes the stub load the matching
    library. Must run before Triton starts."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and os.path.isdir(libdir):
        current = os.environ.get("LD_LIBRARY_PATH", "")
        if libdir not in current.split(":"):
            os.environ["LD_LIBRARY_PATH"] = libdir + (":" + current if current else "")


def _add_sub(dtype: Any) -> Any:
    from pytriton.decorators import batch

    @batch
    def infer(INPUT0, INPUT1):
        return {"OUTPUT0": (INPUT0 + INPUT1).astype(dtype), "OUTPUT1": (INPUT0 - INPUT1).astype(dtype)}

    return infer


def _bytes_upper() -> Any:
    from pytriton.decorators import batch

    @batch
    def infer(INPUT0):
        upper = np.vectorize(lambda b: bytes(b).upper(), otypes=[object])(INPUT0)
        lengths = np.vectorize(lambda b: len(bytes(b)), otypes=[np.int32])(INPUT0)
        return {"OUTPUT0": upper.astype(np.bytes_), "OUTPUT1": lengths}

    return infer


def _double() -> Any:
    from pytriton.decorators import batch

    @batch
    def infer(INPUT0):
        return {"OUTPUT0": INPUT0 * np.float32(2)}

    return infer


def _detect() -> Any:
    # No @batch: it splits outputs along their first dimension, which here is
    # the number of detections, not a batch.
    def infer(requests):
        return [{"OUTPUT0": detect_expected(request["INPUT0"])} for request in requests]

    return infer


def _detect2() -> Any:
    def infer(requests):
        found = [detect_expected(request["INPUT0"]) for request in requests]
        return [{"BOXES": np.repeat(f[:, None], 4, axis=1), "SCORES": f} for f in found]

    return infer


def _sample() -> Any:
    rng = np.random.default_rng(2024)

    def infer(requests):
        return [
            {"OUTPUT0": np.full(int(rng.integers(*SAMPLE_LENGTHS)), 2 * request["INPUT0"][0], np.float32)}
            for request in requests
        ]

    return infer


def _slow() -> Any:
    def infer(requests):
        time.sleep(SLOW_SECONDS)
        return [{"OUTPUT0": request["INPUT0"] * np.float32(2)} for request in requests]

    return infer


def _counted() -> Any:
    runs = [0]
    lock = threading.Lock()

    def infer(requests):
        outputs = []
        for request in requests:
            with lock:
                runs[0] += 1
                count = runs[0]
            outputs.append({"OUTPUT0": request["INPUT0"] * np.float32(2), "RUNS": np.array([count], np.int64)})
        return outputs

    return infer


def _overflowing() -> Any:
    from pytriton.decorators import batch

    @batch
    def infer(INPUT0):
        return {"OUTPUT0": np.concatenate([INPUT0, INPUT0], axis=1) * np.float32(2)}

    return infer


def bind_models(triton: Any, fixed_elements: Sequence[int] = ()) -> None:
    """Binds every model above, scale_fixed_<n> for each n in fixed_elements."""
    from pytriton.model_config import ModelConfig, Tensor

    for name, dtype in (("simple", np.int32), ("simple_fp32", np.float32), ("simple_fp16", np.float16)):
        triton.bind(
            model_name=name,
            infer_func=_add_sub(dtype),
            inputs=[Tensor(name="INPUT0", dtype=dtype, shape=(16,)), Tensor(name="INPUT1", dtype=dtype, shape=(16,))],
            outputs=[
                Tensor(name="OUTPUT0", dtype=dtype, shape=(16,)),
                Tensor(name="OUTPUT1", dtype=dtype, shape=(16,)),
            ],
            config=ModelConfig(max_batch_size=8),
            strict=True,
        )
    triton.bind(
        model_name="bytes_upper",
        infer_func=_bytes_upper(),
        inputs=[Tensor(name="INPUT0", dtype=np.bytes_, shape=(-1,))],
        outputs=[
            Tensor(name="OUTPUT0", dtype=np.bytes_, shape=(-1,)),
            Tensor(name="OUTPUT1", dtype=np.int32, shape=(-1,)),
        ],
        config=ModelConfig(max_batch_size=8),
    )
    triton.bind(
        model_name="double_fp32",
        infer_func=_double(),
        inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(-1,))],
        outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(-1,))],
        config=ModelConfig(batching=False),
    )
    # As PyTriton's and most ONNX/TorchScript users declare a model: variable
    # dims, so the output's size is known only from a response.
    triton.bind(
        model_name="scale",
        # One instance: with two, PyTriton's second stub can find the first's
        # handshake socket bound but not yet listening under load (seen: model
        # load fails with "ConnectionRefusedError" in get_config_from_handshake_server).
        infer_func=_double(),
        inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(-1,))],
        outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(-1,))],
        config=ModelConfig(max_batch_size=1),
    )
    for elements in fixed_elements:
        triton.bind(
            model_name=fixed_model(elements),
            infer_func=_double(),
            inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(elements,))],
            outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(elements,))],
            config=ModelConfig(max_batch_size=1),
        )
    triton.bind(
        model_name="detect",
        infer_func=_detect(),
        inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(-1,))],
        outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(-1,))],
        config=ModelConfig(batching=False),
    )
    triton.bind(
        model_name="detect2",
        infer_func=_detect2(),
        inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(-1,))],
        outputs=[
            Tensor(name="BOXES", dtype=np.float32, shape=(-1, 4)),
            Tensor(name="SCORES", dtype=np.float32, shape=(-1,)),
        ],
        config=ModelConfig(batching=False),
    )
    for name, infer_func in (("sample", _sample()), ("slow", _slow())):
        triton.bind(
            model_name=name,
            infer_func=infer_func,
            inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(-1,))],
            outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(batching=False),
        )
    triton.bind(
        model_name="counted",
        infer_func=_counted(),
        inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(-1,))],
        outputs=[
            Tensor(name="OUTPUT0", dtype=np.float32, shape=(-1,)),
            Tensor(name="RUNS", dtype=np.int64, shape=(1,)),
        ],
        config=ModelConfig(batching=False),
    )
    triton.bind(
        model_name="overflowing",
        infer_func=_overflowing(),
        inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(16,))],
        outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(16,))],
        config=ModelConfig(max_batch_size=1),
    )


def _make_triton(
    http_port: int, grpc_port: int, access_token: Optional[str] = None, open_statistics: bool = False
) -> Any:
    use_this_interpreters_libpython()
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    config = TritonConfig(
        http_port=http_port,
        grpc_port=grpc_port,
        allow_metrics=False,
        http_address="127.0.0.1",
        grpc_address="127.0.0.1",
    )
    # PyTriton puts Triton's shared-memory API behind an access token by
    # default; a plain tritonclient sends none. The server listens on loopback
    # only, and the other admin APIs stay guarded. With access_token, the
    # shared-memory API stays guarded by that token.
    if access_token is None:
        opened = {"shared-memory", "statistics"} if open_statistics else {"shared-memory"}
        security = TritonSecurityConfig(
            restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e not in opened]
        )
    else:
        security = TritonSecurityConfig(access_token=access_token)
    return Triton(config=config, security_config=security)


def start(
    http_port: int,
    grpc_port: int,
    access_token: Optional[str] = None,
    open_statistics: bool = False,
    fixed_elements: Sequence[int] = (),
) -> Any:
    """Starts Triton in this process with the models bound and returns it (call .stop())."""
    triton = _make_triton(http_port, grpc_port, access_token, open_statistics)
    bind_models(triton, fixed_elements)
    triton.run()
    return triton


def free_ports() -> Dict[str, int]:
    """Two free loopback ports: {"http": ..., "grpc": ...}."""
    ports = {}
    for protocol in ("http", "grpc"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports[protocol] = s.getsockname()[1]
    return ports


DEV_SHM = "/dev/shm"


def _names_in_use() -> set:
    """The /dev/shm names some live process has open or mapped."""
    used = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/maps") as maps:
                used.update(
                    line.rsplit("/dev/shm/", 1)[1].split(" ")[0].strip() for line in maps if "/dev/shm/" in line
                )
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("/dev/shm/"):
                        used.add(target[len("/dev/shm/") :].split(" ")[0])
    return used


def remove_server_leftovers(pid: int, psm_before: set) -> None:
    """Removes what a stopped server left in /dev/shm: PyTriton names its
    regions after the server's pid (pytrtion<pid>-...), and its data store
    makes multiprocessing regions (psm_...) that nobody unlinks once the
    group is killed. A psm_ region is removed only if it appeared while this
    server ran and no live process has it open or mapped (another server
    may run alongside)."""
    mine = f"pytrtion{pid}-"
    appeared = [n for n in os.listdir(DEV_SHM) if n.startswith(mine) or (n.startswith("psm_") and n not in psm_before)]
    if not appeared:
        return
    used = _names_in_use()
    for name in appeared:
        if name.startswith(mine) or name not in used:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(DEV_SHM, name))


@contextlib.contextmanager
def spawn(
    *args: str,
    ports: Optional[Mapping[str, int]] = None,
    script: Optional[str] = None,
    private_dev_shm: bool = False,
    timeout: float = 240,
) -> Iterator[Dict[str, str]]:
    """This script as a server in a process group of its own; yields its
    addresses {"http": "127.0.0.1:port", "grpc": ...} and stops it after.
    `ports` ({"http": ..., "grpc": ...}) fixes the ports, e.g. to start a
    server again on the ports of one that stopped; by default they are free
    ones. `script` runs another server script with the same command line and
    "Triton serving on" line (examples/pytriton_server.py). With private_dev_shm, it runs in a mount namespace whose /dev/shm is
    its own tmpfs, as in a container started without --ipc=host (needs root)."""
    chosen = dict(ports) if ports is not None else free_ports()
    psm_before = {name for name in os.listdir(DEV_SHM) if name.startswith("psm_")}
    command = [
        sys.executable,
        os.path.abspath(script or __file__),
        "--http-port",
        str(chosen["http"]),
        "--grpc-port",
        str(chosen["grpc"]),
        *args,
    ]
    if private_dev_shm:
        command = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs /dev/shm && exec "$@"', "sh", *command]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        ready, seen = threading.Event(), []

        def read() -> None:  # drains the pipe for the server's whole life
            assert process.stdout is not None
            for line in process.stdout:
                seen.append(line)
                if "Triton serving on" in line:  # tritonserver's own log may share the line
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start: " + "".join(seen[-30:]))
        yield {p: f"127.0.0.1:{port}" for p, port in chosen.items()}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        # The stub processes of the models share the group; none may outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if not private_dev_shm:
            remove_server_leftovers(process.pid, psm_before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--access-token", help="keep the shared-memory API behind this token")
    parser.add_argument("--open-statistics", action="store_true", help="also open the statistics API (benchmarks)")
    parser.add_argument(
        "--fixed-shape-models",
        nargs="*",
        type=int,
        metavar="N",
        help="also bind scale_fixed_<N> for these element counts (none given: FIXED_ELEMENTS)",
    )
    args = parser.parse_args()
    with _make_triton(args.http_port, args.grpc_port, args.access_token, args.open_statistics) as triton:
        fixed = args.fixed_shape_models
        bind_models(triton, () if fixed is None else (fixed or FIXED_ELEMENTS))
        print(
            f"Triton serving on http 127.0.0.1:{args.http_port}, grpc 127.0.0.1:{args.grpc_port}; Ctrl-C stops it",
            flush=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()

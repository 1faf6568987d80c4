"""The measured cases. Each returns rows: {case, size, contender, seconds...}."""

from __future__ import annotations

import itertools
import mmap
import os
import struct
import time
from typing import Any, Callable, Dict, List

import numpy as np

import tritonshm as ours
from tritonshm import _core

from .timing import calls_for, interleaved, summary, time_per_call

try:
    import tritonclient.utils as ref_utils
    import tritonclient.utils.shared_memory as ref
except ImportError:  # the suite needs the reference: see docs/performance.md
    ref = ref_utils = None

_keys = itertools.count()


def key(tag: str) -> str:
    return f"/tshm_bench_{os.getpid()}_{tag}_{next(_keys)}"


def row(case: str, size: int, contender: str, samples: List[float], **extra: Any) -> Dict[str, Any]:
    return {"case": case, "size": size, "contender": contender, **summary(samples), **extra}


def _ref_destroy(handle) -> None:
    ref.destroy_shared_memory_region(handle)


def limit_probe(dst: np.ndarray, src: np.ndarray) -> Dict[str, Callable[[], None]]:
    """What this machine can do for one copy into dst, in the same run as the
    libraries: memcpy and streaming stores, on one thread and on as many as
    the engine uses, each the bare kernel (no guard, no checks)."""
    isa = _core.supported_isas()[0]
    probes = {
        "limit: memcpy": lambda: _core.copy_with("cached", isa, 1, dst, src),
        f"limit: streaming ({isa})": lambda: _core.copy_with("streaming", isa, 1, dst, src),
    }
    threads = max(2, int(ours.copy_engine()["threads"]))
    if src.nbytes >= 1 << 20:  # below, starting threads costs more than any copy
        probes[f"limit: memcpy x{threads}"] = lambda: _core.copy_with("cached", isa, threads, dst, src)
        probes[f"limit: streaming ({isa}) x{threads}"] = lambda: _core.copy_with("streaming", isa, threads, dst, src)
    return probes


def bench_set(sizes: List[int], repeat: int) -> List[Dict[str, Any]]:
    """set_shared_memory_region into a warm region, against tritonclient and the
    limit probe (the bare copy kernels into the same already-touched memory)."""
    rows = []
    for size in sizes:
        src = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
        h_ours = ours.create_shared_memory_region("b", key("set"), size, prefault=True)
        h_ref = ref.create_shared_memory_region("b", key("set_ref"), size)
        limit_dst = ours.get_contents_as_numpy(h_ours, np.uint8, [size])
        ours.set_shared_memory_region(h_ours, [src])
        ref.set_shared_memory_region(h_ref, [src])  # touch every page once: warm
        n = calls_for(size / 5e9 + 2e-6, budget=0.05)

        def timed(fn: Callable[[], object]) -> Callable[[], float]:
            return lambda: time_per_call(fn, n)

        contenders = {
            "tritonshm": timed(lambda: ours.set_shared_memory_region(h_ours, [src])),
            "tritonclient": timed(lambda: ref.set_shared_memory_region(h_ref, [src])),
        }
        contenders.update({name: timed(fn) for name, fn in limit_probe(limit_dst, src).items()})
        try:
            samples = interleaved(contenders, repeat)
        finally:
            limit_dst = None  # drop the view so the region can go
            ours.destroy_shared_memory_region(h_ours)
            _ref_destroy(h_ref)
        rows += [row("set_warm", size, c, s) for c, s in samples.items()]
    return rows


MADV_POPULATE_WRITE = 23  # Linux 5.14+; Python's mmap module does not name it


def _kernel_populate(size: int, allocate_first: bool) -> float:
    """Seconds the kernel takes to give a fresh tmpfs object of `size` bytes
    its pages, mapped writable (allocation, zeroing, page tables): the floor
    of any first touch, with no copy and no library involved. Either faulted
    in at once (MADV_POPULATE_WRITE), or allocated first (fallocate) and then
    mapped, which is cheaper per page here."""
    fd = os.memfd_create("tshm_bench_floor")
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as m:
            t0 = time.perf_counter()
            if allocate_first:
                os.posix_fallocate(fd, 0, size)
            m.madvise(MADV_POPULATE_WRITE)
            return time.perf_counter() - t0
    finally:
        os.close(fd)


def bench_set_first_touch(sizes: List[int], repeat: int) -> List[Dict[str, Any]]:
    """Create a region and write it once (its pages never touched before): the
    whole of create + first set, with the create's share beside it, since
    reserving (the default) or prefaulting moves work from the first write into
    creation.
    Against tritonclient, and the kernel's own cost of providing the pages."""
    rows = []
    for size in sizes:
        src = np.ones(size, dtype=np.uint8)
        create_times: Dict[str, List[float]] = {}

        def ours_sample(name: str, **options: bool) -> Callable[[], float]:
            def sample() -> float:
                t0 = time.perf_counter()
                h = ours.create_shared_memory_region("b", key("ft"), size, **options)
                t1 = time.perf_counter()
                ours.set_shared_memory_region(h, [src])
                t2 = time.perf_counter()
                ours.destroy_shared_memory_region(h)
                create_times.setdefault(name, []).append(t1 - t0)
                return t2 - t0

            return sample

        def ref_sample() -> float:
            t0 = time.perf_counter()
            h = ref.create_shared_memory_region("b", key("ftr"), size)
            t1 = time.perf_counter()
            ref.set_shared_memory_region(h, [src])
            t2 = time.perf_counter()
            _ref_destroy(h)
            create_times.setdefault("tritonclient", []).append(t1 - t0)
            return t2 - t0

        samples = interleaved(
            {
                "tritonshm": ours_sample("tritonshm"),
                "tritonshm reserve=False": ours_sample("tritonshm reserve=False", reserve=False),
                "tritonshm prefault": ours_sample("tritonshm prefault", prefault=True),
                "tritonclient": ref_sample,
                "kernel: populate pages only": lambda: _kernel_populate(size, allocate_first=False),
                "kernel: fallocate + populate": lambda: _kernel_populate(size, allocate_first=True),
            },
            repeat,
        )
        pages = size // mmap.PAGESIZE
        for c, s in samples.items():
            extra: Dict[str, Any] = {"per_page_median": summary(s)["median"] / pages}
            if c in create_times:
                extra["create_median"] = summary(create_times[c])["median"]
            rows.append(row("create_first_set", size, c, s, **extra))
    return rows


def bench_get(sizes: List[int], repeat: int) -> List[Dict[str, Any]]:
    rows = []
    for size in sizes:
        h_ours = ours.create_shared_memory_region("b", key("get"), size)
        h_ref = ref.create_shared_memory_region("b", key("get_ref"), size)
        count = size // 4
        n = 2000
        try:
            samples = interleaved(
                {
                    "tritonshm": lambda: time_per_call(
                        lambda: ours.get_contents_as_numpy(h_ours, np.float32, [count]), n
                    ),
                    "tritonclient": lambda: time_per_call(
                        lambda: ref.get_contents_as_numpy(h_ref, np.float32, [count]), n
                    ),
                },
                repeat,
            )
        finally:
            ours.destroy_shared_memory_region(h_ours)
            _ref_destroy(h_ref)
        rows += [row("get_fixed", size, c, s) for c, s in samples.items()]
    return rows


def bench_create_destroy(repeat: int) -> List[Dict[str, Any]]:
    def ours_cycle():
        h = ours.create_shared_memory_region("b", key("cd"), 4096)
        ours.destroy_shared_memory_region(h)

    def ref_cycle():
        h = ref.create_shared_memory_region("b", key("cdr"), 4096)
        _ref_destroy(h)

    samples = interleaved(
        {
            "tritonshm": lambda: time_per_call(ours_cycle, 300),
            "tritonclient": lambda: time_per_call(ref_cycle, 300),
        },
        repeat,
    )
    return [row("create_destroy", 4096, c, s) for c, s in samples.items()]


def _strings(count: int, length: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    if length <= 64:
        return np.array([bytes(rng.integers(97, 123, length, dtype=np.uint8)) for _ in range(count)], dtype=np.object_)
    block = bytes(rng.integers(0, 255, length, dtype=np.uint8))
    return np.array([block[:-1] + bytes([i % 256]) for i in range(count)], dtype=np.object_)


def bench_bytes(cases: List[tuple], repeat: int) -> List[Dict[str, Any]]:
    rows = []
    for count, length in cases:
        tensor = _strings(count, length)
        serialized = ours.serialize_byte_tensor(tensor)
        assert serialized.item() == ref_utils.serialize_byte_tensor(tensor).item()
        nbytes = len(serialized.item())
        h_ours = ours.create_shared_memory_region("b", key("bytes"), nbytes)
        h_ref = ref.create_shared_memory_region("b", key("bytes_ref"), nbytes)
        ours.set_shared_memory_region(h_ours, [serialized])
        ref.set_shared_memory_region(h_ref, [serialized])
        try:
            enc = interleaved(
                {
                    "tritonshm": lambda: time_per_call(lambda: ours.serialize_byte_tensor(tensor), 1),
                    "tritonclient": lambda: time_per_call(lambda: ref_utils.serialize_byte_tensor(tensor), 1),
                },
                repeat,
            )
            dec = interleaved(
                {
                    "tritonshm": lambda: time_per_call(
                        lambda: ours.get_contents_as_numpy(h_ours, np.object_, [count]), 1
                    ),
                    "tritonclient": lambda: time_per_call(
                        lambda: ref.get_contents_as_numpy(h_ref, np.object_, [count]), 1
                    ),
                },
                repeat,
            )
        finally:
            ours.destroy_shared_memory_region(h_ours)
            _ref_destroy(h_ref)
        label = f"{count} x {length} B"
        rows += [row("bytes_serialize", nbytes, c, s, label=label) for c, s in enc.items()]
        rows += [row("bytes_get", nbytes, c, s, label=label) for c, s in dec.items()]
    return rows


def _bf16_struct_loop(values: np.ndarray) -> bytes:
    # The method of tritonclient <= 2.5x's serialize_bf16_tensor (removed from
    # 2.6x): the upper two bytes of each float32, element by element.
    return b"".join(struct.pack("<f", v)[2:4] for v in values.reshape(-1))


def bench_bf16(count: int, repeat: int) -> List[Dict[str, Any]]:
    values = np.random.default_rng(2).standard_normal(count).astype(np.float32)
    encoded = ours.serialize_bf16_tensor(values).item()
    contenders = {
        "tritonshm": lambda: time_per_call(lambda: ours.serialize_bf16_tensor(values), 1),
        "tritonclient<=2.5x method": lambda: time_per_call(lambda: _bf16_struct_loop(values), 1),
    }
    try:
        import ml_dtypes

        contenders["ml_dtypes (tritonclient 2.6x+)"] = lambda: time_per_call(
            lambda: values.astype(ml_dtypes.bfloat16).tobytes(), 1
        )
    except ImportError:
        pass
    enc = interleaved(contenders, repeat)
    dec_contenders = {
        "tritonshm": lambda: time_per_call(lambda: ours.deserialize_bf16_tensor(encoded), 1),
        "tritonclient<=2.5x method": lambda: time_per_call(
            lambda: np.array(
                [struct.unpack("<f", b"\0\0" + encoded[i : i + 2]) for i in range(0, len(encoded), 2)], dtype=np.float32
            ),
            1,
        ),
    }
    if "ml_dtypes (tritonclient 2.6x+)" in contenders:
        dec_contenders["ml_dtypes (tritonclient 2.6x+)"] = lambda: time_per_call(
            lambda: np.frombuffer(encoded, dtype=ml_dtypes.bfloat16).astype(np.float32), 1
        )
    dec = interleaved(dec_contenders, repeat)
    label = f"{count} values"
    return [row("bf16_serialize", count * 4, c, s, label=label) for c, s in enc.items()] + [
        row("bf16_deserialize", count * 4, c, s, label=label) for c, s in dec.items()
    ]


def bench_round_trip(repeat: int, requests: int) -> List[Dict[str, Any]]:
    """The demo's full request: create both regions, set inputs, the embedded
    server (a separate process) reads and writes them, get outputs, destroy."""
    from tritonshm.demo import EmbeddedServer, run_add_sub

    server = EmbeddedServer()
    counter = itertools.count()
    try:
        for lib in (ours, ref):  # the server's first request warms it up: time neither library with it
            run_add_sub(server, tag=f"w{os.getpid()}_{next(counter)}", verbose=False, shm=lib)

        def sample(lib):
            return lambda: time_per_call(
                lambda: run_add_sub(server, tag=f"b{os.getpid()}_{next(counter)}", verbose=False, shm=lib), requests
            )

        samples = interleaved({"tritonshm": sample(ours), "tritonclient": sample(ref)}, repeat)
    finally:
        server.close()
    return [row("demo_round_trip", 128, c, s) for c, s in samples.items()]

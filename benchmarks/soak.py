"""The pool under a long, mixed load with the failures the field reports:
`python -m benchmarks --only soak [--minutes N] [--smoke]`.

Two pools (one over gRPC, its client shared by its threads; one over HTTP,
each thread with its own client through `client=`, as tritonclient's HTTP
client is not thread-safe) start small and grow, while threads send requests
of mixed models and sizes (scale with variable dims, detect whose output's
length depends on the content, simple with a fixed shape; 4 KiB to 16 MiB;
some with copy=False). Every result is checked. Mid-run another client
unregisters every region on the server (as perf_analyzer does at start), and
later the server is stopped and started again on the same ports.

Requests that fail while the server is down (from the moment it is stopped
until it is back and the pools' clients see it ready) are outages: counted,
and run again once it is back. Any other failure, or a wrong result, is a
failure. At the end, after close(), no region of the pools may be left in
/dev/shm nor registered on the server. Prints a summary and returns it;
`python -m benchmarks` exits non-zero on any failure or leftover.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pathlib
import re
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .fixture import server_module
from .triton_cases import pool_stats

PREFIX = "tshm_soak"
SIZES = [(4 << 10, 0.35), (64 << 10, 0.3), (1 << 20, 0.2), (4 << 20, 0.12), (16 << 20, 0.03)]
GRPC_THREADS, HTTP_THREADS = 3, 2
UNREGISTER_AT, RESTART_AT = 0.25, 0.4  # fractions of the run
AFTER_RESTART_S = 10.0  # the run goes on at least this long once the server is back
REQUEST_TIMEOUT_S = 60.0


class _Outage:
    """Whether the server is (being) stopped, and how many times it was: a
    request that saw a change of epoch while it ran failed of the outage. And
    the phase of the run, which failures and successes are counted under."""

    def __init__(self) -> None:
        self.phase = "1 growth"
        self.epoch = 0
        self.up = threading.Event()
        self.up.set()

    def begin(self) -> None:
        self.epoch += 1
        self.up.clear()

    def end(self) -> None:
        self.up.set()


class _Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Dict[str, int] = collections.Counter()
        self.failures: Dict[str, int] = collections.Counter()  # first line of each kind -> count
        self.examples: Dict[str, str] = {}

    def add(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def fail(self, error: BaseException, where: str) -> None:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        # One kind per message, whichever of the pool's regions it names.
        key = re.sub(r"'[^' ]*\d+_[0-9a-f]+_\d+'", "'<region>'", f"{where}: {type(error).__name__}: {message}")[:200]
        frames = traceback.extract_tb(error.__traceback__)
        path = " > ".join(f"{pathlib.Path(f.filename).name}:{f.lineno} {f.name}" for f in frames)
        with self.lock:
            self.counts["failures"] += 1
            self.failures[key] += 1
            self.examples.setdefault(key, path)


def _request(rng: np.random.Generator) -> Tuple[str, Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """A model, its inputs and the outputs it must return."""
    server = server_module()
    choice = rng.random()
    if choice < 0.1:
        batch = int(rng.integers(1, 9))
        a = rng.integers(-1000, 1000, (batch, 16), dtype=np.int32)
        b = rng.integers(-1000, 1000, (batch, 16), dtype=np.int32)
        return "simple", {"INPUT0": a, "INPUT1": b}, {"OUTPUT0": a + b, "OUTPUT1": a - b}
    size = int(rng.choice([s for s, _ in SIZES], p=[w for _, w in SIZES]))
    n = size // 4 - int(rng.integers(0, 16))  # not always a round size
    if choice < 0.4:
        x = rng.random(n, dtype=np.float32)
        return "detect", {"INPUT0": x}, {"OUTPUT0": server.detect_expected(x)}
    x = rng.random((1, n), dtype=np.float32)
    return "scale", {"INPUT0": x}, {"OUTPUT0": 2 * x}


def _check(result: Dict[str, Any], expected: Dict[str, np.ndarray], model: str) -> None:
    for name, want in expected.items():
        got = result[name]
        if got.shape != want.shape or not np.array_equal(got, want):
            raise AssertionError(f"{model} {name}: wrong result (shape {got.shape}, expected {want.shape})")


def _worker(
    infer: Callable[..., Dict[str, Any]],
    ready: Callable[[], None],
    seed: int,
    stop: threading.Event,
    outage: _Outage,
    tally: _Tally,
    where: str,
) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        model, inputs, expected = _request(rng)
        copy = rng.random() >= 0.2
        while True:
            epoch = outage.epoch
            try:
                result = infer(model, inputs, copy=copy)
                _check(result, expected, model)
                del result  # with copy=False, the lease goes with the views
                tally.add("ok")
                tally.add(f"ok in phase {outage.phase}, {where}")
                if outage.epoch > 0:
                    tally.add("ok after restart")
                break
            except Exception as error:  # noqa: BLE001 - each one is counted and reported
                if isinstance(error, AssertionError) or (outage.up.is_set() and outage.epoch == epoch):
                    tally.fail(error, f"{outage.phase}, {where}")
                    time.sleep(0.05)  # a pool that fails every request must not spin
                    break
                tally.add("failed during outage")
                if not outage.up.wait(timeout=600):
                    tally.fail(RuntimeError("the server did not come back"), where)
                    return
                ready()
                tally.add("retried after outage")
    tally.add(f"thread done {where}")


def _dev_shm(prefix: str) -> List[str]:
    return sorted(p.name for p in pathlib.Path("/dev/shm").glob(prefix + "*"))


def _registered(http: Any, url: str, prefix: str) -> List[str]:
    with contextlib.closing(http.InferenceServerClient(url)) as client:
        return sorted(r["name"] for r in client.get_system_shared_memory_status() if r["name"].startswith(prefix))


def _unregister_all(http: Any, url: str, prefix: str, seconds: float = 10.0) -> str:
    """Another client unregisters every region, as perf_analyzer does at start.
    Triton refuses to unregister a region while a request uses it ("[500]
    Failed to unregister the following system shared memory regions: ..."),
    and removes the others: try again until none of the pools' is left."""
    attempts, deadline = 0, time.monotonic() + seconds
    with contextlib.closing(http.InferenceServerClient(url)) as other:
        while True:
            attempts += 1
            try:
                other.unregister_system_shared_memory()
                break
            except Exception as error:  # noqa: BLE001 - in use: try again below
                refused = str(error).splitlines()[0][:160]
            left = [r["name"] for r in other.get_system_shared_memory_status() if r["name"].startswith(prefix)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        left = [r["name"] for r in other.get_system_shared_memory_status() if r["name"].startswith(prefix)]
    text = f"another client unregistered every region ({attempts} call(s)"
    if attempts > 1:
        text += f"; the server refused regions in use: {refused}"
    return text + (f"); still registered: {left}" if left else ")")


def _wait_ready(client: Any, deadline: float) -> None:
    """Until the client sees the server ready (a gRPC channel reconnects with a backoff)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if client.is_server_ready():
                return
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready for the pool's client")


FAULTS = ("unregister-all", "restart")


def run_soak(minutes: float, smoke: bool = False, faults: Tuple[str, ...] = FAULTS) -> Dict[str, Any]:
    """`faults` chooses the faults the run injects (all by default; none
    checks that the soak itself passes on a healthy run)."""
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    from tritonshm.triton import SharedMemoryPool

    server = server_module()
    ports = server.free_ports()
    duration = max(20.0, minutes * 60)
    prefix = f"{PREFIX}_{os.getpid()}_"  # the pools' keys and names start with it
    tally, outage, stop = _Tally(), _Outage(), threading.Event()
    events: List[str] = []
    leftovers: List[str] = []
    stats: Dict[str, Optional[Dict[str, Any]]] = {}
    seen_names: set = set()
    started = time.monotonic()

    def note(event: str) -> None:
        events.append(f"{time.monotonic() - started:6.1f} s  {event}")
        print(f"soak: {events[-1]}", flush=True)

    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(server.spawn(ports=ports))
        grpc_client = grpc.InferenceServerClient(urls["grpc"])
        http_client = http.InferenceServerClient(urls["http"], network_timeout=REQUEST_TIMEOUT_S)
        pools = {
            "grpc": SharedMemoryPool(grpc_client, 256 << 10, max_capacity=1 << 30, prefix=PREFIX),
            "http": SharedMemoryPool(http_client, 256 << 10, max_capacity=1 << 30, prefix=PREFIX),
        }
        threads = []
        started = time.monotonic()
        note(f"server up on {urls}; {GRPC_THREADS} gRPC and {HTTP_THREADS} HTTP threads, {duration:.0f} s")
        http_clients = []
        for i in range(GRPC_THREADS + HTTP_THREADS):
            if i < GRPC_THREADS:
                pool = pools["grpc"]

                def infer(model: str, inputs: Any, copy: bool, pool: Any = pool) -> Dict[str, Any]:
                    return pool.infer(model, inputs, copy=copy, client_timeout=REQUEST_TIMEOUT_S)

                def ready() -> None:
                    _wait_ready(grpc_client, time.monotonic() + 120)

                where = "grpc"
            else:
                own = http.InferenceServerClient(urls["http"], network_timeout=REQUEST_TIMEOUT_S)
                http_clients.append(own)
                pool = pools["http"]

                def infer(model: str, inputs: Any, copy: bool, pool: Any = pool, own: Any = own) -> Dict[str, Any]:
                    return pool.infer(model, inputs, copy=copy, client=own)

                def ready(own: Any = own) -> None:
                    _wait_ready(own, time.monotonic() + 120)

                where = "http"
            thread = threading.Thread(
                target=_worker,
                args=(infer, ready, 1000 + i, stop, outage, tally, where),
                name=f"soak-{where}-{i}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)

        def remember_names() -> None:
            for pool in pools.values():
                seen_names.update(pool.region_names)

        def sleep_until(fraction: float) -> None:
            while time.monotonic() - started < fraction * duration:
                remember_names()
                time.sleep(0.5)

        try:
            sleep_until(UNREGISTER_AT)
            if "unregister-all" in faults:
                outage.phase = "2 after unregister-all"
                note(_unregister_all(http, urls["http"], prefix))
            sleep_until(RESTART_AT)
            back = time.monotonic()
            if "restart" in faults:
                outage.begin()
                note("stopping the server")
                stack.close()  # stops the server (only it is on the stack yet)
                note("server stopped; starting it again on the same ports")
                urls = stack.enter_context(server.spawn(ports=ports))
                _wait_ready(grpc_client, time.monotonic() + 120)
                outage.phase = "3 after restart"
                outage.end()
                note("server back")
                back = time.monotonic()
            while time.monotonic() - started < duration or time.monotonic() - back < AFTER_RESTART_S:
                remember_names()
                time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=REQUEST_TIMEOUT_S + 30)
                if thread.is_alive():
                    tally.fail(RuntimeError(f"{thread.name} did not finish"), "soak")
            remember_names()
            for name, pool in pools.items():
                stats[name] = pool_stats(pool)
                pool.close()
            for client in (grpc_client, http_client, *http_clients):
                client.close()
            note("pools closed")
            left_files = _dev_shm(prefix)
            try:
                on_server = _registered(http, urls["http"], "")
                left_registered = sorted(n for n in on_server if n.startswith(prefix) or n in seen_names)
            except Exception as error:  # noqa: BLE001 - reported as a leftover: nothing may go unchecked
                left_registered = [f"(the server's registrations could not be read: {error})"]
            leftovers = [f"/dev/shm/{n}" for n in left_files] + [f"registered: {n}" for n in left_registered]
            for name in left_files:  # clean up, then report
                (pathlib.Path("/dev/shm") / name).unlink(missing_ok=True)
    counts = dict(tally.counts)
    outcome: Dict[str, Any] = {
        "case": "soak",
        "seconds": round(time.monotonic() - started, 1),
        "requests_ok": counts.get("ok", 0),
        "ok_after_restart": counts.get("ok after restart", 0),
        "failures": counts.get("failures", 0),
        "failed_during_outage": counts.get("failed during outage", 0),
        "retried_after_outage": counts.get("retried after outage", 0),
        "failure_kinds": dict(tally.failures),
        "ok_by_phase": {k[len("ok in phase ") :]: v for k, v in sorted(counts.items()) if k.startswith("ok in phase ")},
        "events": events,
        "pool_stats": stats,
        "regions_seen": len(seen_names),
        "leftovers": leftovers,
    }
    if "restart" in faults and outcome["ok_after_restart"] == 0:
        outcome["failures"] += 1
        outcome["failure_kinds"]["no request succeeded after the restart"] = 1
    print(summary(outcome, tally.examples))
    return outcome


def summary(outcome: Dict[str, Any], examples: Optional[Dict[str, str]] = None) -> str:
    out = [
        f"soak: {outcome['seconds']} s, {outcome['requests_ok']} requests checked and right "
        f"({outcome['ok_after_restart']} after the restart), {outcome['failures']} failures, "
        f"{outcome['failed_during_outage']} failed while the server was down "
        f"({outcome['retried_after_outage']} run again once it was back), "
        f"{outcome['regions_seen']} region names seen",
    ]
    for phase, count in outcome["ok_by_phase"].items():
        out.append(f"  right in phase {phase}: {count}")
    for kind, count in sorted(outcome["failure_kinds"].items()):
        out.append(f"  FAILURE x{count}: {kind}")
    for kind, path in (examples or {}).items():
        out.append(f"  where '{kind[:60]}' was raised first: {path}")
    for name, stats in outcome["pool_stats"].items():
        out.append(f"  pool {name} stats(): {stats if stats is not None else 'none (this pool has no stats())'}")
    out.append("  leftovers after close(): " + (", ".join(outcome["leftovers"]) or "none"))
    verdict = "PASS" if outcome["failures"] == 0 and not outcome["leftovers"] else "FAIL"
    out.append(f"soak: {verdict}")
    return "\n".join(out)

"""The pool under a long, mixed load with the failures the field reports:
`python -m benchmarks --only soak [--minutes N] [--smoke]`.

Three pools (one over gRPC, its client shared by its threads; one over HTTP,
each thread with its own client through `client=`, as tritonclient's HTTP
client is not thread-safe; an AsyncSharedMemoryPool on a grpc.aio client in a
thread of its own with its own event loop, several requests in flight) start
small and grow, while threads and tasks send requests
of mixed models and sizes (scale with variable dims, detect and detect2 whose
outputs' lengths depend on the content, sample whose output's length changes
on every run, simple with a fixed shape; 4 KiB to 16 MiB; some with
copy=False). Meanwhile requests to a slow model are given up on while the
server still runs them: a gRPC client_timeout, an HTTP network_timeout, an
asyncio.wait_for and a cancelled task, one after another; the server writes
their outputs after the client left, so memory lent again too early would
corrupt other requests' results. Every element of every result is checked.
Mid-run another client unregisters every region on the server (as
perf_analyzer does at start), and later the server is stopped and started
again on the same ports.

Requests that fail while the server is down (from the moment it is stopped
until it is back and the pools' clients see it ready) are outages: counted,
and run again once it is back. Any other failure, or a wrong result, is a
failure. At the end, after close(), no region of the pools may be left in
/dev/shm nor registered on the server. Prints a summary and returns it;
`python -m benchmarks` exits non-zero on any failure or leftover.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import itertools
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
GRPC_THREADS, HTTP_THREADS, AIO_TASKS = 3, 2, 4
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


GIVE_UP_AFTER_S = 0.2  # below the slow model's SLOW_SECONDS


def _sampled(value: float) -> Callable[[np.ndarray], bool]:
    """What `sample` must return: 900-1099 elements, each 2 * INPUT0[0]."""
    low, high = server_module().SAMPLE_LENGTHS
    return lambda got: got.ndim == 1 and low <= got.shape[0] < high and bool(np.all(got == np.float32(2 * value)))


def _request(rng: np.random.Generator) -> Tuple[str, Dict[str, np.ndarray], Dict[str, Any]]:
    """A model, its inputs and the outputs it must return (an array, or a check)."""
    server = server_module()
    choice = rng.random()
    if choice < 0.05:
        value = float(rng.integers(1, 1000))
        return "sample", {"INPUT0": np.full(4, value, np.float32)}, {"OUTPUT0": _sampled(value)}
    if choice < 0.1:
        x = rng.random(int(rng.integers(1, 1 << 16)), dtype=np.float32)
        found = server.detect_expected(x)
        return "detect2", {"INPUT0": x}, {"BOXES": np.repeat(found[:, None], 4, axis=1), "SCORES": found}
    if choice < 0.2:
        batch = int(rng.integers(1, 9))
        a = rng.integers(-1000, 1000, (batch, 16), dtype=np.int32)
        b = rng.integers(-1000, 1000, (batch, 16), dtype=np.int32)
        return "simple", {"INPUT0": a, "INPUT1": b}, {"OUTPUT0": a + b, "OUTPUT1": a - b}
    size = int(rng.choice([s for s, _ in SIZES], p=[w for _, w in SIZES]))
    n = size // 4 - int(rng.integers(0, 16))  # not always a round size
    if choice < 0.45:
        x = rng.random(n, dtype=np.float32)
        return "detect", {"INPUT0": x}, {"OUTPUT0": server.detect_expected(x)}
    x = rng.random((1, n), dtype=np.float32)
    return "scale", {"INPUT0": x}, {"OUTPUT0": 2 * x}


def _check(result: Dict[str, Any], expected: Dict[str, Any], model: str) -> None:
    """Every element of every output, or the output's own check."""
    for name, want in expected.items():
        got = result[name]
        if callable(want):
            if not want(got):
                raise AssertionError(f"{model} {name}: wrong result (shape {got.shape})")
        elif got.shape != want.shape or not np.array_equal(got, want):
            raise AssertionError(f"{model} {name}: wrong result (shape {got.shape}, expected {want.shape})")


def _slow_request(rng: np.random.Generator) -> Tuple[Dict[str, np.ndarray], Dict[str, int], np.ndarray]:
    """A request to `slow` with its output in shared memory: inputs, output_sizes, expected."""
    x = np.full(int(rng.integers(1 << 14, 1 << 18)), float(rng.integers(1, 1000)), np.float32)
    return {"INPUT0": x}, {"OUTPUT0": x.nbytes}, 2 * x


GiveUpSetup = Callable[
    [], Tuple[Callable[[Dict[str, np.ndarray], Dict[str, int]], None], Callable[..., Any], Callable[[], None]]
]


def _give_up_worker(setup: GiveUpSetup, seed: int, stop: threading.Event, attempts: _Attempts) -> None:
    """Gives up on slow requests while the server runs them (give_up must
    raise _GaveUp), each followed by a wait as long as the model runs, so that
    the server's queue stays short; every third request is waited for and
    checked. setup() runs in the thread: (give_up, infer, cleanup)."""
    give_up, infer, cleanup = setup()
    rng = np.random.default_rng(seed)
    outage = attempts.outage
    try:
        for i in itertools.count():
            if stop.is_set():
                return
            inputs, sizes, expected = _slow_request(rng)
            epoch = outage.epoch
            try:
                if i % 3 == 2:
                    _check(infer("slow", inputs, output_sizes=sizes), {"OUTPUT0": expected}, "slow")
                    attempts.succeeded()
                else:
                    give_up(inputs, sizes)
                    attempts.tally.fail(AssertionError("a request meant to time out did not"), attempts.where)
            except _GaveUp:
                attempts.tally.add("given up on")
            except Exception as error:  # noqa: BLE001 - each one is counted and reported
                if attempts.failed_of_outage(error, epoch):
                    outage.up.wait(timeout=600)
            time.sleep(server_module().SLOW_SECONDS + 0.1)
    except Exception as error:  # noqa: BLE001 - a worker that dies is a failure, never a silent pass
        attempts.tally.fail(error, f"{attempts.where} worker died")
    finally:
        cleanup()


class _GaveUp(Exception):
    """The client gave up as it was meant to."""


class _Attempts:
    """What the sync and async workers share: a request's outcome, counted."""

    def __init__(self, outage: _Outage, tally: _Tally, where: str) -> None:
        self.outage, self.tally, self.where = outage, tally, where

    def succeeded(self) -> None:
        self.tally.add("ok")
        self.tally.add(f"ok in phase {self.outage.phase}, {self.where}")
        if self.outage.epoch > 0:
            self.tally.add("ok after restart")

    def failed_of_outage(self, error: BaseException, epoch: int) -> bool:
        """True if the failure is the outage's (run the request again once the
        server is back); otherwise counts it as a failure."""
        if not isinstance(error, AssertionError) and (not self.outage.up.is_set() or self.outage.epoch != epoch):
            self.tally.add("failed during outage")
            return True
        self.tally.fail(error, f"{self.outage.phase}, {self.where}")
        return False


def _worker(
    setup: Callable[[], Tuple[Callable[..., Dict[str, Any]], Callable[[], None], Callable[[], None]]],
    seed: int,
    stop: threading.Event,
    attempts: _Attempts,
) -> None:
    """One thread's requests; setup() runs in the thread and returns
    (infer, wait_until_ready, cleanup): a thread's own HTTP client must be made
    in the thread that uses it."""
    infer, ready, cleanup = setup()
    rng = np.random.default_rng(seed)
    outage = attempts.outage
    try:
        while not stop.is_set():
            model, inputs, expected = _request(rng)
            copy = rng.random() >= 0.2
            while True:
                epoch = outage.epoch
                try:
                    result = infer(model, inputs, copy=copy)
                    _check(result, expected, model)
                    del result  # with copy=False, the lease goes with the views
                    attempts.succeeded()
                    break
                except Exception as error:  # noqa: BLE001 - each one is counted and reported
                    if not attempts.failed_of_outage(error, epoch):
                        time.sleep(0.05)  # a pool that fails every request must not spin
                        break
                    if not outage.up.wait(timeout=600):
                        attempts.tally.fail(RuntimeError("the server did not come back"), attempts.where)
                        return
                    ready()
                    attempts.tally.add("retried after outage")
    except Exception as error:  # noqa: BLE001 - a worker that dies is a failure, never a silent pass
        attempts.tally.fail(error, f"{attempts.where} worker died")
    finally:
        cleanup()


def _aio_worker(
    url: str, tasks: int, seed: int, stop: threading.Event, attempts: _Attempts, stats: Dict[str, Any], seen: set
) -> None:
    """An AsyncSharedMemoryPool on a grpc.aio client in this thread's own event
    loop, `tasks` requests in flight; closes its pool before it returns."""
    import tritonclient.grpc.aio as grpc_aio

    from tritonshm.triton import AsyncSharedMemoryPool

    outage = attempts.outage

    async def main() -> None:
        client = grpc_aio.InferenceServerClient(url)
        pool = AsyncSharedMemoryPool(client, 256 << 10, max_capacity=1 << 30, prefix=PREFIX)
        try:
            await pool.open()

            async def ready() -> None:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    with contextlib.suppress(Exception):
                        if await client.is_server_ready():
                            return
                    await asyncio.sleep(0.5)

            async def task(i: int) -> None:
                rng = np.random.default_rng(seed + i)
                while not stop.is_set():
                    model, inputs, expected = _request(rng)
                    while True:
                        epoch = outage.epoch
                        try:
                            result = await pool.infer_async(model, inputs, client_timeout=REQUEST_TIMEOUT_S)
                            _check(result, expected, model)
                            attempts.succeeded()
                            break
                        except Exception as error:  # noqa: BLE001 - each one is counted and reported
                            if not attempts.failed_of_outage(error, epoch):
                                await asyncio.sleep(0.05)
                                break
                            while not outage.up.is_set():
                                await asyncio.sleep(0.2)
                            await ready()
                            attempts.tally.add("retried after outage")
                    seen.update(pool.region_names)

            async def give_up() -> None:
                """A slow request abandoned by asyncio.wait_for, then one cancelled, in turn."""
                rng = np.random.default_rng(seed + tasks)
                for i in itertools.count():
                    if stop.is_set():
                        return
                    inputs, sizes, expected = _slow_request(rng)
                    epoch = outage.epoch
                    request = pool.infer_async("slow", inputs, output_sizes=sizes)
                    try:
                        if i % 2 == 0:
                            await asyncio.wait_for(request, GIVE_UP_AFTER_S)
                        else:
                            running = asyncio.ensure_future(request)
                            await asyncio.sleep(GIVE_UP_AFTER_S)
                            running.cancel()
                            await running
                        attempts.tally.fail(AssertionError("a request meant to be given up on ended"), "aio give-up")
                    except (asyncio.TimeoutError, asyncio.CancelledError):
                        attempts.tally.add("given up on")
                    except Exception as error:  # noqa: BLE001 - each one is counted and reported
                        if attempts.failed_of_outage(error, epoch):
                            while not outage.up.is_set():
                                await asyncio.sleep(0.2)
                    await asyncio.sleep(server_module().SLOW_SECONDS + 0.1)
                    del expected

            await asyncio.gather(give_up(), *(task(i) for i in range(tasks)))
        finally:
            seen.update(pool.region_names)
            stats["aio"] = pool_stats(pool)
            _check_no_lease_left(pool, "aio", attempts.tally)
            await pool.close()
            await client.close()

    try:
        asyncio.run(main())
    except Exception as error:  # noqa: BLE001 - a worker that dies is a failure, never a silent pass
        attempts.tally.fail(error, "aio worker died")


def _check_no_lease_left(pool: Any, name: str, tally: _Tally) -> None:
    """Once no request runs, nothing may stay leased: a lease that outlives its
    request (a failure path that forgets to release) fills the pool over time."""
    gc.collect()  # copy=False views caught in a cycle are not leaks
    leased = getattr(pool, "leased_bytes", 0)
    if leased:
        tally.fail(AssertionError(f"{leased} bytes still leased with no request running"), f"end, {name}")


def _dev_shm(prefix: str) -> List[str]:
    return sorted(p.name for p in pathlib.Path("/dev/shm").glob(prefix + "*"))


def _registered(http: Any, url: str, prefix: str) -> List[str]:
    with contextlib.closing(http.InferenceServerClient(url)) as client:
        return sorted(r["name"] for r in client.get_system_shared_memory_status() if r["name"].startswith(prefix))


def _unregister_all(http: Any, url: str, prefix: str, seconds: float = 10.0) -> str:
    """Another client unregisters every region, once, as perf_analyzer does at
    start. Triton refuses to unregister a region while a request uses it
    ("[500] Failed to unregister the following system shared memory regions:
    ...") and removes the others; only if that call removed none of the pools'
    regions (all in use) is it made again."""
    calls, deadline = 0, time.monotonic() + seconds
    refused = ""
    with contextlib.closing(http.InferenceServerClient(url)) as other:

        def pools_registered() -> List[str]:
            return [r["name"] for r in other.get_system_shared_memory_status() if r["name"].startswith(prefix)]

        while True:
            before = set(pools_registered())
            calls += 1
            try:
                other.unregister_system_shared_memory()
            except Exception as error:  # noqa: BLE001 - regions in use: reported below
                refused = str(error).splitlines()[0][:200]
            removed = before - set(pools_registered())  # a pool may register again at once: a lower bound
            if removed or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    text = f"another client unregistered every region ({calls} call(s), {len(removed)} of the pools' removed"
    return text + (f"; the server refused those in use: {refused})" if refused else ")")


def _wait_ready(client: Any, deadline: float) -> None:
    """Until the client sees the server ready (a gRPC channel reconnects with a backoff)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if client.is_server_ready():
                return
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready for the pool's client")


FAULTS = ("unregister-all", "restart")


def run_soak(minutes: float, faults: Tuple[str, ...] = FAULTS) -> Dict[str, Any]:
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
        note(
            f"server up on {urls}; {GRPC_THREADS} gRPC threads, {HTTP_THREADS} HTTP threads and "
            f"{AIO_TASKS} aio tasks, {duration:.0f} s"
        )

        def grpc_setup() -> Tuple[Any, Any, Any]:
            pool = pools["grpc"]

            def infer(model: str, inputs: Any, copy: bool) -> Dict[str, Any]:
                return pool.infer(model, inputs, copy=copy, client_timeout=REQUEST_TIMEOUT_S)

            return infer, lambda: _wait_ready(grpc_client, time.monotonic() + 120), lambda: None

        def http_setup() -> Tuple[Any, Any, Any]:
            pool = pools["http"]
            own = http.InferenceServerClient(urls["http"], network_timeout=REQUEST_TIMEOUT_S)

            def infer(model: str, inputs: Any, copy: bool) -> Dict[str, Any]:
                return pool.infer(model, inputs, copy=copy, client=own)

            return infer, lambda: _wait_ready(own, time.monotonic() + 120), own.close

        def grpc_give_up_setup() -> Tuple[Any, Any, Any]:
            pool = pools["grpc"]

            def give_up(inputs: Dict[str, np.ndarray], sizes: Dict[str, int]) -> None:
                try:
                    pool.infer("slow", inputs, output_sizes=sizes, client_timeout=GIVE_UP_AFTER_S)
                except Exception as error:
                    if "DEADLINE_EXCEEDED" in str(getattr(error, "status", lambda: "")()):
                        raise _GaveUp() from error
                    raise

            def infer(model: str, inputs: Any, **kwargs: Any) -> Dict[str, Any]:
                return pool.infer(model, inputs, client_timeout=REQUEST_TIMEOUT_S, **kwargs)

            return give_up, infer, lambda: None

        def http_give_up_setup() -> Tuple[Any, Any, Any]:
            pool = pools["http"]
            impatient = http.InferenceServerClient(urls["http"], network_timeout=GIVE_UP_AFTER_S)
            patient = http.InferenceServerClient(urls["http"], network_timeout=REQUEST_TIMEOUT_S)

            def give_up(inputs: Dict[str, np.ndarray], sizes: Dict[str, int]) -> None:
                try:
                    pool.infer("slow", inputs, output_sizes=sizes, client=impatient)
                except TimeoutError as error:
                    raise _GaveUp() from error

            def infer(model: str, inputs: Any, **kwargs: Any) -> Dict[str, Any]:
                return pool.infer(model, inputs, client=patient, **kwargs)

            def cleanup() -> None:
                impatient.close()
                patient.close()

            return give_up, infer, cleanup

        for where, give_up_setup in (("grpc", grpc_give_up_setup), ("http", http_give_up_setup)):
            threads.append(
                threading.Thread(
                    target=_give_up_worker,
                    args=(give_up_setup, 3000 + len(threads), stop, _Attempts(outage, tally, f"{where} give-up")),
                    name=f"soak-{where}-give-up",
                    daemon=True,
                )
            )
        for i in range(GRPC_THREADS + HTTP_THREADS):
            where, setup = ("grpc", grpc_setup) if i < GRPC_THREADS else ("http", http_setup)
            threads.append(
                threading.Thread(
                    target=_worker,
                    args=(setup, 1000 + i, stop, _Attempts(outage, tally, where)),
                    name=f"soak-{where}-{i}",
                    daemon=True,
                )
            )
        threads.append(
            threading.Thread(
                target=_aio_worker,
                args=(urls["grpc"], AIO_TASKS, 2000, stop, _Attempts(outage, tally, "aio"), stats, seen_names),
                name="soak-aio",
                daemon=True,
            )
        )
        for thread in threads:
            thread.start()

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
            deadline = time.monotonic() + REQUEST_TIMEOUT_S + 30  # for all threads together
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    tally.fail(RuntimeError(f"{thread.name} did not finish"), "soak")
            remember_names()
            for name, pool in pools.items():
                stats[name] = pool_stats(pool)
                _check_no_lease_left(pool, name, tally)
                pool.close()
            for client in (grpc_client, http_client):
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
        "given_up_on": counts.get("given up on", 0),
        "failure_kinds": dict(tally.failures),
        "ok_by_phase": {k[len("ok in phase ") :]: v for k, v in sorted(counts.items()) if k.startswith("ok in phase ")},
        "events": events,
        "pool_stats": stats,
        "regions_seen": len(seen_names),
        "leftovers": leftovers,
    }
    if outcome["given_up_on"] == 0:
        outcome["failures"] += 1
        outcome["failure_kinds"]["no request was given up on: the timeouts were not exercised"] = 1
    if "restart" in faults and outcome["ok_after_restart"] == 0:
        outcome["failures"] += 1
        outcome["failure_kinds"]["no request succeeded after the restart"] = 1
    for where, workers in (("grpc", GRPC_THREADS), ("http", HTTP_THREADS), ("aio", AIO_TASKS)):
        if workers and not counts.get(f"ok in phase 1 growth, {where}"):
            outcome["failures"] += 1
            outcome["failure_kinds"][f"no request of the {where} pool succeeded before the faults"] = 1
    print(summary(outcome, tally.examples))
    return outcome


def summary(outcome: Dict[str, Any], examples: Optional[Dict[str, str]] = None) -> str:
    out = [
        f"soak: {outcome['seconds']} s, {outcome['requests_ok']} requests checked and right "
        f"({outcome['ok_after_restart']} after the restart), {outcome['failures']} failures, "
        f"{outcome['failed_during_outage']} failed while the server was down "
        f"({outcome['retried_after_outage']} run again once it was back), "
        f"{outcome['regions_seen']} region names seen, {outcome['given_up_on']} requests given up on "
        "while the server ran them",
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

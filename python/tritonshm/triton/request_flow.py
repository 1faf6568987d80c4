"""The pool's request flow, written once for both pools and the accelerator.

A flow is a generator of *steps*. It does no I/O itself (the sans-IO idea):
it yields a step, and its runner carries the step out and sends back the
result (or throws the exception into the flow at the `yield`):

  Call(fn, args, kwargs)   a call to the client. Sends back what fn returned
                           (awaited by the async runner).
  Locked(steps)            steps to run holding the pool's growth lock.
                           Sends back their result. A Locked flow never
                           yields Locked itself: the lock is a plain lock, and
                           the runners refuse to nest it.
  Pause(seconds)           a wait (time.sleep or asyncio.sleep). Sends back None.
  Blocking(fn, args)       blocking work on this process's memory (creating
                           and removing regions: fallocate, munmap). Sends back
                           what fn returned; the async runner runs it on a
                           thread, off the event loop.

Flows use the typed helpers `call`, `locked`, `pause` and `blocking`
(`x = yield from call(f, ...)`), which carry the result's type.
`run` drives a flow with plain calls (SharedMemoryPool); `run_async` awaits
them (AsyncSharedMemoryPool). A runner that meets KeyboardInterrupt or
cancellation closes the flow: GeneratorExit at its `yield`.

The rules live here and nowhere else: growth and making room, healing
registrations the server forgot, reruns and their limits, retiring memory a
request gave up on, closing. Which tensors travel through shared memory is
transport.py's; where they lie in the lease, request_plan.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Set, TypeVar, Union, cast

import numpy as np

from .._core import SharedMemoryException
from ..tensor import triton_to_np_dtype
from .adapters import serialized_size
from .learned_outputs import Signature, signature_of
from .model_configs import ModelOutputs, parse_model_config
from .pool_state import PoolState
from .refusals import in_use, missing_region, needed_output_size, server_refusal
from .request import InferRequest, Response
from .request_plan import Layout
from .transport import Attempt, Transport, choose

__all__ = [
    "Blocking",
    "Call",
    "Locked",
    "Pause",
    "Steps",
    "blocking",
    "call",
    "close_steps",
    "infer_steps",
    "lease_steps",
    "locked",
    "model_steps",
    "open_steps",
    "pause",
    "run",
    "run_async",
]

T = TypeVar("T")

# close() waits this long, in these steps, for the server to let go of regions
# that requests still at the server use (the server refuses to unregister them meanwhile).
CLOSE_WAITS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
# And this much longer for a region that only requests the pool gave up on
# (timeouts, cancellations) may still use: nothing of the pool's tells when they end.
ABANDONED_WAITS = (0.5,) * 15

# How often one request may run again after the server forgot the pool's
# registrations (each time after registering them again). The server refuses
# such a request before its model runs, so any request may run again for it.
HEALED_RERUNS = 2

# Retired regions are unregistered and removed by the requests that follow,
# one request at most this often.
SWEEP_INTERVAL = 0.05


@dataclass(frozen=True)
class Call:
    fn: Callable[..., Any]
    args: tuple = ()  # type: ignore[type-arg]
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Locked:
    steps: "Steps[Any]"


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Blocking:
    fn: Callable[..., Any]
    args: tuple = ()  # type: ignore[type-arg]


Step = Union[Call, Locked, Pause, Blocking]
Steps = Generator[Step, Any, T]


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Steps[T]:
    return cast(T, (yield Call(fn, args, kwargs)))


def locked(steps: Steps[T]) -> Steps[T]:
    return cast(T, (yield Locked(steps)))


def pause(seconds: float) -> Steps[None]:
    yield Pause(seconds)


def blocking(fn: Callable[..., T], *args: Any) -> Steps[T]:
    return cast(T, (yield Blocking(fn, args)))


# -- runners -------------------------------------------------------------------


def _nested() -> RuntimeError:
    return RuntimeError("a Locked flow yielded Locked: the growth lock is not reentrant")


def run(steps: Steps[T], lock: threading.Lock, *, held: bool = False) -> T:
    """Drives a flow with plain calls (threads wait for the lock)."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return cast(T, stop.value)
        value, error = None, None
        try:
            if isinstance(step, Call):
                value = step.fn(*step.args, **step.kwargs)
            elif isinstance(step, Locked):
                if held:
                    raise _nested()
                with lock:
                    value = run(step.steps, lock, held=True)
            elif isinstance(step, Blocking):
                value = step.fn(*step.args)
            else:
                time.sleep(step.seconds)
        except Exception as caught:  # noqa: BLE001 - handed to the flow, which decides
            error = caught
        except BaseException:  # KeyboardInterrupt, SystemExit: the flow's handlers run now
            steps.close()
            raise


async def run_async(steps: Steps[T], lock: threading.Lock, *, held: bool = False) -> T:
    """Drives a flow, awaiting its calls. The lock is a thread lock polled
    without blocking, so one pool serves coroutines on any number of event
    loops and threads (an asyncio.Lock belongs to one loop)."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return cast(T, stop.value)
        value, error = None, None
        try:
            if isinstance(step, Call):
                value = await step.fn(*step.args, **step.kwargs)
            elif isinstance(step, Locked):
                if held:
                    raise _nested()
                wait = 0.0002
                while not lock.acquire(blocking=False):
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, 0.005)
                try:
                    value = await run_async(step.steps, lock, held=True)
                finally:
                    lock.release()
            elif isinstance(step, Blocking):
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(None, functools.partial(step.fn, *step.args))
            else:
                await asyncio.sleep(step.seconds)
        except Exception as caught:  # noqa: BLE001 - handed to the flow, which decides
            error = caught
        except BaseException:  # cancelled, KeyboardInterrupt: the flow's handlers run now
            steps.close()
            raise


# -- regions -------------------------------------------------------------------


def _closed() -> SharedMemoryException:
    return SharedMemoryException("unable to lease shared memory: the pool is closed")


def _unregister_quietly(state: PoolState, client: Any, name: str) -> Steps[bool]:
    """Unregisters one name. False only while the server refuses because a
    request still uses the region: any other failure (the server is gone or
    refuses us) cannot be helped by trying again. Errors stay here: this runs
    on the way out."""
    fn, args, kwargs = state.adapter.unregister(client, name, state.config.call_headers())
    try:
        yield from call(fn, *args, **kwargs)
    except Exception as error:  # noqa: BLE001
        return not in_use(error)
    return True


def _register_steps(state: PoolState, client: Any, name: str, key: str, byte_size: int) -> Steps[bool]:
    """Registers one region through `client`. False if the pool is closed
    (before, or while the registration was in flight): then nothing of it
    stays registered. A refusal is raised as the client raised it."""
    ledger = state.ledger
    if not ledger.registering_begins(name):
        return False
    fn, args, kwargs = state.adapter.register(client, name, key, byte_size, state.config.call_headers())
    try:
        yield from call(fn, *args, **kwargs)
    except Exception as error:
        if state.adapter.answered(error):  # refused: the server does not have it
            ledger.registering_ends(name, registered=False)
        raise  # unanswered: the name stays with close(), which unregisters it
    if not ledger.registering_ends(name, registered=True):
        yield from _unregister_quietly(state, client, name)
        return False
    return True


def add_region_steps(state: PoolState, size: int, client: Any) -> Steps[None]:
    """Creates a region, registers it through `client` (the caller's: an aio
    client belongs to its event loop, an HTTP one to its thread), then makes
    it leasable: until the server has it, no request can be routed to it, and
    a refused registration can always take it back out."""
    arena = state.arena
    name, key, byte_size = yield from blocking(arena.add_region, size)
    try:
        registered = yield from _register_steps(state, client, name, key, byte_size)
    except Exception as error:
        if state.closed:  # close() unlinked the region under the registration
            yield from blocking(arena.remove_region, name)
            raise _closed() from error
        # Explained while the region still exists (whether it does is the clue).
        refusal = server_refusal(
            error,
            f"unable to register shared memory region '{name}' (key '{key}', {byte_size} bytes)",
            key=key,
            region_size=byte_size,
            registered_size=byte_size,
        )
        yield from blocking(arena.remove_region, name)
        if refusal is error:
            raise
        raise refusal from error
    if not registered:
        yield from blocking(arena.remove_region, name)
        raise _closed()
    arena.commit_region(name)  # raises "closed" if close() came in between; it unregistered the name


def open_steps(state: PoolState) -> Steps[None]:
    """The pool's first region (not while it has one)."""
    state.check_usable()
    if int(state.arena.capacity) == 0:
        yield from add_region_steps(state, state.config.capacity, state.client)


def _make_room_steps(state: PoolState, size: int, client: Any) -> Steps[None]:
    """Before a new region would pass max_capacity, the regions no lease is in
    are unregistered and removed (smallest first) until it fits: a pool that
    grew for small requests can still serve a large one."""
    arena, config = state.arena, state.config
    if size > config.max_capacity:
        return  # nothing removed could make it fit: keep the warm regions
    for name, _, _ in sorted(arena.regions(), key=lambda region: region[2]):
        if int(arena.capacity) + size <= config.max_capacity:
            return
        if (yield from blocking(arena.remove_region, name)):  # only if nothing is leased from it
            state.ledger.forget(name)
            yield from _unregister_quietly(state, client, name)


def _grow_steps(state: PoolState, nbytes: int, client: Any) -> Steps[Any]:
    yield from _sweep_steps(state, client, interval=0.0)
    lease = state.arena.try_lease(nbytes)  # another thread may have grown the pool meanwhile
    while lease is None:
        size = state.config.growth_for(nbytes)
        yield from _make_room_steps(state, size, client)
        yield from add_region_steps(state, size, client)
        lease = state.arena.try_lease(nbytes)
    return lease


def lease_steps(state: PoolState, nbytes: int, client: Any = None) -> Steps[Any]:
    """A lease of nbytes, growing the pool (one grower at a time, registering
    through `client`, default the pool's) if no region has room."""
    state.check_usable()
    lease = state.arena.try_lease(nbytes)
    if lease is None:
        lease = yield from locked(_grow_steps(state, nbytes, state.client_for(client)))
    return lease


def _heal_steps(state: PoolState, seen: int, client: Any) -> Steps[None]:
    """Registers the pool's regions again after the server forgot them (a
    restart, an unregister-all). Once per incident: a request that began
    before another thread healed only runs again. Never after close()."""
    if state.ledger.incidents != seen:
        return
    for name, key, byte_size in state.arena.regions():
        try:
            registered = yield from _register_steps(state, client, name, key, byte_size)
        except Exception as error:
            if state.closed:  # close() unlinked the region under the registration
                raise _closed() from error
            if "already in manager" in str(error):
                continue  # the server still had this one
            refusal = server_refusal(
                error,
                f"unable to register shared memory region '{name}' (key '{key}', {byte_size} bytes) again "
                "after the server forgot it",
                key=key,
                region_size=byte_size,
                registered_size=byte_size,
            )
            if refusal is error:
                raise
            raise refusal from error
        if not registered:
            raise _closed()
    state.ledger.healed()


def _sweep_steps(state: PoolState, client: Any, interval: Optional[float] = None) -> Steps[None]:
    """Unregisters retired names (refused while the request given up on still
    runs at the server: tried again later) and removes retired regions whose
    last lease is gone; at most once per `interval` (SWEEP_INTERVAL) seconds."""
    to_unregister, to_remove = state.ledger.sweep_due(SWEEP_INTERVAL if interval is None else interval)
    for name in to_unregister:
        if (yield from _unregister_quietly(state, client, name)):
            state.ledger.retired_unregistered(name)
    for name in to_remove:
        if (yield from blocking(state.arena.remove_region, name)):
            state.ledger.retired_removed(name)


def _unregister_until(state: PoolState, names: List[str], waits: Sequence[float], client: Any) -> Steps[List[str]]:
    """Unregisters `names` through `client`, asking again after each of `waits`
    while the server refuses some because a request uses them; returns those
    still refused."""
    for wait in (*waits, None):
        refused = []
        for name in names:
            if not (yield from _unregister_quietly(state, client, name)):
                refused.append(name)
        names = refused
        if not names or wait is None:
            break
        yield from pause(wait)
    return names


def _warn_left_registered(names: List[str]) -> None:
    warnings.warn(
        f"closing the shared memory pool: the server would not unregister {names} while a request uses them: "
        "one this pool gave up on (a timeout, a cancellation) may still run there. Unregister them when "
        "it ends (`tritonshm status --url ...` shows them).",
        RuntimeWarning,
        stacklevel=3,
    )


def close_steps(state: PoolState) -> Steps[None]:
    """Unregisters the pool's own names (never the server's other regions) and
    removes its regions. Errors are swallowed: this runs at collection and
    interpreter exit too, when the server may be gone. The server refuses to
    drop a region while a request uses it: a name a request of this pool
    still waits for is unregistered by that request as it ends; one a request
    the pool gave up on may hold is waited for up to ABANDONED_WAITS, then
    named in a warning. In a forked child it does nothing: the regions and
    registrations are the parent's."""
    if not state.owned_here():
        state.ledger.closed = True
        return
    names, abandoned = state.ledger.close()
    client = state.client_for()
    if names and client is state.client and state.client_bound_elsewhere():
        warnings.warn(
            f"closing the shared memory pool: {names} stay registered: the pool's client belongs to the thread "
            "that made the pool, and no client could be made on this one (the server's address cannot be read). "
            "Close the pool on that thread.",
            RuntimeWarning,
            stacklevel=3,
        )
        yield from blocking(state.arena.close)
        return
    try:
        refused = yield from _unregister_until(state, names, CLOSE_WAITS, client)
        if refused:
            others = state.ledger.leave_to_last_request(refused)
            given_up = [name for name in others if name in abandoned]
            still = [name for name in others if name not in abandoned]
            still += yield from _unregister_until(state, given_up, ABANDONED_WAITS, client)
            if still:
                _warn_left_registered(still)
    finally:
        state.drop_thread_client()
    yield from blocking(state.arena.close)


# -- inference -----------------------------------------------------------------


def model_steps(
    state: PoolState, model_name: str, model_version: str, client: Any = None
) -> Steps[Optional[ModelOutputs]]:
    """The outputs the model's configuration declares (cached), or None if the
    server will not say; asked through `client` (default: the pool's)."""
    key = (model_name, model_version)
    known, outputs = state.models.get(key)
    if known:
        return outputs
    fn, args, kwargs = state.adapter.model_config(
        state.client_for(client), model_name, model_version, state.config.call_headers()
    )
    try:
        outputs = parse_model_config((yield from call(fn, *args, **kwargs)))
    except Exception:  # noqa: BLE001 - no config: outputs are learned from responses
        outputs = None
    state.models.put(key, outputs)
    return outputs


class _Refused(Exception):
    """The server answered the request with a refusal: it is not running it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def infer_steps(state: PoolState, request: InferRequest, client: Any = None) -> Steps[Response]:
    """One inference: choose the transport, lease, write, infer, read, learn.

    The model runs at most twice for one call. A request runs again:
    - after the server forgot the pool's registrations: they are registered
      again (once per incident), at most HEALED_RERUNS times; the server
      refused the request before its model ran, so any request may;
    - once, when a slot sized by a guess (learned, predicted, configured) was
      too small, if the request may run twice (not retry=False, not a step of
      a sequence): then every output whose size the caller did not give comes
      back inline, so the second run cannot fail for a size.
    A request that must run once places only outputs of trusted sizes in
    shared memory. Past max_capacity, it goes inline, whole.
    """
    state.check_usable()
    if client is not None:
        state.adapter.check(client, "client=")
    target = state.client_for(client)  # the pool's own calls for this request too
    if state.ledger.retired_present or state.ledger.retired_registered:
        yield from _sweep_steps(state, target)
    model = (
        (yield from model_steps(state, request.model_name, request.model_version, target))
        if _needs_config(request)
        else None
    )
    signature = signature_of(request.model_name, request.model_version, request.described(), request.output_names())
    attempt = Attempt.GUESS if request.may_rerun else Attempt.TRUSTED
    heals, seen = 0, state.ledger.incidents
    while True:
        transport = choose(request, signature, model, state.learned, state.config.inline_threshold, attempt)
        layout = Layout.of(
            [
                item.nbytes if shm and item.placed is None else None
                for item, shm in zip(request.inputs, transport.inputs_in_shm)
            ],
            [out.slot for out in transport.outputs or ()],
            state.config.alignment,
        )
        try:
            lease = (yield from lease_steps(state, layout.total, target)) if layout.total else None
        except SharedMemoryException as refusal:
            if getattr(refusal, "reason", None) != "limit_reached":
                raise
            attempt = Attempt.INLINE  # past max_capacity: plain tritonclient would still send it, and so do we
            state.ledger.count(inline_fallbacks=1)
            continue
        try:
            response = yield from _exchange(state, request, transport, layout, lease, target)
        except _Refused as refused:
            error: Exception = refused.error
            if heals < HEALED_RERUNS and state.ledger.is_registered(missing_region(error)):
                yield from locked(_heal_steps(state, seen, target))
                seen, heals = state.ledger.incidents, heals + 1
                state.ledger.count(retries=1, retries_missing_region=1)
                continue
            if attempt is Attempt.GUESS and _outgrown(state, request, signature, transport, error):
                attempt = Attempt.CALLER
                state.ledger.count(retries=1, retries_output_size=1)
                continue
            explained = server_refusal(error, f"inference of model '{request.model_name}' through shared memory failed")
            raise explained from (None if explained is error else error)
        _learn(state, signature, request, transport, response)
        return response


def _needs_config(request: InferRequest) -> bool:
    """Whether the model's configuration can tell more about the outputs."""
    return request.outputs is None or any(out.size is None and out.shareable for out in request.outputs)


def _exchange(
    state: PoolState, request: InferRequest, transport: Transport, layout: Layout, lease: Any, client: Any
) -> Steps[Response]:
    """Writes the inputs, sends the request, reads the outputs placed in the
    lease. The lease is released here unless views of it are returned; if the
    request is given up on while at the server (a timeout, an interrupt, a
    cancellation, a broken connection), its region is retired instead: the
    server may still write there, so those bytes are never lent again."""
    adapter = state.adapter
    keep = False
    try:
        input_parts = layout.input_parts(lease) if lease is not None else [None] * len(request.inputs)
        output_parts = layout.output_parts(lease) if lease is not None else [None] * len(transport.outputs or ())
        infer_inputs = []
        for item, part, shm in zip(request.inputs, input_parts, transport.inputs_in_shm):
            if shm and item.placed is not None:  # already in the pool's memory
                infer_inputs.append(adapter.shm_input(item.name, list(item.shape), item.datatype, item.placed))
            elif part is None:
                infer_inputs.append(item.inline(adapter))
            else:
                item.write(part)
                infer_inputs.append(adapter.shm_input(item.name, list(item.shape), item.datatype, part))
        requested = None
        if transport.outputs is not None:
            requested = []
            for out, part in zip(transport.outputs, output_parts):
                if part is not None:
                    requested.append(adapter.requested_output(out.request.name, part))
                elif out.request.given is not None:
                    requested.append(out.request.given)  # as the caller made it
                else:
                    requested.append(adapter.requested_output(out.request.name))
        placed = {item.placed.name for item, shm in zip(request.inputs, transport.inputs_in_shm) if shm and item.placed}
        result = yield from _send(state, request, infer_inputs, requested, lease, placed, client)
        arrays = {}
        for out, part in zip(transport.outputs or (), output_parts):
            if part is None:
                continue
            described = adapter.output_type(result, out.request.name)
            if described is None:
                raise SharedMemoryException(f"the response has no output '{out.request.name}'")
            datatype, shape = described
            dtype = np.object_ if datatype == "BYTES" else triton_to_np_dtype(datatype)
            arrays[out.request.name] = part.read(dtype, shape, request.copy)
        keep = not request.copy and bool(arrays)  # views of the lease hold it
        return Response(result, arrays)
    finally:
        if lease is not None and not keep:
            lease.release()


def _send(
    state: PoolState,
    request: InferRequest,
    inputs: List[Any],
    outputs: Optional[List[Any]],
    lease: Any,
    placed: Set[str],
    client: Any,
) -> Steps[Any]:
    """The client's infer. A refusal the server answered is raised as
    _Refused; a request given up on retires its lease's region, and the
    regions of inputs placed in the pool's memory beforehand (`placed`: the
    server may still read them once their holder lets them go)."""
    ledger, name = state.ledger, (lease.name if lease is not None else None)
    if name is not None:
        ledger.sent(name)
    try:
        result = yield from call(
            client.infer,
            request.model_name,
            inputs,
            outputs=outputs,
            model_version=request.model_version,
            **request.kwargs,
        )
    except GeneratorExit:  # interrupted or cancelled while the request was at the server
        _give_up(state, name, placed)
        raise
    except Exception as error:
        answered = state.adapter.answered(error)
        if not answered:
            _give_up(state, name, placed)
        if name is not None:
            if answered and ledger.answered(name):
                yield from _unregister_left_by_close(state, client, name)
        if answered:
            raise _Refused(error) from error
        raise
    if name is not None and ledger.answered(name):
        yield from _unregister_left_by_close(state, client, name)
    return result


def _unregister_left_by_close(state: PoolState, client: Any, name: str) -> Steps[None]:
    """The last request on a region close() could not unregister has ended:
    it unregisters the name. The server lets go of a request's memory just
    after it answers (over HTTP the answer can come first), so it asks again
    a few times."""
    if (yield from _unregister_until(state, [name], CLOSE_WAITS, client)):
        _warn_left_registered([name])


def _give_up(state: PoolState, name: Optional[str], placed: Set[str]) -> None:
    """Retires the regions a request given up on may still use: its lease's
    (`name`, which the server may write) and those of its placed inputs."""
    if name is not None and state.ledger.answered(name):  # no longer waited for; the server may still run it
        warnings.warn(
            f"closing the shared memory pool left '{name}' to a request that was then given up on while the server "
            "ran it: the name stays registered until that request ends there. Unregister it then "
            "(`tritonshm status --url ...` shows it).",
            RuntimeWarning,
            stacklevel=3,
        )
    retired = sorted(placed | ({name} if name is not None else set()))
    if not retired:
        return  # all inline: nothing of the pool's to keep from the server
    for region in retired:
        with contextlib.suppress(SharedMemoryException):  # closed meanwhile: the region is going anyway
            state.arena.retire_region(region)
    state.ledger.retire(retired)


def _outgrown(
    state: PoolState, request: InferRequest, signature: Signature, transport: Transport, error: Exception
) -> bool:
    """A slot the pool sized was too small: remember the size the server
    named, forget the model's configuration (it may have been reloaded), and
    say the request may run again. A size the caller gave is the caller's."""
    needed = needed_output_size(error)
    if needed is None or not request.may_rerun:
        return False
    name, nbytes = needed
    planned = next((out for out in transport.outputs or () if out.request.name == name), None)
    if planned is None or planned.source in (None, "caller"):
        return False
    state.learned.learn_needed(signature, name, nbytes)
    state.models.forget((request.model_name, request.model_version))
    return True


def _learn(
    state: PoolState, signature: Signature, request: InferRequest, transport: Transport, response: Response
) -> None:
    adapter, result = state.adapter, response.result
    asked = {out.request.name: out.request for out in transport.outputs or ()}
    observed: Dict[str, int] = {}
    names = adapter.output_names(result)
    for name in names:
        out = asked.get(name)
        if out is not None and not out.shareable:
            continue  # as the caller asked it (classes, JSON): not what shared memory would hold
        if name in response.arrays:
            observed[name] = serialized_size(response.arrays[name])
        else:
            nbytes = adapter.inline_nbytes(result, name)
            if nbytes is not None:
                observed[name] = nbytes
    state.learned.learn(signature, observed)
    in_shm = len(response.arrays)
    state.ledger.count(
        requests=1,
        inputs_in_shm=sum(transport.inputs_in_shm),
        inputs_inline=len(request.inputs) - sum(transport.inputs_in_shm),
        outputs_in_shm=in_shm,
        outputs_inline=len(names) - in_shm,
        outputs_predicted=sum(out.source == "predicted" for out in transport.outputs or ()),
    )

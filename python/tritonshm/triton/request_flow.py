"""The pool's request flow, written once for both pools.

Each flow is a generator of steps: it yields a `Call` (a call to the client)
or a `Locked` (steps to run holding the pool's growth lock) and is sent the
call's result or thrown its exception. `run` drives a flow with plain calls
(SharedMemoryPool); `run_async` awaits them (AsyncSharedMemoryPool). The rules
(growth, learning output sizes, retrying, healing registrations, closing) live
here and nowhere else, so the two pools cannot drift.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy.typing as npt

from .._core import SharedMemoryException
from .learned_outputs import signature_of
from .pool_state import PoolState
from .refusals import missing_region, needed_output_size, server_refusal
from .request import ModelOutputs, RequestPlan, parse_model_config

__all__ = ["Call", "Locked", "close_steps", "infer_steps", "lease_steps", "model_steps", "open_steps", "run"]

T = TypeVar("T")

# close() waits this long, in these steps, for the server to let go of regions
# that requests still in flight use (Triton refuses to unregister them meanwhile).
CLOSE_WAITS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 0.0)

# A threshold no tensor reaches: the request goes inline, whole.
INLINE_ONLY = 1 << 64

# How often one request may run again after the server forgot the pool's
# registrations (each time after registering them again).
HEALED_RERUNS = 2


@dataclass
class Call:
    """A call to the client: the sync runner calls it, the async one awaits it."""

    fn: Callable[..., Any]
    args: tuple = ()  # type: ignore[type-arg]
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Locked:
    """Steps to run while holding the pool's growth lock."""

    steps: "Steps[Any]"


@dataclass
class Pause:
    """A wait (time.sleep, or asyncio.sleep for the async pool)."""

    seconds: float


Steps = Generator[Union[Call, Locked, Pause], Any, T]


# -- runners -------------------------------------------------------------------


def _resume(steps: Steps[Any], value: Any, error: Optional[BaseException]) -> Tuple[bool, Any]:
    """(False, the flow's next step), or (True, its result) once it is done."""
    try:
        return False, (steps.throw(error) if error is not None else steps.send(value))
    except StopIteration as stop:
        return True, stop.value


def run(steps: Steps[T], lock: threading.Lock) -> T:
    """Drives a flow with plain calls (threads wait for the lock)."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        done, step = _resume(steps, value, error)
        if done:
            return step  # type: ignore[no-any-return]
        value, error = None, None
        try:
            if isinstance(step, Locked):
                with lock:
                    value = run(step.steps, lock)
            elif isinstance(step, Pause):
                time.sleep(step.seconds)
            else:
                value = step.fn(*step.args, **step.kwargs)
        except Exception as caught:  # noqa: BLE001 - handed to the flow, which decides
            error = caught
        except BaseException:  # KeyboardInterrupt, SystemExit: the flow's finally blocks run now
            steps.close()
            raise


async def run_async(steps: Steps[T], lock: threading.Lock) -> T:
    """Drives a flow, awaiting its calls. The lock is a thread lock polled
    without blocking, so one pool serves coroutines on any number of event
    loops and threads (an asyncio.Lock belongs to one loop)."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        done, step = _resume(steps, value, error)
        if done:
            return step  # type: ignore[no-any-return]
        value, error = None, None
        try:
            if isinstance(step, Locked):
                wait = 0.0002
                while not lock.acquire(blocking=False):
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, 0.005)
                try:
                    value = await run_async(step.steps, lock)
                finally:
                    lock.release()
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            else:
                value = await step.fn(*step.args, **step.kwargs)
        except Exception as caught:  # noqa: BLE001 - handed to the flow, which decides
            error = caught
        except BaseException:  # cancelled, KeyboardInterrupt: the flow's finally blocks run now
            steps.close()
            raise


# -- regions -------------------------------------------------------------------


def _register(state: PoolState, client: Any, name: str, key: str, byte_size: int) -> Call:
    return Call(client.register_system_shared_memory, (name, key, byte_size), {"headers": state.headers})


def _unregister(state: PoolState, client: Any, name: str) -> Call:
    return Call(client.unregister_system_shared_memory, (name,), {"headers": state.headers})


def add_region_steps(state: PoolState, size: int, client: Any) -> Steps[None]:
    """Creates a region, registers it through `client` (the caller's: an aio
    client belongs to its event loop, an HTTP one to its thread), then makes
    it leasable: until the server has it, no request can be routed to it, and
    a refused registration can always take it back out."""
    name, key, byte_size = state.arena.add_region(size)
    state.registering_begins(name)  # an interrupt from here on leaves the name for close() to unregister
    try:
        yield _register(state, client, name, key, byte_size)
    except Exception as error:
        state.registering_failed(name)
        if state.closed:  # close() unlinked the region under the registration
            state.arena.remove_region(name)
            raise SharedMemoryException("unable to lease shared memory: the pool is closed") from error
        # Explained while the region still exists (whether it does is the clue).
        refusal = server_refusal(
            error,
            f"unable to register shared memory region '{name}' (key '{key}', {byte_size} bytes)",
            key=key,
            region_size=byte_size,
            registered_size=byte_size,
        )
        state.arena.remove_region(name)
        if refusal is error:
            raise
        raise refusal from error
    if not state.commit(name):  # closed while the registration was in flight: take it back
        try:
            yield _unregister(state, client, name)
        except Exception:  # noqa: BLE001 - the server may be gone
            pass
        state.arena.remove_region(name)
        raise SharedMemoryException("unable to lease shared memory: the pool is closed")


def open_steps(state: PoolState) -> Steps[None]:
    """The pool's first region (not while it has one)."""
    state.check_usable()
    if int(state.arena.capacity) == 0:
        yield from add_region_steps(state, state.initial_capacity, state.client)


def _make_room_steps(state: PoolState, size: int, client: Any) -> Steps[None]:
    """Before a new region would pass max_capacity, the regions no lease is in
    are unregistered and removed (smallest first) until it fits: a pool that
    grew for small requests can still serve a large one."""
    arena = state.arena
    if size > state.max_capacity:
        return  # nothing removed could make it fit: keep the warm regions
    for name, _, _ in sorted(arena.regions(), key=lambda region: region[2]):
        if int(arena.capacity) + size <= state.max_capacity:
            return
        if arena.remove_region(name):  # only if nothing is leased from it
            state.forget(name)
            try:
                yield _unregister(state, client, name)
            except Exception:  # noqa: BLE001 - gone from the server already, or the server is
                pass


def _grow_steps(state: PoolState, nbytes: int, client: Any) -> Steps[Any]:
    lease = state.arena.try_lease(nbytes)  # another thread may have grown the pool meanwhile
    while lease is None:
        size = state.growth_for(nbytes)
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
        lease = yield Locked(_grow_steps(state, nbytes, client if client is not None else state.client))
    return lease


def _heal_steps(state: PoolState, seen: int, client: Any) -> Steps[None]:
    """Registers the pool's regions again after the server forgot them (a
    restart, an unregister-all). Once per incident: a request that began
    before another thread healed only retries."""
    if state.registrations != seen:
        return
    for name, key, byte_size in state.arena.regions():
        try:
            yield _register(state, client, name, key, byte_size)
        except Exception as error:
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
    with state.lock:
        state.registrations += 1
        state.reregistrations += 1


def close_steps(state: PoolState) -> Steps[None]:
    """Unregisters the pool's own names (never the server's other regions) and
    removes its regions. Errors are swallowed: this runs at collection and
    interpreter exit too, when the server may be gone. In a forked child it
    does nothing: the regions and registrations are the parent's."""
    if not state.owned_here():
        state.closed = True
        return
    names = state.close_names()
    for wait in CLOSE_WAITS:
        in_use = []
        for name in names:
            try:
                yield _unregister(state, state.client, name)
            except Exception as error:  # noqa: BLE001 - the server may be gone; the regions go anyway
                if "in use" in str(error):
                    in_use.append(name)
        names = in_use
        if not names:
            break
        yield Pause(wait)  # the server refuses while another thread's request uses the region
    state.arena.close()


# -- inference -----------------------------------------------------------------


def model_steps(
    state: PoolState, model_name: str, model_version: str, client: Any = None
) -> Steps[Optional[ModelOutputs]]:
    """The outputs the model's configuration declares (cached), or None if the
    server will not say; asked through `client` (default: the pool's)."""
    key = (model_name, model_version)
    if key not in state.models:
        call, kwargs = state.config_call(client if client is not None else state.client, model_name, model_version)
        try:
            config = yield Call(call, (model_name,), kwargs)
            state.models[key] = parse_model_config(config)
        except Exception:  # noqa: BLE001 - no config: outputs are learned from responses
            state.models[key] = None
    return state.models[key]


def infer_steps(
    state: PoolState,
    model_name: str,
    inputs: Mapping[str, npt.NDArray[Any]],
    outputs: Optional[Sequence[str]],
    copy: bool,
    output_sizes: Optional[Mapping[str, int]],
    model_version: str,
    client: Any,
    retry: bool,
    kwargs: Dict[str, Any],
) -> Steps[Dict[str, npt.NDArray[Any]]]:
    """One inference: plan, lease, write, infer, read, learn.

    Runs the request again (a) once when an output outgrew the size learned
    for it (the server names the size it needed, which is remembered), and (b)
    when the server forgot the pool's registrations: they are registered again
    (once per incident) first; at most HEALED_RERUNS times, since a client that
    loops on unregister-all (Triton refuses to drop regions in use) makes
    incidents back to back. Never for a request in a sequence (its state would
    advance twice), nor with retry=False: such a request places only outputs of
    a known size (output_sizes, fixed dims) in the lease, so that it cannot
    fail where plain tritonclient would not.
    """
    state.check_usable()
    sizes = dict(output_sizes or {})
    may_retry = retry and not kwargs.get("sequence_id")
    seen = state.registrations
    if client is not None:
        state.check_client(client, "client=")
    target = client if client is not None else state.client  # the pool's own calls for this request too
    model = (
        (yield from model_steps(state, model_name, model_version, target))
        if state.needs_config(outputs, sizes)
        else None
    )
    signature = signature_of(model_name, model_version, inputs, outputs)
    resized, healed, inline_only = False, 0, False
    while True:
        plan = RequestPlan.make(
            inputs,
            outputs,
            model,
            {} if inline_only else sizes,
            state.learned.get(signature) if may_retry and not inline_only else None,
            INLINE_ONLY if inline_only else state.inline_threshold,
            int(state.arena.alignment),
        )
        try:
            lease = (yield from lease_steps(state, plan.total, target)) if plan.total else None
        except SharedMemoryException as error:
            if inline_only or "would pass the limit" not in str(error):
                raise
            inline_only = True  # past max_capacity: plain tritonclient would still send it, and so do we
            state.count(inline_fallbacks=1)
            continue
        keep = False
        try:
            plan.write(lease)
            arguments = plan.infer_arguments(state.module, state.protocol, lease, model_version)
            try:
                result = yield Call(target.infer, (model_name,), {**arguments, **kwargs})
            except Exception as error:
                if may_retry:
                    if not resized and _outgrown(state, signature, plan, error):
                        resized = True
                        state.count(retries=1)
                        continue
                    if healed < HEALED_RERUNS and state.registered_here(missing_region(error)):
                        yield Locked(_heal_steps(state, seen, target))
                        seen = state.registrations
                        healed += 1
                        state.count(retries=1)
                        continue
                refusal = server_refusal(error, f"inference of model '{model_name}' through shared memory failed")
                if refusal is error:
                    raise
                raise refusal from error
            arrays, needed = plan.results(result, lease, copy)
            state.learned.learn(signature, needed)
            state.count(
                requests=1,
                inputs_in_shm=plan.inputs_in_shm,
                inputs_inline=len(plan.inputs) - plan.inputs_in_shm,
                outputs_in_shm=plan.outputs_in_shm,
                outputs_inline=len(arrays) - plan.outputs_in_shm,
            )
            keep = not copy and plan.outputs_in_shm > 0  # views of the lease hold it
            return arrays
        finally:
            if lease is not None and not keep:
                lease.release()


def _outgrown(state: PoolState, signature: Any, plan: RequestPlan, error: Exception) -> bool:
    """An output slot sized from what was learned was too small: learn the size
    the server named. Sizes the caller gave are the caller's to change."""
    needed = needed_output_size(error)
    if needed is None:
        return False
    name, nbytes = needed
    out = plan.output(name)
    if out is None or out.from_caller:
        return False
    state.learned.learn(signature, {name: nbytes})
    return True

"""`accelerate()`: existing tritonclient code sends its large tensors through
shared memory, unchanged.

While accelerated, tritonclient's clients (`tritonclient.http` and
`tritonclient.grpc`, their `infer` and `async_infer`, and the `infer` of their
asyncio clients; made before or after) send each input of at least
`inline_threshold` bytes through shared memory of this process's own, and get
outputs into it where the pool's rules say it pays (sizes learned from
responses, or from the model's configuration). Everything else goes to
tritonclient's own call, untouched.

How it is put together:

- Patching: the client classes' methods and the InferInput classes'
  `set_data_from_numpy` are replaced (patches.py), a module not yet imported
  as its import finishes; `close()` puts back the same function objects.
- Pools: one per server (protocol, asyncio or not, address), created at its
  first request with a large tensor and shared by every client of that
  server; a request goes through its own client (`client=`), so threads with
  their own HTTP clients, one gRPC client shared by threads and several event
  loops work as with the pool. A forked child starts with no pools.
- Requests: the caller's InferInput and InferRequestedOutput objects are read
  (given.py) into the request layer's request and run by its flow
  (request_flow.infer_steps), which keeps all the pool's rules (growth,
  healing, reruns, retiring, inline past the limit). The flow's own call of
  the client's infer carries a marker keyword that sends it to tritonclient's
  original method.
- Staging: `set_data_from_numpy` copies a large array straight into the
  pool's memory (given.py), so that a request pays one copy, as pool.infer does.
- Results: a subclass of tritonclient's InferResult whose `as_numpy` reads
  the outputs placed in shared memory (read-only views, as tritonclient's
  arrays are) and everything else as tritonclient does.
- Never a failure because of acceleration: a request that shared memory
  failed for before it reached the server (or that may run again) is sent by
  tritonclient's own call; a cause that will not go away (the server cannot
  see our /dev/shm, refuses its shared-memory API, /dev/shm is full) is found
  once per server, warned about once with the fix, and that server's requests
  go over the network from then on.

gRPC streaming (`start_stream`/`async_stream_infer`, the asyncio client's
`stream_infer`) passes through untouched: a stream's responses arrive in
any number and order, so there is no one request whose memory could be
given back when it ends.
"""

from __future__ import annotations

import atexit
import functools
import gc
import inspect
import os
import sys
import threading
import warnings
import weakref
from collections import Counter
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._core import SharedMemoryException
from .adapters import ClientAdapter, adapter_for
from .config import DEFAULT_INLINE_THRESHOLD, PoolConfig
from .given import Staged, given_inputs, given_outputs, stage
from .ledger import COUNTERS
from .pool_state import PoolState
from .request import InferRequest, Response
from .request_flow import Blocking, Call, Locked, Steps, close_steps, infer_steps, run, run_async

__all__ = ["Acceleration", "accelerate"]

MIB = 1 << 20
# The first region of a server's pool, made at its first large request; it grows by what requests need.
DEFAULT_CAPACITY = 16 * MIB
# All regions of one server's pool together, at most: past it requests go
# inline (tritonclient's own way). At most half of /dev/shm, which is often
# small in containers (64 MiB in Docker by default).
DEFAULT_MAX_CAPACITY = 1 << 30
PREFIX = "tritonshm_accel"

# The keyword the flow's own call of a client's infer carries: the patched
# method passes such a call to tritonclient's original.
_DIRECT = "_tritonshm_direct"

_MODULES = ("tritonclient.http", "tritonclient.grpc", "tritonclient.http.aio", "tritonclient.grpc.aio")

# The server's words when shared memory cannot work with it, whatever the request:
# another IPC namespace or host, client shared memory disabled, an API behind a token.
_ENVIRONMENT_WORDS = (
    "unable to open shared memory region",
    "client shared memory is disabled",
    "allow-client-shm",
    "is restricted",
    "access-token",
    "not supported on windows",
)

# pool.stats()'s keys, for servers that have no pool yet.
_POOL_KEYS = (
    *COUNTERS,
    "regions",
    "capacity_bytes",
    "leased_bytes",
    "high_water_bytes",
    "learned_signatures",
    "inline_threshold",
)
# The accelerator's own counters, beside the pools'.
_OWN_KEYS = ("requests_direct", "network_fallbacks", "inputs_staged", "servers", "servers_network_only")


def _default_max_capacity() -> int:
    try:
        fs = os.statvfs("/dev/shm")
    except OSError:
        return DEFAULT_MAX_CAPACITY
    return max(DEFAULT_CAPACITY, min(DEFAULT_MAX_CAPACITY, fs.f_blocks * fs.f_frsize // 2))


# -- servers -------------------------------------------------------------------


def _address(client: Any, adapter: ClientAdapter) -> Optional[str]:
    """host:port[/path] of the client's server as tritonclient takes it; None
    where it cannot be read or the connection is TLS (a server on another
    host, whose shared memory could not be ours anyway)."""
    try:
        if adapter.protocol == "http":
            url = str(client._url if adapter.aio else client._parsed_url)
            return url[len("http://") :].rstrip("/") if url.startswith("http://") else None
        channel = client._channel
        target = channel._channel.target if adapter.aio else channel._target
        if isinstance(target, bytes):
            target = target.decode()
        target = str(target)
        return target[len("dns:///") :] if target.startswith("dns:///") else target
    except Exception:  # noqa: BLE001 - a client this module does not know: its requests pass through
        return None


class _Server:
    """What the accelerator knows of one server: its pool (made at the first
    large request), why requests to it go over the network if they must, and
    the models whose outputs were large though their inputs were small."""

    def __init__(self, protocol: str, aio: bool, address: Optional[str]) -> None:
        self.protocol = protocol
        self.aio = aio
        self.address = address
        self.state: Optional[PoolState] = None
        # Why its requests go over the network, once found; None while shared memory works.
        self.cause: Optional[str] = None if address is not None else "its address or TLS"
        self.large_outputs: set = set()  # type: ignore[type-arg]

    def describe(self) -> str:
        kind = f"tritonclient.{self.protocol}{'.aio' if self.aio else ''}"
        return f"the Triton server at {self.address} ({kind})"

    def close(self) -> None:
        """Unregisters the pool's regions through a client of our own (the
        callers' may be closed, or asyncio ones whose loop is gone) and
        removes them. Errors stay here: this also runs at interpreter exit."""
        state = self.state
        if state is None:
            return
        housekeeping = None
        try:
            housekeeping = state.adapter.module.InferenceServerClient(self.address)
        except Exception:  # noqa: BLE001 - the regions go in any case; the server keeps its mappings until it exits
            state.ledger.close()
            state.arena.close()
            return
        try:
            state.client = housekeeping
            run(close_steps(state), state.grow_lock)
        except Exception:  # noqa: BLE001
            state.arena.close()
        finally:
            try:
                housekeeping.close()
            except Exception:  # noqa: BLE001
                pass


# -- driving a flow ----------------------------------------------------------


class _Watch:
    sent = False  # whether the flow sent its request (the model may have run)


def _watched(steps: Steps[Any], watch: _Watch) -> Steps[Any]:
    """The flow's steps, passed on, noting when it sends the inference."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, Call) and _DIRECT in step.kwargs:
            watch.sent = True
        value, error = None, None
        try:
            value = yield step
        except GeneratorExit:
            steps.close()
            raise
        except Exception as caught:  # noqa: BLE001 - the flow decides
            error = caught


def _execute(step: Any, lock: threading.Lock) -> Any:
    """One step as request_flow.run carries it out."""
    if isinstance(step, Call):
        return step.fn(*step.args, **step.kwargs)
    if isinstance(step, Locked):
        with lock:
            return run(step.steps, lock, held=True)
    if isinstance(step, Blocking):
        return step.fn(*step.args)
    import time

    time.sleep(step.seconds)
    return None


class _Split:
    """Drives a flow with plain calls, except that its first inference is
    sent with the client's asynchronous call (`send(step)`): start() runs the
    flow up to it and returns what that call returned; advance() then gives
    the flow the inference's outcome. Any later inference (a rerun) is a
    plain call."""

    def __init__(self, steps: Steps[Any], lock: threading.Lock, send: Callable[[Call], Any]) -> None:
        self.steps = steps
        self.lock = lock
        self.send = send
        self.sent = False

    def start(self) -> Any:
        step = self.steps.send(None)
        while True:
            if isinstance(step, Call) and _DIRECT in step.kwargs:
                self.sent = True
                try:
                    return self.send(step)
                except Exception as error:  # noqa: BLE001 - as the plain call's failure, into the flow
                    step = self.steps.throw(error)
                    continue
            step = self._step(step)

    def advance(self, value: Any, error: Optional[BaseException]) -> Tuple[bool, Any]:
        """(True, the flow's result) if it ended; else (False, its next step), not carried out yet."""
        try:
            step = self.steps.throw(error) if error is not None else self.steps.send(value)
        except StopIteration as stop:
            return True, stop.value
        return False, step

    def finish(self, step: Any) -> Any:
        """Carries out `step` and the rest of the flow with plain calls."""
        while True:
            step = self._step(step)

    def _step(self, step: Any) -> Any:
        try:
            value = _execute(step, self.lock)
        except Exception as error:  # noqa: BLE001 - the flow decides
            return self.steps.throw(error)
        except BaseException:
            self.steps.close()
            raise
        return self.steps.send(value)  # StopIteration ends start()/finish() with the result

    def close(self) -> None:
        self.steps.close()


def _ended(call: Callable[[], Any]) -> Any:
    """call(), whose StopIteration (the flow's end) becomes its value."""
    try:
        call()
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the flow went on after its last step")


# -- results -----------------------------------------------------------------

_RESULT_CLASSES: Dict[str, type] = {}


def _result_class(adapter: ClientAdapter) -> type:
    """A subclass of tritonclient's InferResult whose as_numpy reads the
    outputs placed in shared memory; the rest is tritonclient's."""
    made = _RESULT_CLASSES.get(adapter.protocol)
    if made is None:
        base = adapter.module.InferResult

        def as_numpy(self: Any, name: str) -> Any:
            array = self._tritonshm_outputs.get(name)
            if array is None:
                return base.as_numpy(self, name)
            # tritonclient builds a new array per call: numbers read-only over
            # the response, BYTES as a new object array.
            return array.copy() if array.dtype.hasobject else array.view()

        as_numpy.__doc__ = base.as_numpy.__doc__
        made = type(base.__name__, (base,), {"as_numpy": as_numpy, "__module__": __name__})
        _RESULT_CLASSES[adapter.protocol] = made
    return made


def _result(adapter: ClientAdapter, response: Response) -> Any:
    result = response.result
    if not response.arrays:
        return result  # nothing came back in shared memory: tritonclient's own result
    for array in response.arrays.values():
        if not array.dtype.hasobject:
            array.flags.writeable = False
    cls: Any = _result_class(adapter)
    made = cls.__new__(cls)
    made.__dict__.update(result.__dict__)
    made._tritonshm_outputs = response.arrays  # views that hold the request's lease
    return made


# -- the accelerator -----------------------------------------------------------


class _Accelerator:
    def __init__(self, config: PoolConfig, options: Dict[str, Any]) -> None:
        self.config = config
        self.options = options
        self.threshold = config.inline_threshold
        self.closed = False
        self.handles = 0
        self._reset()
        self.staged: "weakref.WeakSet[Staged]" = weakref.WeakSet()  # the live ones
        from .patches import Patches

        self.patches = Patches()

    def _reset(self) -> None:
        """Fresh bookkeeping: at the start, and in a forked child (the
        parent's pools, and its locks as they were at the fork, are the parent's)."""
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.servers: Dict[Tuple[str, bool, Optional[str]], _Server] = {}
        self.clients: "weakref.WeakKeyDictionary[Any, _Server]" = weakref.WeakKeyDictionary()
        self.staging: Dict[str, _Server] = {}  # protocol -> the server whose pool stages arrays
        self.counts: "Counter[str]" = Counter()
        self.warned: set = set()  # type: ignore[type-arg]

    def after_fork(self) -> None:
        self._reset()
        self.patches.after_fork()  # still in force in the child's copy of tritonclient, put back by its close()

    # -- patching ----------------------------------------------------------

    def start(self) -> None:
        self.patches.when_imported(_MODULES, self._patch)

    def _patch(self, module: ModuleType) -> None:
        name = module.__name__
        aio = name.endswith(".aio")
        client_class = module.InferenceServerClient
        if aio:
            self._patch_method(client_class, "infer", self._aio_infer)
            return
        self._patch_method(client_class, "infer", self._sync_infer)
        if name == "tritonclient.http":
            self._patch_method(client_class, "async_infer", self._http_async_infer)
        else:
            self._patch_method(client_class, "async_infer", self._grpc_async_infer)
        input_class = module.InferInput
        self._patch_method(input_class, "set_data_from_numpy", self._set_data_from_numpy)
        from .given import StagedData

        attribute = "_raw_data" if name == "tritonclient.http" else "_raw_content"
        self.patches.set(input_class, attribute, StagedData(attribute))

    def _patch_method(self, owner: type, name: str, make: Callable[[Any, List[str]], Any]) -> None:
        original = owner.__dict__[name]
        names = list(inspect.signature(original).parameters)[3:]  # after self, model_name, inputs / input_tensor
        if name == "set_data_from_numpy":
            names = list(inspect.signature(original).parameters)[2:]
        self.patches.set(owner, name, functools.wraps(original)(make(original, names)))

    # -- routing -----------------------------------------------------------

    def _server(self, client: Any) -> Tuple[Optional[_Server], Optional[ClientAdapter]]:
        try:
            server = self.clients.get(client)
        except TypeError:  # neither hashable nor weakly referable: not a client we know
            return None, None
        try:
            adapter = adapter_for(client)
        except SharedMemoryException:
            return None, None
        if server is None:
            address = _address(client, adapter)
            key = (adapter.protocol, adapter.aio, address)
            with self.lock:
                server = self.servers.get(key)
                if server is None:
                    server = self.servers[key] = _Server(adapter.protocol, adapter.aio, address)
                try:
                    self.clients[client] = server
                except TypeError:
                    pass
        return server, adapter

    def _count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def _large(self, adapter: ClientAdapter, inputs: Any, model_name: Any, server: _Server) -> bool:
        """Whether the request has an input of at least the threshold, or its
        model gave large outputs before. Cheap: a request of small tensors
        goes to tritonclient's call with no more than this."""
        if model_name in server.large_outputs:
            return True
        attribute, threshold = adapter.data_attribute, self.threshold
        try:
            for item in inputs:
                data = item.__dict__.get(attribute)
                if data is not None and (type(data) is Staged or len(data) >= threshold):
                    return True
        except (TypeError, AttributeError):
            return False  # not tritonclient's objects: tritonclient says what is wrong
        return False

    def _route(
        self, client: Any, model_name: Any, inputs: Any
    ) -> Tuple[Optional[_Server], Optional[ClientAdapter], bool]:
        """(server, adapter, whether the request goes through the server's
        pool); server and adapter are None for what is not a tritonclient
        client this module knows."""
        if self.closed or os.getpid() != self.pid:
            return None, None, False
        server, adapter = self._server(client)
        if server is None or adapter is None or server.cause is not None:
            return server, adapter, False
        return server, adapter, self._large(adapter, inputs, model_name, server)

    def _observe(
        self, server: Optional[_Server], adapter: Optional[ClientAdapter], model_name: Any, result: Any
    ) -> None:
        """After a request that went to tritonclient's call: remembers a model
        whose outputs were large though its inputs were small."""
        if server is None or adapter is None:
            return
        self._count("requests_direct")
        if server.cause is not None or model_name in server.large_outputs:
            return
        try:
            largest = adapter.largest_inline_output(result)
        except Exception:  # noqa: BLE001 - a result this module does not know: nothing learned
            return
        if largest >= self.threshold:
            server.large_outputs.add(model_name)

    def _state(self, server: _Server, client: Any, adapter: ClientAdapter) -> PoolState:
        state = server.state
        if state is None:
            with self.lock:
                state = server.state
                if state is None:
                    state = server.state = PoolState(client, self.config, adapter.aio)
        self.staging[adapter.protocol] = server
        return state

    def _request(
        self,
        server: _Server,
        adapter: ClientAdapter,
        client: Any,
        model_name: Any,
        inputs: Any,
        names: List[str],
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> Optional[Tuple[PoolState, InferRequest, Dict[str, Any]]]:
        """The call as the request layer's request, with its other arguments
        by name; None for a call tritonclient would refuse (it then says why)."""
        if len(args) > len(names) or not isinstance(model_name, str):
            return None
        params = dict(zip(names, args))
        for key in kwargs:
            if key in params or key not in names:
                return None
        params.update(kwargs)
        version = params.pop("model_version", "")
        if not isinstance(version, str):
            return None
        understood, outputs = given_outputs(adapter, params.pop("outputs", None))
        if not understood:
            return None
        state = self._state(server, client, adapter)
        made = given_inputs(adapter, inputs, state)
        if made is None:
            return None
        callback = params.pop("callback", None)
        request = InferRequest(
            model_name=model_name,
            model_version=version,
            inputs=made,
            outputs=outputs,
            copy=False,
            may_rerun=not params.get("sequence_id"),
            kwargs={**params, _DIRECT: True},
        )
        return state, request, {"callback": callback}

    def _resend(self, server: _Server, error: BaseException, sent: bool, request: InferRequest) -> bool:
        """After the flow failed: whether to send the request with
        tritonclient's own call (nothing reached the model, or it may run
        again), noting and warning about a cause that will not go away."""
        if sent and not (isinstance(error, SharedMemoryException) and request.may_rerun):
            return False
        if _lasting(error) and server.cause is None:
            server.cause = str(error)
            self._warn(server, error)
        self._count("network_fallbacks")
        return True

    def _warn(self, server: _Server, error: BaseException) -> None:
        protocol = " --protocol grpc" if server.protocol == "grpc" else ""
        remote = (
            ""
            if _loopback(server.address)
            else " If the server runs on another host, shared memory cannot reach it: nothing to fix there."
        )
        message = (
            f"tritonshm.triton.accelerate(): requests to {server.describe()} go over the network, not through "
            f"shared memory: {error} (`tritonshm doctor --url {server.address}{protocol}` checks the set-up).{remote}"
        )
        try:
            warnings.warn(message, RuntimeWarning, stacklevel=4)
        except Warning:  # warnings turned into errors: still no request fails for acceleration
            sys.stderr.write(f"RuntimeWarning: {message}\n")

    # -- the patched calls ---------------------------------------------------

    def _sync_infer(self, original: Any, names: List[str]) -> Any:
        accelerator = self

        def infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(_DIRECT, False):
                return original(client, model_name, inputs, *args, **_sendable(kwargs))
            server, adapter, pooled = accelerator._route(client, model_name, inputs)
            made = None
            if pooled:
                assert server is not None and adapter is not None
                made = accelerator._request(server, adapter, client, model_name, inputs, names, args, kwargs)
            if made is None:
                result = original(client, model_name, inputs, *args, **kwargs)
                accelerator._observe(server, adapter, model_name, result)
                return result
            assert server is not None and adapter is not None
            state, request, _ = made
            watch = _Watch()
            try:
                response = run(_watched(infer_steps(state, request, client), watch), state.grow_lock)
            except Exception as error:
                if not accelerator._resend(server, error, watch.sent, request):
                    raise
                return original(client, model_name, inputs, *args, **kwargs)
            return _result(adapter, response)

        return infer

    def _aio_infer(self, original: Any, names: List[str]) -> Any:
        accelerator = self

        async def infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(_DIRECT, False):
                return await original(client, model_name, inputs, *args, **_sendable(kwargs))
            server, adapter, pooled = accelerator._route(client, model_name, inputs)
            made = None
            if pooled:
                assert server is not None and adapter is not None
                made = accelerator._request(server, adapter, client, model_name, inputs, names, args, kwargs)
            if made is None:
                result = await original(client, model_name, inputs, *args, **kwargs)
                accelerator._observe(server, adapter, model_name, result)
                return result
            assert server is not None and adapter is not None
            state, request, _ = made
            watch = _Watch()
            try:
                response = await run_async(_watched(infer_steps(state, request, client), watch), state.grow_lock)
            except Exception as error:
                if not accelerator._resend(server, error, watch.sent, request):
                    raise
                return await original(client, model_name, inputs, *args, **kwargs)
            return _result(adapter, response)

        return infer

    def _http_async_infer(self, original: Any, names: List[str]) -> Any:
        """HTTP's async_infer returns an InferAsyncRequest whose get_result()
        waits for the response. Accelerated: the flow runs up to the request in
        the caller (leasing, writing), sends it with async_infer, and goes on
        when get_result() is called; the handle is tritonclient's class."""
        accelerator = self

        def async_infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(_DIRECT, False):
                return original(client, model_name, inputs, *args, **_sendable(kwargs))
            server, adapter, pooled = accelerator._route(client, model_name, inputs)
            made = None
            if pooled:
                assert server is not None and adapter is not None
                made = accelerator._request(server, adapter, client, model_name, inputs, names, args, kwargs)
            if made is None:
                if server is not None:
                    accelerator._count("requests_direct")
                return original(client, model_name, inputs, *args, **kwargs)
            assert server is not None and adapter is not None
            state, request, _ = made
            split = _Split(
                infer_steps(state, request, client),
                state.grow_lock,
                lambda step: original(client, *step.args, **_sendable(step.kwargs)),
            )

            def plain() -> Any:
                sync_infer = type(client).infer  # the patched infer, as the flow's own call reaches the original
                return sync_infer(client, model_name, inputs, *args, **{**kwargs, _DIRECT: True})

            try:
                sent = split.start()
            except Exception as error:
                if not accelerator._resend(server, error, split.sent, request):
                    raise
                return original(client, model_name, inputs, *args, **kwargs)
            return _http_async_request(adapter, sent, _Pending(accelerator, server, adapter, split, request, plain))

        return async_infer

    def _grpc_async_infer(self, original: Any, names: List[str]) -> Any:
        """gRPC's async_infer calls `callback(result=..., error=...)` when the
        response comes. Accelerated: the flow runs up to the request in the
        caller, sends it with async_infer, and goes on in gRPC's callback; if
        the flow has more to do there (healing, a rerun), on a thread of its
        own. Returns tritonclient's CallContext (cancel() cancels the request)."""
        accelerator = self

        def async_infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(_DIRECT, False):
                return original(client, model_name, inputs, *args, **_sendable(kwargs))
            server, adapter, pooled = accelerator._route(client, model_name, inputs)
            made = None
            if pooled:
                assert server is not None and adapter is not None
                made = accelerator._request(server, adapter, client, model_name, inputs, names, args, kwargs)
            if made is None:
                if server is not None:
                    accelerator._count("requests_direct")
                return original(client, model_name, inputs, *args, **kwargs)
            assert server is not None and adapter is not None
            state, request, extra = made
            callback = extra["callback"]

            def plain() -> Any:
                sync_infer = type(client).infer
                params = dict(request.kwargs)
                params.pop(_DIRECT, None)
                outputs = [out.given for out in request.outputs] if request.outputs is not None else None
                return sync_infer(
                    client,
                    model_name,
                    inputs,
                    model_version=request.model_version,
                    outputs=outputs,
                    **{**params, _DIRECT: True},
                )

            pending = _Pending(accelerator, server, adapter, None, request, plain)

            def done(result: Any = None, error: Any = None) -> None:
                pending.completed(result, error, callback)

            split = _Split(
                infer_steps(state, request, client),
                state.grow_lock,
                lambda step: original(client, *step.args, callback=done, **_sendable(step.kwargs)),
            )
            pending.split = split
            try:
                return split.start()
            except Exception as error:
                if not accelerator._resend(server, error, split.sent, request):
                    raise
                return original(client, model_name, inputs, *args, **kwargs)

        return async_infer

    def _set_data_from_numpy(self, original: Any, names: List[str]) -> Any:
        accelerator = self

        def set_data_from_numpy(item: Any, input_tensor: Any, *args: Any, **kwargs: Any) -> Any:
            if accelerator._stage(item, input_tensor, names, args, kwargs):
                return item
            return original(item, input_tensor, *args, **kwargs)

        return set_data_from_numpy

    def _stage(self, item: Any, tensor: Any, names: List[str], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
        if getattr(tensor, "nbytes", 0) < max(self.threshold, 1) or self.closed or os.getpid() != self.pid:
            return False
        if len(args) > len(names) or any(key not in names for key in kwargs):
            return False
        options = {**dict(zip(names, args)), **kwargs}
        if options.get("binary_data", True) is not True:
            return False  # JSON: tritonclient's
        protocol = "http" if type(item).__module__.startswith("tritonclient.http") else "grpc"
        server = self.staging.get(protocol)
        state = server.state if server is not None and server.cause is None else None
        if state is None or state.closed:
            return False
        staged = stage(state.adapter, item, tensor, state)
        if staged is None:
            return False
        with self.lock:
            if self.closed:
                return False  # close() turns staged data into bytes: this one would be missed
            state.adapter.set_input_data(item, staged)
            self.staged.add(staged)
            self.counts["inputs_staged"] += 1
        return True

    # -- readouts and close --------------------------------------------------

    def stats(self) -> Dict[str, int]:
        totals = dict.fromkeys(_POOL_KEYS, 0)
        with self.lock:
            servers = list(self.servers.values())
            counts = dict(self.counts)
        for server in servers:
            if server.state is not None:
                for key, value in server.state.stats().items():
                    totals[key] = totals.get(key, 0) + int(value)
        totals["inline_threshold"] = self.threshold
        for key in _OWN_KEYS:
            totals[key] = counts.get(key, 0)
        totals["servers"] = sum(server.address is not None for server in servers)
        totals["servers_network_only"] = sum(
            server.address is not None and server.cause is not None for server in servers
        )
        return totals

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            staged = list(self.staged)
            servers = list(self.servers.values())
        _unstage(staged)
        self.patches.restore()
        if os.getpid() == self.pid:
            for server in servers:
                server.close()


def _unstage(staged: List[Staged]) -> None:
    """Staged data becomes the bytes tritonclient would hold, wherever an
    InferInput (or a copy.copy of one) holds it, before the descriptor that
    reads it so goes: the caller's objects stay valid after close(). One pass
    over the objects the garbage collector tracks finds every holder."""
    if not staged:
        return
    for holder in gc.get_referrers(*staged):
        if type(holder) is dict:
            for attribute in ("_raw_data", "_raw_content"):
                value = holder.get(attribute)
                if type(value) is Staged:
                    holder[attribute] = value.tobytes()


def _loopback(address: Optional[str]) -> bool:
    """Whether host:port[/path] names this host by a loopback address or name."""
    host = (address or "").split("/", 1)[0]
    host = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return host in ("localhost", "::1") or host.startswith("127.")


def _sendable(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The flow's arguments for tritonclient's call, without the marker.
    HTTP's infer adds its own headers (Inference-Header-Content-Length) to
    the dict it is given: each send gets a copy of the caller's, without one
    an earlier call left there (the request may now carry no binary data)."""
    sendable = dict(kwargs)
    sendable.pop(_DIRECT, None)
    headers = sendable.get("headers")
    if headers:
        sendable["headers"] = {k: v for k, v in headers.items() if k.lower() != "inference-header-content-length"}
    return sendable


def _lasting(error: BaseException) -> bool:
    """Whether shared memory failed for a reason every request would meet:
    the server cannot open our regions (another IPC namespace or host),
    refuses client shared memory or its API, or regions cannot be made here
    (/dev/shm full or missing)."""
    if isinstance(error, SharedMemoryException) and getattr(error, "errno", None):
        return True
    text = str(error).lower()
    return any(words in text for words in _ENVIRONMENT_WORDS) or "[403]" in text


class _Pending:
    """An accelerated asynchronous request, from its send to its outcome."""

    def __init__(
        self,
        accelerator: _Accelerator,
        server: _Server,
        adapter: ClientAdapter,
        split: Optional[_Split],
        request: InferRequest,
        plain: Callable[[], Any],
    ) -> None:
        self.accelerator = accelerator
        self.server = server
        self.adapter = adapter
        self.split = split
        self.request = request
        self.plain = plain
        self.lock = threading.Lock()
        self.outcome: Optional[Tuple[bool, Any]] = None  # (ok, result or error)

    def _ending(self, advanced: Callable[[], Tuple[bool, Any]]) -> Any:
        """The result once the flow ends; a failure shared memory caused is
        sent again with the plain call."""
        assert self.split is not None
        try:
            ended, value = advanced()
            response = value if ended else _ended(lambda: self.split.finish(value))  # type: ignore[union-attr]
        except Exception as error:
            if not self.accelerator._resend(self.server, error, True, self.request):
                raise
            return self.plain()
        return _result(self.adapter, response)

    def result(self, inner: Any, block: bool, timeout: Any) -> Any:
        """HTTP: get_result(block, timeout)."""
        with self.lock:
            if self.outcome is None:
                assert self.split is not None
                split = self.split
                try:
                    value = inner.get_result(block=block, timeout=timeout)
                except Exception as error:
                    if not inner._greenlet.ready():
                        raise  # not answered yet: asked again later, as tritonclient's
                    advanced = functools.partial(split.advance, None, error)
                else:
                    advanced = functools.partial(split.advance, value, None)
                try:
                    self.outcome = (True, self._ending(advanced))
                except Exception as error:  # noqa: BLE001 - kept, and raised each time it is asked for
                    self.outcome = (False, error)
            ok, value = self.outcome
        if not ok:
            raise value
        return value

    def abandon(self) -> None:
        """The handle went without get_result(): the flow ends there, giving
        up on the request if it may still be at the server."""
        with self.lock:
            if self.outcome is None and self.split is not None:
                self.split.close()

    def completed(self, result: Any, error: Any, callback: Callable[..., Any]) -> None:
        """gRPC: tritonclient's callback with the response or the error."""
        split = self.split
        assert split is not None
        failure: Optional[Exception] = None
        try:
            ended, value = split.advance(result, error)
        except Exception as caught:  # noqa: BLE001 - decided in rest(): sent again, or to the callback
            ended, value, failure = False, None, caught
        if ended:
            callback(result=_result(self.adapter, value), error=None)
            return

        def advanced() -> Tuple[bool, Any]:
            if failure is not None:
                raise failure
            return False, value

        def rest() -> None:
            try:
                outcome = self._ending(advanced)
            except Exception as caught:  # noqa: BLE001 - to the caller's callback, as tritonclient does
                callback(result=None, error=caught)
                return
            callback(result=outcome, error=None)

        # Healing, a rerun or a plain send wait for the server: not in gRPC's callback thread.
        threading.Thread(target=rest, name="tritonshm-accelerate", daemon=True).start()


def _http_async_request(adapter: ClientAdapter, inner: Any, pending: _Pending) -> Any:
    base = adapter.module.InferAsyncRequest
    cls: Any = _RESULT_CLASSES.get("http.async")
    if cls is None:

        def get_result(self: Any, block: bool = True, timeout: Any = None) -> Any:
            return self._tritonshm_pending.result(self._tritonshm_inner, block, timeout)

        get_result.__doc__ = base.get_result.__doc__
        cls = type(base.__name__, (base,), {"get_result": get_result, "__module__": __name__})
        _RESULT_CLASSES["http.async"] = cls
    made = cls.__new__(cls)
    made.__dict__.update(inner.__dict__)
    made._tritonshm_inner = inner
    made._tritonshm_pending = pending
    weakref.finalize(made, pending.abandon)
    return made


# -- the public face -------------------------------------------------------------

_active: Optional[_Accelerator] = None
_active_lock = threading.Lock()
_exit_hook = False


class Acceleration:
    """The handle accelerate() returns: ``stats()`` and ``close()``."""

    def __init__(self, accelerator: _Accelerator) -> None:
        self._accelerator = accelerator
        self._closed = False

    def stats(self) -> Dict[str, int]:
        """The pools' stats summed (the keys of SharedMemoryPool.stats(), one
        pool per server), and the accelerator's own: requests_direct (sent
        straight to tritonclient's call: every tensor small, or the server
        cannot use shared memory), network_fallbacks (requests sent over the
        network because shared memory failed for them), inputs_staged
        (set_data_from_numpy calls that copied the array straight into shared
        memory), servers, servers_network_only (servers whose requests go
        over the network, with the warning that said why)."""
        return self._accelerator.stats()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Ends this handle's acceleration. When no handle is open any more,
        tritonclient is put back exactly as it was (the same function
        objects), and every region the accelerator made is unregistered and
        removed. Idempotent; also runs at interpreter exit."""
        global _active
        with _active_lock:
            if self._closed:
                return
            self._closed = True
            accelerator = self._accelerator
            accelerator.handles -= 1
            if accelerator.handles > 0:
                return
            if _active is accelerator:
                _active = None
        accelerator.close()

    def __enter__(self) -> "Acceleration":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Acceleration({'closed' if self._closed else 'open'}, inline_threshold={self._accelerator.threshold})"


def accelerate(
    *,
    capacity: Optional[int] = None,
    max_capacity: Optional[int] = None,
    region_size: Optional[int] = None,
    prefix: str = PREFIX,
    alignment: int = 64,
    headers: Optional[Dict[str, str]] = None,
    mode: int = 0o600,
    prefault: bool = False,
    inline_threshold: Optional[int] = None,
) -> Acceleration:
    """From now on, tritonclient's clients send each input of at least
    ``inline_threshold`` bytes (default 64 KiB) through shared memory, and
    get outputs into it where that pays; everything else is sent as before.

    The options are SharedMemoryPool's, for the pool made per server at its
    first large request: ``capacity`` (its first region, default 16 MiB),
    ``max_capacity`` (default 1 GiB, at most half of /dev/shm; past it a
    request goes over the network as before), ``headers`` (sent with the
    pools' own calls, e.g. an access token for the shared-memory API), ...

    Returns a handle: ``stats()``, ``close()`` (also at interpreter exit).
    Called again while accelerated, it returns another handle on the same
    acceleration (its options must be the same, else a warning says they are
    ignored); the acceleration ends when every handle is closed.
    """
    global _active, _exit_hook
    options = dict(
        capacity=capacity,
        max_capacity=max_capacity,
        region_size=region_size,
        prefix=prefix,
        alignment=alignment,
        headers=dict(headers) if headers else None,
        mode=mode,
        prefault=prefault,
        inline_threshold=inline_threshold,
    )
    with _active_lock:
        accelerator = _active
        if accelerator is not None and not accelerator.closed:
            if options != accelerator.options:
                warnings.warn(
                    "tritonshm.triton.accelerate(): already accelerated with other options "
                    f"({accelerator.options}); these are ignored: {options}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            accelerator.handles += 1
            return Acceleration(accelerator)
        first = DEFAULT_CAPACITY if capacity is None else capacity
        config = PoolConfig.make(
            first,
            max_capacity=max(_default_max_capacity(), first) if max_capacity is None else max_capacity,
            region_size=region_size,
            prefix=prefix,
            alignment=alignment,
            headers=headers,
            mode=mode,
            prefault=prefault,
            inline_threshold=DEFAULT_INLINE_THRESHOLD if inline_threshold is None else inline_threshold,
        )
        accelerator = _Accelerator(config, options)
        accelerator.handles = 1
        accelerator.start()
        _active = accelerator
        if not _exit_hook:
            atexit.register(_close_at_exit)
            os.register_at_fork(after_in_child=_after_fork)
            _exit_hook = True
    return Acceleration(accelerator)


def _close_at_exit() -> None:
    global _active
    with _active_lock:
        accelerator, _active = _active, None
    if accelerator is not None:
        accelerator.handles = 0
        accelerator.close()


def _after_fork() -> None:
    global _active_lock
    _active_lock = threading.Lock()
    if _active is not None:
        _active.after_fork()

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

- Patching (patches.py): the client classes' infer and async_infer and the
  InferInput classes' set_data_from_numpy are replaced, a module not yet
  imported as its import finishes; close() puts back the same function objects.
- Pools (server_pools.py): one per server (protocol, asyncio or not,
  address), made at its first request with a large tensor and shared by
  every client of that server. A request goes through its own client
  (`client=`), so threads with their own HTTP clients, one gRPC client shared
  by threads and several event loops work as with the pool. A forked child
  starts with no pools.
- Requests (given.py): the caller's InferInput and InferRequestedOutput
  objects are read into the request layer's request and run by its flow
  (request_flow.infer_steps), with all the pool's rules (growth, healing,
  reruns, retiring, inline past the limit). The flow's own call of the
  client's infer carries a marker (split_flow.DIRECT) that sends it to
  tritonclient's original method; async_infer sends the flow's inference
  with tritonclient's async_infer (split_flow.Split).
- Staging (given.py): set_data_from_numpy copies a large array straight into
  the pool's memory, so that a request pays one copy, as pool.infer does.
- Results (accelerated_results.py): tritonclient's classes, whose as_numpy
  reads the outputs placed in shared memory.
- Never a failure because of acceleration: a request that shared memory
  failed for before it reached the server (or that may run again) is sent
  with tritonclient's own call; a cause that will not go away (the server
  cannot see our /dev/shm, refuses its shared-memory API, /dev/shm is full)
  is found once per server, warned about once with the fix, and that
  server's requests go over the network from then on.

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
import threading
import warnings
import weakref
from collections import Counter
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._core import SharedMemoryException
from .accelerated_results import Pending, http_async_request, result_of
from .adapters import ClientAdapter, adapter_for
from .config import DEFAULT_INLINE_THRESHOLD, PoolConfig
from .given import Staged, StagedData, given_inputs, given_outputs, stage
from .ledger import COUNTERS
from .patches import Patches
from .pool_state import PoolState
from .request import InferRequest
from .request_flow import infer_steps, run, run_async
from .server_pools import ServerPool, lasting, warn
from .split_flow import DIRECT, Split, Watch, watched

__all__ = ["Acceleration", "accelerate"]

MIB = 1 << 20
# The first region of a server's pool, made at its first large request; it grows by what requests need.
DEFAULT_CAPACITY = 16 * MIB
# All regions of one server's pool together, at most: past it requests go
# inline (tritonclient's own way). At most half of /dev/shm, which is often
# small in containers (64 MiB in Docker by default).
DEFAULT_MAX_CAPACITY = 1 << 30
PREFIX = "tritonshm_accel"

_MODULES = ("tritonclient.http", "tritonclient.grpc", "tritonclient.http.aio", "tritonclient.grpc.aio")
_DATA_ATTRIBUTES = {"tritonclient.http": "_raw_data", "tritonclient.grpc": "_raw_content"}

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

Key = Tuple[str, bool, Optional[str]]  # protocol, asyncio or not, address


def _default_max_capacity() -> int:
    try:
        fs = os.statvfs("/dev/shm")
    except OSError:
        return DEFAULT_MAX_CAPACITY
    return max(DEFAULT_CAPACITY, min(DEFAULT_MAX_CAPACITY, fs.f_blocks * fs.f_frsize // 2))


def _sendable(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The flow's arguments for tritonclient's call, without the marker.
    HTTP's infer adds its own headers (Inference-Header-Content-Length) to
    the dict it is given: each send gets a copy of the caller's, without one
    an earlier call left there (the request may now carry no binary data,
    and the server would read a body of the wrong length)."""
    sendable = dict(kwargs)
    sendable.pop(DIRECT, None)
    headers = sendable.get("headers")
    if headers:
        sendable["headers"] = {k: v for k, v in headers.items() if k.lower() != "inference-header-content-length"}
    return sendable


def _unstage(staged: List[Staged]) -> None:
    """Staged data becomes the bytes tritonclient would hold, wherever an
    InferInput (or a copy.copy of one) holds it, before the descriptor that
    reads it so goes: the caller's objects stay valid after close(). One pass
    over the objects the garbage collector tracks finds every holder."""
    if not staged:
        return
    for holder in gc.get_referrers(*staged):
        if type(holder) is dict:
            for attribute in _DATA_ATTRIBUTES.values():
                value = holder.get(attribute)
                if type(value) is Staged:
                    holder[attribute] = value.tobytes()


class _Call:
    """One call of a patched method, read: the server, the adapter, and,
    for a request that goes through the server's pool, its state and request."""

    __slots__ = ("adapter", "callback", "request", "server", "state")

    def __init__(self, server: Optional[ServerPool], adapter: Optional[ClientAdapter]) -> None:
        self.server = server
        self.adapter = adapter
        self.state: Optional[PoolState] = None
        self.request: Optional[InferRequest] = None
        self.callback: Any = None


class _Accelerator:
    def __init__(self, config: PoolConfig, options: Dict[str, Any]) -> None:
        self.config = config
        self.options = options
        self.threshold = config.inline_threshold
        self.closed = False
        self.handles = 0
        self.patches = Patches()
        self.staged: "weakref.WeakSet[Staged]" = weakref.WeakSet()  # the live ones
        self.plain_infer: Dict[str, Any] = {}  # protocol -> tritonclient's own sync infer
        self._reset()

    def _reset(self) -> None:
        """Fresh bookkeeping: at the start, and in a forked child (the
        parent's pools are the parent's, and its locks may have been held)."""
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.servers: Dict[Key, ServerPool] = {}
        self.clients: "weakref.WeakKeyDictionary[Any, ServerPool]" = weakref.WeakKeyDictionary()
        self.staging: Dict[str, ServerPool] = {}  # protocol -> the server whose pool stages arrays (the last used)
        self.counts: "Counter[str]" = Counter()

    def after_fork(self) -> None:
        self._reset()
        self.patches.after_fork()  # still in force in the child's copy of tritonclient, put back by its close()

    # -- patching ----------------------------------------------------------

    def start(self) -> None:
        self.patches.when_imported(_MODULES, self._patch)

    def _patch(self, module: ModuleType) -> None:
        """Patches one of tritonclient's modules; one this module does not
        know (another tritonclient version) stays as it is, with a warning:
        its import never fails because of acceleration."""
        try:
            self._patch_module(module)
        except Exception as error:  # noqa: BLE001
            warn(
                f"tritonshm.triton.accelerate(): {module.__name__} is not accelerated, its classes are not "
                f"tritonclient's as this module knows them ({type(error).__name__}: {error})",
                stacklevel=2,
            )

    def _patch_module(self, module: ModuleType) -> None:
        name = module.__name__
        client_class = module.InferenceServerClient
        if name.endswith(".aio"):
            self._patch_method(client_class, "infer", self._aio_infer, 3)
            return
        self.plain_infer[name.rsplit(".", 1)[1]] = client_class.__dict__["infer"]
        self._patch_method(client_class, "infer", self._sync_infer, 3)
        async_infer = self._http_async_infer if name == "tritonclient.http" else self._grpc_async_infer
        self._patch_method(client_class, "async_infer", async_infer, 3)
        self._patch_method(module.InferInput, "set_data_from_numpy", self._set_data_from_numpy, 2)
        self.patches.set(module.InferInput, _DATA_ATTRIBUTES[name], StagedData(_DATA_ATTRIBUTES[name]))

    def _patch_method(self, owner: type, name: str, make: Callable[[Any, List[str]], Any], fixed: int) -> None:
        """Replaces owner.name with make(original, the names of its arguments
        after the first `fixed` ones), looking like the original (functools.wraps)."""
        original = owner.__dict__[name]
        names = list(inspect.signature(original).parameters)[fixed:]
        self.patches.set(owner, name, functools.wraps(original)(make(original, names)))

    # -- reading a call --------------------------------------------------------

    def _server(self, client: Any) -> Tuple[Optional[ServerPool], Optional[ClientAdapter]]:
        try:
            server = self.clients.get(client)
            adapter = adapter_for(client)
        except (TypeError, SharedMemoryException):  # not a tritonclient client this module knows
            return None, None
        if server is None:
            address = adapter.address(client)
            key = (adapter.protocol, adapter.aio, address)
            with self.lock:
                server = self.servers.get(key)
                if server is None:
                    server = self.servers[key] = ServerPool(adapter.protocol, adapter.aio, address)
                try:
                    self.clients[client] = server
                except TypeError:
                    pass
        return server, adapter

    def _large(self, adapter: ClientAdapter, inputs: Any, model_name: Any, server: ServerPool) -> bool:
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

    def _read(
        self, client: Any, model_name: Any, inputs: Any, names: List[str], args: Tuple[Any, ...], kwargs: Dict[str, Any]
    ) -> _Call:
        """The call: `request` is set for one that goes through its server's
        pool; not for one of small tensors, to a server shared memory does not
        work with, or that tritonclient would refuse (it then says why)."""
        if self.closed or os.getpid() != self.pid:
            return _Call(None, None)
        server, adapter = self._server(client)
        call = _Call(server, adapter)
        if server is None or adapter is None or server.cause is not None:
            return call
        if not self._large(adapter, inputs, model_name, server):
            return call
        try:
            self._request(call, client, model_name, inputs, names, args, kwargs)
        except Exception:  # noqa: BLE001 - objects this module cannot read: tritonclient's call, as it was
            call.request = None
        return call

    def _request(
        self,
        call: _Call,
        client: Any,
        model_name: Any,
        inputs: Any,
        names: List[str],
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> None:
        server, adapter = call.server, call.adapter
        assert server is not None and adapter is not None
        if len(args) > len(names) or not isinstance(model_name, str):
            return
        params = dict(zip(names, args))
        for key in kwargs:
            if key in params or key not in names:
                return
        params.update(kwargs)
        version = params.pop("model_version", "")
        if not isinstance(version, str):
            return
        understood, outputs = given_outputs(adapter, params.pop("outputs", None))
        if not understood:
            return
        state = self._state(server, client, adapter)
        made = given_inputs(adapter, inputs, state)
        if made is None:
            return
        call.callback = params.pop("callback", None)
        call.state = state
        call.request = InferRequest(
            model_name=model_name,
            model_version=version,
            inputs=made,
            outputs=outputs,
            copy=False,  # outputs are read-only views that hold the lease, as tritonclient's hold the response
            may_rerun=not params.get("sequence_id"),
            kwargs={**params, DIRECT: True},
        )

    def _state(self, server: ServerPool, client: Any, adapter: ClientAdapter) -> PoolState:
        state = server.state
        if state is None:
            with self.lock:
                state = server.state
                if state is None:
                    state = server.state = PoolState(client, self.config, adapter.aio)
        self.staging[adapter.protocol] = server
        return state

    def _direct(self, call: _Call, model_name: Any, result: Any) -> Any:
        """After a call that went to tritonclient's as it was: counts it, and
        remembers a model whose outputs were large though its inputs were small."""
        server, adapter = call.server, call.adapter
        if server is None or adapter is None:
            return result
        with self.lock:
            self.counts["requests_direct"] += 1
        if result is None or server.cause is not None or model_name in server.large_outputs:
            return result
        try:
            largest = adapter.largest_inline_output(result)
        except Exception:  # noqa: BLE001 - a result this module does not know: nothing learned
            return result
        if largest >= self.threshold:
            server.large_outputs.add(model_name)
        return result

    def _resend(self, call: _Call, error: BaseException, sent: bool) -> bool:
        """After the flow failed: whether to send the request with
        tritonclient's own call (nothing reached the model, or it may run
        again); a cause that will not go away is noted, with its warning."""
        request, server = call.request, call.server
        assert request is not None and server is not None
        if sent and not (isinstance(error, SharedMemoryException) and request.may_rerun):
            return False
        if lasting(error):
            server.give_up(error)
        with self.lock:
            self.counts["network_fallbacks"] += 1
        return True

    # -- the patched calls ---------------------------------------------------

    def _sync_infer(self, original: Any, names: List[str]) -> Any:
        accelerator = self

        def infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(DIRECT, False):
                return original(client, model_name, inputs, *args, **_sendable(kwargs))
            call = accelerator._read(client, model_name, inputs, names, args, kwargs)
            if call.request is None:
                return accelerator._direct(call, model_name, original(client, model_name, inputs, *args, **kwargs))
            assert call.state is not None and call.adapter is not None
            watch = Watch()
            try:
                response = run(watched(infer_steps(call.state, call.request, client), watch), call.state.grow_lock)
            except Exception as error:
                if not accelerator._resend(call, error, watch.sent):
                    raise
                return original(client, model_name, inputs, *args, **kwargs)
            return result_of(call.adapter, response)

        return infer

    def _aio_infer(self, original: Any, names: List[str]) -> Any:
        accelerator = self

        async def infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(DIRECT, False):
                return await original(client, model_name, inputs, *args, **_sendable(kwargs))
            call = accelerator._read(client, model_name, inputs, names, args, kwargs)
            if call.request is None:
                result = await original(client, model_name, inputs, *args, **kwargs)
                return accelerator._direct(call, model_name, result)
            assert call.state is not None and call.adapter is not None
            watch = Watch()
            try:
                steps = watched(infer_steps(call.state, call.request, client), watch)
                response = await run_async(steps, call.state.grow_lock)
            except Exception as error:
                if not accelerator._resend(call, error, watch.sent):
                    raise
                return await original(client, model_name, inputs, *args, **kwargs)
            return result_of(call.adapter, response)

        return infer

    def _plain(self, call: _Call, client: Any, model_name: Any, inputs: Any) -> Callable[[], Any]:
        """The request sent again with tritonclient's own (sync) infer, as the
        caller asked it."""
        request, protocol = call.request, call.adapter.protocol if call.adapter else ""
        assert request is not None
        infer = self.plain_infer[protocol]
        outputs = [out.given for out in request.outputs] if request.outputs is not None else None
        kwargs = _sendable(request.kwargs)
        return lambda: infer(client, model_name, inputs, model_version=request.model_version, outputs=outputs, **kwargs)

    def _http_async_infer(self, original: Any, names: List[str]) -> Any:
        """HTTP's async_infer returns an InferAsyncRequest whose get_result()
        waits for the response. Accelerated: the flow runs up to the request in
        the caller (leasing, writing), sends it with async_infer, and goes on
        when get_result() is called."""
        accelerator = self

        def async_infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(DIRECT, False):
                return original(client, model_name, inputs, *args, **_sendable(kwargs))
            call = accelerator._read(client, model_name, inputs, names, args, kwargs)
            if call.request is None:
                accelerator._direct(call, model_name, None)  # counted; the result comes later
                return original(client, model_name, inputs, *args, **kwargs)
            assert call.state is not None and call.adapter is not None
            split = Split(
                infer_steps(call.state, call.request, client),
                call.state.grow_lock,
                lambda step: original(client, *step.args, **_sendable(step.kwargs)),
            )
            try:
                sent = split.start()
            except Exception as error:
                if not accelerator._resend(call, error, split.sent):
                    raise
                return original(client, model_name, inputs, *args, **kwargs)
            pending = Pending(
                call.adapter,
                split,
                lambda error: accelerator._resend(call, error, True),
                accelerator._plain(call, client, model_name, inputs),
            )
            return http_async_request(call.adapter, sent, pending)

        return async_infer

    def _grpc_async_infer(self, original: Any, names: List[str]) -> Any:
        """gRPC's async_infer calls `callback(result=..., error=...)` when the
        response comes. Accelerated: the flow runs up to the request in the
        caller, sends it with async_infer, and ends in gRPC's callback thread
        (Pending.completed). Returns tritonclient's CallContext (its cancel()
        cancels the request, which the flow then gives up on)."""
        accelerator = self

        def async_infer(client: Any, model_name: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.pop(DIRECT, False):
                return original(client, model_name, inputs, *args, **_sendable(kwargs))
            call = accelerator._read(client, model_name, inputs, names, args, kwargs)
            if call.request is None:
                accelerator._direct(call, model_name, None)  # counted; the result comes later
                return original(client, model_name, inputs, *args, **kwargs)
            assert call.state is not None and call.adapter is not None
            callback = call.callback
            pending = Pending(
                call.adapter,
                None,
                lambda error: accelerator._resend(call, error, True),
                accelerator._plain(call, client, model_name, inputs),
            )

            def done(result: Any = None, error: Any = None) -> None:
                pending.completed(result, error, callback)

            split = pending.split = Split(
                infer_steps(call.state, call.request, client),
                call.state.grow_lock,
                lambda step: original(client, *step.args, callback=done, **_sendable(step.kwargs)),
            )
            try:
                return split.start()
            except Exception as error:
                if not accelerator._resend(call, error, split.sent):
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
        """Whether `tensor` was staged for `item` in the pool of the server of
        its protocol that was used last (there is no server to ask here)."""
        if getattr(tensor, "nbytes", 0) < max(self.threshold, 1) or self.closed or os.getpid() != self.pid:
            return False
        if len(args) > len(names) or any(key not in names for key in kwargs):
            return False
        if {**dict(zip(names, args)), **kwargs}.get("binary_data", True) is not True:
            return False  # JSON: tritonclient's
        protocol = "http" if type(item).__module__.startswith("tritonclient.http") else "grpc"
        server = self.staging.get(protocol)
        state = server.state if server is not None and server.cause is None else None
        if state is None or state.closed:
            return False
        try:
            staged = stage(state.adapter, item, tensor, state)
        except Exception:  # noqa: BLE001 - an object this module cannot read: tritonclient's own copy
            return False
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
        known = [server for server in servers if server.address is not None]
        totals["servers"] = len(known)
        totals["servers_network_only"] = sum(server.cause is not None for server in known)
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


# -- the public face -------------------------------------------------------------

_active: Optional[_Accelerator] = None
_active_lock = threading.Lock()
_hooks_installed = False


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
    global _active, _hooks_installed
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
        if not _hooks_installed:
            atexit.register(_close_at_exit)
            os.register_at_fork(after_in_child=_after_fork)
            _hooks_installed = True
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

"""A pool of shared memory registered once with a Triton server, and inference
through it."""

from __future__ import annotations

import weakref
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy.typing as npt

from .._core import SharedMemoryException
from ._lifecycle import DEFAULT_PREFIX, PoolCore, PoolState, close_quietly
from .request import parse_model_config

__all__ = ["SharedMemoryPool"]


class SharedMemoryPool(PoolState):
    """Shared memory registered once with a Triton server, leased per request.

    ``client`` is a ``tritonclient.http`` or ``tritonclient.grpc``
    ``InferenceServerClient``. The pool creates a region of ``capacity`` bytes
    with a key unique to this process (``prefix``, the pid and a random part),
    registers it, and hands out leases: aligned slices that one request owns
    until it releases them. When no region has room it adds one of
    ``region_size`` bytes (default: ``capacity``), up to ``max_capacity``
    (default: 4 x ``capacity``); past that it raises a SharedMemoryException
    that says how much is leased. ``headers`` go with its own calls to the
    server (e.g. an access token for the shared-memory API).

    ``close()`` unregisters only the pool's own names and destroys its regions;
    it is idempotent, and also runs when the pool is collected or the
    interpreter exits. Thread-safe.
    """

    def __init__(
        self,
        client: Any,
        capacity: int,
        *,
        max_capacity: Optional[int] = None,
        region_size: Optional[int] = None,
        prefix: str = DEFAULT_PREFIX,
        alignment: int = 64,
        headers: Optional[Dict[str, str]] = None,
        mode: int = 0o600,
        prefault: bool = False,
    ) -> None:
        self._core = PoolCore(client, capacity, max_capacity, region_size, prefix, alignment, headers, mode, prefault)
        core = self._core
        self._close = weakref.finalize(self, close_quietly, core.client, core.arena, core.registered, core.headers)
        try:
            self._add_region(capacity)
        except BaseException:
            self._close()
            raise

    # -- leases -----------------------------------------------------------

    def lease(self, nbytes: int) -> Any:
        """A lease of at least ``nbytes`` (tritonshm._core.Lease: ``name``,
        ``key``, ``offset``, ``size``, ``write``, ``read``, ``release``), growing
        the pool if needed."""
        core = self._core
        if core.closed:
            raise SharedMemoryException("unable to lease shared memory: the pool is closed")
        lease = core.arena.try_lease(nbytes)
        while lease is None:
            with core.grow_lock:
                lease = core.arena.try_lease(nbytes)
                if lease is None:
                    self._add_region(core.growth_for(nbytes))
                    lease = core.arena.try_lease(nbytes)
        return lease

    def _add_region(self, size: int) -> None:
        core = self._core
        name, key, byte_size = core.arena.add_region(size)
        try:
            core.client.register_system_shared_memory(name, key, byte_size, headers=core.headers)
        except Exception as error:
            raise core.registration_refusal(error, name, key, byte_size) from error
        core.registered.append(name)

    # -- inference ---------------------------------------------------------

    def model_outputs(self, model_name: str, model_version: str = "") -> Any:
        """The outputs the model's configuration declares (cached), or None if the server will not say."""
        core = self._core
        key = (model_name, model_version)
        if key not in core.models:
            call, kwargs = core.config_call(model_name, model_version)
            try:
                core.models[key] = parse_model_config(call(model_name, **kwargs))
            except Exception:  # noqa: BLE001 - no config: outputs come back in the response
                core.models[key] = None
        return core.models[key]

    def infer(
        self,
        model_name: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Optional[Sequence[str]] = None,
        *,
        copy: bool = True,
        output_sizes: Optional[Mapping[str, int]] = None,
        model_version: str = "",
        client: Any = None,
        **kwargs: Any,
    ) -> Dict[str, npt.NDArray[Any]]:
        """Runs one inference with its inputs, and its outputs where their size
        is known, in one lease of the pool.

        ``inputs`` maps input names to numpy arrays (BYTES as object or bytes
        arrays, serialized straight into the lease). Outputs (all the model
        declares, or the names in ``outputs``) go to shared memory when their
        size is known from the model's configuration and the batch size (the
        first input's first dimension) or from ``output_sizes``; the others
        come back in the response. With ``copy=True`` (default) the results are
        arrays of their own and the lease is released before returning; with
        ``copy=False`` they are views of the lease, which stays leased until
        the last of them is gone. Other keyword arguments go to the client's
        ``infer`` (priority, timeout, request_id, parameters, headers, ...).

        ``client`` sends this request through another client of the same
        server (of the same protocol): tritonclient's HTTP client is not
        thread-safe (it runs on gevent), so threads sharing one pool each use
        their own; gRPC clients can be shared.
        """
        core = self._core
        sizes = output_sizes or {}
        model = self.model_outputs(model_name, model_version) if core.needs_config(outputs, sizes) else None
        plan = core.plan(inputs, outputs, model, sizes)
        lease = self.lease(plan.total)
        try:
            plan.write(lease)
            try:
                result = (client or core.client).infer(
                    model_name, **core.infer_arguments(plan, lease, model_version), **kwargs
                )
            except Exception as error:
                raise core.inference_refusal(error, model_name) from error
            return plan.results(result, lease, copy)
        finally:
            if copy:
                lease.release()

    # -- state and lifetime --------------------------------------------------

    def close(self) -> None:
        """Unregisters the pool's own regions and destroys them. Idempotent."""
        self._core.closed = True
        self._close()

    def __enter__(self) -> "SharedMemoryPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

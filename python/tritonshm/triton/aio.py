"""The pool for tritonclient's asyncio clients."""

from __future__ import annotations

import asyncio
import warnings
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy.typing as npt

from .._core import SharedMemoryException
from ._lifecycle import DEFAULT_PREFIX, PoolCore, PoolState
from .request import parse_model_config

__all__ = ["AsyncSharedMemoryPool"]


def _unlink_unclosed(arena: Any, registered: List[str]) -> None:
    # Collected without `await close()`: nothing can be awaited here, so the
    # server keeps its mapping until it exits; the names at least go.
    if registered:
        warnings.warn(
            f"AsyncSharedMemoryPool collected without close(): regions {registered} stay registered "
            "with the server until it exits",
            ResourceWarning,
            stacklevel=1,
        )
    arena.close()


class AsyncSharedMemoryPool(PoolState):
    """SharedMemoryPool for ``tritonclient.http.aio`` and ``tritonclient.grpc.aio``
    clients: the same arguments, ``async with``, ``await pool.infer_async(...)``
    and ``await pool.close()``. Safe for many concurrent requests on one event
    loop (and across threads)."""

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
        self._initial = capacity
        self._grow_lock: Optional[asyncio.Lock] = None
        self._finalizer = weakref.finalize(self, _unlink_unclosed, self._core.arena, self._core.registered)

    async def __aenter__(self) -> "AsyncSharedMemoryPool":
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def open(self) -> None:
        """Creates and registers the first region (``async with`` does it)."""
        if not self._core.registered and self._core.arena.capacity == 0:
            await self._add_region(self._initial)

    async def lease(self, nbytes: int) -> Any:
        core = self._core
        if core.closed:
            raise SharedMemoryException("unable to lease shared memory: the pool is closed")
        lease = core.arena.try_lease(nbytes)
        if lease is not None:
            return lease
        if self._grow_lock is None:
            self._grow_lock = asyncio.Lock()
        async with self._grow_lock:
            lease = core.arena.try_lease(nbytes)
            while lease is None:
                await self._add_region(core.growth_for(nbytes))
                lease = core.arena.try_lease(nbytes)
        return lease

    async def _add_region(self, size: int) -> None:
        core = self._core
        name, key, byte_size = core.arena.add_region(size)
        try:
            await core.client.register_system_shared_memory(name, key, byte_size, headers=core.headers)
        except Exception as error:
            raise core.registration_refusal(error, name, key, byte_size) from error
        core.registered.append(name)

    async def model_outputs(self, model_name: str, model_version: str = "") -> Any:
        core = self._core
        key = (model_name, model_version)
        if key not in core.models:
            call, kwargs = core.config_call(model_name, model_version)
            try:
                core.models[key] = parse_model_config(await call(model_name, **kwargs))
            except Exception:  # noqa: BLE001 - no config: outputs come back in the response
                core.models[key] = None
        return core.models[key]

    async def infer_async(
        self,
        model_name: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Optional[Sequence[str]] = None,
        *,
        copy: bool = True,
        output_sizes: Optional[Mapping[str, int]] = None,
        model_version: str = "",
        **kwargs: Any,
    ) -> Dict[str, npt.NDArray[Any]]:
        """SharedMemoryPool.infer, awaited."""
        core = self._core
        sizes = output_sizes or {}
        model = await self.model_outputs(model_name, model_version) if core.needs_config(outputs, sizes) else None
        plan = core.plan(inputs, outputs, model, sizes)
        lease = await self.lease(plan.total)
        try:
            plan.write(lease)
            try:
                result = await core.client.infer(
                    model_name, **core.infer_arguments(plan, lease, model_version), **kwargs
                )
            except Exception as error:
                raise core.inference_refusal(error, model_name) from error
            return plan.results(result, lease, copy)
        finally:
            if copy:
                lease.release()

    async def close(self) -> None:
        """Unregisters the pool's own regions and destroys them. Idempotent."""
        core = self._core
        if core.closed:
            return
        core.closed = True
        for name in list(core.registered):
            try:
                await core.client.unregister_system_shared_memory(name, headers=core.headers)
            except Exception:  # noqa: BLE001 - the server may be gone; the regions go anyway
                pass
        core.registered.clear()
        self._finalizer()

"""The pool for tritonclient's asyncio clients."""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy.typing as npt

from .model_configs import ModelOutputs
from .pool_base import PoolBase
from .pool_state import PoolState
from .request_flow import close_steps, infer_steps, lease_steps, model_steps, open_steps, run_async

__all__ = ["AsyncSharedMemoryPool"]


def _unlink_unclosed(state: PoolState) -> None:
    # Collected without `await close()`: nothing can be awaited here, so the
    # server keeps its mapping until it exits; the names at least go.
    if not state.owned_here():
        return  # a forked child: the parent's regions are the parent's
    names, _ = state.ledger.close()
    if names:
        warnings.warn(
            f"AsyncSharedMemoryPool collected without close(): regions {names} stay registered "
            "with the server until it exits",
            ResourceWarning,
            stacklevel=1,
        )
    state.arena.close()


class AsyncSharedMemoryPool(PoolBase):
    """SharedMemoryPool for ``tritonclient.http.aio`` and ``tritonclient.grpc.aio``
    clients: the same arguments and behaviour, ``async with`` (or ``await
    pool.open()``), ``await pool.infer_async(...)`` and ``await pool.close()``.
    Safe for many concurrent requests, on one event loop or on several (one
    per thread)."""

    _aio = True

    def _start(self) -> None:
        self._finalizer = weakref.finalize(self, _unlink_unclosed, self._state)

    async def __aenter__(self) -> "AsyncSharedMemoryPool":
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def open(self) -> None:
        """Creates and registers the first region (``async with`` does it)."""
        await run_async(open_steps(self._state), self._state.grow_lock)

    async def lease(self, nbytes: int) -> Any:
        """SharedMemoryPool.lease, awaited."""
        return await run_async(lease_steps(self._state, nbytes), self._state.grow_lock)

    async def model_outputs(self, model_name: str, model_version: str = "") -> Optional[ModelOutputs]:
        """SharedMemoryPool.model_outputs, awaited."""
        return await run_async(model_steps(self._state, model_name, model_version), self._state.grow_lock)

    async def infer_async(
        self,
        model_name: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Optional[Sequence[str]] = None,
        *,
        copy: bool = True,
        output_sizes: Optional[Mapping[str, int]] = None,
        model_version: str = "",
        client: Any = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> Dict[str, npt.NDArray[Any]]:
        """SharedMemoryPool.infer, awaited."""
        request = self._request(model_name, inputs, outputs, copy, output_sizes, model_version, retry, kwargs)
        response = await run_async(infer_steps(self._state, request, client), self._state.grow_lock)
        return response.output_arrays(self._state.adapter, request.output_names())

    async def close(self) -> None:
        """Unregisters the pool's own regions and destroys them. Idempotent."""
        await run_async(close_steps(self._state), self._state.grow_lock)
        self._finalizer.detach()

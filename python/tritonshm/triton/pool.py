"""A pool of shared memory registered once with a Triton server, and inference
through it."""

from __future__ import annotations

import weakref
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy.typing as npt

from .model_configs import ModelOutputs
from .pool_base import PoolBase
from .pool_state import PoolState
from .request_flow import close_steps, infer_steps, lease_steps, model_steps, open_steps, run

__all__ = ["SharedMemoryPool"]


def _close(state: PoolState) -> None:
    run(close_steps(state), state.grow_lock)


class SharedMemoryPool(PoolBase):
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

    Tensors of ``inline_threshold`` bytes or more (default 64 KiB, measured:
    see the README) travel through shared memory, smaller ones inline in the
    request or the response, where they are faster.

    If the server forgets the pool's registrations (it restarted, or a client
    unregistered everything), the pool registers its regions again and runs
    the request that found out once more.

    ``close()`` unregisters only the pool's own names and destroys its regions;
    it is idempotent, and also runs when the pool is collected or the
    interpreter exits. Thread-safe. A child made by ``fork()`` cannot use the
    parent's pool (it raises, saying so) and never touches the parent's
    regions or registrations: create a pool in the child.
    """

    def _start(self) -> None:
        state = self._state
        self._finalizer = weakref.finalize(self, _close, state)
        try:
            run(open_steps(state), state.grow_lock)
        except BaseException:
            self._finalizer()
            raise

    def lease(self, nbytes: int) -> Any:
        """A lease of at least ``nbytes`` (tritonshm._core.Lease: ``name``,
        ``key``, ``offset``, ``size``, ``write``, ``read``, ``release``), growing
        the pool if needed."""
        return run(lease_steps(self._state, nbytes), self._state.grow_lock)

    def model_outputs(self, model_name: str, model_version: str = "") -> Optional[ModelOutputs]:
        """The outputs the model's configuration declares (cached), or None if the server will not say."""
        return run(model_steps(self._state, model_name, model_version), self._state.grow_lock)

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
        retry: bool = True,
        **kwargs: Any,
    ) -> Dict[str, npt.NDArray[Any]]:
        """Runs one inference; returns its outputs by name.

        ``inputs`` maps input names to numpy arrays (BYTES as object or bytes
        arrays). Each tensor of at least ``inline_threshold`` bytes travels
        through the pool's shared memory, the others inline. An output's size
        comes from ``output_sizes`` when given, else from the model's
        configuration (fixed dims), else from earlier responses of the same
        request signature (model, version, inputs' names, dtypes and shapes):
        the first request of a signature gets its outputs inline, the next ones
        in shared memory. An output that outgrows what was learned (its size
        depends on the content) is run again once with the size the server
        names, and that size is remembered. ``outputs`` limits the outputs
        returned to these names.

        With ``copy=True`` (default) the results are arrays of their own and
        the lease is released before returning; with ``copy=False`` outputs in
        shared memory are views of the lease, which stays leased until the last
        of them is gone (a failed request releases its lease at once).

        ``retry=False`` never runs a request twice (nor is one with a
        ``sequence_id``: its sequence's state would advance twice).
        ``client`` sends this request through another client of the same
        server and protocol. tritonclient's HTTP client works only on the
        thread that made it (it runs on gevent): without ``client``, a request
        on another thread goes through a client of that thread's own for the
        same server, with the pool client's timeouts. gRPC clients can be
        shared. Other keyword arguments go to the client's
        ``infer`` (priority, timeout, request_id, sequence_id, parameters,
        headers, ...).
        """
        request = self._request(model_name, inputs, outputs, copy, output_sizes, model_version, retry, kwargs)
        response = run(infer_steps(self._state, request, client), self._state.grow_lock)
        return response.output_arrays(self._state.adapter, request.output_names())

    def close(self) -> None:
        """Unregisters the pool's own regions and destroys them. Idempotent."""
        self._finalizer()

    def __enter__(self) -> "SharedMemoryPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

"""What an accelerated call returns: tritonclient's own classes, answering as
they do.

- A result with outputs in shared memory is an instance of a subclass of the
  protocol's InferResult that holds tritonclient's state as it is (so
  get_output, get_response and anything else are tritonclient's) and whose
  as_numpy reads those outputs: a new read-only array per call over the
  request's lease, as tritonclient's arrays are read-only over the response
  (BYTES: a new object array). Holding the arrays holds the lease.
- HTTP's async_infer returns an InferAsyncRequest whose get_result() ends the
  request's flow; gRPC's callback is called once the flow ended (`Pending`).
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from .adapters import ClientAdapter
from .request import Response
from .split_flow import Split

__all__ = ["Pending", "http_async_request", "result_of"]

_CLASSES: Dict[str, Any] = {}


def _result_class(adapter: ClientAdapter) -> Any:
    made = _CLASSES.get(adapter.protocol)
    if made is None:
        base = adapter.module.InferResult

        def as_numpy(self: Any, name: str) -> Any:
            array = self._tritonshm_outputs.get(name)
            if array is None:
                return base.as_numpy(self, name)
            return array.copy() if array.dtype.hasobject else array.view()

        as_numpy.__doc__ = base.as_numpy.__doc__
        made = type(base.__name__, (base,), {"as_numpy": as_numpy, "__module__": __name__})
        _CLASSES[adapter.protocol] = made
    return made


def result_of(adapter: ClientAdapter, response: Response) -> Any:
    """The result to return for a response of the flow."""
    result = response.result
    if not response.arrays:
        return result  # nothing came back in shared memory: tritonclient's own result
    for array in response.arrays.values():
        if not array.dtype.hasobject:
            array.flags.writeable = False
    cls = _result_class(adapter)
    made = cls.__new__(cls)
    made.__dict__.update(result.__dict__)
    made._tritonshm_outputs = response.arrays  # views that hold the request's lease
    return made


def _nothing() -> Any:
    return None


def _never(error: BaseException) -> bool:
    return False


class Pending:
    """An accelerated asynchronous request, from its send to its outcome.
    `resend(error)` says whether a failure is sent again with the plain call
    `plain()` (see Accelerator.resend)."""

    def __init__(
        self,
        adapter: ClientAdapter,
        split: Optional[Split],
        resend: Callable[[BaseException], bool],
        plain: Callable[[], Any],
    ) -> None:
        self.adapter = adapter
        self.split = split
        self.resend = resend
        self.plain = plain
        self.lock = threading.Lock()
        self.outcome: Optional[Tuple[bool, Any]] = None  # (ok, the result or the error)

    def _ending(self, advanced: Callable[[], Tuple[bool, Any]]) -> Any:
        """The result once the flow ends after `advanced()`; a failure that
        may be sent again is sent with the plain call."""
        split = self.split
        assert split is not None
        try:
            ended, value = advanced()
            response = value if ended else split.finish(value)
        except Exception as error:
            if not self.resend(error):
                raise
            return self.plain()
        return result_of(self.adapter, response)

    def result(self, inner: Any, block: bool, timeout: Any) -> Any:
        """HTTP: get_result(block, timeout) of the InferAsyncRequest `inner`
        that tritonclient's async_infer returned. The outcome is kept: asked
        again, it is returned (or raised) again."""
        with self.lock:
            if self.outcome is None:
                split = self.split
                assert split is not None
                try:
                    value = inner.get_result(block=block, timeout=timeout)
                except Exception as error:
                    if not inner._greenlet.ready():
                        raise  # not answered yet: asked again later, as with tritonclient's
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

    def abandon(self, inner: Any) -> None:
        """The InferAsyncRequest went without get_result(). If its response
        has come, the flow ends now; else when it comes (`on_answer`, linked
        to tritonclient's greenlet). Giving up on the request would retire its
        region, yet the request is sent and its response will come: what
        tritonclient does with a request nobody asks about."""
        if inner._greenlet.ready():
            _in_its_hub(inner, self.dropped)

    def dropped(self, inner: Any) -> None:
        """Ends the flow of a request nobody will ask about, with the response
        that came: its lease goes back. Nothing that would wait (a rerun, a
        plain send) is done for a result nobody reads; a flow that wanted more
        is closed (its region retired, as for a request given up on). What
        the request was made of (the caller's inputs, staged in shared memory)
        is let go here: gevent may run this greenlet's links later."""
        with self.lock:
            split = self.split
            if self.outcome is not None or split is None:
                return
            self.outcome = (False, None)
            self.split, self.plain, self.resend = None, _nothing, _never
            try:
                try:
                    value = inner.get_result(block=False)
                except Exception as error:  # noqa: BLE001 - the flow decides
                    ended, _ = split.advance(None, error)
                else:
                    ended, _ = split.advance(value, None)
            except Exception:  # noqa: BLE001 - nobody asks for this outcome
                return
            if not ended:
                split.close()

    def completed(self, result: Any, error: Any, callback: Callable[..., Any]) -> None:
        """gRPC: tritonclient's callback, with the response or the error, in
        gRPC's thread. A flow with more to do (healing, a rerun, a plain
        send) goes on on a thread of its own: those wait for the server."""
        split = self.split
        assert split is not None
        failure: Optional[Exception] = None
        try:
            ended, value = split.advance(result, error)
        except Exception as caught:  # noqa: BLE001 - decided in rest(): sent again, or to the callback
            ended, value, failure = False, None, caught
        if ended:
            callback(result=result_of(self.adapter, value), error=None)
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

        threading.Thread(target=rest, name="tritonshm-accelerate", daemon=True).start()


def _in_its_hub(inner: Any, fn: Callable[[Any], None]) -> None:
    """fn(inner) in a greenlet of the hub of tritonclient's greenlet (the
    client's thread): reading the response's body may wait, which gevent's
    hub itself must not, and a finalizer may run on any thread."""
    import gevent  # type: ignore[import-untyped]

    inner._greenlet.parent.loop.run_callback_threadsafe(lambda: gevent.spawn(fn, inner))


def http_async_request(adapter: ClientAdapter, inner: Any, pending: Pending) -> Any:
    """HTTP's InferAsyncRequest for an accelerated request: tritonclient's
    class (a subclass), whose get_result() ends the flow."""
    cls: Any = _CLASSES.get("http.async")
    if cls is None:
        base = adapter.module.InferAsyncRequest

        def get_result(self: Any, block: bool = True, timeout: Any = None) -> Any:
            return self._tritonshm_pending.result(self._tritonshm_inner, block, timeout)

        get_result.__doc__ = base.get_result.__doc__
        cls = type(base.__name__, (base,), {"get_result": get_result, "__module__": __name__})
        _CLASSES["http.async"] = cls
    made = cls.__new__(cls)
    made.__dict__.update(inner.__dict__)
    made._tritonshm_inner = inner
    made._tritonshm_pending = pending
    asked = weakref.ref(made)

    def on_answer(_greenlet: Any) -> None:
        if asked() is None:
            _in_its_hub(inner, pending.dropped)

    inner._greenlet.rawlink(on_answer)
    weakref.finalize(made, pending.abandon, inner)
    return made

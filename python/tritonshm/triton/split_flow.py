"""Driving a request flow for the accelerator: noting when it sends its
inference, and sending that inference with the client's asynchronous call
(HTTP's async_infer, gRPC's async_infer with a callback) while every other
step is a plain call.

The flow's own call of a client's infer carries the keyword DIRECT: the
accelerator's patched infer passes such a call to tritonclient's original
method, and these drivers recognise the inference by it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Tuple

from .request_flow import Blocking, Call, Locked, Steps, run

__all__ = ["DIRECT", "Split", "Watch", "watched"]

DIRECT = "_tritonshm_direct"


def is_inference(step: Any) -> bool:
    return isinstance(step, Call) and DIRECT in step.kwargs


class Watch:
    sent = False  # whether the flow sent its inference (the model may have run)


def watched(steps: Steps[Any], watch: Watch) -> Steps[Any]:
    """The flow's steps, passed on to a runner (request_flow.run or
    run_async), noting when it sends the inference."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        if is_inference(step):
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
    """One step, as request_flow.run carries it out."""
    if isinstance(step, Call):
        return step.fn(*step.args, **step.kwargs)
    if isinstance(step, Locked):
        with lock:
            return run(step.steps, lock, held=True)
    if isinstance(step, Blocking):
        return step.fn(*step.args)
    time.sleep(step.seconds)
    return None


class Split:
    """A flow driven with plain calls, except that its first inference is
    sent with `send(step)` (the client's asynchronous call): start() runs the
    flow up to it and returns what that call returned; advance() gives the
    flow the inference's outcome; finish() carries out the rest. A later
    inference (a rerun) is a plain call."""

    def __init__(self, steps: Steps[Any], lock: threading.Lock, send: Callable[[Any], Any]) -> None:
        self.steps = steps
        self.lock = lock
        self.send = send
        self.sent = False

    def start(self) -> Any:
        step = self.steps.send(None)
        while True:
            if is_inference(step) and not self.sent:
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
        """Carries out `step` and the rest of the flow with plain calls; the flow's result."""
        try:
            while True:
                step = self._step(step)
        except StopIteration as stop:
            return stop.value

    def _step(self, step: Any) -> Any:
        try:
            value = _execute(step, self.lock)
        except Exception as error:  # noqa: BLE001 - the flow decides
            return self.steps.throw(error)
        except BaseException:
            self.steps.close()
            raise
        return self.steps.send(value)

    def close(self) -> None:
        self.steps.close()

"""Python's own changes to SIGBUS, made known to tritonshm's fault guard.

Copies into and out of regions run under a SIGBUS guard: a region that another
process shrinks raises SharedMemoryException instead of killing this process.
The guard notices any change to how SIGBUS is handled, but a change it is not
told about only at its next check (a few milliseconds later), and a fault in
that moment would reach the new handler: Python's, which returns (the copy
would fault again and again until the check), faulthandler's, which prints
"Fatal Python error: Bus error", or the default action, which kills.

So at import, tritonshm wraps the functions through which Python changes it:

- ``signal.signal(SIGBUS, ...)``, ``faulthandler.enable()`` and
  ``faulthandler.disable()`` run while no copy runs in another thread (the
  call waits for copies in flight; copies that start meanwhile wait for it),
  and the guard is back in front when they return;
- ``signal.pthread_sigmask`` tells the guard that this thread's mask changed
  (a thread that blocks SIGBUS has it unblocked while it copies: the kernel
  kills a process whose fault's signal is blocked, whatever the handler).

``signal.signal`` and ``signal.pthread_sigmask`` are Python functions that
call ``_signal.signal`` and ``_signal.pthread_sigmask`` each time: those are
the ones wrapped, so references taken before tritonshm was imported (``from
signal import signal``) are covered too. Each wrapper calls the function it
replaces and returns what it returns. A reference to ``faulthandler.enable``
or ``.disable``, or to the ``_signal`` functions, taken before the import, and
changes made from C, are noticed at the guard's next check.
"""

from __future__ import annotations

import faulthandler
import functools
import importlib
import operator
import signal
from typing import Any

from . import _core

# The C half of the signal module (typeshed has no stub for it).
_signal: Any = importlib.import_module("_signal")

_MARK = "_tritonshm_fault_guard"


def _is_sigbus(signalnum: object) -> bool:
    try:
        return operator.index(signalnum) == signal.SIGBUS  # type: ignore[arg-type]
    except TypeError:
        return False


def install() -> None:
    """Wraps the functions, once (importing tritonshm again is harmless)."""
    if getattr(_signal.signal, _MARK, False):
        return
    original_signal = _signal.signal
    original_pthread_sigmask = _signal.pthread_sigmask
    original_enable = faulthandler.enable
    original_disable = faulthandler.disable

    @functools.wraps(original_signal)
    def signal_(signalnum: Any, handler: Any) -> Any:
        if not _is_sigbus(signalnum):
            return original_signal(signalnum, handler)
        # Held until the change has ended: the last reference to the old
        # handler, dropped inside it, could run any code there.
        previous = signal.getsignal(signal.SIGBUS)
        result = _core.change_sigbus_handler(True, original_signal, signalnum, handler)
        del previous
        return result

    @functools.wraps(original_pthread_sigmask)
    def pthread_sigmask(how: Any, mask: Any) -> Any:
        result = original_pthread_sigmask(how, mask)
        _core.sigbus_mask_changed()
        return result

    # enable() keeps the handler it replaces and puts it back at disable().
    @functools.wraps(original_enable)
    def enable(*args: Any, **kwargs: Any) -> Any:
        return _core.change_sigbus_handler(False, original_enable, *args, **kwargs)

    @functools.wraps(original_disable)
    def disable() -> Any:
        return _core.change_sigbus_handler(True, original_disable)

    for wrapper in (signal_, pthread_sigmask, enable, disable):
        setattr(wrapper, _MARK, True)
    _signal.signal = signal_
    _signal.pthread_sigmask = pthread_sigmask
    faulthandler.enable = enable
    faulthandler.disable = disable

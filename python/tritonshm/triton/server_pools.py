"""The accelerator's view of one Triton server: where it is (read from a
tritonclient client), its pool (made at its first large request), whether
shared memory works with it (found once, with the warning that says why not),
and the models whose outputs were large though their inputs were small."""

from __future__ import annotations

import sys
import threading
import warnings
from typing import Optional, Set

from .._core import SharedMemoryException
from .pool_state import PoolState
from .request_flow import close_steps, run

__all__ = ["ServerPool", "lasting", "loopback", "warn"]

# The server's words when shared memory cannot work with it, whatever the
# request: another IPC namespace or host, client shared memory disabled, an
# API behind a token (a 403), a server on Windows.
_LASTING_WORDS = (
    "unable to open shared memory region",
    "client shared memory is disabled",
    "allow-client-shm",
    "is restricted",
    "access-token",
    "[403]",
    "not supported on windows",
)


def warn(message: str, stacklevel: int) -> None:
    """A RuntimeWarning; printed instead where warnings are turned into
    errors (-W error): nothing fails because of acceleration."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
    except Warning:
        sys.stderr.write(f"RuntimeWarning: {message}\n")


def loopback(address: Optional[str]) -> bool:
    """Whether host:port[/path] names this host by a loopback address or name."""
    host = (address or "").split("/", 1)[0]
    host = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return host in ("localhost", "::1") or host.startswith("127.")


def lasting(error: BaseException) -> bool:
    """Whether shared memory failed for a reason every request would meet:
    the server cannot open our regions (another IPC namespace or host),
    refuses client shared memory or its API, or regions cannot be made here
    (an OS error: /dev/shm full, missing, not writable)."""
    if isinstance(error, SharedMemoryException) and getattr(error, "errno", None):
        return True
    text = str(error).lower()
    return any(words in text for words in _LASTING_WORDS)


class ServerPool:
    """One server (protocol, asyncio or not, address) and what the
    accelerator keeps for it."""

    def __init__(self, protocol: str, aio: bool, address: Optional[str]) -> None:
        self.protocol = protocol
        self.aio = aio
        self.address = address
        self.state: Optional[PoolState] = None
        # Why its requests go over the network, once found; None while shared
        # memory may work. A client whose server cannot be told passes through.
        self.cause: Optional[str] = None if address is not None else "its address cannot be read, or it is HTTPS"
        self.large_outputs: Set[str] = set()
        self._lock = threading.Lock()

    def describe(self) -> str:
        kind = f"tritonclient.{self.protocol}{'.aio' if self.aio else ''}"
        return f"the Triton server at {self.address} ({kind})"

    def give_up(self, error: BaseException) -> None:
        """Shared memory cannot work with this server: its requests go over
        the network from now on, and one warning (the first time) names the
        cause and the fix."""
        with self._lock:
            if self.cause is not None:
                return
            self.cause = str(error)
        protocol = " --protocol grpc" if self.protocol == "grpc" else ""
        remote = (
            ""
            if loopback(self.address)
            else " If the server runs on another host, shared memory cannot reach it: nothing to fix there."
        )
        message = (
            f"tritonshm.triton.accelerate(): requests to {self.describe()} go over the network, not through "
            f"shared memory: {error} (`tritonshm doctor --url {self.address}{protocol}` checks the set-up).{remote}"
        )
        warn(message, stacklevel=6)

    def close(self) -> None:
        """Unregisters the pool's regions through a client of our own (the
        callers' may be closed, or asyncio ones whose event loop is gone) and
        removes them. Errors stay here: this also runs at interpreter exit."""
        state = self.state
        if state is None:
            return
        try:
            housekeeping = state.adapter.module.InferenceServerClient(self.address)
        except Exception:  # noqa: BLE001 - the regions go in any case; the server keeps its mappings until it exits
            state.ledger.close()
            state.arena.close()
            return
        try:
            state.client, state.client_thread = housekeeping, threading.get_ident()  # close_steps' calls use it
            run(close_steps(state), state.grow_lock)
        except Exception:  # noqa: BLE001
            state.arena.close()
        finally:
            try:
                housekeeping.close()
            except Exception:  # noqa: BLE001
                pass

"""What a pool holds, shared by the sync and the async pool and the
accelerator: its configuration, the adapter of its client's kind, the arena,
the bookkeeping (ledger), what it learned of models and outputs, and the
process that owns it. The steps that use it are in request_flow.py."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Dict, Optional

from .. import _core
from .._core import SharedMemoryException
from .adapters import ClientAdapter, adapter_for
from .config import PoolConfig
from .learned_outputs import LearnedOutputs
from .ledger import PoolLedger
from .model_configs import ModelConfigs

__all__ = ["PoolState"]


class PoolState:
    """Locks: `ledger.lock` guards the bookkeeping (held for microseconds);
    `grow_lock` serializes growth and healing, which wait for the server
    (request_flow's Locked steps). The arena, the learned sizes and the model
    configurations have locks of their own. None is held while another is
    taken, except the ledger's and the others' inside grow_lock."""

    def __init__(self, client: Any, config: PoolConfig, aio: bool, adapter: Optional[ClientAdapter] = None) -> None:
        """`adapter` defaults to the one of the client's kind (a test passes a scripted one)."""
        self.config = config
        adapter = adapter if adapter is not None else adapter_for(client)
        if adapter.aio != aio:
            wanted = f"tritonclient.{adapter.protocol}{'.aio' if aio else ''}"
            raise SharedMemoryException(
                f"unable to lease shared memory: client must be a {wanted} client (the pool's protocol and "
                f"kind), got {type(client).__module__}.{type(client).__name__}"
            )
        self.adapter = adapter
        self.client = client
        # The thread that made the pool: its first registration used the client there.
        self.client_thread = threading.get_ident()
        self._thread_clients = threading.local()
        self.arena = _core.Arena(config.prefix, config.max_capacity, config.alignment, config.mode, config.prefault)
        self.ledger = PoolLedger()
        self.learned = LearnedOutputs()
        self.models = ModelConfigs()
        self.owner_pid = os.getpid()
        self.grow_lock = threading.Lock()

    def client_for(self, client: Any = None) -> Any:
        """The client for a call made on this thread: `client` when given, else
        the pool's; where the pool's works only on the thread that made the pool
        (tritonclient.http runs on that thread's gevent hub) and this is another,
        one of this thread's own for the same server, with the same timeouts
        (made once per thread; the pool's if none can be made)."""
        if client is not None:
            return client
        if not self.client_bound_elsewhere():
            return self.client
        made = getattr(self._thread_clients, "client", None)
        if made is None:
            try:
                made = self.adapter.client_like(self.client)
            except Exception:  # noqa: BLE001 - the pool's, which fails here as tritonclient would
                made = None
            if made is None:
                return self.client
            self._thread_clients.client = made
        return made

    def client_bound_elsewhere(self) -> bool:
        """Whether the pool's client works only on another thread than this one."""
        return self.adapter.thread_bound and threading.get_ident() != self.client_thread

    def drop_thread_client(self) -> None:
        """Closes this thread's own client, if client_for made one."""
        made = getattr(self._thread_clients, "client", None)
        self._thread_clients.client = None
        if made is not None:
            with contextlib.suppress(Exception):
                made.close()

    @property
    def closed(self) -> bool:
        return self.ledger.closed

    def owned_here(self) -> bool:
        """False in a child forked from the process that made the pool."""
        return os.getpid() == self.owner_pid

    def check_usable(self) -> None:
        if not self.owned_here():
            raise SharedMemoryException(
                f"unable to lease shared memory: this pool belongs to process {self.owner_pid}, which created it; "
                f"this is a forked child (pid {os.getpid()}). Create a pool (and a client) in the child: the "
                "parent's regions, registrations and locks stay the parent's."
            )
        if self.ledger.closed:
            raise SharedMemoryException("unable to lease shared memory: the pool is closed")

    def stats(self) -> Dict[str, int]:
        arena = self.arena
        counts = self.ledger.counters()
        counts.update(
            regions=int(arena.region_count),
            capacity_bytes=int(arena.capacity),
            leased_bytes=int(arena.leased_bytes),
            high_water_bytes=int(arena.high_water_bytes),
            learned_signatures=len(self.learned),
            inline_threshold=self.config.inline_threshold,
        )
        return counts

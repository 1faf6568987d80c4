"""A pool's bookkeeping, under one lock held for microseconds: which of its
names the server has (or may have), which requests are at the server, which
regions were retired, whether the pool is closed, and its counters. No call to
a client and no wait happens here: request_flow's steps do those and report
to the ledger."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Dict, Iterable, List, Set

__all__ = ["COUNTERS", "PoolLedger"]

COUNTERS = (
    "requests",
    "inputs_in_shm",
    "inputs_inline",
    "outputs_in_shm",
    "outputs_inline",
    "outputs_predicted",
    "retries",
    "retries_output_size",
    "retries_missing_region",
    "inline_fallbacks",
    "abandoned",
    "reregistrations",
)


class PoolLedger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.registered: List[str] = []  # names this pool registered, and only those
        # Names whose registration was sent but not seen through (a cancelled
        # task, an interrupt, a heal racing close()): the server may have them,
        # so close() unregisters them too.
        self.registering: Set[str] = set()
        # Regions taken out of service after a request gave up on the server,
        # until both are done: the server let go of the name (unregistered)
        # and the region is removed here (its last lease released).
        self.retired_registered: Set[str] = set()
        self.retired_present: Set[str] = set()
        self.at_server: "Counter[str]" = Counter()  # requests sent and not yet answered, per region name
        # Names close() could not unregister (a request of another thread was
        # at the server): the request that ends last unregisters each.
        self.unregister_later: Set[str] = set()
        self.incidents = 0  # registrations the server forgot and the pool made again: one per heal
        self.counts: Dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.closed = False
        self.last_sweep = 0.0

    # -- registrations -------------------------------------------------------

    def registering_begins(self, name: str) -> bool:
        """False once the pool is closed: nothing is registered after close()."""
        with self.lock:
            if self.closed:
                return False
            self.registering.add(name)
            return True

    def registering_ends(self, name: str, registered: bool) -> bool:
        """Records how a registration ended. False if the pool closed while it
        was in flight: the caller then unregisters the name itself."""
        with self.lock:
            self.registering.discard(name)
            if not registered:
                return True
            if self.closed:
                return False
            if name not in self.registered:
                self.registered.append(name)
            return True

    def forget(self, name: str) -> None:
        """A name the pool unregisters now (a region removed to make room)."""
        with self.lock:
            if name in self.registered:
                self.registered.remove(name)

    def is_registered(self, name: object) -> bool:
        with self.lock:
            return name in self.registered

    def healed(self) -> None:
        with self.lock:
            self.incidents += 1
            self.counts["reregistrations"] += 1

    # -- requests at the server -----------------------------------------------

    def sent(self, name: str) -> None:
        with self.lock:
            self.at_server[name] += 1

    def answered(self, name: str) -> bool:
        """A request on region `name` was answered (or given up on). True if the
        caller must now unregister the name: close() left it to the last request."""
        with self.lock:
            self.at_server[name] -= 1
            if self.at_server[name] > 0:
                return False
            del self.at_server[name]
            if name in self.unregister_later:
                self.unregister_later.discard(name)
                return True
            return False

    # -- retired regions -------------------------------------------------------

    def retire(self, names: Iterable[str]) -> None:
        """The regions a request given up on may still use (counted once, as one request abandoned)."""
        with self.lock:
            self.counts["abandoned"] += 1
            for name in names:
                if name in self.registered:
                    self.registered.remove(name)
                    self.retired_registered.add(name)
                self.retired_present.add(name)

    def sweep_due(self, interval: float) -> "tuple[List[str], List[str]]":
        """The retired names to unregister and the retired regions to remove,
        handed out at most once per `interval` seconds across the pool's threads."""
        with self.lock:
            if not (self.retired_registered or self.retired_present):
                return [], []
            now = time.monotonic()
            if now - self.last_sweep < interval:
                return [], []
            self.last_sweep = now
            return sorted(self.retired_registered), sorted(self.retired_present)

    def retired_unregistered(self, name: str) -> None:
        with self.lock:
            self.retired_registered.discard(name)

    def retired_removed(self, name: str) -> None:
        with self.lock:
            self.retired_present.discard(name)

    # -- close -----------------------------------------------------------------

    def close(self) -> "tuple[List[str], Set[str]]":
        """Marks the pool closed and hands over every name the server may have
        (once), and which of them requests given up on may still hold."""
        with self.lock:
            self.closed = True
            abandoned = set(self.retired_registered)
            names = self.registered + sorted(self.registering) + sorted(abandoned)
            self.registered, self.registering = [], set()
            self.retired_registered, self.retired_present = set(), set()
            return names, abandoned

    def leave_to_last_request(self, names: List[str]) -> List[str]:
        """Of the names close() could not unregister, those a request of this
        pool is at the server with: its end unregisters them. Returns the others."""
        with self.lock:
            later = [name for name in names if self.at_server[name] > 0]
            self.unregister_later.update(later)
            return [name for name in names if name not in later]

    # -- counters --------------------------------------------------------------

    def count(self, **added: int) -> None:
        with self.lock:
            for name, n in added.items():
                self.counts[name] += n

    def counters(self) -> Dict[str, int]:
        with self.lock:
            return dict(self.counts)

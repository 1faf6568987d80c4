"""Finding and cleaning up regions in /dev/shm: the C++ inventory, as is.

``RegionInfo``, ``GarbageReport`` and their fields are the C++ types bound
directly; the policy (what is in use, what is another tool's, what gc may
remove, what rm refuses) lives in C++ (``tritonshm/inventory.hpp``).
"""

from __future__ import annotations

from typing import List, Optional

from . import _core
from ._core import GarbageReport, KeptRegion, RegionInfo

__all__ = [
    "GarbageReport",
    "KeptRegion",
    "RegionInfo",
    "collect_garbage",
    "create_region",
    "list_regions",
    "region_info",
    "remove_region",
]


def list_regions() -> List[RegionInfo]:
    """Every region in /dev/shm with the processes that map it or hold it open."""
    return _core.list_regions()[0]


def region_info(key: str) -> Optional[RegionInfo]:
    """The region `key` (with or without its leading '/'), or None."""
    return _core.region_info(key)


def collect_garbage(
    dry_run: bool = False,
    min_age_seconds: int = 0,
    prefix: str = "",
    trust_uninspected: bool = False,
    include_foreign: bool = False,
) -> GarbageReport:
    """Removes regions that no live process maps or holds open (left by crashed
    processes). Removes nothing while some process could not be inspected
    (report.uninspected), unless trust_uninspected says they use no shared
    memory. Other tools' regions (Triton's Python backend, Python's
    multiprocessing and PyTriton) are kept unless include_foreign."""
    return _core.collect_garbage(dry_run, min_age_seconds, prefix, trust_uninspected, include_foreign)


def create_region(key: str, byte_size: int, mode: int = 0o600) -> int:
    """Creates a region that outlives this process (no handle: remove it with
    remove_region or `tritonshm rm`). Returns its size."""
    return _core.create_persistent(key, byte_size, mode)


def remove_region(key: str, force: bool = False) -> bool:
    """Unlinks `key`; False if it does not exist. Refuses while a live process
    uses it, unless force."""
    return _core.remove_region(key, force)

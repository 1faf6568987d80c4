"""Finding and cleaning up regions in /dev/shm (the C++ inventory, typed)."""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from . import _core
from ._errors import SharedMemoryException

__all__ = ["RegionInfo", "collect_garbage", "create_region", "list_regions", "region_info", "remove_region"]


@dataclasses.dataclass(frozen=True)
class RegionInfo:
    key: str
    size: int
    owner: int
    mode: int
    modified: int
    mapped_by: List[int]
    opened_by: List[int]
    in_use: bool


@dataclasses.dataclass(frozen=True)
class GarbageReport:
    removed: List[RegionInfo]
    kept: List[RegionInfo]
    uninspected: List[int]


def list_regions() -> List[RegionInfo]:
    """Every region in /dev/shm with the processes that map it or hold it open."""
    return [RegionInfo(**r) for r in _core.list_regions()["regions"]]


def region_info(key: str) -> Optional[RegionInfo]:
    info = _core.region_info(key)
    return None if info is None else RegionInfo(**info)


def collect_garbage(
    dry_run: bool = False, min_age_seconds: int = 0, prefix: str = "", trust_uninspected: bool = False
) -> GarbageReport:
    """Removes regions that no live process maps or holds open (left by crashed
    processes). Removes nothing while some process could not be inspected
    (report.uninspected), unless trust_uninspected says they use no shared memory."""
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    report = _core.collect_garbage(dry_run, min_age_seconds, prefix, trust_uninspected)
    return GarbageReport(
        removed=[RegionInfo(**r) for r in report["removed"]],
        kept=[RegionInfo(**r) for r in report["kept"]],
        uninspected=list(report["uninspected"]),
    )


def create_region(key: str, byte_size: int, mode: int = 0o600) -> int:
    """Creates a region that outlives this process (no handle: remove it with
    remove_region or `tritonshm rm`). Returns its size."""
    return _core.create_unmanaged(key, byte_size, mode, True)


def remove_region(key: str, force: bool = False) -> bool:
    """Unlinks `key`. Refuses while a live process uses it, unless force."""
    if not force:
        info = region_info(key)
        if info is not None and info.in_use:
            pids = sorted(set(info.mapped_by) | set(info.opened_by))
            raise SharedMemoryException(
                f"shared memory region '{info.key}' is in use by process(es) {pids}: not removed (use force)"
            )
    return _core.remove(key)

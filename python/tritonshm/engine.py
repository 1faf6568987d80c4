"""How this process copies large tensors (the C++ copy engine, copy_engine.hpp)."""

from __future__ import annotations

from typing import TypedDict, cast

from . import _core

__all__ = ["CopyEngine", "copy_engine"]


class CopyEngine(TypedDict):
    isa: str  # streaming stores used: "avx512", "avx2", "sse2" or "portable" (memcpy)
    stream_threshold: int  # bytes from which copies use streaming stores
    thread_threshold: int  # bytes from which copies are split across threads
    threads: int  # threads of a split copy


def copy_engine() -> CopyEngine:
    """How large copies run in this process: the instruction set chosen at run
    time (``TRITONSHM_COPY_ISA`` caps it), the sizes from which copies use
    streaming stores and split across threads, and the thread count
    (``TRITONSHM_COPY_THREADS``)."""
    return cast(CopyEngine, _core.copy_engine())

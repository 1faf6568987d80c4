"""The Triton server the benchmarks run against: tests/triton_server.py, the
test suite's fixture (tests/ is no package, so it is loaded by path)."""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
_module: Any = None


def server_module() -> Any:
    """tests/triton_server.py as a module (spawn, free_ports, fixed_model, detect_expected, ...)."""
    global _module
    if _module is None:
        spec = importlib.util.spec_from_file_location("triton_server", ROOT / "tests" / "triton_server.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _module = module
    return _module

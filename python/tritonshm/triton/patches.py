"""Attributes of other libraries' classes replaced for a while and put back
exactly: the same objects, or none where there was none. A module not
imported yet is patched as its import finishes, so that patching costs a
program nothing for the modules it never imports."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["Patches"]

_MISSING = object()


class Patches:
    """`set(owner, name, value)` replaces one attribute and remembers what was
    there; `restore()` puts every one back, last first. `when_imported(names,
    patch)` runs `patch(module)` for each named module now if it is imported,
    else when its import finishes (until restore())."""

    def __init__(self) -> None:
        self._saved: List[Tuple[Any, str, Any]] = []
        self._lock = threading.Lock()
        self._hook: Optional[_PatchOnImport] = None
        self._restored = False

    def set(self, owner: Any, name: str, value: Any) -> None:
        """Does nothing once restored (an import that finished as restore() ran)."""
        with self._lock:
            if self._restored:
                return
            self._saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
            setattr(owner, name, value)

    def when_imported(self, names: Sequence[str], patch: Callable[[ModuleType], None]) -> None:
        waiting = {}
        for name in names:
            module = sys.modules.get(name)
            if module is not None:
                patch(module)
            else:
                waiting[name] = patch
        if waiting:
            self._hook = _PatchOnImport(waiting)
            sys.meta_path.insert(0, self._hook)

    def after_fork(self) -> None:
        """In a forked child: a new lock (another thread may have held ours at the fork)."""
        self._lock = threading.Lock()

    def restore(self) -> None:
        with self._lock:
            self._restored = True
            if self._hook is not None:
                self._hook.waiting.clear()
                if self._hook in sys.meta_path:
                    sys.meta_path.remove(self._hook)
                self._hook = None
            saved, self._saved = self._saved, []
        for owner, name, value in reversed(saved):
            if value is _MISSING:
                if name in owner.__dict__:
                    delattr(owner, name)
            else:
                setattr(owner, name, value)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the waiting modules as the path finder does, and patches each
    once its code has run (its classes exist), before the import returns."""

    def __init__(self, waiting: Dict[str, Callable[[ModuleType], None]]) -> None:
        self.waiting = waiting

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        patch = self.waiting.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader, self, fullname, patch)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, hook: _PatchOnImport, fullname: str, patch: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.hook = hook
        self.fullname = fullname
        self.patch = patch

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        # The module keeps the real loader, as if imported without us.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        if self.hook.waiting.pop(self.fullname, None) is not None:  # not restored meanwhile
            self.patch(module)

    def __getattr__(self, name: str) -> Any:  # get_code, get_source, is_package, ...: the real loader's
        return getattr(self.loader, name)

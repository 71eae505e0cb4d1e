"""Module-level `__getattr__` for packages whose public names are imported on first use (PEP 562).

Keeps `import embodia` and the package `__init__`s cheap: nothing heavy (MuJoCo, torch) loads until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A `__getattr__` for `package` that imports `exports[name]` (a module path) when `name` is first asked for."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__

"""Deprecated aliases for public names that moved to another module (kept for one release).

A module whose name moved assigns ``__getattr__ = moved_names(__name__, {...})``: reading the
old name still works, gives the object from its new home and warns once per call site with
a :class:`DeprecationWarning` that says where to import it from now.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``module`` serving ``moved`` (old name -> the new
    home as ``"package.module"``; the name is the same there)."""

    def __getattr__(name: str) -> Any:
        home = moved.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} moved to {home}.{name}; import it from there "
                      "(the old name goes in the next release)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)

    return __getattr__

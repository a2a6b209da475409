"""Deprecated aliases for public names and modules that moved (kept for one release).

A module whose name moved assigns ``__getattr__ = moved_names(__name__, {...})``: reading the
old name still works, gives the object from its new home and warns once per call site with
a :class:`DeprecationWarning` that says where to import it from now.

A module that moved as a whole leaves a file at its old path that calls
:func:`alias_module`: importing the old path warns and gives the *same module object* as the
new path (the registry keeps caches in its module; two copies would split them).

Class paths written into files (LightningCLI's ``config.yaml``, export ``config.json``) outlive
any release, so :data:`MOVED_MODULES` stays: :func:`current_path` maps an old stored path to
its new home, and loaders resolve through it without warning.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MOVED_MODULES", "alias_module", "current_path", "moved_names"]

_FRAMEWORK = ("checkpoint", "cli_base", "config_check", "configurable", "deprecation", "hparams",
              "hub", "lightning_cli", "progress", "registry", "weights_preflight")

#: Old dotted module name -> new one, for every module of the ARM packages that moved.
MOVED_MODULES: dict[str, str] = {
    **{f"arm_tokenizer.{m}": f"arm_tokenizer.framework.{m}" for m in _FRAMEWORK},
    # one file name for a LightningModule: ``lightning_module.py`` of its (sub)package
    "arm_tokenizer.module": "arm_tokenizer.lightning_module",
    "arm_tokenizer.vae_module": "arm_tokenizer.decoders.lightning_module",
    "arm_tokenizer.teachers.trainer": "arm_tokenizer.teachers.lightning_module",
    # the other packages' moves too: their stored class paths are resolved here
    "arm_rl.trainer": "arm_rl.lightning_module",
}


def current_path(dotted: str) -> str:
    """``dotted`` (``pkg.module`` or ``pkg.module.Class``) under its module's current name;
    unchanged when the module did not move."""
    for old, new in MOVED_MODULES.items():
        if dotted == old or dotted.startswith(old + "."):
            return new + dotted[len(old):]
    return dotted


def alias_module(old: str, new: str) -> None:
    """Called by the file left at a moved module's old path, while it is being imported:
    warn and make ``old`` the module object ``new`` (the import system then binds the parent
    package's attribute to what ``sys.modules[old]`` holds)."""
    module = importlib.import_module(new)
    # stacklevel 3: past this function and the old module's body, to the importing line
    warnings.warn(f"module {old} moved to {new}; import it from there "
                  "(the old path goes in the next release)", DeprecationWarning, stacklevel=3)
    sys.modules[old] = module


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

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

A keyword argument that was renamed keeps its old name for one release: the function takes
both (each defaulting to ``None``) and :func:`renamed_argument` picks the value, warning when
the old name was used and refusing both. A renamed command-line flag keeps its old spelling
as a hidden alias (:func:`add_renamed_flag`) that warns.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MOVED_MODULES", "REQUIRED", "add_renamed_flag", "alias_module", "current_path", "moved_names",
           "renamed_argument"]

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


#: ``default`` of :func:`renamed_argument` for an argument without a default.
REQUIRED: Any = object()


def renamed_argument(where: str, old: str, new: str, old_value: Any, new_value: Any,
                     default: Any = REQUIRED, *, stacklevel: int = 3) -> Any:
    """The value of argument ``new`` of ``where``, formerly called ``old``: ``new_value``,
    else ``old_value`` with a :class:`DeprecationWarning` naming ``new``, else ``default``
    (``None`` stands for "not given"; giving both, or neither of a :data:`REQUIRED` one,
    is a :class:`TypeError`). ``stacklevel`` 3 points the warning at the caller of ``where``."""
    if old_value is not None:
        if new_value is not None:
            raise TypeError(f"{where}: got both {new}= and its deprecated name {old}=; pass only {new}=")
        warnings.warn(f"{where}: {old}= is deprecated, use {new}= "
                      "(the old name goes in the next release)", DeprecationWarning, stacklevel=stacklevel)
        return old_value
    if new_value is not None:
        return new_value
    if default is REQUIRED:
        raise TypeError(f"{where}: missing the argument {new}=")
    return default


class _RenamedFlag(argparse.Action):
    """The old spelling of a flag: warns, then stores into the new flag's ``dest``."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warnings.warn(f"{parser.prog}: {option_string} is deprecated, use {self.new} "
                      "(the old flag goes in the next release)", DeprecationWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def add_renamed_flag(parser: argparse.ArgumentParser | Any, old: str, new: str) -> None:
    """Add ``old`` to ``parser`` (or an argument group) as a hidden alias of its flag ``new``
    (added before): the same ``dest``, ``type`` and ``nargs``; using it warns."""
    # an argument group shares its parser's list of actions
    action = next((a for a in parser._actions if new in a.option_strings), None)
    if action is None:
        raise ValueError(f"add_renamed_flag: {new} is not a flag of this parser; add it before its alias {old}")
    parser.add_argument(old, dest=action.dest, type=action.type, nargs=action.nargs, metavar=action.metavar,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS, action=_RenamedFlag, new=new)


def renamed_attribute(owner: str, old: str, new: str) -> property:
    """A read-only property ``old`` that warns and returns ``self.<new>``: an attribute that
    was renamed, kept for one release (``scale = renamed_attribute("Guidance", "scale",
    "guidance_scale")`` in the class body)."""

    def get(self: Any) -> Any:
        warnings.warn(f"{owner}.{old} is deprecated: use {new}", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated alias of :attr:`{new}` (goes in the next release).")

"""The command line every ARM package shares: LightningCLI plus registry commands.

``arm-tokenizer``, ``arm-data``, ``arm-lm`` and ``arm-rl`` are all :func:`run_cli` with a
different program name, a different set of extra subcommands and, where the package has a
training loop, LightningCLI's ``fit``/``validate``/``test``/``predict``::

    arm-tokenizer list [KIND]               every registered component, with its distribution
    arm-tokenizer describe NAME [--kind K]  a component's init arguments, types and defaults
    arm-tokenizer fit --config X.yaml       LightningCLI; short registry names work in YAML

Before LightningCLI parses, the registry imports every registered class (so jsonargparse
resolves class names) and :mod:`arm_tokenizer.framework.config_check` translates short registry
names (``class_path: fsq``) into full dotted paths and checks the YAML against the
constructor signatures, so bad input gets one clear message naming file, line, key and the
choices instead of a jsonargparse traceback. ``--debug`` (or ``ARM_DEBUG=1``) shows the
full traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from arm_tokenizer.framework import registry
from arm_tokenizer.framework.weights_preflight import check_checkpoints

ExtraCommand = Callable[[list[str]], int]


def lazy_command(target: str, help: str) -> ExtraCommand:
    """A subcommand imported only when it runs (``"module:function"``), so starting one
    command never pays for importing the others."""

    def command(argv: list[str]) -> int:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)(argv)

    command.__doc__ = help
    command.__name__ = target.rpartition(":")[2]
    return command
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _print_list(argv: list[str]) -> int:
    """List registered components: kind, name, class, distribution."""
    p = argparse.ArgumentParser(prog="list", description="List registered ARM components.")
    p.add_argument("kind", nargs="?", help="only this kind (e.g. quantizer)")
    p.add_argument("--pattern", help="fnmatch filter on names, e.g. '*vq*'")
    args = p.parse_args(argv)
    comps = registry.list_components(args.kind, args.pattern)
    rows = [("KIND", "NAME", "CLASS", "DISTRIBUTION")]
    for c in comps:
        try:
            with warnings.catch_warnings():  # failures are printed once, below
                warnings.simplefilter("ignore", RuntimeWarning)
                c.load()
            status = ""
        except registry.PluginLoadError:
            status = "  [import failed]"
        rows.append((c.kind, c.name, c.class_path, f"{c.dist} {c.version}".strip() + status))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    for err in registry.load_errors():
        print(f"warning: {err}", file=sys.stderr)
    return 0


def describe_component(name: str, kind: str | None = None) -> str:
    """A human-readable table of a component's constructor arguments."""
    comp = registry.find(kind, name) if kind else registry.resolve(name)
    if comp is None:
        close = registry.close_matches(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise registry.UnknownComponentError(f"no component named {name!r}.{hint}")
    cls = comp.load()
    lines = [f"{comp.kind} '{comp.name}' = {comp.class_path}  ({comp.dist} {comp.version})"]
    doc = inspect.getdoc(cls)
    if doc:
        lines.append("")
        lines.extend("  " + ln for ln in doc.splitlines())
    lines.append("")
    lines.append("init arguments:")
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        ann = param.annotation
        ann_s = "" if ann is inspect.Parameter.empty else (ann if isinstance(ann, str) else _type_name(ann))
        default = "(required)" if param.default is inspect.Parameter.empty else f"= {param.default!r}"
        lines.append(f"  {pname}: {ann_s} {default}".rstrip())
    return "\n".join(lines)


def _type_name(t: object) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _describe(argv: list[str]) -> int:
    """Print a component's init arguments with their types and defaults."""
    p = argparse.ArgumentParser(prog="describe", description="Show a component's init arguments.")
    p.add_argument("name", help="registry name, class name or dotted path")
    p.add_argument("--kind", help="restrict the search to one kind")
    args = p.parse_args(argv)
    print(describe_component(args.name, args.kind))
    return 0


BASE_COMMANDS: dict[str, ExtraCommand] = {"list": _print_list, "describe": _describe}


def run_cli(
    prog: str,
    argv: Sequence[str] | None = None,
    extra_commands: dict[str, ExtraCommand] | None = None,
    trainable: bool = True,
    description: str = "",
) -> int:
    """Entry point shared by the four console scripts. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ARM_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    commands = {**BASE_COMMANDS, **(extra_commands or {})}
    if not argv or argv[0] in ("-h", "--help"):
        _print_help(prog, commands, trainable, description)
        return 0
    try:
        if argv[0] in commands:
            return commands[argv[0]](argv[1:]) or 0
        if trainable and argv[0] in LIGHTNING_SUBCOMMANDS:
            # Missing transformers weights fail here in about a second, not after Lightning's
            # and transformers' imports (several seconds) at the component's own check.
            check_checkpoints(argv[1:])
            # deferred: Lightning takes seconds to import; the weights check answers first
            from arm_tokenizer.framework.lightning_cli import run_lightning

            run_lightning(argv, debug=debug)
            return 0
    except (registry.RegistryError, ValueError, TypeError, FileNotFoundError, OSError) as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    choices = list(commands) + (list(LIGHTNING_SUBCOMMANDS) if trainable else [])
    print(f"{prog}: error: unknown command {argv[0]!r}; choose from {', '.join(choices)}",
          file=sys.stderr)
    return 2


def _print_help(prog: str, commands: dict[str, ExtraCommand], trainable: bool, description: str) -> None:
    print(f"usage: {prog} COMMAND [ARGS]\n")
    if description:
        print(description + "\n")
    if trainable:
        print("training (LightningCLI; `COMMAND --help` for options, `--print_config` to see a config):")
        for c in LIGHTNING_SUBCOMMANDS:
            print(f"  {c} --config X.yaml")
    print("commands:")
    for name, fn in commands.items():
        doc = (inspect.getdoc(fn) or "").splitlines()
        print(f"  {name:<22}{doc[0] if doc else ''}")
    print("\nadd --debug to any command for full tracebacks")

"""Translate registry short names in YAML configs and check them before LightningCLI parses.

jsonargparse resolves ``class_path: FSQQuantizer`` only after that class was imported, and a
registry alias like ``fsq`` never (DESIGN.md, "The registry"). So before parsing, every
``class_path`` under ``model:`` and ``data:`` is resolved here — registry name, class name
or dotted path — and rewritten to the full dotted path. On the way the config is checked
against the constructor signatures, so a bad config gets ONE message that names the file,
the line, the key and the choices::

    configs/tokenizer/x.yaml:12: model.init_args.quantizer.class_path: unknown component
    'fsqq'. Did you mean: fsq? Choices: fsq, lfq, residual_fsq, residual_vq, vq

Checked: unknown component names (with close matches), a component of the wrong kind,
argument names a constructor does not take (with the ones it does), values of the wrong
type (checked with jsonargparse's own type adapters, leaf by leaf), plugins that failed to
import. Whatever jsonargparse still rejects is condensed by :func:`condense_parser_error`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from arm_tokenizer.framework import registry
from arm_tokenizer.framework.configurable import ConfigError  # re-exported for callers
from arm_tokenizer.framework.deprecation import current_path


@dataclass
class _Source:
    file: str
    lines: dict[tuple, int]

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def _line_map(text: str) -> dict[tuple, int]:
    """Map every key path in a YAML document to its 1-based line number."""
    lines: dict[tuple, int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    walk(root, ())
    return lines


def load_config(path: str | Path) -> tuple[dict, _Source]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", file=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                          line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping at the top level", file=str(path))
    return data, _Source(str(path), _line_map(text))


# -- resolving names -------------------------------------------------------------------------
def _import_dotted(path: str) -> Any:
    module, _, attr = path.rpartition(".")
    if not module:
        raise ImportError(f"{path!r} is not a dotted path")
    try:
        return getattr(importlib.import_module(module), attr)
    except AttributeError:
        raise ImportError(f"module {module!r} has no attribute {attr!r}") from None


def _all_subclasses(cls: type) -> list[type]:
    out, stack = [], [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            out.append(sub)
            stack.append(sub)
    return out


def _kinds_for(expected: tuple[type, ...]) -> list[str]:
    """Registry kinds whose base class is compatible with the expected annotation."""
    kinds = []
    for kind in registry.list_kinds():
        base = registry.base_class(kind.name)
        if base is not None and any(issubclass(base, e) or issubclass(e, base) for e in expected):
            kinds.append(kind.name)
    return kinds


def _choices(expected: tuple[type, ...]) -> list[str]:
    names = []
    for kind in _kinds_for(expected):
        names += [c.name for c in registry.list_components(kind)]
    return sorted(set(names))


def resolve_class(name: str, expected: tuple[type, ...] = ()) -> tuple[str, type]:
    """Resolve a registry name, class name or dotted path to (dotted path, class)."""
    if "." in name:
        name = current_path(name)  # a saved config.yaml from before a module moved replays
        try:
            cls = _import_dotted(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {name!r}: {exc}") from None
        return name, cls
    kinds = _kinds_for(expected) if expected else []
    comp = None
    for kind in kinds or [None]:
        try:
            comp = registry.resolve(name, kind)
        except registry.DuplicateComponentError as exc:
            raise ConfigError(str(exc)) from None
        if comp is not None:
            break
    if comp is not None:
        try:
            return comp.class_path, comp.load()
        except registry.PluginLoadError as exc:
            raise ConfigError(str(exc)) from None
    for base in expected:  # jsonargparse's own rule: an imported subclass by class name
        for sub in _all_subclasses(base):
            if sub.__name__ == name:
                return f"{sub.__module__}.{sub.__qualname__}", sub
    choices = _choices(expected) if expected else []
    if not choices:  # an annotation no registry kind covers: suggest from every name
        choices = sorted({c.name for c in registry.list_components()})
    close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    hint = registry.missing_package_hint(name) or (f" Did you mean: {', '.join(close)}?" if close else "")
    raise ConfigError(f"unknown component {name!r}.{hint} Choices: {', '.join(choices) or '(none)'}")


# -- checking init args ------------------------------------------------------------------------
_UNIONS = (typing.Union, types.UnionType)


def _class_types(annotation: Any) -> tuple[type, ...]:
    """The classes in an annotation that a class_path can instantiate (unions unpacked)."""
    origin = typing.get_origin(annotation)
    if origin in _UNIONS:
        return tuple(t for a in typing.get_args(annotation) for t in _class_types(a))
    if isinstance(annotation, type) and annotation.__module__ not in ("builtins", "typing"):
        return (annotation,)
    return ()


def _sequence_item(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, *_UNIONS):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) in (list, tuple) or arg in (list, tuple):
                return _sequence_item(arg)
            if origin in (list, tuple):
                return arg
    return None


def _mapping_value(annotation: Any) -> Any:
    """The value type of a ``dict[K, V]`` annotation (unions unpacked), else None."""
    origin = typing.get_origin(annotation)
    if origin in _UNIONS:
        for arg in typing.get_args(annotation):
            found = _mapping_value(arg)
            if found is not None:
                return found
    if origin is dict and len(typing.get_args(annotation)) == 2:
        return typing.get_args(annotation)[1]
    return None


def _signature_params(cls: type) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """(parameters, resolved type hints, accepts **kwargs) of cls.__init__."""
    init = cls.__init__
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):
        return {}, {}, True
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {n: p.annotation for n, p in sig.parameters.items()}
    params = {n: p for n, p in sig.parameters.items() if n != "self"
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return params, hints, var_kw


@functools.lru_cache(maxsize=256)
def _leaf_parser(annotation: Any):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--value", type=annotation)
    return parser


def _check_leaf(value: Any, annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    try:
        parser = _leaf_parser(annotation)
    except Exception:  # jsonargparse cannot adapt this type; leave it to the real parse
        return None
    try:
        parser.parse_object({"value": value})
    except Exception:
        return f"expected {_type_str(annotation)}, got {value!r}"
    return None


def _type_str(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


class _Checker:
    def __init__(self, source: _Source) -> None:
        self.source = source

    def error(self, message: str, path: tuple) -> ConfigError:
        key = ".".join(str(p) for p in path)
        return ConfigError(message, file=self.source.file, line=self.source.line(path), key=key)

    def component(self, node: Any, expected: tuple[type, ...], path: tuple) -> Any:
        """Check (and translate) one ``{class_path, init_args}`` node; returns the new node."""
        if isinstance(node, str):  # `quantizer: fsq` shorthand
            node = {"class_path": node}
        if not isinstance(node, dict) or "class_path" not in node:
            return node
        name = node["class_path"]
        try:
            class_path, cls = resolve_class(str(name), expected)
        except ConfigError as exc:
            raise self.error(exc.message, path + ("class_path",)) from None
        if expected and isinstance(cls, type) and not issubclass(cls, expected):
            want = " or ".join(e.__name__ for e in expected)
            choices = _choices(expected)
            hint = f" Choices: {', '.join(choices)}" if choices else ""
            raise self.error(f"{name!r} is a {cls.__name__}, but this key takes a {want}.{hint}",
                             path + ("class_path",))
        extra = set(node) - {"class_path", "init_args", "dict_kwargs", "__path__"}
        if extra:
            raise self.error(f"unexpected keys {sorted(extra)}: put constructor arguments under "
                             "init_args", path)
        init_args = node.get("init_args") or {}
        if not isinstance(init_args, dict):
            raise self.error("init_args must be a mapping", path + ("init_args",))
        new_args = self.arguments(cls, init_args, path + ("init_args",))
        out = dict(node, class_path=class_path)
        if "init_args" in node:
            out["init_args"] = new_args
        return out

    def arguments(self, cls: type, init_args: dict, path: tuple) -> dict:
        params, hints, var_kw = _signature_params(cls)
        out = {}
        for key, value in init_args.items():
            if key not in params:
                if var_kw:
                    out[key] = value
                    continue
                raise self.error(
                    f"{cls.__name__} takes no argument {key!r}. It takes: "
                    f"{', '.join(params) or '(no arguments)'}", path + (key,))
            annotation = hints.get(key, params[key].annotation)
            out[key] = self.value(value, annotation, path + (key,))
        # Missing required args may still come from the command line: jsonargparse reports those.
        return out

    def value(self, value: Any, annotation: Any, path: tuple) -> Any:
        classes = _class_types(annotation)
        if classes and isinstance(value, dict) and "class_path" in value:
            return self.component(value, classes, path)
        if classes and isinstance(value, str) and _check_leaf(value, annotation) is not None:
            return self.component(value, classes, path)  # `quantizer: fsq` shorthand
        item = _sequence_item(annotation)
        item_classes = _class_types(item) if item is not None else ()
        if item_classes and isinstance(value, list):
            return [self.component(v, item_classes, path + (i,)) if isinstance(v, (dict, str))
                    else v for i, v in enumerate(value)]
        mapped = _mapping_value(annotation)
        if mapped is not None and isinstance(value, dict):  # e.g. `tasks: {t2i: {...}}`: check each value
            return {k: self.value(v, mapped, path + (k,)) for k, v in value.items()}
        records = [c for c in classes if dataclasses.is_dataclass(c)]
        if records and isinstance(value, dict):  # a dataclass as a mapping of its fields (components inside)
            return self.arguments(records[0], value, path)
        if classes and isinstance(value, dict):
            return value  # a plain dict for a class type: let jsonargparse judge
        problem = _check_leaf(value, annotation)
        if problem:
            raise self.error(problem, path)
        return value


SECTIONS = {"model": "lightning.pytorch:LightningModule", "data": "lightning.pytorch:LightningDataModule"}


def check_config(data: dict, source: _Source) -> dict:
    """Check and translate the ``model:``/``data:`` sections of a parsed config."""
    checker = _Checker(source)
    out = dict(data)
    for section, base_spec in SECTIONS.items():
        if section not in data or data[section] is None:
            continue
        module, _, attr = base_spec.partition(":")
        base = getattr(importlib.import_module(module), attr)
        out[section] = checker.component(data[section], (base,), (section,))
    return out


def check_config_file(path: str | Path) -> dict:
    data, source = load_config(path)
    return check_config(data, source)


def translate_value(key: str, value: str) -> str:
    """Translate a command-line ``--model.x.class_path fsq`` (or ``--model.x fsq``) value; in an
    inline YAML list or mapping (``--model.init_args.losses '[{class_path: pixel_loss}]'``,
    the way to change a list) every ``class_path`` short name."""
    if value.startswith(("[", "{")):
        return _translate_inline(value)
    if "." in value or "/" in value or not value:
        return value
    try:
        comp = registry.resolve(value)
    except registry.RegistryError:
        return value
    return comp.class_path if comp is not None else value


def _translate_inline(value: str) -> str:
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError:
        return value  # jsonargparse reports it

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            return {k: (translate_value(k, v) if k == "class_path" and isinstance(v, str) else walk(v))
                    for k, v in node.items()}
        return node

    translated = walk(data)
    return value if translated == data else json.dumps(translated)


_NOISE = ("Given value", "Subtypes:", "Errors:", "Does not validate against any of the Union",
          "- Expected a <class 'NoneType'>")


def list_item_flag_error(argv: list[str], config_files: list[str]) -> str | None:
    """One line for a flag that addresses a list item (``--model.init_args.losses.2.weight``).

    jsonargparse cannot set one item of a list from the command line; it reports a nested
    Union failure that names the wrong class and not the flag. Called only after parsing
    failed, so a flag with a numeric key that did parse is never blamed."""
    for arg in argv:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        parts = flag[2:].split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit() and i > 0), None)
        if index is None:
            continue
        whole = "--" + ".".join(parts[:index])
        where = ", ".join(config_files) or "your config file"
        return (f"{flag}: list items cannot be addressed by flags (item {parts[index]} of "
                f"{'.'.join(parts[:index])}); change that item in the YAML ({where}), or pass the whole list: "
                f"{whole} '[{{class_path: ..., init_args: {{...}}}}, ...]' (--print_config shows the current one)")
    return None


def condense_parser_error(message: str, config_files: list[str], max_lines: int = 5) -> str:
    """Turn jsonargparse's nested report (Union subtypes, Namespace dumps, one 'Parser key'
    line per nesting level) into the deepest key and the real problem, a few lines at most."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    keys = [ln.split('"')[1] for ln in lines if ln.startswith("Parser key") and '"' in ln]
    detail = [ln.lstrip("- ") for ln in lines
              if not ln.startswith(("Parser key", "Problem with given class_path"))
              and not any(noise in ln for noise in _NOISE)]
    detail = detail or lines[-1:] or [message]
    if len(detail) > max_lines:
        detail = detail[:max_lines] + [f"... ({len(detail) - max_lines} more lines; --debug shows all)"]
    where = f" (in {', '.join(config_files)})" if config_files else ""
    return f"{'.'.join(keys) + ': ' if keys else ''}{chr(10).join(detail)}{where}"

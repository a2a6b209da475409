"""Init-args capture: every component remembers how it was built, so a model rebuilds from JSON.

All component base classes (``Encoder``, ``Projection``, ``Quantizer``, ``Decoder``,
``TokenizerLoss``, ``TextEncoder``, ``CaptionLM``) inherit :class:`Configurable`. When a
subclass is defined, its ``__init__`` is wrapped (``functools.wraps``, so
``inspect.signature``, ``typing.get_type_hints`` and jsonargparse still see the real
signature). At construction the outermost ``__init__`` call binds its arguments to the
signature, applies the defaults and stores them. :meth:`Configurable.get_config` then
returns ``{"class_path": "pkg.module.Class", "init_args": {...}}``, nested components
recorded recursively in the same form (the LightningCLI YAML shape), and
:func:`instantiate` rebuilds the object from it::

    q = FSQQuantizer(levels=[8, 5, 5])
    cfg = q.get_config()   # {"class_path": "arm_tokenizer.quantizers.fsq.FSQQuantizer",
                           #  "init_args": {"levels": [8, 5, 5], ...}}
    q2 = instantiate(cfg)  # same architecture (weights travel separately, in safetensors)

Arguments that point at *external weights* (a hub download, a local checkpoint file) are
declared by a component in ``weight_source_args`` (name -> neutral value). A self-contained
export (``get_config(portable=True)``, used by ``VisualTokenizer.save_pretrained``) replaces
them with the neutral value, because the weights themselves are in ``model.safetensors``;
the original values are kept under ``"weight_sources"`` for provenance.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import pathlib
from typing import Any, ClassVar

from arm_tokenizer.framework.deprecation import current_path

__all__ = ["Configurable", "ConfigError", "ComponentImportError", "instantiate", "import_class",
           "iter_component_configs", "to_config_value"]

_ARGS_ATTR = "_arm_init_args"


class ConfigError(ValueError):
    """A config problem, with where it is: a component config that cannot be written or
    rebuilt, or a YAML file that does not check. ``str()`` is the one-line message users see
    (``file:line: key: message``, each part only when known)."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


class ComponentImportError(ConfigError, ImportError):
    """A config's ``class_path`` names a module that is not installed (``module`` is the
    missing top-level module)."""

    def __init__(self, message: str, class_path: str = "", module: str = "") -> None:
        super().__init__(message)
        self.class_path = class_path
        self.module = module


class Configurable:
    """Mixin recording each instance's constructor arguments (see the module docstring).

    Class attribute ``weight_source_args``: constructor args that load external weights,
    mapped to the value that disables the load (e.g. ``{"checkpoint_path": None,
    "pretrained": False}``); a portable config uses the neutral values.
    """

    weight_source_args: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_arm_records_args", False):
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kw: Any) -> None:
            # Only the outermost __init__ (the most derived one actually called) records:
            # super().__init__(...) calls from subclasses pass derived values, not user args.
            outer = _ARGS_ATTR not in self.__dict__
            if outer:
                object.__setattr__(self, _ARGS_ATTR, None)  # mark "recording in progress"
            init(self, *args, **kw)
            if outer:
                object.__setattr__(self, _ARGS_ATTR, _bind(sig, cls, self, args, kw))

        __init__._arm_records_args = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]

    # ------------------------------------------------------------------ public API
    @property
    def init_args(self) -> dict[str, Any]:
        """The constructor arguments this instance was built with (defaults applied)."""
        args = self.__dict__.get(_ARGS_ATTR)
        if args is None:
            raise ConfigError(
                f"{type(self).__name__} has no recorded init args (constructed without calling "
                "its __init__, or still inside it)"
            )
        return dict(args)

    @classmethod
    def class_path(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def get_config(self, portable: bool = False) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` with nested components converted recursively.

        Args:
            portable: replace ``weight_source_args`` by their neutral values (the weights
                are expected to travel in a state dict); originals go to ``weight_sources``.
        """
        init_args: dict[str, Any] = {}
        sources: dict[str, Any] = {}
        for name, value in self.init_args.items():
            if portable and name in self.weight_source_args:
                neutral = self.weight_source_args[name]
                if value != neutral:
                    sources[name] = to_config_value(value, f"{type(self).__name__}.{name}", portable)
                value = neutral
            init_args[name] = to_config_value(value, f"{type(self).__name__}.{name}", portable)
        cfg: dict[str, Any] = {"class_path": self.class_path(), "init_args": init_args}
        if sources:
            cfg["weight_sources"] = sources
        return cfg


def _bind(sig: inspect.Signature, cls: type, obj: Any, args: tuple, kw: dict) -> dict[str, Any]:
    bound = sig.bind(obj, *args, **kw)
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        if i == 0:  # self
            continue
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                # Cannot be written as keyword init_args; record so get_config can say why.
                out[f"*{name}"] = value
        else:
            out[name] = value
    return out


def to_config_value(value: Any, where: str = "value", portable: bool = False) -> Any:
    """A JSON-able form of one init arg; nested :class:`Configurable` become sub-configs."""
    if isinstance(value, Configurable):
        return value.get_config(portable=portable)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_config_value(v, f"{where}[{i}]", portable) for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{where}: dict keys must be strings to be saved, got {bad!r}")
        return {k: to_config_value(v, f"{where}.{k}", portable) for k, v in value.items()}
    if where.split(".")[-1].startswith("*"):
        raise ConfigError(f"{where}: positional *args cannot be saved in a config")
    try:  # deferred: torch only to save a dtype; the registry and config checks stay torch-free
        import torch

        if isinstance(value, torch.dtype):
            return str(value).removeprefix("torch.")
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    raise ConfigError(
        f"{where}: cannot save a {type(value).__name__} in a component config; init args must be "
        "JSON values (numbers, strings, lists, dicts) or Configurable components"
    )


def import_class(class_path: str) -> type:
    """Import ``pkg.module.Class`` (nested qualnames such as ``mod.Outer.Inner`` work; a module
    that moved is found under its new name, see :data:`~arm_tokenizer.framework.deprecation.MOVED_MODULES`)."""
    if not isinstance(class_path, str) or "." not in class_path:
        raise ConfigError(f"class_path must be a dotted 'module.Class' string, got {class_path!r}")
    parts = current_path(class_path).split(".")  # a path stored before a module moved still loads
    missing: ModuleNotFoundError | None = None
    for split in range(len(parts) - 1, 0, -1):
        module_name, attrs = ".".join(parts[:split]), parts[split:]
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                missing = missing or e
                continue  # try a shorter module path
            raise
        try:
            for attr in attrs:
                obj = getattr(obj, attr)
        except AttributeError:
            raise ConfigError(f"{class_path}: module {module_name!r} has no attribute {'.'.join(attrs)!r}") from None
        return obj
    top, name = parts[0], (missing.name if missing is not None and missing.name else parts[0])
    if name == top:
        why = f"module {top!r} is not installed; install the package that provides it"
    else:  # the package is there, one of its modules is not (another version of it?)
        why = f"module {name!r} does not exist in the installed {top!r} (another version of it?)"
    raise ComponentImportError(f"cannot import class {class_path!r}: {why} ({missing})",
                               class_path=class_path, module=name)


def iter_component_configs(config: Any, where: str = "model"):
    """``(where, class_path)`` of every component config in a tree, outermost first, e.g.
    ``("model.init_args.quantizer", "arm_tokenizer.quantizers.fsq.FSQQuantizer")``."""
    if _is_component_config(config):
        yield where, config["class_path"]
        for k, v in (config.get("init_args") or {}).items():
            yield from iter_component_configs(v, f"{where}.init_args.{k}")
    elif isinstance(config, list):
        for i, v in enumerate(config):
            yield from iter_component_configs(v, f"{where}[{i}]")
    elif isinstance(config, dict):
        for k, v in config.items():
            yield from iter_component_configs(v, f"{where}.{k}")


def _is_component_config(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value and set(value) <= {
        "class_path", "init_args", "weight_sources"}


def instantiate(config: dict[str, Any]) -> Any:
    """Build an object from ``{"class_path", "init_args"}``, nested configs first."""
    if not _is_component_config(config):
        raise ConfigError(f"expected a {{'class_path', 'init_args'}} dict, got {config!r:.200}")
    cls = import_class(config["class_path"])
    kwargs = {k: _build(v) for k, v in (config.get("init_args") or {}).items()}
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{config['class_path']}: init_args do not match its constructor: {e}") from None
    return cls(**kwargs)


def _build(value: Any) -> Any:
    if _is_component_config(value):
        return instantiate(value)
    if isinstance(value, list):
        return [_build(v) for v in value]
    if isinstance(value, dict):
        return {k: _build(v) for k, v in value.items()}
    return value

"""The ARM component registry: one mechanism for every kind of component, in every package.

A *kind* (encoder, quantizer, reward, ...) is an entry-point group ``arm.<plural>``; the
entry-point *name* is the component's registry name and its *value* the class
(``module:Class``). The built-ins of arm-tokenizer, arm-data, arm-core and arm-rl register
through their own ``pyproject.toml`` exactly like a third-party plugin does, so there is
no second path::

    [project.entry-points."arm.quantizers"]
    my_vq = "my_plugin.quantizer:MyVQ"

The API follows timm's ``list_models`` / ``create_model``::

    from arm_tokenizer.framework import registry
    registry.list_components("quantizer")        # [Component(kind, name, target, dist), ...]
    cls = registry.get("quantizer", "fsq")        # the class
    q = registry.create("quantizer", "fsq", levels=[8, 8, 8])

Discovery is lazy (nothing is read at import time) and cached. Reading entry-point metadata
is cheap; a class is imported only when asked for, or by :func:`load_all` (the CLI calls it
once before parsing, so jsonargparse can resolve class names). A plugin that fails to import
is reported once, with its distribution, entry point and the error, and skipped. Two
distributions claiming one name in one kind is an error naming both. Unknown names list
the closest known names.

Environment variables (read at discovery time; :func:`refresh` re-reads them):

``ARM_PLUGINS``
    Which third-party distributions to load. Unset or ``all``: every installed plugin.
    ``none`` (or ``0``, ``off``): only the built-in ARM packages. A comma-separated list of
    distribution names (``ARM_PLUGINS=arm-plugin-template,my-plugin``): the built-ins plus
    those.
``ARM_EXTRA_COMPONENTS``
    Register components ad hoc without packaging them, as
    ``kind:name=module:Class`` entries separated by commas or semicolons, e.g.
    ``ARM_EXTRA_COMPONENTS="quantizer:my_vq=my_module:MyVQ"``. They are reported with the
    distribution ``<env>``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

__all__ = [
    "KINDS",
    "BUILTIN_DISTRIBUTIONS",
    "Kind",
    "Component",
    "RegistryError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "PluginLoadError",
    "list_kinds",
    "list_components",
    "get",
    "create",
    "resolve",
    "find",
    "load_all",
    "load_errors",
    "refresh",
    "SIBLING_COMPONENTS",
    "missing_package_hint",
]

GROUP_PREFIX = "arm."
BUILTIN_DISTRIBUTIONS = frozenset({"arm-tokenizer", "arm-data", "arm-core", "arm-rl"})
ENV_PLUGINS = "ARM_PLUGINS"
ENV_EXTRA = "ARM_EXTRA_COMPONENTS"


@dataclass(frozen=True)
class Kind:
    """A component kind: its short name, its entry-point group and the base class (a
    ``module:Class`` string, imported only when needed, so this table never imports
    upward into packages that may not be installed)."""

    name: str
    group: str
    base: str | None
    description: str


# The kinds the four ARM packages define. A third-party package may add a kind simply by
# declaring a new ``arm.<something>`` group; it is discovered like these.
KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind("encoder", "arm.encoders", "arm_tokenizer.encoders.base:Encoder",
             "image encoders returning patch tokens (B, N, C)"),
        Kind("projection", "arm.projections", "arm_tokenizer.projections:Projection",
             "maps between encoder width and quantizer code width"),
        Kind("quantizer", "arm.quantizers", "arm_tokenizer.quantizers.base:Quantizer",
             "discrete bottlenecks returning a QuantizerOutput"),
        Kind("decoder", "arm.decoders", "arm_tokenizer.decoders.base:Decoder",
             "turn de-quantized tokens back into pixels"),
        Kind("vae", "arm.vaes", "arm_tokenizer.decoders.vae:VAE",
             "autoencoders with encode/decode used by latent decoders"),
        Kind("tokenizer_loss", "arm.tokenizer_losses", "arm_tokenizer.losses.base:TokenizerLoss",
             "weighted loss terms of tokenizer training"),
        Kind("text_encoder", "arm.text_encoders", "arm_tokenizer.teachers.base:TextEncoder",
             "frozen text towers for the sigmoid contrastive loss"),
        Kind("caption_lm", "arm.caption_lms", "arm_tokenizer.teachers.base:CaptionLM",
             "frozen language models that caption from a token prefix"),
        Kind("dataset", "arm.datasets", "torch.utils.data:Dataset", "datasets"),
        Kind("datamodule", "arm.datamodules", "lightning.pytorch:LightningDataModule",
             "Lightning data modules"),
        Kind("model", "arm.models", "lightning.pytorch:LightningModule",
             "trainable Lightning modules (the `model:` of a config)"),
        Kind("lm", "arm.lms", None, "autoregressive language model architectures"),
        Kind("reward", "arm.rewards", "arm_rl.rewards.base:Reward", "RL rewards"),
        Kind("scorer", "arm.scorers", "arm_core.suites.scorers.base:Scorer",
             "benchmark-suite scorers: prompts + generated images -> per-tag tables"),
        Kind("callback", "arm.callbacks", "lightning.pytorch:Callback", "Lightning callbacks"),
        Kind("task", "arm.tasks", "arm_data.tasks.base:Task", "LM tasks: record schema, layout, prompts, guidance"),
    ]
}


# The built-in components of the sibling ARM packages (their pyproject.toml entry points),
# so a name from one that is not installed says what to install; a test keeps it in sync.
SIBLING_COMPONENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "arm-data": {
        "dataset": ("pair_records", "vqa_records", "edit_records", "wds_records", "shapes_images", "shapes_vqa",
                    "shapes_edits"),
        "datamodule": ("image_text", "shapes_world", "tokens"),
        "task": ("t2i", "und", "edit", "text", "interleaved"),
    },
    "arm-core": {"lm": ("gpt",), "model": ("lm_trainer",), "caption_lm": ("arm_lm",),
                 "scorer": ("shapes", "siglip_score", "vlm_judge")},
    "arm-rl": {
        "model": ("grpo",),
        "datamodule": ("shapes_prompts", "file_prompts"),
        "reward": ("shapes_t2i", "shapes_edit", "dual_encoder_alignment", "judge", "composite", "scorer"),
    },
}


def missing_package_hint(name: str, kind: str | None = None) -> str:
    """`` 'shapes_world' is a datamodule of arm-data, which is not installed: pip install arm-data``
    when ``name`` is a built-in of a sibling package that registers nothing here, else ``""``."""
    installed = {_normalize_dist(c.dist) for comps in _REGISTRY.discover().values() for cs in comps.values()
                 for c in cs}
    for dist, kinds in SIBLING_COMPONENTS.items():
        if dist in installed:
            continue
        for k, names in kinds.items():
            if name in names and (kind is None or k == kind):
                return f" {name!r} is a {k} of the {dist} package, which is not installed: pip install {dist}"
    return ""


class RegistryError(LookupError):
    """Base class of registry errors; the message always says what to do."""


class UnknownComponentError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicateComponentError(RegistryError):
    pass


class PluginLoadError(RegistryError, ImportError):
    pass


@dataclass
class Component:
    """One registered component (an entry point); ``load()`` imports and caches the class."""

    kind: str
    name: str
    target: str  # "module:attr"
    dist: str
    version: str = ""
    _obj: Any = field(default=None, repr=False, compare=False)
    _error: str | None = field(default=None, repr=False, compare=False)

    @property
    def class_path(self) -> str:
        """The full dotted path (``module.Class``) jsonargparse understands."""
        return self.target.replace(":", ".")

    @property
    def class_name(self) -> str:
        return self.target.rsplit(":", 1)[-1].rsplit(".", 1)[-1]

    @property
    def builtin(self) -> bool:
        return self.dist in BUILTIN_DISTRIBUTIONS

    def load(self) -> Any:
        if self._obj is not None:
            return self._obj
        if self._error is not None:
            raise PluginLoadError(self._error)
        module_name, _, attr = self.target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except Exception as exc:  # a plugin may fail in any way; report it, never crash
            self._error = (
                f"plugin {self.kind} '{self.name}' from distribution '{self.dist}' "
                f"(entry point {self.name} = {self.target}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            )
            _REGISTRY.errors.append(self._error)
            warnings.warn(self._error + " -- skipped", RuntimeWarning, stacklevel=3)
            raise PluginLoadError(self._error) from exc
        self._obj = obj
        return obj


class _Registry:
    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, list[Component]]] | None = None
        self._kinds: dict[str, Kind] = dict(KINDS)
        self.errors: list[str] = []

    # -- discovery ---------------------------------------------------------------------
    def _allowed(self, dist: str) -> bool:
        if dist in BUILTIN_DISTRIBUTIONS:
            return True
        setting = os.environ.get(ENV_PLUGINS, "all").strip()
        if setting.lower() in ("", "all", "1", "on"):
            return True
        if setting.lower() in ("none", "0", "off"):
            return False
        wanted = {_normalize_dist(s) for s in setting.split(",") if s.strip()}
        return _normalize_dist(dist) in wanted

    def discover(self) -> dict[str, dict[str, list[Component]]]:
        if self._by_kind is not None:
            return self._by_kind
        by_kind: dict[str, dict[str, list[Component]]] = {}
        seen: set[tuple[str, str, str, str]] = set()
        group_to_kind = {k.group: k.name for k in self._kinds.values()}
        dists_seen: set[str] = set()
        for dist in _distributions():
            dist_name = dist.metadata["Name"] or "?"
            # One distribution found twice on sys.path (an editable install's metadata and a
            # stale ``src/*.egg-info`` beside it): the first wins, as for imports and
            # ``importlib.metadata.entry_points()``; the stale one's old targets would clash.
            if dist.metadata["Name"]:
                if _normalize_dist(dist_name) in dists_seen:
                    continue
                dists_seen.add(_normalize_dist(dist_name))
            for ep in dist.entry_points:
                if not ep.group.startswith(GROUP_PREFIX):
                    continue
                kind = group_to_kind.get(ep.group)
                if kind is None:  # a kind defined by a third-party package
                    kind = ep.group[len(GROUP_PREFIX):].rstrip("s") or ep.group
                    self._kinds[kind] = Kind(kind, ep.group, None, f"plugin-defined ({ep.group})")
                    group_to_kind[ep.group] = kind
                key = (kind, ep.name, ep.value, _normalize_dist(dist_name))
                if key in seen:  # the same distribution visible twice on sys.path
                    continue
                seen.add(key)
                if not self._allowed(dist_name):
                    continue
                comp = Component(kind, ep.name, ep.value, dist_name, dist.version or "")
                by_kind.setdefault(kind, {}).setdefault(ep.name, []).append(comp)
        for comp in _parse_extra(os.environ.get(ENV_EXTRA, ""), self._kinds):
            by_kind.setdefault(comp.kind, {}).setdefault(comp.name, []).append(comp)
        self._by_kind = by_kind
        return by_kind

    def refresh(self) -> None:
        self._by_kind = None
        self._kinds = dict(KINDS)
        self.errors = []


def _distributions() -> Iterable[metadata.Distribution]:
    """Installed distributions (a seam so tests can fake entry points without installing)."""
    return metadata.distributions()


def _normalize_dist(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _parse_extra(spec: str, kinds: dict[str, Kind]) -> list[Component]:
    out = []
    for item in spec.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            kind_name, target = item.split("=", 1)
            kind, name = kind_name.split(":", 1)
        except ValueError:
            raise RegistryError(
                f"{ENV_EXTRA}: cannot parse {item!r}; expected 'kind:name=module:Class'"
            ) from None
        kind = _canonical_kind(kind.strip(), kinds)
        out.append(Component(kind, name.strip(), target.strip(), "<env>"))
    return out


_REGISTRY = _Registry()


def _canonical_kind(kind: str, kinds: dict[str, Kind] | None = None) -> str:
    kinds = kinds if kinds is not None else _REGISTRY._kinds
    if kind in kinds:
        return kind
    for k in kinds.values():  # accept the group or a plural: "arm.quantizers", "quantizers"
        if kind in (k.group, k.group[len(GROUP_PREFIX):]):
            return k.name
    close = difflib.get_close_matches(kind, list(kinds), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownComponentError(
        f"unknown component kind {kind!r}.{hint} Known kinds: {', '.join(sorted(kinds))}"
    )


# -- public API ----------------------------------------------------------------------------
def list_kinds() -> list[Kind]:
    """Every kind: the built-in table plus kinds that installed plugins define."""
    _REGISTRY.discover()
    return sorted(_REGISTRY._kinds.values(), key=lambda k: k.name)


def list_components(kind: str | None = None, pattern: str | None = None) -> list[Component]:
    """Registered components, sorted by kind then name; ``pattern`` is an fnmatch filter
    on the name (``"*vq*"``). Listing does not import anything."""
    by_kind = _REGISTRY.discover()
    kinds = [_canonical_kind(kind)] if kind else sorted(by_kind)
    out = []
    for k in kinds:
        for name in sorted(by_kind.get(k, {})):
            if pattern and not fnmatch.fnmatch(name, pattern):
                continue
            out.extend(by_kind[k][name])
    return out


def find(kind: str, name: str) -> Component:
    """The :class:`Component` registered as ``name`` in ``kind`` (no import)."""
    kind = _canonical_kind(kind)
    entries = _REGISTRY.discover().get(kind, {}).get(name)
    if not entries:
        known = sorted(_REGISTRY.discover().get(kind, {}))
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
        hint = missing_package_hint(name, kind) or (f" Did you mean: {', '.join(close)}?" if close else "")
        raise UnknownComponentError(
            f"no {kind} named {name!r} is registered.{hint} "
            f"Registered {kind}s: {', '.join(known) or '(none)'}. "
            f"Run `arm-tokenizer list {kind}` to see them with their distributions."
        )
    if len({c.dist for c in entries}) > 1 or len(entries) > 1:
        claims = "; ".join(f"'{c.dist}' ({c.target})" for c in entries)
        raise DuplicateComponentError(
            f"the {kind} name {name!r} is claimed by more than one distribution: {claims}. "
            f"Uninstall one of them, or restrict plugins with {ENV_PLUGINS}=<dist,...>."
        )
    return entries[0]


def get(kind: str, name: str) -> Any:
    """The class registered as ``name`` in ``kind``."""
    return find(kind, name).load()


def create(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Instantiate the component ``name`` of ``kind`` with keyword arguments."""
    cls = get(kind, name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        try:
            params = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        except (TypeError, ValueError):
            params = []
        raise TypeError(
            f"cannot create {kind} {name!r} ({cls.__module__}.{cls.__qualname__}): {exc}. "
            f"It takes: {', '.join(params) or '(no arguments)'}"
        ) from exc


def resolve(name: str, kind: str | None = None) -> Component | None:
    """Find a component by registry name or by class name (``fsq`` or ``FSQQuantizer``),
    optionally within one kind. Returns None when nothing matches; raises
    :class:`DuplicateComponentError` when a name is ambiguous."""
    candidates = list_components(kind) if kind else list_components()
    by_name = [c for c in candidates if c.name == name]
    if not by_name:
        by_name = [c for c in candidates if c.class_name == name or c.class_path == name]
    if not by_name:
        return None
    if len(by_name) > 1 and len({c.class_path for c in by_name}) > 1:
        if len({c.dist for c in by_name}) > 1 or kind is not None:
            claims = "; ".join(f"{c.kind} '{c.name}' from '{c.dist}' ({c.target})" for c in by_name)
            raise DuplicateComponentError(f"{name!r} is ambiguous: {claims}")
    return find(by_name[0].kind, by_name[0].name)


def close_matches(name: str, kind: str | None = None, n: int = 5) -> list[str]:
    names = {c.name for c in list_components(kind)} | {c.class_name for c in list_components(kind)}
    return difflib.get_close_matches(name, sorted(names), n=n, cutoff=0.5)


def load_all(kind: str | None = None) -> list[Component]:
    """Import every registered class (of one kind, or all); failures are reported once and
    skipped. Returns the components that loaded."""
    ok = []
    for comp in list_components(kind):
        try:
            comp.load()
        except PluginLoadError:
            continue
        ok.append(comp)
    return ok


def load_errors() -> list[str]:
    """The plugin import failures seen so far, one message each."""
    return list(_REGISTRY.errors)


def refresh() -> None:
    """Forget the cache (after installing or removing a plugin, or changing the env vars)."""
    _REGISTRY.refresh()


def _iter_bases(kind: str) -> Iterable[type]:
    spec = _REGISTRY._kinds[_canonical_kind(kind)].base
    if spec:
        module, _, attr = spec.partition(":")
        try:
            yield getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            return


def base_class(kind: str) -> type | None:
    """The base class of a kind, or None where its package is not installed."""
    return next(iter(_iter_bases(kind)), None)

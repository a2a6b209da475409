"""Self-contained tokenizer checkpoints: ``model.safetensors`` + ``config.json``, no YAML needed.

Layout of a directory written by ``VisualTokenizer.save_pretrained(dir)``::

    dir/model.safetensors   every weight and persistent buffer (frozen encoder included)
    dir/config.json         {"format": "arm-tokenizer", "format_version": 1,
                             "model": {"class_path": ..., "init_args": {...}},   # recursive
                             "versions": {"arm-tokenizer": ..., "torch": ...},
                             "tokens_per_image", "codebook_size", "num_codebooks",
                             "image_size", "grid",
                             "components": [{"path", "class_path", "kind", "name",   # where each
                                             "distribution", "version"}, ...]}      # class came from

``config["model"]`` is the component tree recorded by :mod:`arm_tokenizer.framework.configurable`,
written *portable*: arguments that would load external weights (a timm ``pretrained``
download, an encoder ``checkpoint_path``) are reset, because those weights are in
``model.safetensors``; the original values stay under ``weight_sources`` for provenance.
So a directory can be copied to a machine without the teacher checkpoint or internet.
``config["components"]`` records each component's registry kind/name and the distribution
that provided it, so loading on a machine without a plugin says what to ``pip install``
(exports without it, from older versions, still load).

Writes are atomic (temp file in the same directory, then ``os.replace``); the config is
written last, so a directory with a config.json always has its weights. Loading is strict:
missing or unexpected keys are listed by name; a config from a newer format version is
refused with both versions named. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, load_file, save
from torch import nn

from arm_tokenizer.framework import registry
from arm_tokenizer.framework.configurable import (
    ComponentImportError,
    ConfigError,
    import_class,
    instantiate,
    iter_component_configs,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "MissingComponentError",
    "component_sources",
    "save_pretrained",
    "load_pretrained",
    "load_weights_into",
    "read_config",
    "state_dict_for_save",
    "state_dict_to_bytes",
    "state_dict_from_bytes",
    "package_versions",
    "atomic_path",
    "atomic_write_bytes",
    "current_umask",
    "new_file_mode",
    "new_dir_mode",
    "make_temp_dir",
]

FORMAT_NAME = "arm-tokenizer"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_PACKAGES = ("arm-tokenizer", "arm-data", "arm-core", "arm-rl", "torch")


class CheckpointError(ValueError):
    """A checkpoint directory (tokenizer or LM) that is missing, incomplete or inconsistent
    and cannot be loaded; the message says why, which keys, and what to change."""


class MissingComponentError(CheckpointError, ImportError):
    """A component class of the checkpoint cannot be imported here (e.g. its plugin is not
    installed); the message names the component, its distribution and what to install."""


def package_versions() -> dict[str, str | None]:
    """Installed versions of the four ARM packages and torch (None = not installed)."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def state_dict_for_save(module: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous, storage-unshared copy of ``module.state_dict()`` for safetensors.

    safetensors refuses tensors sharing memory (tied weights); the second and later names
    of a shared storage get their own copy, and loading writes the same values back.
    """
    seen: set[tuple[int, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for name, t in module.state_dict().items():
        t = t.detach()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) if t.numel() else (id(t), 0)
        t = t.to("cpu").contiguous()
        if key in seen:
            t = t.clone()
        seen.add(key)
        out[name] = t
    return out


def state_dict_to_bytes(module: nn.Module) -> bytes:
    """Serialize a module's state dict with safetensors (no pickle)."""
    return save(state_dict_for_save(module))


def state_dict_from_bytes(data: bytes, module: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_dict_to_bytes` (``module`` is unused; kept for symmetry)."""
    return load(data)


def current_umask() -> int:
    """The process umask, read without leaving it changed.

    Linux reports it in ``/proc/self/status`` (no window where it is altered); elsewhere it
    is read by ``os.umask(0)`` and restored at once (in a ``finally``).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    try:
        return mask
    finally:
        os.umask(mask)


def new_file_mode() -> int:
    """The permissions an ordinary new file gets under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The permissions an ordinary new directory gets under the current umask (``0o777 & ~umask``)."""
    return 0o777 & ~current_umask()


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """``tempfile.mkdtemp`` in ``parent``, with the mode ``mkdir`` would give (not 0700).

    For directories that are renamed into place as an export: ``mkdtemp`` makes them
    private (0700) whatever the umask is."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        os.chmod(tmp, new_dir_mode())
    except BaseException:
        tmp.rmdir()
        raise
    return tmp


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; on a clean exit it replaces ``path`` in one
    ``os.replace``. The one atomic writer of the ARM packages (:func:`atomic_write_bytes` is
    it for bytes already in memory).

    For writers that want a file name rather than bytes (``safetensors.torch.save_file``,
    ``PIL.Image.save``), so a large file is not held twice in memory. The parent directory is
    created if needed. Before the replace the file gets the permissions any new file gets
    under the umask (``0o666 & ~umask``, not ``mkstemp``'s or safetensors' private 0600) and,
    with ``fsync`` (the default), is flushed to disk; ``fsync=False`` is for folders of many
    small files that a crash may lose but never leaves half-written. On any error the temp
    file is removed and the target is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with :func:`atomic_path` (temp file in the same
    directory, umask permissions, fsync unless ``fsync=False``, then ``os.replace``)."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def build_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` content for a tokenizer (see the module docstring)."""
    cfg: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": model.get_config(portable=True),  # type: ignore[operator]
        "versions": package_versions(),
    }
    for attr in ("tokens_per_image", "codebook_size", "num_codebooks"):
        if hasattr(model, attr):
            cfg[attr] = int(getattr(model, attr))
    for attr in ("image_size", "grid"):
        if hasattr(model, attr):
            cfg[attr] = list(getattr(model, attr))
    cfg["components"] = component_sources(cfg["model"])
    return cfg


# ---------------------------------------------------------------------- component provenance
def component_sources(model_config: dict[str, Any], where: str = "model") -> list[dict[str, Any]]:
    """Where each component class of a config comes from, for ``config.json["components"]``.

    One entry per component config in the tree: ``{"path": "model.init_args.quantizer",
    "class_path": ..., "kind": "quantizer", "name": "fsq", "distribution": "arm-tokenizer",
    "version": "0.1.0"}``. ``kind``/``name`` are its registry entry (None for a class that is
    not registered); ``distribution`` is the entry point's distribution, else the one
    that installed the class's top-level module (None for a module on ``sys.path`` that
    no distribution installed). Loading uses it to say what to ``pip install`` when a
    plugin is missing. Never fails: unknown parts are recorded as None.
    """
    comps = _registered_components()
    pkg_dists: dict[str, list[str]] | None = None
    out = []
    for path, class_path in iter_component_configs(model_config, where):
        comp = _registered_as(class_path, comps)
        entry: dict[str, Any] = {"path": path, "class_path": class_path, "kind": None, "name": None,
                                 "distribution": None, "version": None}
        if comp is not None:
            entry.update(kind=comp.kind, name=comp.name)
            if comp.dist != "<env>":
                entry.update(distribution=comp.dist, version=comp.version or None)
            else:
                entry["registered_via"] = "ARM_EXTRA_COMPONENTS"
        if entry["distribution"] is None:  # a registered class of the same top-level package tells
            top = class_path.split(".", 1)[0]
            sibling = next((c for c in comps if c.dist != "<env>" and _top_module(c) == top), None)
            if sibling is not None:
                entry.update(distribution=sibling.dist, version=sibling.version or None)
        if entry["distribution"] is None:
            if pkg_dists is None:
                try:
                    pkg_dists = metadata.packages_distributions()
                except Exception:  # broken metadata of an unrelated package must not stop a save
                    pkg_dists = {}
            dists = pkg_dists.get(class_path.split(".", 1)[0]) or []
            if dists:
                entry["distribution"] = dists[0]
                try:
                    entry["version"] = metadata.version(dists[0])
                except metadata.PackageNotFoundError:
                    pass
        out.append(entry)
    return out


def _registered_components() -> list[Any]:
    try:
        return registry.list_components()
    except registry.RegistryError:  # e.g. a malformed ARM_EXTRA_COMPONENTS: record no registry info
        return []


def _registered_as(class_path: str, comps: list[Any]) -> Any | None:
    """The registry entry of a class: by its class path, else (an entry point naming a
    re-export, ``pkg:Cls`` for ``pkg.module.Cls``) by identity among its package's entries."""
    exact = [c for c in comps if c.class_path == class_path]
    if exact:
        return exact[0]
    # only entries whose module is imported already: recording must not import anything new
    top = class_path.split(".", 1)[0]
    same_pkg = [c for c in comps if _top_module(c) == top and c.target.split(":", 1)[0] in sys.modules]
    if not same_pkg:
        return None
    try:
        cls = import_class(class_path)
    except (ImportError, ConfigError):
        return None
    for c in same_pkg:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if c.load() is cls:
                    return c
        except ImportError:
            continue
    return None


def _top_module(comp: Any) -> str:
    return comp.target.split(":", 1)[0].split(".", 1)[0]


def _check_importable(config: dict[str, Any], config_path: Path) -> None:
    """Raise :class:`MissingComponentError` naming every component class that cannot be
    imported, with its kind, registry name, distribution and what to install."""
    recorded = config.get("components")
    records: dict[str, dict[str, Any]] = {}
    if isinstance(recorded, list):
        for e in recorded:
            if isinstance(e, dict) and isinstance(e.get("path"), str):
                records[e["path"]] = e
    problems = []
    for where, class_path in iter_component_configs(config["model"]):
        try:
            import_class(class_path)
        except (ImportError, ConfigError) as e:
            rec = records.get(where)
            if rec is None or rec.get("class_path") != class_path:
                rec = next((r for r in records.values() if r.get("class_path") == class_path), None)
            problems.append(_missing_component_message(where, class_path, rec, e, recorded is not None))
    if problems:
        raise MissingComponentError(
            f"{config_path}: cannot rebuild the model: "
            + ("; ".join(problems) if len(problems) == 1 else " ".join(f"({i + 1}) {p}" for i, p in enumerate(problems)))
        )


def _missing_component_message(where: str, class_path: str, rec: dict[str, Any] | None, err: Exception,
                               has_records: bool) -> str:
    cause = f"No module named {err.module!r}" if isinstance(err, ComponentImportError) else f"{type(err).__name__}: {err}"
    module = class_path.split(".", 1)[0]
    if rec is None:
        what = f"the component at {where} (class {class_path})"
        if has_records:
            how = (f"this export has no record of where it came from; install the package that "
                   f"provides the module {module!r} (`pip install <that package>`)")
        else:
            how = (f"this export does not record which distribution provides it (it was written "
                   f"by an arm-tokenizer that did not record component sources); install the "
                   f"package that provides the module {module!r} (`pip install <that package>`)")
        return f"{what} cannot be imported ({cause}); {how}{_same_name_hint(class_path)}"
    kind, name, dist, version = rec.get("kind"), rec.get("name"), rec.get("distribution"), rec.get("version")
    if kind and name:
        what = f"the {kind} {name!r} at {where} (class {class_path}"
    else:
        what = f"the component at {where} (class {class_path}"
    what += (f", from distribution {dist!r} {version or ''}".rstrip() + ")") if dist else ")"
    if dist:
        how = f"install it with `pip install {dist}`" + (
            f" (the export was written with {dist} {version})" if version else "")
    elif rec.get("registered_via") == "ARM_EXTRA_COMPONENTS":
        how = (f"it was registered ad hoc through ARM_EXTRA_COMPONENTS, not installed from a "
               f"distribution: make the module {module!r} importable (e.g. on PYTHONPATH)")
    else:
        how = (f"it came from a module that no installed distribution provided (a local file?): "
               f"make the module {module!r} importable (e.g. on PYTHONPATH) or install its package")
    return f"{what} cannot be imported here ({cause}); {how}{_same_name_hint(class_path)}"


def _same_name_hint(class_path: str) -> str:
    name = class_path.rsplit(".", 1)[-1]
    same = [c for c in _registered_components() if c.class_name == name and c.class_path != class_path]
    if not same:
        return ""
    c = same[0]
    return f". An installed {c.kind} {c.name!r} has that class name ({c.target}, from {c.dist!r}): was it moved?"


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = build_config(model)  # fails early (before writing) on an unsaveable init arg
    metadata_ = {"format": "pt", "arm_format": FORMAT_NAME, "arm_format_version": str(FORMAT_VERSION)}
    atomic_write_bytes(directory / WEIGHTS_NAME, save(state_dict_for_save(model), metadata=metadata_))
    atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``config.json`` (format name and version)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a tokenizer checkpoint: {CONFIG_NAME} is missing (expected "
            f"{CONFIG_NAME} + {WEIGHTS_NAME}, as written by save_pretrained)"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None
    fmt, version = config.get("format"), config.get("format_version")
    if fmt != FORMAT_NAME:
        raise CheckpointError(f"{path}: format {fmt!r} is not {FORMAT_NAME!r}")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        saved_by = (config.get("versions") or {}).get("arm-tokenizer")
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} (written by arm-tokenizer {saved_by}) is not "
            f"supported by this arm-tokenizer (reads format versions 1..{FORMAT_VERSION}); upgrade arm-tokenizer"
        )
    if "model" not in config:
        raise CheckpointError(f"{path}: no 'model' entry (the component config)")
    return config


def load_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu",
                    strict: bool = True) -> nn.Module:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` into it (eval mode)."""
    config = read_config(directory)
    _check_importable(config, Path(directory) / CONFIG_NAME)
    model = instantiate(config["model"])
    load_weights_into(model, directory, map_location=map_location, strict=strict)
    return model.to(map_location).eval()


def load_weights_into(model: nn.Module, directory: str | os.PathLike,
                      map_location: str | torch.device = "cpu", strict: bool = True,
                      parts: list[str] | None = None) -> nn.Module:
    """Load a checkpoint's ``model.safetensors`` into an already-built ``model``.

    The model must have the checkpoint's structure (e.g. built from the same YAML); a mismatch
    is a :class:`CheckpointError` listing the differing keys or shapes. ``parts`` (top-level
    submodule names, e.g. ``["encoder", "proj_in"]``) loads only those and leaves the rest
    as built.
    """
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory}: {WEIGHTS_NAME} is missing (not a save_pretrained directory?)")
    state = load_file(str(weights), device=str(map_location))
    if parts is not None:
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{weights}: weights do not fit the model ({type(model).__name__}): {e}") from None
    if parts is not None:  # the other parts stay as built
        missing = [k for k in missing if k.split(".", 1)[0] in parts]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{weights} does not match the model ({type(model).__name__}): "
            f"missing keys {list(missing)[:30]}{' ...' if len(missing) > 30 else ''}; "
            f"unexpected keys {list(unexpected)[:30]}{' ...' if len(unexpected) > 30 else ''}"
        )
    return model

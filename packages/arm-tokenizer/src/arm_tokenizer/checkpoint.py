"""Self-contained tokenizer checkpoints: ``model.safetensors`` + ``config.json``, no YAML needed.

Layout of a directory written by ``VisualTokenizer.save_pretrained(dir)``::

    dir/model.safetensors   every weight and persistent buffer (frozen encoder included)
    dir/config.json         {"format": "arm-tokenizer", "format_version": 1,
                             "model": {"class_path": ..., "init_args": {...}},   # recursive
                             "versions": {"arm-tokenizer": ..., "torch": ...},
                             "tokens_per_image", "codebook_size", "num_codebooks",
                             "image_size", "grid"}

``config["model"]`` is the component tree recorded by :mod:`arm_tokenizer.configurable`,
written *portable*: arguments that would load external weights (a timm ``pretrained``
download, an encoder ``checkpoint_path``) are reset, because those weights are in
``model.safetensors``; the original values stay under ``weight_sources`` for provenance.
So a directory can be copied to a machine without the teacher checkpoint or internet.

Writes are atomic (temp file in the same directory, then ``os.replace``); the config is
written last, so a directory with a config.json always has its weights. Loading is strict:
missing or unexpected keys are listed by name; a config from a newer format version is
refused with both versions named. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arm_tokenizer.configurable import instantiate

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "save_pretrained",
    "load_pretrained",
    "load_weights_into",
    "read_config",
    "state_dict_for_save",
    "state_dict_to_bytes",
    "state_dict_from_bytes",
    "package_versions",
    "atomic_write_bytes",
]

FORMAT_NAME = "arm-tokenizer"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_PACKAGES = ("arm-tokenizer", "arm-data", "arm-core", "arm-rl", "torch")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded (the message says why and which keys)."""


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
    from safetensors.torch import save

    return save(state_dict_for_save(module))


def state_dict_from_bytes(data: bytes, module: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_dict_to_bytes` (``module`` is unused; kept for symmetry)."""
    from safetensors.torch import load

    return load(data)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, then
    ``os.replace`` (the parent directory is created if needed). The one atomic writer of
    the ARM packages."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    return cfg


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``directory`` (created if needed)."""
    from safetensors.torch import save

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
    from safetensors.torch import load_file

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

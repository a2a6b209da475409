"""Loading SigLIP, SigLIP2 and CLIP towers from transformers-format checkpoints.

Shared by ``hf_vision`` (:mod:`arm_tokenizer.encoders.hf_vision`) and ``hf_text``
(:mod:`arm_tokenizer.teachers.hf_text`). A checkpoint is a local directory or a hub id
holding ``config.json`` and weights, either a whole dual encoder (``model_type`` ``siglip``,
``siglip2``, ``clip``) or one tower (``siglip_vision_model``, ``clip_text_model``, ...).
The tower class is chosen by ``model_type`` (a literal table, never by name substrings).

Failing early and in one line is the point of this module:

- ``transformers`` is an optional extra: without it, one line says ``pip install
  'arm-tokenizer[hf]'``;
- a directory of another architecture names the supported families;
- a hub id that is neither cached nor reachable (no network, or ``HF_HUB_OFFLINE=1``) names
  what is missing and how to pass a local path, within seconds: the local cache is tried
  first with ``local_files_only=True``, and the hub only when a TCP probe says it answers
  (:mod:`arm_tokenizer.framework.hub`), so huggingface_hub never sits in its retry loop.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open

from arm_tokenizer.framework.hub import (
    HubUnavailableError,
    hub_unreachable_reason,
    looks_like_path,
    missing_checkpoint_error,
)

__all__ = ["Tower", "FAMILIES", "DTYPES", "import_transformers", "resolve_tower", "load_tower", "parse_dtype",
           "read_preprocessor_config", "read_checkpoint_tensors", "HubUnavailableError"]

T = TypeVar("T")


@dataclass(frozen=True)
class Family:
    """One supported family: its display name, the transformers classes of each tower and
    the image mean/std its image processor uses by default."""

    label: str
    full: str  # model_type of the dual encoder
    vision_class: str
    text_class: str
    config_class: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: The vision tower class that also holds the image-embedding head (``hf_vision(keep_head=True)``).
    vision_head_class: str = ""

    def model_class(self, side: str, with_head: bool = False) -> str:
        if side == "text":
            return self.text_class
        return self.vision_head_class if with_head and self.vision_head_class else self.vision_class


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Families by the ``model_type`` of their dual encoder.
FAMILIES: dict[str, Family] = {
    "siglip": Family("SigLIP", "siglip", "SiglipVisionModel", "SiglipTextModel", "SiglipConfig",
                     (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "siglip2": Family("SigLIP2", "siglip2", "Siglip2VisionModel", "Siglip2TextModel", "Siglip2Config",
                      (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # CLIP's text side with its projection: the embedding space the image side is trained into.
    # (SigLIP's attention-pooling head lives in the vision tower itself.)
    "clip": Family("CLIP", "clip", "CLIPVisionModel", "CLIPTextModelWithProjection", "CLIPConfig",
                   _CLIP_MEAN, _CLIP_STD, vision_head_class="CLIPVisionModelWithProjection"),
}

#: ``model_type`` -> (family, which tower the checkpoint holds: "both", "vision" or "text").
_MODEL_TYPES: dict[str, tuple[str, str]] = {
    "siglip": ("siglip", "both"), "siglip_vision_model": ("siglip", "vision"), "siglip_text_model": ("siglip", "text"),
    "siglip2": ("siglip2", "both"), "siglip2_vision_model": ("siglip2", "vision"),
    "siglip2_text_model": ("siglip2", "text"),
    "clip": ("clip", "both"), "clip_vision_model": ("clip", "vision"), "clip_text_model": ("clip", "text"),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def supported_families() -> str:
    return "; ".join(f"{f.label} (model_type {', '.join(t for t, (fam, _) in _MODEL_TYPES.items() if fam == k)})"
                     for k, f in FAMILIES.items())


def import_transformers(component: str) -> Any:
    """``transformers``, or one line saying how to install it."""
    try:  # deferred: transformers is the optional [hf] extra
        import transformers
    except ImportError:
        raise ImportError(
            f"{component} needs the Hugging Face transformers package, which is not installed; "
            "pip install 'arm-tokenizer[hf]'"
        ) from None
    return transformers


def parse_dtype(dtype: str, component: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"{component}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading one tower from a dual checkpoint makes transformers print a load report of
    the other tower's keys as "unexpected" (and a progress bar); we check keys ourselves."""
    # deferred: transformers is the optional [hf] extra
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _is_local(name_or_path: str) -> bool:
    return os.path.isdir(os.path.expanduser(name_or_path))


def fetch(name_or_path: str, component: str, load: Callable[[bool], T], what: str = "config.json and weights") -> T:
    """Run ``load(local_files_only)``: from disk or the hub cache first, from the hub only
    when it answers; otherwise raise :class:`HubUnavailableError` in one line."""
    if _is_local(name_or_path):
        return load(True)
    if looks_like_path(name_or_path):
        raise FileNotFoundError(f"{component}: name_or_path {name_or_path!r} is not a directory (pass a local "
                                "checkpoint directory holding config.json, or a hub id such as "
                                "google/siglip2-so400m-patch16-512)")
    try:
        return load(True)
    except OSError:
        pass
    reason = hub_unreachable_reason()
    if reason is not None:
        raise missing_checkpoint_error(component, name_or_path, reason, what)
    return load(False)


@dataclass
class Tower:
    """What :func:`resolve_tower` found: the family, the checkpoint kind, and the config of
    the requested tower (a transformers ``PretrainedConfig``)."""

    family: str
    holds: str
    config: Any
    local_files_only: bool
    with_head: bool = False  # load the vision tower class holding the image-embedding head

    @property
    def spec(self) -> Family:
        return FAMILIES[self.family]


def resolve_tower(name_or_path: str, side: str, component: str, with_head: bool = False) -> Tower:
    """Read ``config.json`` and pick the ``side`` ("vision" or "text") tower's config;
    ``with_head``: the vision tower class with the image-embedding head (CLIP's visual projection)."""
    tf = import_transformers(component)
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"{component}: name_or_path must be a checkpoint directory or hub id, got {name_or_path!r}")
    if _is_local(name_or_path) and not (Path(name_or_path).expanduser() / "config.json").is_file():
        raise FileNotFoundError(f"{component}: {name_or_path} has no config.json; it is not a transformers-format "
                                f"checkpoint directory. Supported families: {supported_families()}")
    used_local: list[bool] = []

    def load(local: bool) -> dict[str, Any]:
        d, _ = tf.PretrainedConfig.get_config_dict(os.path.expanduser(name_or_path), local_files_only=local)
        used_local.append(local)
        return d

    cfg = fetch(name_or_path, component, load, "config.json")
    model_type = cfg.get("model_type")
    if model_type not in _MODEL_TYPES:
        raise ValueError(f"{component}: {name_or_path} is a {model_type or 'unknown'!r} checkpoint, which is not "
                         f"supported; supported families: {supported_families()}")
    family, holds = _MODEL_TYPES[model_type]
    if holds not in ("both", side):
        other = "hf_vision" if side == "text" else "hf_text"
        raise ValueError(f"{component}: {name_or_path} holds only the {holds} tower of {FAMILIES[family].label} "
                         f"({model_type!r}); it needs the {side} tower or the whole dual encoder (use {other} for this one)")
    spec = FAMILIES[family]
    model_cls = getattr(tf, spec.model_class(side, with_head))
    config_cls = model_cls.config_class
    if holds == "both":
        full = getattr(tf, spec.config_class).from_dict(dict(cfg))
        sub = getattr(full, f"{side}_config").to_dict()
        if family == "clip":
            sub["projection_dim"] = full.projection_dim  # it lives on the dual config only
        sub.pop("model_type", None)
        config = config_cls.from_dict(sub)
    else:
        config = config_cls.from_dict(dict(cfg))
    return Tower(family, holds, config, local_files_only=used_local[-1], with_head=with_head)


def load_tower(name_or_path: str, tower: Tower, side: str, component: str, dtype: torch.dtype) -> Any:
    """The ``side`` tower with the checkpoint's weights, checked strictly: every weight of
    the tower must be in the checkpoint (the other tower's weights are ignored)."""
    tf = import_transformers(component)
    spec = tower.spec
    model_cls = getattr(tf, spec.model_class(side, tower.with_head))

    def load(local: bool) -> Any:
        with _quiet_transformers():
            return model_cls.from_pretrained(os.path.expanduser(name_or_path), config=tower.config, dtype=dtype,
                                             local_files_only=local, output_loading_info=True)

    try:
        model, info = fetch(name_or_path, component, load, "weights")
    except RuntimeError as exc:  # shape mismatches: transformers refers to a report it printed
        raise ValueError(f"{component}: the weights in {name_or_path} do not fit the {spec.label} {side} tower "
                         f"its config.json describes ({str(exc).splitlines()[0]})") from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    if missing or mismatched:
        keys = (missing + mismatched)[:8]
        raise ValueError(f"{component}: {name_or_path} lacks weights of the {spec.label} {side} tower: "
                         f"{', '.join(keys)}{' ...' if len(missing) + len(mismatched) > 8 else ''}")
    return model


def build_tower_from_config(hf_config: dict[str, Any], side: str, component: str, dtype: torch.dtype,
                            with_head: bool = False) -> Any:
    """A randomly initialised tower from a saved tower config (weights come separately)."""
    tf = import_transformers(component)
    model_type = hf_config.get("model_type")
    if model_type not in _MODEL_TYPES or _MODEL_TYPES[model_type][1] != side:
        raise ValueError(f"{component}: hf_config has model_type {model_type!r}, not a {side} tower of the "
                         f"supported families ({supported_families()})")
    spec = FAMILIES[_MODEL_TYPES[model_type][0]]
    model_cls = getattr(tf, spec.model_class(side, with_head))
    cfg = dict(hf_config)
    cfg.pop("model_type")
    return model_cls(model_cls.config_class.from_dict(cfg)).to(dtype)


def _cached(name_or_path: str, filename: str, local_files_only: bool) -> str | None:
    if _is_local(name_or_path):
        path = Path(name_or_path).expanduser() / filename
        return str(path) if path.is_file() else None
    # deferred: transformers is the optional [hf] extra
    from transformers.utils import cached_file

    try:
        return cached_file(name_or_path, filename, local_files_only=local_files_only,
                           _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except OSError:
        return None


def read_preprocessor_config(name_or_path: str, local_files_only: bool) -> dict[str, Any]:
    """``preprocessor_config.json`` of the checkpoint, or ``{}`` when it has none."""
    path = _cached(name_or_path, "preprocessor_config.json", local_files_only)
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


def read_checkpoint_tensors(name_or_path: str, names: list[str], local_files_only: bool) -> dict[str, torch.Tensor]:
    """The named tensors of a safetensors checkpoint (single file or sharded); absent names
    are left out."""
    files: dict[str, list[str]] = {}
    single = _cached(name_or_path, "model.safetensors", local_files_only)
    if single:
        files[single] = names
    else:
        index = _cached(name_or_path, "model.safetensors.index.json", local_files_only)
        if not index:
            return {}
        with open(index) as f:
            weight_map = json.load(f).get("weight_map", {})
        for name in names:
            if name in weight_map:
                shard = _cached(name_or_path, weight_map[name], local_files_only)
                if shard:
                    files.setdefault(shard, []).append(name)
    out: dict[str, torch.Tensor] = {}
    for path, wanted in files.items():
        with safe_open(path, framework="pt") as f:
            keys = set(f.keys())
            out.update({n: f.get_tensor(n) for n in wanted if n in keys})
    return out

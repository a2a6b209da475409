"""Before a training command imports Lightning: are the transformers checkpoints it names here?

Importing Lightning and transformers takes several seconds, and only then does a component
find that its weights are neither on disk nor reachable. :func:`check_checkpoints` reads the
``--config`` YAML files as plain YAML (no Lightning, no transformers, no torch) and, for every
``hf_vision`` / ``hf_text`` / ``hf_causal_lm`` component in them, checks that its
``name_or_path`` is a local directory, is in the Hugging Face cache, or that the hub answers.
It raises the same one-line :class:`~arm_tokenizer.framework.hub.HubUnavailableError` the component
itself would, in about a second instead.

It only speeds up the failure: when a flag may change a checkpoint location (a
``--model...`` flag naming ``name_or_path`` or replacing a component), it checks nothing and
leaves the decision to the components, which check again when they are built.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from arm_tokenizer.framework.hub import (
    HubUnavailableError,
    hub_unreachable_reason,
    looks_like_path,
    missing_checkpoint_error,
)

__all__ = ["HF_COMPONENTS", "checkpoint_locations", "check_checkpoints", "in_hf_cache"]

# registry short names and the classes they stand for
HF_COMPONENTS = {
    "hf_vision": "HFVisionEncoder",
    "hf_text": "HFTextEncoder",
    "hf_causal_lm": "HFCausalLM",
}
# flags after which the YAML no longer says where the weights are
_OVERRIDING = ("name_or_path", "encoder", "losses", "text_encoder", "caption_lm")


def _component_name(class_path: Any) -> str | None:
    if not isinstance(class_path, str):
        return None
    if class_path in HF_COMPONENTS:
        return class_path
    leaf = class_path.replace(":", ".").rsplit(".", 1)[-1]
    return next((short for short, cls in HF_COMPONENTS.items() if cls == leaf), None)


def _walk(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        name = _component_name(node.get("class_path"))
        args = node.get("init_args")
        if name and isinstance(args, dict) and isinstance(args.get("name_or_path"), str):
            yield name, args["name_or_path"]
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _config_files(argv: Sequence[str]) -> list[str]:
    files = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def checkpoint_locations(argv: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(component, name_or_path, config file)`` for every transformers tower the command's
    ``--config`` files name; empty when a flag may move one (the components then decide)."""
    for arg in argv:
        key = arg.split("=", 1)[0]
        if key.startswith("--model") and (key == "--model" or any(k in key for k in _OVERRIDING)):
            return []
    found = []
    for path in _config_files(argv):
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return []  # the CLI reports unreadable configs with line numbers itself
        found += [(name, where, path) for name, where in _walk(doc)]
    return found


def _hub_cache() -> Path:
    """The hub cache folder, as huggingface_hub resolves it (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def in_hf_cache(repo_id: str) -> bool:
    """Whether some snapshot of model ``repo_id`` in the cache holds a ``config.json``."""
    snapshots = _hub_cache() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return any(snapshots.glob("*/config.json"))


def check_checkpoints(argv: Sequence[str]) -> None:
    """Raise :class:`HubUnavailableError` (one line) when a transformers checkpoint that the
    command's configs name is not on this machine and the hub cannot be used."""
    for component, where, path in checkpoint_locations(argv):
        local = Path(where).expanduser()
        if local.is_dir() or in_hf_cache(where):
            continue
        if looks_like_path(where):
            continue  # a path that does not exist: the component says so, with the right advice
        reason = hub_unreachable_reason()
        if reason is not None:
            error = missing_checkpoint_error(component, where, reason)
            raise HubUnavailableError(f"{error} (in {path})")

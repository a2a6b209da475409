"""The SigLIP head beside a tokenizer export: what zero-shot classification and retrieval need.

ARM's Table 7 measure (zero-shot ImageNet from the tokenizer) classifies an image from the
*tokenizer's* semantic features (quantized, projected back by ``proj_out``) through the
head that L_sig trained and the frozen text tower it trained against. Those live in the
loss (:class:`~arm_tokenizer.losses.siglip.SigLIPLoss`), not in the
:class:`~arm_tokenizer.tokenizer.VisualTokenizer`, so ``save_pretrained`` alone loses them.
:meth:`arm_tokenizer.lightning_module.TokenizerTrainer.export` therefore also writes, per SigLIP loss::

    DIR/siglip_head.json          {"format": "arm-siglip-head", "format_version": 1,
                                   "loss": {"class_path", "init_args"},   # text_encoder included
                                   "name", "source", "in_dim", "embed_dim",
                                   "text_encoder_sha256"}
    DIR/siglip_head.safetensors   head.*, log_temperature, bias

(``siglip_head.<name>.*`` for a loss not named ``sig``). The text tower is frozen and is
not copied (a SigLIP2 text tower is ~400M parameters): the JSON records how it was built
(a teacher directory, a transformers ``name_or_path``), and ``arm-tokenizer evaluate``
rebuilds it from there or from ``--text-encoder``. ``text_encoder_sha256`` is a digest of
its weights, so an evaluation says whether the tower it found is the one the head was
trained against.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from arm_tokenizer.framework.checkpoint import atomic_write_bytes, state_dict_for_save
from arm_tokenizer.framework.configurable import ConfigError, instantiate
from arm_tokenizer.losses.siglip import SigLIPLoss

__all__ = ["HEAD_FORMAT", "HeadError", "LoadedHead", "find_siglip_heads", "load_siglip_head", "save_siglip_heads",
           "weights_sha256"]

HEAD_FORMAT = "arm-siglip-head"
HEAD_FORMAT_VERSION = 1
_TEXT_PREFIX = "text_encoder."


def _stem(name: str) -> str:
    return "siglip_head" if name == "sig" else f"siglip_head.{name}"


def weights_sha256(module: nn.Module) -> str:
    """A digest of a module's state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _frozen_digest(loss: nn.Module) -> str:
    # The tower is frozen, so its digest is computed once per loss, not at every export
    # (hashing a SigLIP2 text tower takes seconds; ExportTokenizer exports after each validation).
    digest = loss.__dict__.get("_arm_text_encoder_sha256")
    if digest is None:
        digest = weights_sha256(loss.text_encoder)
        loss.__dict__["_arm_text_encoder_sha256"] = digest
    return digest


def save_siglip_heads(losses: nn.ModuleList | list[nn.Module], directory: str | os.PathLike) -> list[Path]:
    """Write the head of every SigLIP loss in ``losses`` beside a tokenizer export.

    Head files of an earlier export into the same directory that this one does not rewrite
    are removed, so a directory never pairs a tokenizer with a stale head. A loss whose text
    encoder cannot be recorded (an init arg that is not JSON) is skipped with a warning: the
    tokenizer export itself must not fail over an evaluation aid. Returns the JSON paths.
    """
    out = Path(directory)
    written: list[Path] = []
    for loss in losses:
        if not isinstance(loss, SigLIPLoss):
            continue
        stem = _stem(loss.name)
        try:
            config = loss.get_config()
        except ConfigError as e:
            warnings.warn(f"not exporting the SigLIP head of loss {loss.name!r}: {e}", stacklevel=2)
            continue
        state = {k: v for k, v in state_dict_for_save(loss).items() if not k.startswith(_TEXT_PREFIX)}
        meta = {
            "format": HEAD_FORMAT,
            "format_version": HEAD_FORMAT_VERSION,
            "loss": config,
            "name": loss.name,
            "source": loss.source,
            "in_dim": loss.in_dim,
            "embed_dim": loss.embed_dim,
            "text_encoder_sha256": _frozen_digest(loss),
        }
        atomic_write_bytes(out / f"{stem}.safetensors", save(state))
        atomic_write_bytes(out / f"{stem}.json", (json.dumps(meta, indent=2) + "\n").encode())
        written.append(out / f"{stem}.json")
    for old in find_siglip_heads(out):
        if old not in written:
            old.unlink(missing_ok=True)
            old.with_suffix(".safetensors").unlink(missing_ok=True)
    return written


def find_siglip_heads(directory: str | os.PathLike) -> list[Path]:
    """The ``siglip_head*.json`` files of an export, sorted."""
    d = Path(directory)
    return sorted(p for p in d.glob("siglip_head*.json") if p.is_file()) if d.is_dir() else []


@dataclass
class LoadedHead:
    """A SigLIP loss rebuilt from an export: ``loss.embed_tokens`` and ``loss.text_encoder``.

    path: the head's JSON file.
    text_encoder_matches: whether the text tower's weights equal the recorded ones (None
        when the export recorded no digest).
    text_encoder: the text encoder config used (``{"class_path", "init_args"}``).
    """

    loss: Any
    path: Path
    text_encoder_matches: bool | None
    text_encoder: dict[str, Any]


class HeadError(ValueError):
    """A head that cannot be loaded (the message names the file and what to do)."""


def load_siglip_head(directory: str | os.PathLike, name: str | None = None,
                     text_encoder: dict[str, Any] | None = None,
                     map_location: str | torch.device = "cpu") -> LoadedHead:
    """Rebuild the SigLIP loss of an export with its trained head, in eval mode.

    Args:
        directory: the tokenizer export.
        name: which head when the export has several (the loss name); None = the only one.
        text_encoder: ``{"class_path", "init_args"}`` replacing the recorded text encoder
            (e.g. the same tower at another path on this machine).
        map_location: device for the head and the text tower.

    Raises:
        FileNotFoundError: the export has no head (or not the one named).
        HeadError: a malformed head file, or a head that does not fit the rebuilt loss.
    """
    heads = find_siglip_heads(directory)
    if name is not None:
        heads = [p for p in heads if p.name == f"{_stem(name)}.json"]
    if not heads:
        which = f" named {name!r}" if name is not None else ""
        raise FileNotFoundError(
            f"{directory} has no SigLIP head{which} (siglip_head*.json): the tokenizer was exported "
            "without an L_sig loss (siglip_loss), or by TokenizerTrainer.export of an older arm-tokenizer")
    if len(heads) > 1:
        names = [json.loads(p.read_text()).get("name") for p in heads]
        raise HeadError(f"{directory} has {len(heads)} SigLIP heads {names}; choose one by its loss name")
    path = heads[0]
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HeadError(f"{path}: invalid JSON ({e})") from None
    if meta.get("format") != HEAD_FORMAT or not isinstance(meta.get("format_version"), int) \
            or meta["format_version"] > HEAD_FORMAT_VERSION:
        raise HeadError(f"{path}: format {meta.get('format')!r} v{meta.get('format_version')} is not "
                        f"{HEAD_FORMAT!r} v<={HEAD_FORMAT_VERSION} (written by a newer arm-tokenizer?)")
    config = json.loads(json.dumps(meta["loss"]))  # a deep copy
    if text_encoder is not None:
        config["init_args"]["text_encoder"] = text_encoder
    loss = instantiate(config)
    if not hasattr(loss, "embed_tokens") or not hasattr(loss, "text_encoder"):
        raise HeadError(f"{path}: {config['class_path']} is not a SigLIP loss (no embed_tokens/text_encoder)")
    state = load_file(str(path.with_suffix(".safetensors")))
    try:
        missing, unexpected = loss.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise HeadError(f"{path.with_suffix('.safetensors')}: the head does not fit the rebuilt loss: {e}") from None
    missing = [k for k in missing if not k.startswith(_TEXT_PREFIX)]
    if missing or unexpected:
        raise HeadError(f"{path.with_suffix('.safetensors')}: missing keys {missing}; unexpected keys {list(unexpected)}")
    recorded = meta.get("text_encoder_sha256")
    matches = None if recorded is None else weights_sha256(loss.text_encoder) == recorded
    loss = loss.to(map_location).eval().requires_grad_(False)
    return LoadedHead(loss=loss, path=path, text_encoder_matches=matches,
                      text_encoder=config["init_args"]["text_encoder"])

"""The teacher directory format: what :func:`save_teacher` writes and
:func:`read_teacher_config` checks (the layout is in :mod:`arm_tokenizer.teachers.frozen`).

Apart from the frozen teachers that load it, so that ``TeacherTrainer`` (which writes it)
does not import :mod:`~arm_tokenizer.teachers.frozen`, whose ``example_args`` build a toy
teacher with that trainer. Every file is written atomically; ``teacher.json`` last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from arm_tokenizer import __version__
from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from arm_tokenizer.teachers.modules import CaptionDecoder, TextTower

__all__ = ["TEACHER_FORMAT", "TEACHER_FORMAT_VERSION", "TEACHER_FILES", "save_teacher", "read_teacher_config"]

TEACHER_FORMAT = "arm-teacher"
TEACHER_FORMAT_VERSION = 1
TEACHER_FILES = (
    "image_tower.safetensors", "image_tower.json", "text_tower.safetensors",
    "siglip_head.safetensors", "caption_lm.safetensors", "spm.model", "teacher.json",
)


def _save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write_bytes(path, save(state))


def _save_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _save_bytes(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def save_teacher(
    directory: str | os.PathLike,
    *,
    image_tower: nn.Module,
    image_tower_config: dict[str, Any],
    text_tower: TextTower,
    text_config: dict[str, Any],
    image_head: nn.Module,
    log_temperature: torch.Tensor,
    bias: torch.Tensor,
    caption_decoder: CaptionDecoder,
    caption_config: dict[str, Any],
    prefix_adapter: nn.Module,
    spm_proto: bytes,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a teacher directory (see the module docstring); returns its path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _save_tensors(out / "image_tower.safetensors", image_tower.state_dict())
    _save_json(out / "image_tower.json", image_tower_config)
    _save_tensors(out / "text_tower.safetensors", text_tower.state_dict())
    head = {f"image_head.{k}": v for k, v in image_head.state_dict().items()}
    head["log_temperature"] = log_temperature.detach().reshape(1)
    head["bias"] = bias.detach().reshape(1)
    _save_tensors(out / "siglip_head.safetensors", head)
    cap = {f"decoder.{k}": v for k, v in caption_decoder.state_dict().items()}
    cap.update({f"prefix_adapter.{k}": v for k, v in prefix_adapter.state_dict().items()})
    _save_tensors(out / "caption_lm.safetensors", cap)
    _save_bytes(out / "spm.model", spm_proto)
    _save_json(out / "teacher.json", {
        "format": TEACHER_FORMAT,
        "format_version": TEACHER_FORMAT_VERSION,
        "arm_tokenizer_version": __version__,
        "torch_version": torch.__version__,
        "image_tower": image_tower_config,
        "text_tower": text_config,
        "caption_lm": caption_config,
        "embed_dim": int(text_tower.embed_dim),
        "metrics": dict(metrics or {}),
    })
    return out


def read_teacher_config(directory: str | os.PathLike) -> dict[str, Any]:
    """``teacher.json`` of a teacher directory, checked for format and missing files."""
    d = Path(directory)
    if d.is_file() and d.name == "teacher.json":
        d = d.parent
    if not d.is_dir():
        raise FileNotFoundError(f"teacher checkpoint {str(d)!r} is not a directory (expected a teacher "
                                f"directory written by TeacherTrainer with {', '.join(TEACHER_FILES)})")
    missing = [f for f in TEACHER_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"teacher directory {str(d)!r} lacks {', '.join(missing)}")
    cfg = json.loads((d / "teacher.json").read_text())
    if cfg.get("format") != TEACHER_FORMAT or int(cfg.get("format_version", -1)) > TEACHER_FORMAT_VERSION:
        raise ValueError(
            f"{d / 'teacher.json'}: format {cfg.get('format')!r} v{cfg.get('format_version')} is not "
            f"{TEACHER_FORMAT!r} v<={TEACHER_FORMAT_VERSION} (written by a newer arm-tokenizer?)"
        )
    cfg["_dir"] = str(d)
    return cfg

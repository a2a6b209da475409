"""A toy image–caption world and a tiny teacher, for tests and examples without arm-data.

arm-tokenizer's tests must pass with only arm-tokenizer installed, and plugin authors need
a ``teacher_text`` / ``teacher_caption_lm`` checkpoint to exercise the semantic losses. So
this module draws one colored disc or square on a light background (pure torch, a pure
function of ``(seed, index)``) with a caption, and :func:`build_toy_teacher` trains the
smallest useful :class:`~arm_tokenizer.teachers.lightning_module.TeacherTrainer` on it for a few
steps and exports it. ShapesWorld (arm-data) is the real data for the demo teacher.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from arm_tokenizer.images import tensor_to_pil
from arm_tokenizer.teachers.lightning_module import TeacherTrainer

__all__ = ["TOY_COLORS", "TOY_SHAPES", "toy_batch", "write_toy_folder", "TINY_TOWER_KWARGS", "build_toy_teacher",
           "toy_teacher_dir"]

TOY_COLORS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.7, 0.2), "blue": (0.1, 0.2, 0.9), "yellow": (0.95, 0.85, 0.1)}
TOY_SHAPES = ("circle", "square")
TINY_TOWER_KWARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2,
                     "class_token": False, "global_pool": ""}


def toy_batch(n: int, size: int = 32, seed: int = 0, start: int = 0) -> dict:
    """``{"images": (n, 3, size, size) in [-1, 1], "captions", "colors", "shapes"}``."""
    images, captions, colors, shapes = [], [], [], []
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    names = sorted(TOY_COLORS)
    for i in range(start, start + n):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        color = names[int(torch.randint(len(names), (1,), generator=g))]
        shape = TOY_SHAPES[int(torch.randint(len(TOY_SHAPES), (1,), generator=g))]
        r = size * (0.18 + 0.1 * float(torch.rand(1, generator=g)))
        cx, cy = (size * (0.3 + 0.4 * torch.rand(2, generator=g))).tolist()
        if shape == "circle":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        else:
            mask = ((xx - cx).abs() <= r) & ((yy - cy).abs() <= r)
        img = torch.full((3, size, size), 0.92)
        img[:, mask] = torch.tensor(TOY_COLORS[color])[:, None]
        images.append(img * 2 - 1)
        side = "left" if cx < size / 2 else "right"
        captions.append(f"a {color} {shape} on the {side}")
        colors.append(color)
        shapes.append(shape)
    return {"images": torch.stack(images), "captions": captions, "colors": colors, "shapes": shapes}


def write_toy_folder(root: str | os.PathLike, n: int, size: int = 32) -> Path:
    """The first ``n`` toy images as ``root/<i>.png`` with caption sidecars ``<i>.txt`` (the
    ``image_folder`` datamodule's input); returns ``root``."""
    root = Path(root)
    batch = toy_batch(n, size=size)
    for i, (img, cap) in enumerate(zip(batch["images"], batch["captions"], strict=True)):
        tensor_to_pil(img).save(root / f"{i}.png")
        (root / f"{i}.txt").write_text(cap)
    return root


def build_toy_teacher(directory: str | os.PathLike, steps: int = 3, seed: int = 0, batch_size: int = 16) -> Path:
    """Train a tiny teacher on the toy world for ``steps`` AdamW steps and export it."""
    torch.manual_seed(seed)
    model = TeacherTrainer(
        output_dir=str(directory), image_tower_kwargs=dict(TINY_TOWER_KWARGS), embed_dim=32,
        vocab_size=64, text_dim=32, text_depth=1, text_heads=2, max_text_len=16,
        caption_dim=32, caption_depth=1, caption_heads=2,
    )
    model.fit_spm(toy_batch(64, seed=seed)["captions"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(steps):
        batch = toy_batch(batch_size, seed=seed, start=step * batch_size)
        loss = model.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return Path(model.export(directory, metrics={"toy_steps": float(steps)}))


_TOY_DIR: str | None = None


def toy_teacher_dir() -> str:
    """A tiny toy teacher in a temporary directory, built once per process.

    What ``example_args()`` of the teacher-backed components use, so the contract tests
    (:mod:`arm_tokenizer.testing`) can construct them without a trained ShapesWorld teacher.
    """
    global _TOY_DIR
    if _TOY_DIR is None or not (Path(_TOY_DIR) / "teacher.json").is_file():
        _TOY_DIR = str(build_toy_teacher(Path(tempfile.mkdtemp(prefix="arm-toy-teacher-")) / "teacher", steps=1))
    return _TOY_DIR

"""Tokenizer-training callbacks and the image-grid helpers they share with the module.

- :func:`make_grid` / :func:`log_image_grid`: an ``(rows x cols)`` grid of ``[-1, 1]``
  images, sent to every logger that can show images (TensorBoard ``add_image``) **and**
  written as a PNG under the run's log directory, so CSV-only users see them too.
- :class:`ExportTokenizer` (``export_tokenizer``): after validation (every ``every_n_val``
  runs) and at the end of fit, write ``save_pretrained(dirpath)`` of the training module's
  tokenizer (EMA weights when the module keeps them).
- :class:`ReconstructionGrid` (``reconstruction_grid``): after each validation, decode a
  fixed set of validation images (the same ones every time, so progress is comparable)
  and log originals over reconstructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from arm_tokenizer.framework.checkpoint import atomic_path
from arm_tokenizer.images import pil_to_tensor

__all__ = ["make_grid", "log_image_grid", "image_dir", "ExportTokenizer", "ReconstructionGrid"]


def make_grid(images: torch.Tensor | Sequence[Image.Image], ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """``(B, 3, H, W)`` images in [-1, 1] (or PIL images of one size) -> one ``uint8
    (rows*H', cols*W', 3)`` array (``Image.fromarray`` makes it a picture).

    Args:
        images: the images, filled row by row.
        ncol: images per row (default: ``ceil(sqrt(B))``).
        pad: white border in pixels between images.
    """
    if not isinstance(images, torch.Tensor):
        images = torch.stack([pil_to_tensor(im.convert("RGB")) for im in images])
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"make_grid expects (B, 3, H, W) images, got {tuple(images.shape)}")
    b, _, h, w = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(b)))
    nrow = int(np.ceil(b / ncol))
    u8 = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    u8 = u8.permute(0, 2, 3, 1).numpy()
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(b):
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = u8[i]
    return grid


def image_dir(trainer: Trainer) -> Path:
    """``<log dir>/images``: the first logger's directory, else the trainer's root dir."""
    base = None
    for logger in trainer.loggers:
        base = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if base:
            break
    return Path(base or trainer.default_root_dir) / "images"


@rank_zero_only
def log_image_grid(trainer: Trainer, tag: str, grid: np.ndarray, step: int) -> Path | None:
    """Send ``grid`` (``uint8 HWC``) to image-capable loggers and save it as a PNG.

    Returns the PNG path (``None`` under ``fast_dev_run``, which must write nothing)."""
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_image"):  # TensorBoard
            experiment.add_image(tag, grid, step, dataformats="HWC")
    if trainer.fast_dev_run:
        return None
    out = image_dir(trainer)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{tag.replace('/', '_')}_step{step:07d}.png"
    with atomic_path(path, fsync=False) as tmp:  # a preview: losing it in a crash is harmless
        Image.fromarray(grid).save(tmp, format="PNG")
    return path


def _export(pl_module: LightningModule, dirpath: str) -> None:
    export = getattr(pl_module, "export", None)
    if export is None:
        raise TypeError(f"ExportTokenizer needs a module with export(dirpath) (e.g. TokenizerTrainer), "
                        f"got {type(pl_module).__name__}")
    export(dirpath)


class ExportTokenizer(Callback):
    """Export the tokenizer with ``save_pretrained`` after validation and at fit end.

    Args:
        dirpath: output directory (overwritten on each export; files are written atomically).
        every_n_val: export after every n-th validation run (0: only at the end of fit).
    """

    def __init__(self, dirpath: str = "tokenizer_export", every_n_val: int = 1) -> None:
        super().__init__()
        if every_n_val < 0:
            raise ValueError(f"ExportTokenizer.every_n_val must be >= 0, got {every_n_val}")
        self.dirpath = dirpath
        self.every_n_val = every_n_val
        self._val_runs = 0

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or not self.every_n_val:
            return
        self._val_runs += 1
        if self._val_runs % self.every_n_val == 0 and trainer.is_global_zero:
            _export(pl_module, self.dirpath)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and not trainer.fast_dev_run:
            _export(pl_module, self.dirpath)


class ReconstructionGrid(Callback):
    """Log originals (top rows) over reconstructions of fixed validation images.

    Args:
        num_images: how many images of the first validation batch to show.
        decode_steps: sampler steps for generative (DiT) decoders.
    """

    def __init__(self, num_images: int = 8, decode_steps: int = 10) -> None:
        super().__init__()
        self.num_images = num_images
        self.decode_steps = decode_steps
        self._images: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._images is None and batch_idx == 0 and dataloader_idx == 0:
            images = batch["images"] if isinstance(batch, dict) else batch
            self._images = images[: self.num_images].detach().cpu()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._images is None or trainer.sanity_checking:
            return
        reconstruct = getattr(pl_module, "reconstruct", None)
        if reconstruct is None:
            raise TypeError(f"ReconstructionGrid needs a module with reconstruct(images), got "
                            f"{type(pl_module).__name__}")
        images = self._images.to(pl_module.device)
        recon = reconstruct(images, steps=self.decode_steps)
        grid = make_grid(torch.cat([images, recon]), ncol=images.shape[0])
        log_image_grid(trainer, "val/fixed_reconstructions", grid, trainer.global_step)

"""A minimal image-folder datamodule, so arm-tokenizer alone can train on your own images.

``ImageFolderDataModule`` (registry name ``image_folder``) walks a directory tree for
images (``.png .jpg .jpeg .webp .bmp .gif .tif .tiff``), loads each with
:func:`arm_tokenizer.images.load_image` (EXIF orientation, any mode -> RGB,
decompression-bomb guard), resizes and crops to ``image_size`` with
:class:`arm_tokenizer.images.ImageTransform`, and yields the batches
:class:`arm_tokenizer.module.TokenizerTrainer` takes: ``{"images": (B, 3, H, W) in [-1, 1],
"captions": list[str]}``. A caption is read from a sidecar text file with the same stem
(``cat.jpg`` + ``cat.txt``). The richer ShapesWorld / WebDataset data lives in arm-data.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from arm_tokenizer.images import DEFAULT_MAX_PIXELS, ImageTransform, load_image

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "ImageFolderDataModule", "find_images"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def find_images(root: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``root`` (recursive), sorted for a reproducible order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    exts = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


class ImageFolderDataset(Dataset):
    """Map-style dataset over image files with optional ``.txt`` caption sidecars.

    Args:
        files: image paths.
        transform: resize/crop policy to the training size.
        with_captions: also return ``captions`` (read from ``<stem>.txt``).
        max_pixels: refuse images whose header declares more pixels (bomb guard).
    """

    def __init__(self, files: list[Path], transform: ImageTransform, with_captions: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.files = list(files)
        self.transform = transform
        self.with_captions = with_captions
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.files[i]
        image = self.transform.to_tensor(load_image(path, max_pixels=self.max_pixels))
        item: dict[str, Any] = {"images": image}
        if self.with_captions:
            item["captions"] = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        return item


class ImageFolderDataModule(LightningDataModule):
    """Images (+ optional captions) from a folder, split into train/val."""

    def __init__(
        self,
        root: str,
        val_root: str | None = None,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.05,
        captions: Literal["auto", "require", "ignore"] = "auto",
        crop: Literal["center", "random"] = "random",
        seed: int = 0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        """
        Args:
            root: directory searched recursively for images.
            val_root: a separate validation directory; None = hold out ``val_fraction`` of ``root``.
            image_size: square training resolution (resize to cover, then crop).
            batch_size: images per batch.
            num_workers: DataLoader worker processes.
            val_fraction: fraction of ``root`` held out for validation when ``val_root`` is None
                (at least one image when > 0).
            captions: ``auto`` = yield captions when every image has a ``.txt`` sidecar;
                ``require`` = error naming images without one; ``ignore`` = never.
            crop: training crop (validation always crops the center).
            seed: seed of the train/val split.
            max_pixels: decompression-bomb guard per image (None = Pillow's default guard only).
        """
        super().__init__()
        if captions not in ("auto", "require", "ignore"):
            raise ValueError(f"ImageFolderDataModule.captions must be 'auto', 'require' or 'ignore', got {captions!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"ImageFolderDataModule.val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size < 1:
            raise ValueError(f"ImageFolderDataModule.batch_size must be >= 1, got {batch_size}")
        self.root = root
        self.val_root = val_root
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.captions = captions
        self.crop = crop
        self.seed = seed
        self.max_pixels = max_pixels
        self.train_set: ImageFolderDataset | None = None
        self.val_set: ImageFolderDataset | None = None

    def _with_captions(self, files: list[Path]) -> bool:
        if self.captions == "ignore":
            return False
        missing = [f for f in files if not f.with_suffix(".txt").is_file()]
        if self.captions == "require" and missing:
            names = ", ".join(str(m) for m in missing[:5])
            raise FileNotFoundError(f"captions='require' but {len(missing)} image(s) have no .txt sidecar, "
                                    f"e.g. {names}")
        return not missing

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        files = find_images(self.root)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root!r}")
        if self.val_root is not None:
            train_files, val_files = files, find_images(self.val_root)
        else:
            order = list(range(len(files)))
            random.Random(self.seed).shuffle(order)
            n_val = max(1, round(self.val_fraction * len(files))) if self.val_fraction > 0 else 0
            if n_val >= len(files):
                raise ValueError(f"{len(files)} image(s) under {self.root!r} cannot be split with "
                                 f"val_fraction={self.val_fraction}; add images or set val_fraction: 0")
            val_files = sorted(files[i] for i in order[:n_val])
            train_files = sorted(files[i] for i in order[n_val:])
        caps = self._with_captions(train_files + val_files)
        self.train_set = ImageFolderDataset(train_files, ImageTransform(self.image_size, crop=self.crop),
                                            caps, self.max_pixels)
        self.val_set = ImageFolderDataset(val_files, ImageTransform(self.image_size, crop="center"),
                                          caps, self.max_pixels)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if not self.val_set:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)

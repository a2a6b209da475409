"""``ShapesWorldDataModule``: image + caption batches for tokenizer / teacher training.

Batches are ``{"images": float (B, 3, H, W) in [-1, 1], "captions": list[str],
"specs": list[str (scene JSON)], "indices": list[int]}``. Train, val and test streams
are disjoint by construction (different split hashes); ``test`` is the held-out
composition split. Registered as datamodule ``shapes_world``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from arm_data.shapes.dataset import ShapesImageDataset, collate_shapes
from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.splits import check_split


class ShapesWorldDataModule(pl.LightningDataModule):
    """ShapesWorld image-caption data, generated on the fly (no downloads, no storage).

    Args:
        image_size: side of square images in pixels (32..512).
        width: image width in pixels for non-square images (overrides ``image_size``).
        height: image height in pixels for non-square images (overrides ``image_size``).
        batch_size: images per batch.
        num_workers: data-loader worker processes (0 = load in the main process).
        train_length: images per training epoch (the stream itself is infinite).
        val_length: validation images.
        test_length: test images (drawn from ``test_split``).
        seed: world seed; also seeds the training shuffle, so runs are reproducible.
        train_split: split used for training (``train``).
        val_split: split used for validation (``val``).
        test_split: split used for testing (``heldout``: unseen color-shape pairs).
        shuffle: shuffle the training indices every epoch.
        pin_memory: pin host memory for faster GPU transfer.
        difficulty: the world's content: ``full`` (default), ``demo``, or a mapping of
            :class:`~arm_data.shapes.difficulty.Difficulty` fields (shapes, colors,
            sizes, backgrounds, train_counts, heldout_counts, heldout_pairs).
    """

    def __init__(self, image_size: int = 64, width: int | None = None, height: int | None = None,
                 batch_size: int = 32, num_workers: int = 0, train_length: int = 20_000,
                 val_length: int = 512, test_length: int = 512, seed: int = 0,
                 train_split: str = "train", val_split: str = "val", test_split: str = "heldout",
                 shuffle: bool = True, pin_memory: bool = False,
                 difficulty: str | dict[str, Any] = "full") -> None:
        super().__init__()
        self.difficulty = get_difficulty(difficulty)  # checked now, not in a worker
        self.width = int(width if width is not None else image_size)
        self.height = int(height if height is not None else image_size)
        for name, v in (("width", self.width), ("height", self.height)):
            if not 8 <= v <= 2048:
                raise ValueError(f"ShapesWorldDataModule {name} must be in [8, 2048], got {v}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        for name, v in (("train_length", train_length), ("val_length", val_length),
                        ("test_length", test_length)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.splits = {"train": check_split(train_split), "val": check_split(val_split),
                       "test": check_split(test_split)}
        self.lengths = {"train": train_length, "val": val_length, "test": test_length}
        self.batch_size, self.num_workers = batch_size, num_workers
        self.seed, self.shuffle, self.pin_memory = seed, shuffle, pin_memory
        self.save_hyperparameters()
        self._datasets: dict[str, ShapesImageDataset] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images."""
        return (3, self.height, self.width)

    def dataset(self, stage: str) -> ShapesImageDataset:
        """The dataset of ``stage`` (``train``, ``val`` or ``test``)."""
        if stage not in self.splits:
            raise ValueError(f"unknown stage {stage!r}; choose train, val or test")
        if stage not in self._datasets:
            self._datasets[stage] = ShapesImageDataset(
                split=self.splits[stage], seed=self.seed, width=self.width, height=self.height,
                length=self.lengths[stage], difficulty=self.difficulty)
        return self._datasets[stage]

    def setup(self, stage: str | None = None) -> None:
        for s in ("train", "val", "test"):
            self.dataset(s)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.dataset(stage), batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=collate_shapes,
                          pin_memory=self.pin_memory, generator=gen,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

"""``ImageTextDataModule``: real image–caption data for tokenizer training, in any of the three formats.

Registered as datamodule ``image_text``. It yields the same batches as
``ShapesWorldDataModule`` — ``{"images": float (B, 3, H, W) in [-1, 1], "captions":
list[str], "keys": list[str]}`` — so the tokenizer trainer takes either::

    data:
      class_path: image_text
      init_args:
        train_path: /data/cc3m-wds          # folder, JSONL manifest or tar shards
        val_path: /data/cc3m-val.jsonl
        image_size: [256, 384]              # an int for square, or [height, width]
        resize: center_crop                 # or pad, resize (see below)
        train_crop: random

``image_size`` is the one statement of the output size; it is stored as the model stores
its own (:func:`arm_tokenizer.images.canonical_size`: an int when square, else
``(height, width)``), so Lightning's merge of model and data hyper-parameters for the
loggers agrees. ``resize`` says how an image of another aspect ratio meets it:
``center_crop`` (resize to cover, then crop where ``train_crop`` / ``val_crop`` say),
``pad`` (resize to fit inside, pad with ``pad_color``) or ``resize`` (stretch).

Folder and JSONL data are map-style datasets (Lightning's sampler shuffles them and
splits them across ranks); their DataLoader workers persist across epochs, and
``cache: memory`` decodes and resizes every image once (uint8, under ``cache_max_bytes``)
before the first epoch. WebDataset shards stream and split themselves across workers and
ranks by shard (see :mod:`arm_data.datasets.wds`). For shards the DataLoader advances
the shard-shuffle epoch each time it is iterated, which reaches the workers because they
are re-created every epoch (``persistent_workers`` stays off for shards only).

``buckets`` (folder / JSONL only) trains at several sizes: each sample goes to the
``[height, width]`` bucket nearest its aspect ratio (read from the image header at setup)
and every batch holds one bucket (:mod:`arm_tokenizer.buckets`); give the model the same
list (``TokenizerTrainer.buckets``). Single-process only: the bucket batch sampler does not
split batches across ranks, so under DDP (a Trainer of several processes) setup refuses
buckets with one line rather than train every rank on the same batches. Streamed shards
cannot be bucketed (their sizes are unknown until read): setup says so.

Source images smaller than ``min_side`` (default: the model's ``min_image_side``, one
encoder patch for ``TokenizerTrainer``) are bad samples with reason ``image_too_small``
naming the file: skipped and counted, or raised with ``on_error: raise``.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
import torch
from arm_tokenizer.buckets import BucketBatchSampler, check_buckets, refuse_distributed
from arm_tokenizer.data import min_side_for
from arm_tokenizer.framework.hparams import set_hparams
from arm_tokenizer.image_cache import CACHE_MODES, DEFAULT_CACHE_BYTES
from arm_tokenizer.images import (
    DEFAULT_MAX_PIXELS,
    RESIZE_POLICIES,
    ResizePolicy,
    canonical_size,
    check_size,
)
from torch.utils.data import DataLoader, Dataset, Subset

from arm_data.datasets.common import detect_format
from arm_data.datasets.tasks import PairDataset, WdsDataset

__all__ = ["ImageTextDataModule", "collate_image_text"]

Crop = Literal["center", "random", "none"]


def collate_image_text(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pair items -> ``{"images": (B, 3, H, W), "captions": [...], "keys": [...]}``."""
    return {
        "images": torch.stack([it["image"] for it in items]),
        "captions": [it["text"] for it in items],
        "keys": [it["key"] for it in items],
    }


class _EpochLoader(DataLoader):
    """A DataLoader that tells its (streamed) dataset the epoch each time it is iterated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0

    def __iter__(self):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self._epoch)
        self._epoch += 1
        return super().__iter__()


class ImageTextDataModule(pl.LightningDataModule):
    """Image–caption pairs from a folder with sidecars, a JSONL manifest or WebDataset shards."""

    def __init__(
        self,
        train_path: str,
        val_path: str | None = None,
        format: Literal["auto", "folder", "jsonl", "wds"] = "auto",
        image_size: int | tuple[int, int] = 256,
        width: int | None = None,
        height: int | None = None,
        resize: ResizePolicy = "center_crop",
        train_crop: Crop = "random",
        val_crop: Crop = "center",
        pad_color: tuple[int, int, int] = (0, 0, 0),
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        drop_last: bool = True,
        on_error: Literal["raise", "skip"] = "skip",
        max_skip_fraction: float = 0.1,
        min_samples: int = 100,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        cache: Literal["none", "memory"] = "none",
        cache_max_bytes: int = DEFAULT_CACHE_BYTES,
        min_side: int | None = None,
        buckets: list[tuple[int, int]] | None = None,
    ) -> None:
        """
        Args:
            train_path: training data: a folder (``<key>.png`` + ``<key>.txt``), a JSONL
                manifest (or its folder), or tar shards (folder of ``*.tar``, glob or
                brace pattern).
            val_path: validation data in any format; ``None`` for none (or see ``val_fraction``).
            format: ``"folder"``, ``"jsonl"``, ``"wds"``, or ``"auto"`` to detect it from each path.
            image_size: output size: an int (square) or ``[height, width]``; must match the
                model's ``image_size``.
            width: (older spelling) output width, overriding ``image_size``'s.
            height: (older spelling) output height, overriding ``image_size``'s.
            resize: how an image of another aspect ratio meets the size: ``center_crop``
                (resize to cover, aspect kept, then crop where ``train_crop``/``val_crop``
                say), ``pad`` (resize to fit inside, aspect kept, pad with ``pad_color``) or
                ``resize`` (stretch; aspect not kept, nothing cut off).
            train_crop: where ``center_crop`` cuts training images: ``"random"`` or
                ``"center"`` (``"none"`` = stretch, as ``resize: resize``).
            val_crop: the same for validation.
            pad_color: RGB padding colour for ``resize: pad``.
            batch_size: training batch size.
            val_batch_size: validation batch size (default: ``batch_size``).
            num_workers: DataLoader worker processes.
            val_fraction: without ``val_path``, hold out this fraction of a folder/JSONL
                training set for validation (a fixed split from ``seed``).
            shuffle: shuffle training data (samples for folder/JSONL; shard order and a
                ``shuffle_buffer`` for shards).
            shuffle_buffer: in-memory sample shuffle buffer for shards (0 = off).
            seed: seed of the validation split and of the shard shuffle.
            drop_last: drop the last incomplete training batch.
            on_error: ``"skip"`` bad samples with a counted, rate-limited warning, or ``"raise"``.
            max_skip_fraction: fail once more than this fraction of samples was bad.
            min_samples: samples seen before ``max_skip_fraction`` is checked.
            max_pixels: decompression-bomb limit (width * height) for every image.
            cache: ``memory`` = decode and resize every folder/JSONL image once, before
                the first epoch, keeping uint8 pixels in RAM (random crops still vary);
                ``none`` = decode every time. Shards stream and are never cached.
            cache_max_bytes: the cache's cap; setup fails with the size needed when the
                images do not fit.
            min_side: source images whose shorter side is below this many pixels are bad
                samples (``image_too_small``, naming the file); None = the attached model's
                ``min_image_side`` (TokenizerTrainer: its encoder's patch size), or any size
                outside a Trainer.
            buckets: aspect-ratio buckets ``[[height, width], ...]`` (folder / JSONL only):
                each image goes to the bucket nearest its aspect ratio and a batch holds one
                bucket; the model needs the same list. None = every image at ``image_size``.
                Single-process training only (refused under DDP; see the module docstring).
        """
        super().__init__()
        if format not in ("auto", "folder", "jsonl", "wds"):
            raise ValueError(f"format must be one of 'auto', 'folder', 'jsonl', 'wds'; got {format!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be within [0, 1); got {val_fraction}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_POLICIES)}; got {resize!r}")
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}; got {cache!r}")
        self.train_path, self.val_path, self.format = train_path, val_path, format
        self.min_side = min_side
        self.buckets = check_buckets(buckets, "ImageTextDataModule.buckets") if buckets is not None else None
        h, w = check_size(image_size, "ImageTextDataModule.image_size")
        self.height = int(height if height is not None else h)
        self.width = int(width if width is not None else w)
        if min(self.width, self.height) < 1:
            raise ValueError(f"image size must be positive; got width={self.width}, height={self.height}")
        self.size = (self.height, self.width)
        # One statement of the size in the hyper-parameters (read from these locals by
        # save_hyperparameters), spelled as the model spells it.
        image_size, width, height = canonical_size(self.size), None, None
        self.image_size = image_size
        self.resize, self.pad_color = resize, tuple(pad_color)
        self.cache, self.cache_max_bytes = cache, cache_max_bytes
        self.train_crop, self.val_crop = train_crop, val_crop
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.shuffle, self.shuffle_buffer, self.seed = shuffle, shuffle_buffer, seed
        self.drop_last = drop_last
        self.error_kw: dict[str, Any] = dict(on_error=on_error, max_skip_fraction=max_skip_fraction,
                                             min_samples=min_samples, max_pixels=max_pixels)
        self.save_hyperparameters()
        # LightningCLI saves the YAML's; buckets spelled as TokenizerTrainer spells them
        set_hparams(self, image_size=image_size, width=None, height=None, buckets=self.buckets)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images."""
        return (3, self.height, self.width)

    def _format_of(self, path: str) -> str:
        return detect_format(path) if self.format == "auto" else self.format

    def _build(self, path: str, crop: Crop, train: bool) -> Dataset:
        fmt = self._format_of(path)
        min_side = min_side_for(self, self.min_side)
        if fmt == "wds":
            if self.buckets is not None:
                raise ValueError(f"ImageTextDataModule.buckets needs folder or JSONL data; {path!r} holds tar shards, "
                                 "which stream (their image sizes are unknown until read): drop buckets, or convert "
                                 "the shards to a JSONL manifest")
            if self.cache != "none":
                raise ValueError(f"ImageTextDataModule.cache={self.cache!r} needs folder or JSONL data; "
                                 f"{path!r} holds tar shards, which stream (set cache: none)")
            return WdsDataset(path, task="pair", size=self.size, crop=crop, shuffle_shards=train and self.shuffle,
                              shuffle_buffer=self.shuffle_buffer if train and self.shuffle else 0, seed=self.seed,
                              resize=self.resize, pad_color=self.pad_color, min_side=min_side, **self.error_kw)
        return PairDataset(path, format=fmt, size=self.size, crop=crop, resize=self.resize,  # type: ignore[arg-type]
                           pad_color=self.pad_color, cache=self.cache, cache_max_bytes=self.cache_max_bytes,
                           min_side=min_side, buckets=self.buckets, **self.error_kw)

    def setup(self, stage: str | None = None) -> None:
        """Index the datasets (folder listing / manifest parse; shards are only listed)."""
        if self.train_set is not None:
            return
        if self.buckets is not None:
            refuse_distributed(self, "ImageTextDataModule.buckets")
        train = self._build(self.train_path, self.train_crop, train=True)
        if self.val_path is not None:
            self.val_set = self._build(self.val_path, self.val_crop, train=False)
        elif self.val_fraction > 0:
            if isinstance(train, WdsDataset):
                raise ValueError("val_fraction needs a folder or JSONL training set; give tar shards a val_path")
            n = len(train)
            n_val = max(1, int(round(n * self.val_fraction)))
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
            val = self._build(self.train_path, self.val_crop, train=False)
            self.val_set = Subset(val, sorted(perm[:n_val]))
            train = Subset(train, sorted(perm[n_val:]))
        self.train_set = train
        for ds in (self.train_set, self.val_set):
            self._fill_cache(ds)

    def _fill_cache(self, ds: Dataset | None) -> None:
        """Decode a cached dataset now, before DataLoader workers fork (they then share it)."""
        if isinstance(ds, Subset) and isinstance(ds.dataset, PairDataset):
            ds.dataset.fill_cache(self.num_workers, indices=list(ds.indices))
        elif isinstance(ds, PairDataset):
            ds.fill_cache(self.num_workers)

    def _loader(self, ds: Dataset, batch_size: int, train: bool) -> DataLoader:
        streamed = isinstance(ds, WdsDataset)
        if self.buckets is not None and not streamed:
            base, idx = (ds.dataset, list(ds.indices)) if isinstance(ds, Subset) else (ds, range(len(ds)))
            sampler = BucketBatchSampler([base.bucket_of[i] for i in idx], batch_size,  # type: ignore[attr-defined]
                                         shuffle=train and self.shuffle, drop_last=self.drop_last if train else False,
                                         seed=self.seed)
            return DataLoader(ds, batch_sampler=sampler, num_workers=self.num_workers,
                              collate_fn=collate_image_text, persistent_workers=self.num_workers > 0)
        return _EpochLoader(
            ds,
            batch_size=batch_size,
            shuffle=(train and self.shuffle) if not streamed else None,
            num_workers=self.num_workers,
            collate_fn=collate_image_text,
            drop_last=self.drop_last if train else False,
            # map-style workers live across epochs (no re-spawn, no re-import); streamed
            # shards need fresh workers to see the next epoch's shard order
            persistent_workers=self.num_workers > 0 and not streamed,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches ``{"images", "captions", "keys"}``."""
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in a fixed order (an empty list when there is no validation data)."""
        if self.train_set is None:
            self.setup("validate")
        if self.val_set is None:
            return []
        return self._loader(self.val_set, self.val_batch_size, train=False)

    def __repr__(self) -> str:
        return (f"ImageTextDataModule(train_path={self.train_path!r}, val_path={self.val_path!r}, "
                f"format={self.format!r}, size={self.size})")

"""A minimal image-folder datamodule, so arm-tokenizer alone can train on your own images.

``ImageFolderDataModule`` (registry name ``image_folder``) walks a directory tree for
images (``.png .jpg .jpeg .webp .bmp .gif .tif .tiff``), loads each with
:func:`arm_tokenizer.images.load_image` (EXIF orientation, any mode -> RGB,
decompression-bomb guard), brings it to ``image_size`` (an int or ``[height, width]``)
by the ``resize`` policy (``center_crop``, ``pad`` or ``resize``; see
:func:`arm_tokenizer.images.transform_for`), optionally keeps the decoded result in memory
(``cache: memory``, :mod:`arm_tokenizer.image_cache`), and yields the batches
:class:`arm_tokenizer.lightning_module.TokenizerTrainer` takes: ``{"images": (B, 3, H, W) in [-1, 1],
"captions": list[str]}``. A caption is read from a sidecar text file with the same stem
(``cat.jpg`` + ``cat.txt``). The richer ShapesWorld / WebDataset data lives in arm-data.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from arm_tokenizer.buckets import (
    BucketBatchSampler,
    check_buckets,
    image_shape,
    nearest_bucket,
    refuse_distributed,
)
from arm_tokenizer.image_cache import CACHE_MODES, DEFAULT_CACHE_BYTES, ImageCache
from arm_tokenizer.images import (
    DEFAULT_MAX_PIXELS,
    RESIZE_POLICIES,
    ImageLoadError,
    ImageTooSmallError,
    ImageTransform,
    ResizePolicy,
    canonical_size,
    load_image,
    pil_to_u8,
    transform_for,
    u8_to_tensor,
)

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "ImageFolderDataModule", "find_images", "min_side_for"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def min_side_for(datamodule: Any, min_side: int | None) -> int | None:
    """The smallest source-image side a data module accepts: its own ``min_side`` if set, else
    the attached model's ``min_image_side`` (``TokenizerTrainer``: the encoder's patch size,
    since a smaller image holds less than one token of detail), else None (outside a Trainer,
    or a model that states none: any size)."""
    if min_side is not None:
        if isinstance(min_side, bool) or not isinstance(min_side, int) or min_side < 1:
            raise ValueError(f"{type(datamodule).__name__}.min_side must be a positive int or None; got {min_side!r}")
        return min_side
    trainer = getattr(datamodule, "trainer", None)
    model = getattr(trainer, "lightning_module", None) if trainer is not None else None
    side = getattr(model, "min_image_side", None)
    return int(side) if isinstance(side, int) and side > 1 else None


def find_images(root: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``root`` (recursive), sorted for a reproducible order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    exts = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _shape(path: Path) -> tuple[int, int]:
    """(width, height) from the header, for bucketing; a file Pillow cannot open is named."""
    try:
        return image_shape(path)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageLoadError(str(path), "corrupt", f"{type(e).__name__}: {e}") from e


class ImageFolderDataset(Dataset):
    """Map-style dataset over image files with optional ``.txt`` caption sidecars.

    Args:
        files: image paths.
        transform: resize/crop/pad policy to the training size, or one per aspect-ratio
            bucket (then ``bucket_of`` gives each file's).
        with_captions: also return ``captions`` (read from ``<stem>.txt``).
        max_pixels: refuse images whose header declares more pixels (bomb guard).
        cache: keep decoded-and-resized images here (see :mod:`arm_tokenizer.image_cache`);
            None = decode every time.
        bucket_of: each file's index into ``transform`` when that is a list.
    """

    def __init__(self, files: list[Path], transform: ImageTransform | list[ImageTransform],
                 with_captions: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 cache: ImageCache | None = None, bucket_of: list[int] | None = None) -> None:
        self.files = list(files)
        self.transforms = transform if isinstance(transform, list) else [transform]
        if len(self.transforms) > 1 and (bucket_of is None or len(bucket_of) != len(self.files)):
            raise ValueError("ImageFolderDataset: one transform per bucket needs bucket_of for every file")
        self.bucket_of = list(bucket_of) if bucket_of is not None else [0] * len(self.files)
        self.with_captions = with_captions
        self.max_pixels = max_pixels
        self.cache = cache

    @property
    def transform(self) -> ImageTransform:
        """The transform (the first bucket's when there are several)."""
        return self.transforms[0]

    def transform_of(self, i: int) -> ImageTransform:
        """The transform of item ``i`` (its bucket's)."""
        return self.transforms[self.bucket_of[i]]

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, i: int) -> dict[str, Any]:
        """Item ``i`` before its random part: ``uint8`` pixels after the resize (and after the
        crop or pad too when the policy is deterministic) and the caption; what the cache keeps."""
        path, transform = self.files[i], self.transform_of(i)
        try:
            u8 = pil_to_u8(transform.resize(load_image(path, max_pixels=self.max_pixels)))
        except ImageTooSmallError as e:
            raise ImageTooSmallError(f"{path}: {e}") from None
        if transform.deterministic:
            u8 = transform.place(u8)
        item: dict[str, Any] = {"images": u8}
        if self.with_captions:
            item["captions"] = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        return item

    def fill_cache(self, num_workers: int = 0) -> None:
        """Decode every image into ``cache`` now (a no-op without one)."""
        if self.cache is None:
            return
        if all(t.deterministic for t in self.transforms):  # every item's size is known: fail before decoding
            sizes = [3 * self.transforms[b].height * self.transforms[b].width for b in self.bucket_of]
            self.cache.check_estimate(sum(sizes), len(self))
        self.cache.fill(range(len(self)), self.decode, num_workers)

    def __getitem__(self, i: int) -> dict[str, Any]:
        raw = self.cache.get(i) if self.cache is not None else None
        if raw is None:
            raw = self.decode(i)
            if self.cache is not None:
                self.cache.put(i, raw, len(self))
        item = dict(raw)
        item["images"] = u8_to_tensor(self.transform_of(i).place(raw["images"]))
        return item


class ImageFolderDataModule(LightningDataModule):
    """Images (+ optional captions) from a folder, split into train/val, at any ``(height, width)``."""

    def __init__(
        self,
        root: str,
        val_root: str | None = None,
        image_size: int | tuple[int, int] = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.05,
        captions: Literal["auto", "require", "ignore"] = "auto",
        resize: ResizePolicy = "center_crop",
        crop: Literal["center", "random"] = "random",
        pad_color: tuple[int, int, int] = (0, 0, 0),
        min_side: int | None = None,
        buckets: list[tuple[int, int]] | None = None,
        cache: Literal["none", "memory"] = "none",
        cache_max_bytes: int = DEFAULT_CACHE_BYTES,
        seed: int = 0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        """
        Args:
            root: directory searched recursively for images.
            val_root: a separate validation directory; None = hold out ``val_fraction`` of ``root``.
            image_size: training resolution: an int (square) or ``[height, width]``; must
                match the model's ``image_size``.
            batch_size: images per batch.
            num_workers: DataLoader worker processes (kept alive across epochs).
            val_fraction: fraction of ``root`` held out for validation when ``val_root`` is None
                (at least one image when > 0).
            captions: ``auto`` = yield captions when every image has a ``.txt`` sidecar;
                ``require`` = error naming images without one; ``ignore`` = never.
            resize: how an image of another aspect ratio meets ``image_size``:
                ``center_crop`` = resize to cover (aspect kept), then crop (where: ``crop``);
                ``pad`` = resize to fit inside (aspect kept), pad the rest with ``pad_color``;
                ``resize`` = stretch to the size (aspect not kept, nothing cut off).
            crop: where ``center_crop`` cuts training images (``random`` offset each epoch, or
                ``center``); validation always cuts the centre.
            pad_color: RGB padding colour for ``resize: pad``.
            min_side: refuse images whose shorter side is below this many pixels, naming the
                file (a smaller image carries less than one token of detail); None = the
                model's minimum when trained by a Trainer (``TokenizerTrainer``: its encoder's
                patch size; see :func:`min_side_for`), else any size.
            buckets: aspect-ratio buckets, a list of ``[height, width]``: each image goes
                to the bucket nearest its aspect ratio (by ``resize`` into that size) and a
                batch holds one bucket's images only (one token grid per batch; see
                :mod:`arm_tokenizer.buckets`). Give the model the same list. None = every
                image at ``image_size``. Single-process training only: under DDP (a Trainer
                of several processes) setup refuses buckets, since every rank would draw
                the same batches.
            cache: ``memory`` = decode and resize every image once, before the first epoch,
                and keep it as uint8 in RAM (a random crop still varies per epoch); ``none`` =
                decode every time.
            cache_max_bytes: the cache's cap; when the images need more, setup fails with
                the size they need.
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
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"ImageFolderDataModule.resize must be one of {', '.join(RESIZE_POLICIES)}, "
                             f"got {resize!r}")
        if cache not in CACHE_MODES:
            raise ValueError(f"ImageFolderDataModule.cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
        self.root = root
        self.val_root = val_root
        self.image_size = canonical_size(image_size, "ImageFolderDataModule.image_size")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.captions = captions
        self.resize = resize
        self.crop = crop
        self.pad_color = tuple(pad_color)
        self.min_side = min_side
        self.buckets = check_buckets(buckets, "ImageFolderDataModule.buckets") if buckets is not None else None
        self.cache = cache
        self.cache_max_bytes = cache_max_bytes
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
        if self.buckets:
            refuse_distributed(self, "ImageFolderDataModule.buckets")
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
        self.train_set = self._dataset(train_files, self.crop, caps, "training images")
        self.val_set = self._dataset(val_files, "center", caps, "validation images")
        for ds in (self.train_set, self.val_set):
            ds.fill_cache(self.num_workers)

    def _dataset(self, files: list[Path], crop: str, caps: bool, what: str) -> ImageFolderDataset:
        sizes = self.buckets or [self.image_size]
        min_side = min_side_for(self, self.min_side)
        transforms = [transform_for(size, self.resize, crop,  # type: ignore[arg-type]
                                    pad_color=self.pad_color, min_side=min_side) for size in sizes]
        bucket_of = [nearest_bucket(*_shape(f), self.buckets) for f in files] if self.buckets else None
        cache = (ImageCache(self.cache_max_bytes, f"the {what} under {self.root!r}")
                 if self.cache == "memory" else None)
        return ImageFolderDataset(files, transforms, caps, self.max_pixels, cache, bucket_of)

    def _loader(self, ds: ImageFolderDataset, train: bool) -> DataLoader:
        persistent = self.num_workers > 0  # no re-spawn (and re-import) of workers every epoch
        if self.buckets is None:
            return DataLoader(ds, batch_size=self.batch_size, shuffle=train, drop_last=False,
                              num_workers=self.num_workers, persistent_workers=persistent)
        sampler = BucketBatchSampler(ds.bucket_of, self.batch_size, shuffle=train, seed=self.seed)
        return DataLoader(ds, batch_sampler=sampler, num_workers=self.num_workers, persistent_workers=persistent)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if not self.val_set:
            return []
        return self._loader(self.val_set, train=False)

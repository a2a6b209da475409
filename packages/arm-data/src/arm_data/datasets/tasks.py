"""Torch datasets over real-data records: image–text pairs, VQA and edit triplets.

Two shapes, one per access pattern:

* :class:`RecordDataset` (map-style) reads a folder with sidecars or a JSONL manifest;
  :class:`PairDataset`, :class:`VQADataset` and :class:`EditDataset` fix its ``task``.
  Shuffling and distributed splitting come from the DataLoader's sampler.
* :class:`WdsDataset` (iterable) streams WebDataset shards; it splits itself across
  DataLoader workers and distributed ranks (see :mod:`arm_data.datasets.wds`).

Each item is a dict of tensors and strings (``collate_samples`` batches them):

* pair: ``{"image": (3, H, W) in [-1, 1], "text": str, "key": str, "extra": dict}``
* vqa: ``{"image", "question": str, "answer": str, "conversation": list[dict], "key", "extra"}``
  (``question``/``answer`` are the first user/assistant turns for a conversation)
* edit: ``{"source", "target", "instruction": str, "key", "extra"}``; a random crop cuts
  source and target at the same place.

The record's task (:class:`arm_data.tasks.Task`) says which images and texts an item
holds (``record_image_refs``, ``item_texts``), so a registered plugin task's records read
through the same datasets.

Bad samples go to the dataset's :class:`ErrorPolicy`. In ``skip`` mode a map-style
dataset answers a bad index with the next good one (``i + 1``, ``i + 2``, ... wrapping),
so batches keep their size, and remembers the bad index (it is not decoded again); an
iterable one simply moves on. Either way the skip is counted and warned about, and the
``max_skip_fraction`` check applies.
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
from arm_tokenizer.buckets import check_buckets, image_shape, nearest_bucket
from arm_tokenizer.image_cache import CACHE_MODES, DEFAULT_CACHE_BYTES, ImageCache
from arm_tokenizer.images import (
    DEFAULT_MAX_PIXELS,
    RESIZE_POLICIES,
    ImageTooSmallError,
    ImageTransform,
    ResizePolicy,
    pil_to_u8,
    transform_for,
    u8_to_tensor,
)
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from arm_data.datasets.common import detect_format, schema_task
from arm_data.datasets.folder import FolderRecords
from arm_data.datasets.jsonl import JsonlRecords
from arm_data.datasets.wds import SplitMode, WdsRecords, partition_info
from arm_data.errors import BadSampleError, ErrorPolicy, TooManyBadSamplesError
from arm_data.records import ImageRef, Record, as_pil

__all__ = [
    "encode_record",
    "decode_record",
    "finish_item",
    "make_transform",
    "collate_samples",
    "RecordDataset",
    "PairDataset",
    "VQADataset",
    "EditDataset",
    "WdsDataset",
    "open_records",
]

Crop = Literal["center", "random", "none"]


def _image_name(image: Any, record: Record) -> str:
    return image.name if isinstance(image, ImageRef) else (record.key or "<in-memory image>")


def _stage_one(img: Image.Image, transform: ImageTransform | None, name: str = "") -> torch.Tensor:
    """``uint8 (3, h, w)`` after the transform's resize (and its crop/pad when deterministic).

    Raises:
        BadSampleError: reason ``image_too_small`` (naming the file ``name``) when the image
            is below the transform's ``min_side``.
    """
    if transform is None:
        return pil_to_u8(img)
    try:
        resized = transform.resize(img)
    except ImageTooSmallError as e:
        raise BadSampleError(name or "<image>", "image_too_small", str(e)) from None
    u8 = pil_to_u8(resized)
    return transform.place(u8) if transform.deterministic else u8


def decode_record(record: Record, transform: ImageTransform | None = None) -> dict[str, Any]:
    """A record's item before its random part: images as ``uint8`` after the resize (what a
    ``cache="memory"`` dataset keeps); :func:`finish_item` turns it into the item.

    Raises:
        BadSampleError: when an image cannot be decoded.
    """
    task_name = getattr(record, "task", None)
    if not isinstance(task_name, str):
        raise TypeError(f"not a record: {type(record).__name__}")
    task = schema_task(task_name)
    out: dict[str, Any] = {name: _stage_one(as_pil(image), transform, _image_name(image, record))
                           for name, image in task.record_image_refs(record).items()}
    out.update(task.item_texts(record))
    out.update(key=record.key, extra=record.extra)
    return out


def finish_item(raw: dict[str, Any], transform: ImageTransform | None = None) -> dict[str, Any]:
    """:func:`decode_record`'s output -> the item: the crop (random or not) or pad, and
    pixels as ``float32`` in ``[-1, 1]``. ``raw`` is not modified (it may be cached)."""
    item = dict(raw)
    images = [k for k, v in raw.items() if isinstance(v, torch.Tensor)]  # decode_record's uint8 images
    # several images (an edit's source and target): one random draw seeds every crop, so they stay aligned
    seed = int(torch.randint(0, 2**62, (1,))) if len(images) > 1 else None
    for field in images:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        u8 = raw[field] if transform is None else transform.place(raw[field], gen)
        item[field] = u8_to_tensor(u8)
    return item


def encode_record(record: Record, transform: ImageTransform | None = None) -> dict[str, Any]:
    """Decode a record's images and apply ``transform``: the dict documented in the module.

    Raises:
        BadSampleError: when an image cannot be decoded.
    """
    return finish_item(decode_record(record, transform), transform)


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch item dicts: tensors are stacked, everything else becomes a list.

    Raises:
        ValueError: on an empty batch or tensors of different shapes (set ``size`` so
            every image is resized to one shape).
    """
    if not samples:
        raise ValueError("collate_samples got an empty batch")
    out: dict[str, Any] = {}
    for k in samples[0]:
        values = [s[k] for s in samples]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"cannot batch {k!r}: shapes differ {sorted(shapes)}; give the dataset a size")
            out[k] = torch.stack(values)
        else:
            out[k] = values
    return out


def open_records(
    path: str | os.PathLike,
    task: str,
    format: Literal["auto", "folder", "jsonl"] = "auto",
    policy: ErrorPolicy | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    recursive: bool = False,
) -> FolderRecords | JsonlRecords:
    """Open a map-style record source (folder or JSONL); ``format="auto"`` detects it.

    Raises:
        ValueError: if ``path`` holds WebDataset shards (use :class:`WdsDataset`).
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "folder":
        return FolderRecords(path, task=task, policy=policy, recursive=recursive, max_pixels=max_pixels)
    if fmt == "jsonl":
        return JsonlRecords(path, task=task, policy=policy, max_pixels=max_pixels)
    raise ValueError(f"{os.fspath(path)!r} is in format {fmt!r}; map-style datasets read 'folder' or 'jsonl' "
                     "(use WdsDataset for tar shards)")


def make_transform(size: int | tuple[int, int] | None, crop: Crop, resize: ResizePolicy = "center_crop",
                   pad_color: tuple[int, int, int] = (0, 0, 0), min_side: int | None = None) -> ImageTransform | None:
    """The readers' transform: ``resize`` policy (:data:`arm_tokenizer.images.RESIZE_POLICIES`)
    and, for ``center_crop``, where the cut is (``crop``; ``"none"`` = stretch, as
    ``resize="resize"``, kept for old configs). ``size=None``: no transform. ``min_side``:
    source images whose shorter side is below it are bad samples (``image_too_small``)."""
    if size is None:
        return None
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_POLICIES)}; got {resize!r}")
    if crop not in ("center", "random", "none"):
        raise ValueError(f"crop must be one of 'center', 'random', 'none'; got {crop!r}")
    if resize == "center_crop" and crop == "none":
        resize = "resize"
    return transform_for(size, resize, "center" if crop == "none" else crop,  # type: ignore[arg-type]
                         pad_color=pad_color, min_side=min_side)


class RecordDataset(Dataset):
    """Map-style dataset of one task over a folder with sidecars or a JSONL manifest.

    A subclass that sets :attr:`fixed_task` (:class:`PairDataset`, ...) gets this
    constructor without ``task`` (the same typed signature and docs, the YAML schema).
    """

    #: The task a subclass always reads; its constructor then has no ``task`` argument.
    fixed_task: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("fixed_task") and "__init__" not in cls.__dict__:
            cls.__init__ = _fixed_task_init(cls.fixed_task)  # type: ignore[method-assign]

    def __init__(
        self,
        path: str,
        task: str = "pair",
        format: Literal["auto", "folder", "jsonl"] = "auto",
        size: int | tuple[int, int] | None = 256,
        crop: Crop = "center",
        on_error: Literal["raise", "skip"] = "skip",
        max_skip_fraction: float = 0.1,
        min_samples: int = 100,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        recursive: bool = False,
        resize: ResizePolicy = "center_crop",
        pad_color: tuple[int, int, int] = (0, 0, 0),
        cache: Literal["none", "memory"] = "none",
        cache_max_bytes: int = DEFAULT_CACHE_BYTES,
        min_side: int | None = None,
        buckets: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """
        Args:
            path: the folder, or the JSONL manifest (or its directory).
            task: ``"pair"``, ``"vqa"``, ``"edit"`` or a registered task (its records).
            format: ``"folder"``, ``"jsonl"`` or ``"auto"`` (detected from ``path``).
            size: output image size, an int (square) or ``(height, width)``; ``None``
                keeps each image's own size (then only batch size 1 collates).
            crop: where the ``center_crop`` policy cuts: ``"center"`` or ``"random"``;
                ``"none"`` squashes to ``size`` (as ``resize="resize"``).
            on_error: ``"skip"`` bad samples with a counted warning, or ``"raise"``.
            max_skip_fraction: fail once more than this fraction of samples was bad.
            min_samples: samples seen before ``max_skip_fraction`` is checked.
            max_pixels: decompression-bomb limit (width * height) for every image.
            recursive: (folder) also read sub-folders.
            resize: how an image of another aspect ratio meets ``size``: ``center_crop``
                (resize to cover, crop), ``pad`` (resize to fit, pad with ``pad_color``) or
                ``resize`` (stretch).
            pad_color: RGB padding colour for ``resize="pad"``.
            cache: ``"memory"`` keeps every decoded-and-resized image as uint8 (filled by
                :meth:`fill_cache`, or as items are first read); ``"none"`` decodes every time.
            cache_max_bytes: the cache's cap (a clear error when the images need more).
            min_side: source images whose shorter side is below this many pixels are bad
                samples (reason ``image_too_small``, naming the file; skipped or raised by
                ``on_error``); None = accept any. Set it to the encoder's patch size.
            buckets: aspect-ratio buckets ``[[height, width], ...]`` replacing ``size``: each
                sample goes to the bucket nearest its (first) image's aspect ratio, read from
                the file header at construction (:mod:`arm_tokenizer.buckets`), and is
                brought to that size by ``resize``; ``bucket_of`` lists each sample's bucket
                for a :class:`~arm_tokenizer.buckets.BucketBatchSampler`. A skipped bad sample
                is replaced by the next good one of the same bucket.
        """
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}; got {cache!r}")
        self.policy = ErrorPolicy(on_error=on_error, max_skip_fraction=max_skip_fraction, min_samples=min_samples)
        self.task = task
        self._task = schema_task(task)
        self.records = open_records(path, task, format, self.policy, max_pixels, recursive)
        self.buckets = check_buckets(buckets, "buckets") if buckets is not None else None
        sizes = self.buckets or [size]
        self.transforms = [make_transform(sz, crop, resize, pad_color, min_side) for sz in sizes]
        self.transform = self.transforms[0]
        self.bucket_of = ([nearest_bucket(*self._shape(i), self.buckets) for i in range(len(self.records))]
                          if self.buckets else [0] * len(self.records))
        self.cache = ImageCache(cache_max_bytes, repr(os.fspath(path))) if cache == "memory" else None
        self._bad: set[int] = set()

    def _shape(self, i: int) -> tuple[int, int]:
        """``(width, height)`` of sample ``i``'s first image from its header; (1, 1) when it
        cannot be read (decoding it later reports the problem)."""
        try:
            rec = self.records[i]
            image = next(iter(self._task.record_image_refs(rec).values()))
            if isinstance(image, Image.Image):
                return image.size
            src = image.source
            if isinstance(src, bytes):
                src = io.BytesIO(src)  # type: ignore[assignment]
            return image_shape(src)  # type: ignore[arg-type]
        except (BadSampleError, OSError, ValueError, SyntaxError):
            return (1, 1)

    def transform_of(self, j: int) -> ImageTransform | None:
        """The transform of sample ``j`` (its bucket's)."""
        return self.transforms[self.bucket_of[j]]

    def __len__(self) -> int:
        return len(self.records)

    def get_record(self, i: int) -> Record:
        """Record ``i`` with its images still lazy (raises :class:`BadSampleError`)."""
        return self.records[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self.records)
        if n == 0:
            raise IndexError(f"{self!r} is empty. {self.policy.summary()}")
        for attempt in range(n):
            j = (i + attempt) % n
            if j in self._bad or self.bucket_of[j] != self.bucket_of[i]:  # a batch keeps one bucket
                continue
            raw = self.cache.get(j) if self.cache is not None else None
            if raw is None:
                try:
                    raw = self._decode(j)
                except BadSampleError as e:
                    self._bad_sample(j, e)
                    continue
                if self.cache is not None:
                    self.cache.put(j, raw, n)
            return finish_item(raw, self.transform_of(j))
        raise TooManyBadSamplesError(f"every sample of {self!r} is bad. {self.policy.summary()}")

    def _bad_sample(self, j: int, e: Exception) -> None:
        if not isinstance(e, BadSampleError):
            raise e
        self._bad.add(j)
        self.policy.skip(e, was_ok=True)  # counted good at indexing; raises in "raise" mode

    def fill_cache(self, num_workers: int = 0, indices: Sequence[int] | None = None) -> None:
        """Decode samples (``indices``, default all) into the memory cache now, in the calling
        process (with ``num_workers`` decoding processes), so DataLoader workers forked later
        share it. A no-op without ``cache="memory"``; bad samples go to the error policy."""
        if self.cache is None:
            return
        indices = range(len(self)) if indices is None else indices
        if all(t is not None and t.deterministic for t in self.transforms):  # sizes known: fail before decoding
            images = max(1, len(self._task.image_fields))  # a variable count estimates one
            per = [3 * t.height * t.width * images for t in self.transforms]  # type: ignore[union-attr]
            self.cache.check_estimate(sum(per[self.bucket_of[j]] for j in indices), len(indices))
        self.cache.fill(indices, self._decode, num_workers, on_error=self._bad_sample)

    def _decode(self, j: int) -> dict[str, Any]:
        return decode_record(self.records[j], self.transform_of(j))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.records!r}, transform={self.transform!r})"


def _fixed_task_init(task: str) -> Any:
    """``RecordDataset.__init__`` with ``task`` fixed: its signature (what jsonargparse reads
    as the schema) and docs without ``task``; positional arguments keep their old order."""
    full = inspect.signature(RecordDataset.__init__)
    sig = full.replace(parameters=[p for name, p in full.parameters.items() if name != "task"])

    def __init__(self: RecordDataset, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        RecordDataset.__init__(self, task=task, **arguments)

    __init__.__signature__ = sig  # type: ignore[attr-defined]
    __init__.__annotations__ = {k: v for k, v in RecordDataset.__init__.__annotations__.items() if k != "task"}
    __init__.__doc__ = RecordDataset.__init__.__doc__
    return __init__


class PairDataset(RecordDataset):
    """Image–text pairs from a folder (``<key>.png`` + ``<key>.txt``) or a JSONL manifest."""

    fixed_task = "pair"


class VQADataset(RecordDataset):
    """VQA / conversation samples from a folder (``<key>.png`` + ``<key>.json``) or a JSONL manifest."""

    fixed_task = "vqa"


class EditDataset(RecordDataset):
    """Edit triplets from a folder (``<key>.source.png``, ``<key>.target.png``, ``<key>.txt``) or JSONL."""

    fixed_task = "edit"


class WdsDataset(IterableDataset):
    """Samples of one task streamed from WebDataset tar shards, split over workers and ranks."""

    def __init__(
        self,
        path: str,
        task: str = "pair",
        size: int | tuple[int, int] | None = 256,
        crop: Crop = "center",
        split: SplitMode = "auto",
        shuffle_shards: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        on_error: Literal["raise", "skip"] = "skip",
        max_skip_fraction: float = 0.1,
        min_samples: int = 100,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        resize: ResizePolicy = "center_crop",
        pad_color: tuple[int, int, int] = (0, 0, 0),
        min_side: int | None = None,
    ) -> None:
        """
        Args:
            path: a directory of ``*.tar`` shards, one ``.tar``, a glob or a brace pattern.
            task: ``"pair"``, ``"vqa"``, ``"edit"`` or a registered task (its records).
            size: output image size, an int (square) or ``(height, width)``; ``None``
                keeps each image's own size.
            crop: ``"center"``/``"random"`` crop after an aspect-preserving resize, or ``"none"``.
            split: ``"shard"``, ``"sample"`` or ``"auto"`` (see :mod:`arm_data.datasets.wds`).
            shuffle_shards: reshuffle the shard order each epoch (:meth:`set_epoch`).
            shuffle_buffer: if > 0, shuffle samples within a buffer of this many.
            seed: seed of the shard order and of the buffer shuffle.
            on_error: ``"skip"`` bad samples with a counted warning, or ``"raise"``.
            max_skip_fraction: fail once more than this fraction of samples was bad.
            min_samples: samples seen before ``max_skip_fraction`` is checked.
            max_pixels: decompression-bomb limit (width * height) for every image.
            resize: ``center_crop``, ``pad`` or ``resize`` (see :class:`RecordDataset`).
            pad_color: RGB padding colour for ``resize="pad"``.
            min_side: source images with a shorter side below this are bad samples
                (``image_too_small``); None = accept any.
        """
        super().__init__()
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0; got {shuffle_buffer}")
        self.policy = ErrorPolicy(on_error=on_error, max_skip_fraction=max_skip_fraction, min_samples=min_samples)
        self.task = task
        self.records = WdsRecords(path, task=task, policy=self.policy, split=split, shuffle_shards=shuffle_shards,
                                  seed=seed, max_pixels=max_pixels)
        self.transform = make_transform(size, crop, resize, pad_color, min_side)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shard order and buffer shuffle."""
        self.records.set_epoch(epoch)

    def _encoded(self, records: Iterator[Record]) -> Iterator[dict[str, Any]]:
        for rec in records:
            try:
                item = encode_record(rec, self.transform)
            except BadSampleError as e:
                self.policy.skip(e, was_ok=True)  # WdsRecords counted it good when grouped
                continue
            yield item

    def _shuffled(self, items: Iterator[dict[str, Any]], part: int) -> Iterator[dict[str, Any]]:
        if self.shuffle_buffer <= 0:
            yield from items
            return
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.records.epoch * 1009 + part)
        buf: list[dict[str, Any]] = []
        for item in items:
            buf.append(item)
            if len(buf) >= self.shuffle_buffer:
                yield buf.pop(int(torch.randint(len(buf), (1,), generator=g)))
        while buf:
            yield buf.pop(int(torch.randint(len(buf), (1,), generator=g)))

    def iter_partition(self, rank: int, world_size: int, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """Items of one explicit partition (what ``__iter__`` does for the calling process)."""
        part = rank * num_workers + worker
        return self._shuffled(self._encoded(self.records.iter_partition(rank, world_size, worker, num_workers)), part)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_partition(*partition_info())

    def __repr__(self) -> str:
        return f"WdsDataset({self.records!r}, transform={self.transform!r})"

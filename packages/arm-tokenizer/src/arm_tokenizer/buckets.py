"""Aspect-ratio buckets: every image at the size nearest its shape, one size per batch.

With ``buckets: [[32, 48], [40, 40], [48, 32]]`` a data module sends each image to the
bucket whose aspect ratio is nearest its own (distance ``|log(w/h) - log(bw/bh)|``, after
the EXIF orientation; the first bucket wins a tie), brings it to that bucket's
``(height, width)`` by its ``resize`` policy, and draws batches within one bucket, so a
batch is one tensor with one token grid. A wide photo then loses little to cropping or
padding. The LM side needs nothing more: its shape tokens already state each image's
grid.

:class:`BucketBatchSampler` is the batch sampler: per epoch it shuffles each bucket's
indices, cuts them into batches and shuffles the batches' order (``seed`` + epoch; the
trainer calls :meth:`BucketBatchSampler.set_epoch`). It runs in the main process, so
persistent DataLoader workers see each epoch's order. It does not split batches across
distributed ranks: every rank would draw the same batches, so the data modules refuse
buckets under a Trainer with more than one process (:func:`refuse_distributed`); use them
in single-process training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import Sampler

from arm_tokenizer.images import check_size

__all__ = ["BucketBatchSampler", "check_buckets", "image_shape", "nearest_bucket", "refuse_distributed"]

_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees


def check_buckets(buckets: Sequence[Sequence[int]], field: str = "buckets") -> list[tuple[int, int]]:
    """``buckets`` as a list of distinct ``(height, width)`` tuples (raises naming ``field``)."""
    if not buckets:
        raise ValueError(f"{field} must list at least one [height, width]; got {buckets!r}")
    out = [check_size(b, f"{field}[{i}]") for i, b in enumerate(buckets)]
    dup = sorted({b for b in out if out.count(b) > 1})
    if dup:
        raise ValueError(f"{field} lists {dup[0]} more than once")
    return out


def refuse_distributed(datamodule: object, field: str) -> None:
    """Raise when ``datamodule`` runs under a Trainer of several processes: the bucket
    sampler does not split batches across ranks (each would train on the same batches)."""
    trainer = getattr(datamodule, "trainer", None)
    world = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
    if world > 1:
        raise ValueError(f"{field}: aspect-ratio buckets support single-process training only, but the trainer runs "
                         f"{world} processes; drop {field.rsplit('.', 1)[-1]} (one image_size) or train on one device")


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file as shown (EXIF orientation applied), from its
    header only: no pixel is decoded."""
    with Image.open(path) as img:
        w, h = img.size
        try:
            orientation = img.getexif().get(0x0112)
        except Exception:  # unreadable EXIF: load_image ignores it too
            orientation = None
    return (h, w) if orientation in _SWAPS_SIDES else (w, h)


def nearest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> int:
    """Index of the ``(height, width)`` bucket whose aspect ratio is nearest ``width / height``."""
    ratio = math.log(width / height)
    return min(range(len(buckets)), key=lambda i: abs(ratio - math.log(buckets[i][1] / buckets[i][0])))


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices that share a bucket.

    Args:
        bucket_of: the bucket index of every dataset item.
        batch_size: items per batch.
        shuffle: shuffle within buckets and the order of batches (else: bucket by bucket,
            in index order).
        drop_last: drop each bucket's last incomplete batch.
        seed: base seed of the shuffle (plus the epoch).
    """

    def __init__(self, bucket_of: Sequence[int], batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.bucket_of = list(bucket_of)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self._epoch_set = False
        self.members: dict[int, list[int]] = {}
        for i, b in enumerate(self.bucket_of):
            self.members.setdefault(b, []).append(i)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle (Lightning calls this before each epoch)."""
        self.epoch = epoch
        self._epoch_set = True

    def __len__(self) -> int:
        per = (len(m) // self.batch_size if self.drop_last else math.ceil(len(m) / self.batch_size)
               for m in self.members.values())
        return sum(per)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        batches: list[list[int]] = []
        for b in sorted(self.members):
            idx = self.members[b]
            if self.shuffle:
                idx = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
            for s in range(0, len(idx), self.batch_size):
                batch = idx[s:s + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        if not self._epoch_set:  # used outside Lightning: a new order each pass
            self.epoch += 1
        yield from batches

"""A decoded-and-resized image cache for map-style datasets (``cache: memory``).

On CPU most of a small run's data time goes to decoding full-size photos and resizing
them, again every epoch. A dataset with ``cache="memory"`` keeps, per sample, what
:meth:`arm_tokenizer.images.ImageTransform.resize` produced as ``uint8 (3, h, w)``
tensors (a quarter of float32's bytes; already cropped or padded to the final size when
the policy is deterministic, so a random training crop still varies per epoch).

The cache is filled once, in the main process, before the DataLoader starts its workers
(:meth:`ImageCache.fill`, which decodes with ``num_workers`` processes of its own), so
forked workers share the tensors instead of each decoding, and keeping, a copy. A byte
cap (``max_bytes``) is checked up front from the known output size when it can be, and
while filling otherwise; when the data does not fit, :class:`CacheTooLargeError` says
how many bytes it needs and how to proceed (raise the cap, or ``cache: none``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["CACHE_MODES", "DEFAULT_CACHE_BYTES", "CacheTooLargeError", "ImageCache", "nbytes"]

CACHE_MODES = ("none", "memory")
# 4 GB: e.g. 20k images at 256x256 (196 KB each), well within a laptop's memory.
DEFAULT_CACHE_BYTES = 4_000_000_000


class CacheTooLargeError(ValueError):
    """The decoded images do not fit within ``cache_max_bytes``."""


def nbytes(item: Any) -> int:
    """Bytes of the tensors in ``item`` (a tensor, or a dict / list holding tensors)."""
    if isinstance(item, torch.Tensor):
        return item.numel() * item.element_size()
    if isinstance(item, dict):
        return sum(nbytes(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(nbytes(v) for v in item)
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _identity(x: Any) -> Any:
    return x


class _Decode(Dataset):
    """Position -> ``(index, item)`` or ``(index, exception)``: errors go back to the main process."""

    def __init__(self, decode: Callable[[int], Any], indices: Sequence[int]) -> None:
        self.decode, self.indices = decode, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int) -> tuple[int, Any]:
        i = self.indices[pos]
        try:
            return i, self.decode(i)
        except Exception as e:  # handed to on_error in the main process, with its index
            return i, e


class ImageCache:
    """Decoded samples by index, bounded by ``max_bytes``.

    Args:
        max_bytes: the cap on the tensors' bytes.
        name: how errors name the data (e.g. the folder).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, name: str = "dataset") -> None:
        if max_bytes < 1:
            raise ValueError(f"cache_max_bytes must be >= 1; got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.name = name
        self.items: dict[int, Any] = {}
        self.nbytes = 0
        self.filled = False

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, i: int) -> bool:
        return i in self.items

    def get(self, i: int) -> Any:
        return self.items.get(i)

    def _too_large(self, needed: float, n: int, exact: bool) -> CacheTooLargeError:
        how = "needs" if exact else "would need about"
        return CacheTooLargeError(
            f"cache='memory' {how} {_human(needed)} for the {n} decoded images of {self.name}, over "
            f"cache_max_bytes={self.max_bytes} ({_human(self.max_bytes)}); raise cache_max_bytes to at least "
            f"{int(needed) + 1}, use a smaller image_size, or set cache: none (decode every epoch)")

    def check_estimate(self, needed: int, n: int) -> None:
        """Fail before decoding anything when ``n`` items of ``needed`` bytes in all cannot fit."""
        if needed > self.max_bytes:
            raise self._too_large(needed, n, exact=True)

    def put(self, i: int, item: Any, total: int) -> None:
        """Keep ``item``; ``total`` (the dataset's size) projects the need in the error."""
        self.items[i] = item
        self.nbytes += nbytes(item)
        if self.nbytes > self.max_bytes:
            projected = self.nbytes / len(self.items) * total
            self.items.clear()
            self.nbytes = 0
            raise self._too_large(projected, total, exact=False)

    def fill(self, indices: Sequence[int], decode: Callable[[int], Any], num_workers: int = 0,
             on_error: Callable[[int, Exception], None] | None = None) -> None:
        """Decode the items at ``indices`` with ``decode(i)`` into the cache.

        Args:
            indices: the items to decode (e.g. ``range(len(dataset))``, or a split's part).
            decode: index -> the item to keep (uint8 tensors and plain values).
            num_workers: decode in this many worker processes (0: here).
            on_error: called with ``(index, exception)`` for an item that failed; it may
                re-raise. None: the exception is raised.
        """
        if self.filled:
            return
        work = _Decode(decode, indices)
        n = len(work)
        if num_workers > 0 and n > 1:
            results = DataLoader(work, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_identity)
        else:
            results = (work[pos] for pos in range(n))
        for i, item in results:
            if isinstance(item, Exception):
                if on_error is None:
                    raise item
                on_error(i, item)
                continue
            self.put(i, item, n)
        self.filled = True

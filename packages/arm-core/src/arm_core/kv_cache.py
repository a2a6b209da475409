"""A fixed-size key/value cache for incremental decoding (gpt-fast style).

Allocated once for ``(batch_size, max_seq_len)``; every write is an in-place
``index_copy_`` at *slot* indices given as a tensor, so the decode step has static shapes,
no ``.item()`` and no data-dependent Python branches, and compiles with
``torch.compile(fullgraph=True)`` (and CUDA graphs with ``mode="reduce-overhead"``).

Slots vs positions: all rows of a batch write the same slot at each step (slot = step
index, shared), while their RoPE *positions* differ when prompts were left-padded. A
boolean ``valid`` mask ``(B, S)`` says which slots hold a real token for each row; padded
slots are never attended to (see :meth:`KVCache.attention_mask`).

Per-row slots: speculative decoding (:mod:`arm_core.speculative`) verifies a window of draft
tokens per row and keeps a different number per row, so its chunks are written at *per-row*
slots, ``cache_pos`` ``(B, T)`` instead of ``(T,)`` (a scatter instead of an
``index_copy_``); :meth:`KVCache.rollback` then forgets each row's rejected slots.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LayerKVCache", "KVCache"]


class LayerKVCache(nn.Module):
    """Keys and values of one attention layer.

    Args:
        batch_size: Rows ``B``.
        n_query_groups: Key/value heads ``G``.
        max_seq_len: Slots ``S``.
        head_size: Per-head width ``hs``.
        device: Where to allocate.
        dtype: Cache dtype (the model's compute dtype).
    """

    def __init__(self, batch_size: int, n_query_groups: int, max_seq_len: int, head_size: int,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        shape = (batch_size, n_query_groups, max_seq_len, head_size)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, cache_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``k, v`` ``(B, G, T, hs)`` at slots ``cache_pos`` ``(T,)`` (shared by the
        rows) or ``(B, T)`` (per row); return the full cache ``(B, G, S, hs)`` each."""
        if cache_pos.dim() == 2:
            idx = cache_pos[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            self.k.scatter_(2, idx, k.to(self.k.dtype))
            self.v.scatter_(2, idx, v.to(self.v.dtype))
            return self.k, self.v
        self.k.index_copy_(2, cache_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, cache_pos, v.to(self.v.dtype))
        return self.k, self.v


class KVCache(nn.Module):
    """All layers' caches plus the per-row slot validity mask shared by the layers.

    Args:
        n_layer: Number of layers.
        batch_size: Rows ``B``.
        n_query_groups: Key/value heads per layer.
        max_seq_len: Slots ``S`` (prompt + generated tokens).
        head_size: Per-head width.
        device: Where to allocate.
        dtype: Cache dtype.
    """

    def __init__(self, n_layer: int, batch_size: int, n_query_groups: int, max_seq_len: int,
                 head_size: int, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.max_seq_len = max_seq_len
        self.layers = nn.ModuleList(
            LayerKVCache(batch_size, n_query_groups, max_seq_len, head_size, device, dtype)
            for _ in range(n_layer))
        self.register_buffer("valid", torch.zeros(batch_size, max_seq_len, dtype=torch.bool,
                                                  device=device), persistent=False)
        self.register_buffer("slots", torch.arange(max_seq_len, device=device), persistent=False)
        # Per row: how many image codes in a row end the cached tokens (the raster index of
        # the next code), for models with learned image positions (GPT.image_positions).
        self.register_buffer("image_run", torch.zeros(batch_size, dtype=torch.long, device=device),
                             persistent=False)

    def reset(self) -> None:
        """Forget every cached token (the k/v values need not be cleared: they are masked)."""
        self.valid.zero_()
        self.image_run.zero_()

    def mark(self, cache_pos: Tensor, valid: Tensor) -> None:
        """Record which of the newly written slots ``cache_pos`` ``(T,)`` or ``(B, T)`` are
        real tokens per row: ``valid`` ``(B, T)`` bool."""
        if cache_pos.dim() == 2:
            self.valid.scatter_(1, cache_pos, valid)
            return
        self.valid.index_copy_(1, cache_pos, valid)

    def rollback(self, end: Tensor) -> None:
        """Forget every slot at or after ``end`` ``(B,)`` per row (rejected draft tokens).
        Their k/v stay in memory, masked, until the next chunk overwrites them."""
        self.valid &= self.slots[None, :] < end[:, None]

    def attention_mask(self, cache_pos: Tensor) -> Tensor:
        """Boolean SDPA mask ``(B, 1, T, S)`` for queries written at slots ``cache_pos``
        ``(T,)`` (shared) or ``(B, T)`` (per row).

        A query at slot ``p`` sees slot ``s`` iff ``s <= p`` and slot ``s`` is valid for
        its row. It always sees itself, so a padded query row is never fully masked (a
        fully masked row would give NaN, which would then leak into the cached values of
        the next layer and poison real rows through ``0 * NaN``).
        """
        if cache_pos.dim() == 2:
            causal = self.slots[None, None, :] <= cache_pos[:, :, None]    # (B, T, S)
            own = self.slots[None, None, :] == cache_pos[:, :, None]
            return ((causal & self.valid[:, None, :]) | own)[:, None]
        causal = self.slots[None, :] <= cache_pos[:, None]            # (T, S)
        own = self.slots[None, :] == cache_pos[:, None]                # (T, S)
        mask = (causal[None] & self.valid[:, None, :]) | own[None]     # (B, T, S)
        return mask[:, None]

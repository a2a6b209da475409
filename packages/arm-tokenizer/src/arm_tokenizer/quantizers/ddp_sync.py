"""Keep vector-quantize-pytorch's EMA codebooks in sync under DDP, decided at forward time.

What vector-quantize-pytorch 1.x really does (read from its source): ``VectorQuantize``
decides ``sync_codebook`` **in its constructor** (``sync_codebook=None`` ->
``is_distributed()``, a ``functools.cache``-d function), and its ``Codebook`` then freezes
``all_reduce_fn`` (sums the per-code counts and feature sums of the EMA update),
``sample_fn``/``replace_sample_fn`` (k-means init, dead-code replacement sampled across
ranks) accordingly. Under Lightning the model is built *before* DDP initializes its process
group, so ``is_distributed()`` is False — and cached False for the rest of the process.
Each rank then updates its codebook from its own data only: the codebooks drift apart.
(DDP's default ``broadcast_buffers=True`` hides the drift by overwriting every rank's
buffers with rank 0's at each forward, which silently throws away the EMA statistics of all
other ranks.)

:class:`CodebookSyncMixin` resolves the choice at forward time instead: ``sync_codebook``
None means "sync exactly when a process group with world size > 1 is initialized now", and
patches the ``Codebook`` modules' functions when the answer changes. With sync on, the
cluster sizes and feature sums are all-reduced (summed), so every rank applies the same
EMA update as one process seeing the union of the ranks' batches.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import nn
from vector_quantize_pytorch import vector_quantize_pytorch as vqp

__all__ = ["CodebookSyncMixin", "distributed_world_size", "set_codebook_sync"]


def distributed_world_size() -> int:
    """World size of the default process group now (1 when none is initialized)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def set_codebook_sync(module: nn.Module, enabled: bool, sync_kmeans: bool = True) -> int:
    """Switch every vector-quantize-pytorch ``Codebook`` under ``module`` to synced (or local)
    EMA updates, k-means init and dead-code sampling. Returns the number of codebooks patched."""
    n = 0
    for m in module.modules():
        if isinstance(m, vqp.Codebook):
            m.use_ddp = enabled
            m.all_reduce_fn = dist.all_reduce if enabled else vqp.noop
            m.kmeans_all_reduce_fn = dist.all_reduce if enabled and sync_kmeans else vqp.noop
            sample = vqp.sample_vectors_distributed if enabled and sync_kmeans else vqp.batched_sample_vectors
            m.sample_fn = sample
            m.replace_sample_fn = sample
            n += 1
    return n


class CodebookSyncMixin:
    """For adapters wrapping EMA codebooks: call :meth:`_maybe_sync_codebooks` in forward.

    Subclasses set ``self.sync_codebook`` (bool or None = auto), ``self.sync_kmeans`` and
    ``self._codebook_sync_active`` (start False: the wrapped module is built local-only).
    """

    sync_codebook: bool | None
    sync_kmeans: bool
    _codebook_sync_active: bool

    def _maybe_sync_codebooks(self) -> None:
        want = self.sync_codebook if self.sync_codebook is not None else distributed_world_size() > 1
        if want and distributed_world_size() <= 1:
            want = False  # sync_codebook=True outside a process group: nothing to sync with
        if want != self._codebook_sync_active:
            set_codebook_sync(self, want, self.sync_kmeans)  # type: ignore[arg-type]
            self._codebook_sync_active = want

    @property
    def codebook_sync_active(self) -> bool:
        """Whether the last forward all-reduced the codebook statistics."""
        return self._codebook_sync_active

"""Rank-aware RL prompt batches: each device rolls out its own share of every step's prompts.

Under Lightning's DDP or FSDP (``--trainer.devices=N``) every rank runs the same loop, so a
prompt loader that knows nothing of ranks makes every process roll out the same prompts.
Here the prompts of one optimizer step are split between the ranks, and the split is a pure
function of ``(seed, epoch, rank, step)``:

- epoch ``e`` visits the records in the data module's seeded order (``epoch_order(e)``);
- step ``k`` takes the next ``prompts_per_step * world`` of them (the *global* batch), and
  rank ``r`` the ``r``-th contiguous slice of ``prompts_per_step`` — distinct prompts per rank,
  and their union is exactly what one process with ``prompts_per_step * world`` would draw;
- a short last global batch is padded from the start of the epoch's order to a multiple of
  ``world`` so every rank takes the same number of prompts (DDP averages the ranks' gradients
  with equal weights) and the same number of steps (each step is a collective).

A prompt's whole group (its ``G`` rollouts) is sampled, scored and baselined on the rank
that drew it. With one process (``world = 1``) the batches are the ones the plain epoch
order gives. Resuming needs only ``(epoch, step)``, the same on every rank, so every rank
continues exactly where it stopped.

The loader wraps an :class:`~torch.utils.data.IterableDataset` (as arm-data's token loader
does), so Lightning leaves it alone instead of trying to inject a ``DistributedSampler``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

__all__ = ["rank_and_world", "steps_per_epoch", "rank_batch", "PromptBatchStream", "PromptLoader"]


def rank_and_world(trainer: Any) -> tuple[int, int]:
    """``(global rank, world size)`` of the process running ``trainer`` (``(0, 1)`` without one)."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


def steps_per_epoch(n: int, prompts_per_step: int, world: int = 1) -> int:
    """Optimizer steps (rollout batches) in an epoch of ``n`` prompts over ``world`` ranks."""
    return math.ceil(n / (prompts_per_step * world))


def rank_batch(order: list[int], step: int, prompts_per_step: int, rank: int = 0,
               world: int = 1) -> list[int]:
    """Record indices rank ``rank`` of ``world`` rolls out at ``step`` of an epoch whose
    records come in ``order`` (see the module docstring)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    size = prompts_per_step * world
    chunk = order[step * size:(step + 1) * size]
    if not chunk:
        raise IndexError(f"step {step} is past the end of the epoch "
                         f"({steps_per_epoch(len(order), prompts_per_step, world)} steps)")
    short = -len(chunk) % world
    if short:       # cycle the epoch's order so even a 1-prompt epoch fills every rank
        chunk = chunk + [order[i % len(order)] for i in range(short)]
    per_rank = len(chunk) // world
    return chunk[rank * per_rank:(rank + 1) * per_rank]


class PromptBatchStream(IterableDataset):
    """This rank's record batches of one epoch, from step ``start`` on.

    Args:
        dm: the prompt data module: ``dataset``, ``prompts_per_step``, ``epoch_order(epoch)``.
        rank: this process's global rank.
        world: the number of ranks.
    """

    def __init__(self, dm: Any, rank: int = 0, world: int = 1) -> None:
        self.dm, self.rank, self.world = dm, rank, world
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return steps_per_epoch(len(self.dm.dataset), self.dm.prompts_per_step, self.world)

    def __iter__(self) -> Iterator[list[Any]]:
        order = self.dm.epoch_order(self.epoch)
        for k in range(self.start, len(self)):
            idx = rank_batch(order, k, self.dm.prompts_per_step, self.rank, self.world)
            yield [self.dm.dataset[i] for i in idx]


class PromptLoader(DataLoader):
    """Iterates :class:`PromptBatchStream`, asking the data module where each epoch starts.

    Lightning saves ``state_dict`` of loaders that have one (and warns about those that do
    not); both delegate to the data module, which holds the one state (``_begin_epoch``,
    ``state_dict``, ``load_state_dict``).
    """

    def __init__(self, dm: Any) -> None:
        rank, world = rank_and_world(dm.trainer)
        super().__init__(PromptBatchStream(dm, rank, world), batch_size=None, num_workers=0,
                         collate_fn=list)      # records stay a list (specs, PIL images)
        self._dm = dm

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[list[Any]]:
        self.dataset.epoch, self.dataset.start = self._dm._begin_epoch()
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        return self._dm.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._dm.load_state_dict(state_dict)

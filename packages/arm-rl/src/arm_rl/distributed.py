"""What the GRPO trainer's ranks must agree on under DDP / FSDP, and how they agree.

Every rank rolls out its own prompts (:mod:`arm_rl.sharding`), so ranks end a rollout batch
with different numbers of rollouts per task, different groups kept by dynamic sampling, and
possibly different numbers of minibatches. Under Lightning's DDP every ``manual_backward``
is an all-reduce, so the ranks must nevertheless make the same number of backward calls and
optimizer steps, and must skip or stop together. One small ``all_gather_object`` per rollout
batch exchanges each rank's *plan* (rows of each backward chunk of each optimizer step),
from which every rank derives the same :class:`StepPlan`:

- step ``s`` has ``backwards[s]`` = the most chunks any rank has there; a rank with fewer
  pads with zero-weighted backwards (one of its rollouts through the policy, times 0), so
  the collective calls match;
- a chunk of ``n`` rollouts is weighted ``world * n / rows[s]`` (``rows[s]``: the step's
  rollouts over all ranks): DDP averages the ranks' gradients, so the step's gradient is the
  rollout-weighted mean over every rank's chunks — exactly one process's step on the union
  of the ranks' rollouts (all rollouts of a run have the same number of visual tokens, so
  this holds for the ``grpo``, ``dr_grpo`` and ``token`` aggregations alike);
- a non-finite loss on any rank stops every rank before the backward (:func:`ranks_flagging`).

With one process nothing is exchanged and the weights are the single-process ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "gather_objects", "ranks_flagging", "StepPlan"]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def ranks_flagging(flag: bool, device: torch.device) -> list[int]:
    """The ranks on which ``flag`` is True (one all-reduce; ``[0]`` or ``[]`` alone)."""
    if not is_distributed():
        return [0] if flag else []
    world, rank = dist.get_world_size(), dist.get_rank()
    # NCCL reduces only device tensors; gloo only host ones.
    dev = device if dist.get_backend() == "nccl" else torch.device("cpu")
    v = torch.zeros(world, device=dev)
    v[rank] = float(flag)
    dist.all_reduce(v)
    return [r for r in range(world) if v[r] > 0]


@dataclass
class StepPlan:
    """The optimizer steps of one rollout batch (per ppo epoch), agreed by every rank.

    Attributes:
        backwards: per step, the backward calls every rank makes.
        rows: per step, the rollouts in it over all ranks.
        world: the number of ranks.
    """

    backwards: list[int]
    rows: list[int]
    world: int

    @classmethod
    def agree(cls, plans: list[list[list[int]]]) -> StepPlan:
        """From every rank's plan (``plans[rank][step]``: the rows of each chunk)."""
        n_steps = max((len(p) for p in plans), default=0)
        backwards = [max((len(p[s]) for p in plans if s < len(p)), default=0) for s in range(n_steps)]
        rows = [sum(sum(p[s]) for p in plans if s < len(p)) for s in range(n_steps)]
        return cls(backwards, rows, len(plans))

    def __len__(self) -> int:
        return len(self.backwards)

    @property
    def empty(self) -> bool:
        """No rank has a rollout to learn from (every group dropped everywhere)."""
        return not any(self.rows)

    def weight(self, step: int, n: int) -> float:
        """Loss weight of a chunk of ``n`` rollouts in step ``step`` (see the module docstring)."""
        return self.world * n / self.rows[step]


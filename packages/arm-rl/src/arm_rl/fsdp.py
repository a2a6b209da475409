"""FSDP for the GRPO policy: FSDP2 (``torch.distributed.fsdp.fully_shard``) on Lightning's
``ModelParallelStrategy``, spelled ``--trainer.strategy=fsdp2``.

Lightning's FSDP strategies (FSDP1) cannot train GRPO (:meth:`GRPOTrainer.check_trainer
<arm_rl.lightning_module.GRPOTrainer.check_trainer>` says why). ``ModelParallelStrategy``
leaves the parallelisation to the module's ``configure_model``, where :func:`shard_policy`
shards the policy over the data-parallel mesh: one FSDP2 unit per transformer block plus
the root (embeddings, final norm, heads). Every device is data-parallel: :class:`FSDP2Strategy`
is ``ModelParallelStrategy(data_parallel_size=<all devices>, tensor_parallel_size=1)``, so the
ranks are the data-parallel mesh and :mod:`arm_rl.sharding` hands each its own prompts.

What FSDP2 needs from a GRPO step:

- **Gradients.** FSDP2's reduce-scatter averages the ranks' gradients, as DDP's all-reduce
  does, so :mod:`arm_rl.distributed`'s loss weights (``world * n / rows``) make one step
  the single-process step on the union of the ranks' rollouts here too; nothing else
  reduces gradients. The clipping norm is the norm over every rank's shard
  (:func:`clip_grad_norm`).
- **Scoring.** The loss scores rollouts with ``forward_hidden`` and the image head, not
  ``forward``: :func:`shard_policy` registers ``forward_hidden`` as an FSDP2 forward method
  of the root, whose parameters then stay gathered through the head until the backward.
- **Rollouts.** The engine calls ``prefill`` / ``decode_step``, which FSDP2's hooks never
  see, and ranks with different task mixes run different numbers of decode steps. So
  :func:`gathered` all-gathers the whole policy once per rollout batch (the same
  collectives on every rank, whatever it samples), keeps it gathered through the rewards
  (a judge may score with the policy) and frees it before the loss step, which runs
  sharded again. The reference model and the rewards are never sharded: frozen replicas,
  one per rank, outside the optimizer.
- **Checkpoints.** ``ModelParallelStrategy`` saves a distributed checkpoint directory (each
  rank its shard and its optimizer state) and resumes from it; the export is the full
  policy, gathered by :func:`full_state_dict` and written by rank 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch import Tensor
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

__all__ = ["STRATEGY_NAME", "FSDP2Strategy", "register_fsdp2", "is_sharded", "shard_policy", "gathered",
           "full_state_dict", "clip_grad_norm", "model_parallel_sizes"]

STRATEGY_NAME = "fsdp2"


class FSDP2Strategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` with FSDP2 over every device (``--trainer.strategy=fsdp2``).

    Lightning's defaults (``data_parallel_size`` = the number of nodes, ``tensor_parallel_size``
    = the devices of a node) suit a module that applies tensor parallelism within a node; GRPO
    applies none, so here every device is data-parallel. The process group is Lightning's
    default for the device (NCCL on CUDA, gloo on a CPU, where FSDP2 runs too).

    Args:
        data_parallel_size: devices in the data-parallel mesh; "auto" = all of them.
        **kwargs: the rest of ``ModelParallelStrategy``'s arguments (``tensor_parallel_size``
            defaults to 1; GRPO trains under no other).
    """

    def __init__(self, data_parallel_size: int | str = "auto", **kwargs: Any) -> None:
        kwargs.setdefault("tensor_parallel_size", 1)
        super().__init__(data_parallel_size=data_parallel_size, **kwargs)

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def register_fsdp2() -> None:
    """Make ``strategy: fsdp2`` a Lightning strategy name (idempotent; ``arm-rl`` calls it
    before parsing a ``fit``, so each launched rank has it too)."""
    if STRATEGY_NAME not in StrategyRegistry:
        StrategyRegistry.register(STRATEGY_NAME, FSDP2Strategy,
                                  description="FSDP2 over every device (arm_rl.fsdp.FSDP2Strategy)")


def model_parallel_sizes(strategy: ModelParallelStrategy) -> tuple[int, int]:
    """``(data_parallel_size, tensor_parallel_size)`` the strategy will build its mesh with
    (its "auto" values resolved as its ``setup_environment`` will)."""
    per_node, nodes = max(strategy.num_processes, 1), max(int(getattr(strategy, "num_nodes", 1)), 1)
    tp = strategy._tensor_parallel_size
    tp = per_node if tp == "auto" else int(tp)
    dp = strategy._data_parallel_size
    if dp == "auto":
        dp = nodes * per_node if isinstance(strategy, FSDP2Strategy) else nodes
    return int(dp), tp


def is_sharded(module: torch.nn.Module | None) -> bool:
    """True for a module :func:`shard_policy` (or any ``fully_shard``) has sharded."""
    return isinstance(module, FSDPModule)


def shard_policy(policy: torch.nn.Module, mesh: Any) -> torch.nn.Module:
    """``fully_shard`` each transformer block of ``policy`` (its ``layers``) and then the root
    over ``mesh`` (the data-parallel mesh), in place; ``forward_hidden`` becomes an FSDP2
    forward method (the loss scores with it). Returns ``policy``."""
    for block in getattr(policy, "layers", ()):
        fully_shard(block, mesh=mesh)
    fully_shard(policy, mesh=mesh)
    if hasattr(policy, "forward_hidden"):
        register_fsdp_forward_method(policy, "forward_hidden")
    return policy


@contextmanager
def gathered(policy: torch.nn.Module | None) -> Iterator[None]:
    """All parameters of a :func:`shard_policy`-sharded ``policy`` gathered for the block
    (one all-gather per FSDP2 unit, in module order, the same on every rank), and freed
    after it. Forwards inside the block do not reshard (FSDP2's forward hooks would
    otherwise free a block mid-rollout). A no-op for an unsharded module."""
    units = [m for m in policy.modules() if isinstance(m, FSDPModule)] if policy is not None else []
    if not units:
        yield
        return
    units[0].set_reshard_after_forward(False)              # recursive
    for m in units:
        m.unshard()
    try:
        yield
    finally:
        for m in units:
            m.reshard()
        # back to shard_policy's setting: blocks reshard after forward; the root never does
        # (FSDP2's own choice for a root, whose parameters the backward needs at once)
        for m in units:
            m.set_reshard_after_forward(m is not policy, recurse=False)


def full_state_dict(module: torch.nn.Module) -> dict[str, Tensor]:
    """The full (unsharded) weights of ``module`` on the host: a collective every rank must
    call; rank 0 gets the weights, the other ranks an empty dict."""
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> Tensor:
    """``torch.nn.utils.clip_grad_norm_`` that also takes FSDP2's sharded (DTensor) gradients:
    the norm is over every rank's shard (one all-reduce), the same on every rank, and
    returned as a plain tensor."""
    params = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total

"""The reward interface: a batch of generated images + their prompt records -> ``(B,)`` rewards.

Every reward (kind ``reward``, entry-point group ``arm.rewards``) subclasses :class:`Reward`
and implements :meth:`Reward.compute`; callers use ``reward(images, records)``, which
validates the result: a reward that returns the wrong shape, a non-tensor or NaN/inf is a
:class:`RewardError` naming the reward and the offending rows, never a silent corruption
of the advantages.

Images arrive decoded, in batches: a list of PIL images or a float tensor ``(B, 3, H, W)``
in ``[-1, 1]`` (:func:`as_pil` / :func:`as_tensor` convert). ``codes`` (the generated
visual-token grid ``(B, h*w)``) is passed too when available, so token-space rewards (a
judge that reads tokens) need not re-encode. A reward may live on another device
(``device``): the result is always returned on the CPU as float32.

Rewards are plain objects, not ``nn.Module`` s: the models they hold (judges, encoders)
must never be registered in the policy's LightningModule, reach its optimizer or be saved
in its checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from arm_data.tasks import UnknownTaskError, get_task
from arm_tokenizer.images import pil_to_tensor, tensor_to_pil
from torch import Tensor

__all__ = ["Reward", "RewardError", "as_pil", "as_tensor", "task_schema"]


class RewardError(ValueError):
    """A reward produced an invalid value or got input it cannot score (names the reward)."""


def task_schema(task: str) -> str:
    """The record schema ``task`` reads (``Task.schema``: ``t2i`` for a plugin task with
    ``reads = "t2i"``), so a reward asks what a record is rather than how its task is named;
    a name no installed package registers stays itself."""
    try:
        return get_task(task, aliases=False).schema
    except UnknownTaskError:
        return task


def as_pil(images: Any) -> list[Any]:
    """A list of PIL images from a list of PIL images or a ``(B, 3, H, W)`` tensor in [-1, 1]."""
    if isinstance(images, Tensor):
        x = images.detach().float().cpu()
        return [tensor_to_pil(im) for im in (x if x.dim() == 4 else x[None])]
    return list(images)


def as_tensor(images: Any) -> Tensor:
    """A float ``(B, 3, H, W)`` tensor in [-1, 1] from PIL images or such a tensor."""
    if isinstance(images, Tensor):
        return images.float()
    return torch.stack([pil_to_tensor(im.convert("RGB")) for im in images])


class Reward:
    """Base class of RL rewards (see the module docstring).

    Subclasses implement :meth:`compute` and document their constructor args (the YAML
    schema). ``name`` is the label used in logs and errors (default: the class name).

    Args:
        name: label for logs and errors; None = the registry-style class name.
        device: where the reward's own models run (``"cpu"``, ``"cuda:1"``, ...).
    """

    #: set by a reward that scores only some tasks (e.g. ``("t2i",)``); None = any task. A
    #: task that reads the records of a listed one (``Task.reads``, e.g. a plugin task with
    #: ``reads = "t2i"``) is scored too: rewards read the records, not the prompt format.
    tasks: tuple[str, ...] | None = None

    def __init__(self, name: str | None = None, device: str = "cpu") -> None:
        self.name = name or type(self).__name__
        self.device = torch.device(device)

    def scores(self, task: str) -> bool:
        """Whether this reward scores prompts of ``task`` (see :attr:`tasks`)."""
        return self.tasks is None or task in self.tasks or task_schema(task) in self.tasks

    def compute(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        """Rewards ``(B,)`` for ``B`` images and their records (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute()")

    def bind(self, **context: Any) -> None:
        """Receive the trainer's context (``policy``, ``layout``, ``text_tokenizer``,
        ``visual_tokenizer``) before the first call; rewards that need none ignore it."""

    def components(self) -> dict[str, Reward]:
        """Named sub-rewards whose values are logged separately (composites override)."""
        return {}

    def __call__(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        n = len(images)
        if n != len(records):
            raise RewardError(f"reward {self.name!r}: {n} images for {len(records)} prompt records")
        if self.tasks is not None:
            bad = sorted({r.task for r in records if not self.scores(r.task)})
            if bad:
                raise RewardError(f"reward {self.name!r} scores tasks {list(self.tasks)} but got "
                                  f"{bad} prompts; choose another reward for those tasks")
        out = self.compute(images, records, codes)
        return self.validate(out, n, records)

    def validate(self, out: Any, n: int, records: Sequence[Any] = ()) -> Tensor:
        """``out`` as a CPU float32 ``(n,)`` tensor, or a :class:`RewardError` saying what is wrong."""
        if not isinstance(out, Tensor):
            raise RewardError(f"reward {self.name!r} returned {type(out).__name__}, expected a "
                              f"FloatTensor of shape ({n},)")
        if out.shape != (n,):
            raise RewardError(f"reward {self.name!r} returned shape {tuple(out.shape)} for {n} "
                              f"images; expected ({n},)")
        out = out.detach().float().cpu()
        bad = (~torch.isfinite(out)).nonzero().flatten().tolist()
        if bad:
            where = [records[i].describe() if i < len(records) and hasattr(records[i], "describe")
                     else f"row {i}" for i in bad[:3]]
            raise RewardError(f"reward {self.name!r} returned non-finite values {out[bad[:3]].tolist()} "
                              f"at rows {bad[:10]} ({'; '.join(where)})")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

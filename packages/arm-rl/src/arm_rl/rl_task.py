"""What GRPO does with each task: :class:`RLTask`, the values of ``GRPOTrainer(tasks=...)``.

A task is a class of the registered ``task`` kind (:mod:`arm_data.tasks`); GRPO trains it
when its class builds prompts from prompt records (``prompts`` and ``prompt_condition``)
and the config gives it a reward. Nothing here knows a task by name, so a plugin's task
trains as the built-ins do::

    model:
      class_path: grpo
      init_args:
        tasks:
          t2i:  {weight: 1.0, temperature: 0.7, reward: {class_path: shapes_t2i}}
          edit: {weight: 1.0, temperature: 1.0, guidance_scale: 1.5, image_guidance_scale: 1.25,
                 reward: {class_path: shapes_edit}}

The per-task arguments of earlier releases (``t2i_reward``, ``edit_temperature``,
``edit_cfg_scale``, ...) are mapped onto ``tasks`` by :func:`resolve_tasks`, with a
:class:`DeprecationWarning` that names the new spelling; they go in the next release.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from arm_data.tasks import Task, UnknownTaskError, get_task

from arm_rl.rewards.base import Reward
from arm_rl.rewards.shapes import ShapesEditReward, ShapesT2IReward
from arm_rl.rollout import TaskSampling

__all__ = ["LEGACY_ARGUMENTS", "RLTask", "check_tasks", "resolve_tasks"]


@dataclass
class RLTask:
    """How GRPO samples and scores one task (an entry of ``GRPOTrainer(tasks={name: RLTask})``).

    Args:
        weight: the task's share of the prompts (normalised over the tasks; the prompt data
            module draws this mix).
        temperature: rollout sampling temperature (ARM: 0.7 T2I, 1.0 editing).
        top_k: keep the ``k`` most likely tokens when sampling (ARM: 1000); None = all.
        guidance_scale: classifier-free guidance over the text condition during rollouts
            (1 = none).
        image_guidance_scale: guidance over the image condition, for tasks that condition on
            an image (editing's three-branch guidance); 1 = none.
        reward: the reward of this task's rollouts (kind ``reward``, e.g.
            ``{class_path: shapes_t2i}``); required.
    """

    weight: float = 1.0
    temperature: float = 1.0
    top_k: int | None = 1000
    guidance_scale: float = 1.0
    image_guidance_scale: float = 1.0
    reward: Reward | None = None

    def sampling(self) -> TaskSampling:
        """The rollout sampler's settings of this task."""
        return TaskSampling(self.temperature, self.top_k, self.guidance_scale, self.image_guidance_scale)

    def summary(self) -> dict[str, Any]:
        """Plain data (the reward by name), for export metadata and logs."""
        return {"weight": self.weight, "temperature": self.temperature, "top_k": self.top_k,
                "guidance_scale": self.guidance_scale, "image_guidance_scale": self.image_guidance_scale,
                "reward": None if self.reward is None else self.reward.name}


#: The per-task arguments of earlier releases -> (task, RLTask field).
LEGACY_ARGUMENTS: dict[str, tuple[str, str]] = {
    "t2i_reward": ("t2i", "reward"),
    "t2i_temperature": ("t2i", "temperature"),
    "t2i_cfg_scale": ("t2i", "guidance_scale"),
    "edit_reward": ("edit", "reward"),
    "edit_temperature": ("edit", "temperature"),
    "edit_cfg_scale": ("edit", "guidance_scale"),
    "edit_image_cfg_scale": ("edit", "image_guidance_scale"),
}
#: The shared ``top_k`` of earlier releases; its default is the one that is "not given".
LEGACY_TOP_K = 1000


def default_tasks() -> dict[str, RLTask]:
    """ARM's two RL tasks with its sampling settings and the ShapesWorld rule rewards (what
    ``tasks: null`` trains; the prompt data module then decides the mix)."""
    return {"t2i": RLTask(temperature=0.7, reward=ShapesT2IReward()),
            "edit": RLTask(temperature=1.0, reward=ShapesEditReward())}


def resolve_tasks(tasks: dict[str, RLTask] | None, legacy: dict[str, Any],
                  top_k: int | None = LEGACY_TOP_K) -> tuple[dict[str, RLTask], bool]:
    """``(tasks, mix_given)``: the tasks to train, and whether their weights are the mix.

    ``legacy``: the old per-task arguments (:data:`LEGACY_ARGUMENTS`; None = not given),
    mapped onto :func:`default_tasks` with a :class:`DeprecationWarning`; with ``tasks``
    too they are an error naming both. ``top_k``: the old shared top-k, the same.
    """
    given = {k: v for k, v in legacy.items() if v is not None}
    unknown = sorted(set(given) - set(LEGACY_ARGUMENTS))
    if unknown:
        raise TypeError(f"unknown per-task argument(s) {unknown}")
    old_top_k = top_k != LEGACY_TOP_K
    if tasks is not None:
        if given or old_top_k:
            first = next(iter(given)) if given else "top_k"
            spelling = (f"tasks.{LEGACY_ARGUMENTS[first][0]}.{LEGACY_ARGUMENTS[first][1]}" if given
                        else "tasks.<name>.top_k")
            raise ValueError(f"GRPOTrainer got both tasks and {', '.join([*given, *(['top_k'] if old_top_k else [])])}: "
                             f"{first} is the old spelling of {spelling}; give tasks only")
        return dict(tasks), True
    out = default_tasks()
    for t in out.values():
        t.top_k = top_k
    for arg, value in given.items():
        task, field = LEGACY_ARGUMENTS[arg]
        setattr(out[task], field, value)
    if given or old_top_k:
        new = [f"tasks.{LEGACY_ARGUMENTS[a][0]}.{LEGACY_ARGUMENTS[a][1]}" for a in given]
        old = [*given, *(["top_k"] if old_top_k else [])]
        if old_top_k:
            new.append("tasks.<name>.top_k")
        warnings.warn(f"GRPOTrainer: {', '.join(old)} {'is' if len(old) == 1 else 'are'} deprecated (removed in "
                      f"the next release); write {', '.join(new)} (tasks: {{t2i: {{weight, temperature, top_k, "
                      "guidance_scale, reward}, edit: {...}})", DeprecationWarning, stacklevel=3)
    return out, False


def check_tasks(tasks: dict[str, RLTask]) -> dict[str, TaskSampling]:
    """Check that every task can be trained; returns each one's :class:`TaskSampling`.

    A task must be registered, its class must build prompts from prompt records
    (``prompts`` and ``prompt_condition``), and it needs a reward that scores it; weights
    are finite, >= 0 and not all 0. Every error names ``tasks.<name>`` and what it lacks.
    """
    if not tasks:
        raise ValueError("GRPOTrainer tasks is empty: give at least one, e.g. "
                         "{t2i: {reward: {class_path: shapes_t2i}}}")
    sampling = {}
    for name, cfg in tasks.items():
        where = f"GRPOTrainer tasks.{name}"
        if not isinstance(cfg, RLTask):
            raise TypeError(f"{where} must be an RLTask (weight, temperature, top_k, guidance_scale, "
                            f"image_guidance_scale, reward), got {type(cfg).__name__}")
        try:
            owner = get_task(name, aliases=False)
        except UnknownTaskError as exc:
            raise ValueError(f"{where}: {exc}") from None
        cls = type(owner)
        lacks = [m for m in ("prompts", "prompt_condition") if getattr(cls, m) is getattr(Task, m)]
        if lacks:
            raise ValueError(f"{where}: task {name!r} ({cls.__module__}.{cls.__qualname__}) cannot make an RL "
                             f"prompt: it does not implement {' or '.join(m + '()' for m in lacks)} "
                             "(arm_data.tasks.Task); RL trains tasks that generate an image from a prompt record")
        if cfg.reward is None:
            raise ValueError(f"{where} has no reward: give tasks.{name}.reward (a component of kind 'reward', "
                             "e.g. {class_path: shapes_t2i}; `arm-rl list` names them)")
        if not isinstance(cfg.reward, Reward):
            raise TypeError(f"{where}.reward must be an arm_rl.rewards.Reward, got {type(cfg.reward).__name__}")
        if not cfg.reward.scores(name):
            raise ValueError(f"{where}.reward {cfg.reward.name!r} scores only {list(cfg.reward.tasks)} prompts")
        if not (math.isfinite(cfg.weight) and cfg.weight >= 0):
            raise ValueError(f"{where}.weight must be a finite number >= 0, got {cfg.weight}")
        try:
            sampling[name] = cfg.sampling()
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if not sum(t.weight for t in tasks.values()) > 0:
        raise ValueError(f"GRPOTrainer tasks weights {({n: t.weight for n, t in tasks.items()})} select no task: "
                         "give at least one a positive weight")
    return sampling

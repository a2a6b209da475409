"""Tasks as a registered kind: one class per task, found through the ``arm.tasks`` entry points.

A task (:class:`~arm_data.tasks.base.Task`) owns everything that differs between ARM's
tasks: the record schema it reads, the token layout and loss mask it writes and that
layout's length, the prompt generation starts from, and what classifier-free guidance's
extra branches drop. Pre-tokenization, the token data module, the pipelines and RL ask
the task instead of branching on its name. The built-ins (``t2i``, ``und``, ``edit``,
``text``) register through arm-data's ``pyproject.toml`` exactly as a plugin's task does::

    [project.entry-points."arm.tasks"]
    my_task = "my_plugin.tasks:MyTask"

Task names are the formats' names (they are stored in checkpoints as ``task_names``);
the record names of datasets and shards (``pair``, ``vqa``) are accepted as aliases in
:data:`~arm_data.tasks.registry.RECORD_ALIASES`, the one place that maps them.
"""

from arm_data.tasks.base import GuidanceBranches, Task
from arm_data.tasks.registry import (
    BUILTIN_TASKS,
    RECORD_ALIASES,
    UnknownTaskError,
    canonical_task,
    get_task,
    record_name,
    task_id,
    task_names,
    vocab_specials,
)

__all__ = [
    "BUILTIN_TASKS",
    "RECORD_ALIASES",
    "GuidanceBranches",
    "Task",
    "UnknownTaskError",
    "canonical_task",
    "get_task",
    "record_name",
    "task_id",
    "task_names",
    "vocab_specials",
]

"""Looking tasks up: canonical names, the record-name aliases, integer task ids.

The one place that knows the two vocabularies: tasks are named as the formats name them
(``t2i``, ``und``, ``edit``, ``text``: the names in shards' batches and checkpoints'
``task_names``), while records, dataset files and shards call their schemas ``pair``,
``vqa`` and ``edit``. :data:`RECORD_ALIASES` maps the record names onto the task that
owns that schema, so old records and shards read unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from arm_tokenizer.framework import registry

from arm_data.tasks.base import Task
from arm_data.vocab import DEFAULT_SPECIAL_TOKENS

KIND = "task"
#: The built-in tasks, in the order of their integer ids (``task_ids`` in batches); a
#: checkpoint's ``task_names`` lists them in this order, so it never changes.
BUILTIN_TASKS: tuple[str, ...] = ("t2i", "und", "edit", "text")
#: Record names (records, dataset files, shards, ``--tasks``) -> the task owning that schema.
RECORD_ALIASES: dict[str, str] = {"pair": "t2i", "vqa": "und"}

_INSTANCES: dict[type, Task] = {}


class UnknownTaskError(ValueError):
    """A task name that no installed package registers."""


def task_names() -> list[str]:
    """Every registered task: the built-ins in id order, then the others sorted by name."""
    registered = {c.name for c in registry.list_components(KIND)}
    return [t for t in BUILTIN_TASKS if t in registered] + sorted(registered - set(BUILTIN_TASKS))


def canonical_task(name: str, *, aliases: bool = True) -> str:
    """The task name of ``name`` (a task name, or with ``aliases`` a record name such as ``pair``).

    Raises:
        UnknownTaskError: naming the known tasks (and the record names accepted).
    """
    if aliases and name in RECORD_ALIASES:
        return RECORD_ALIASES[name]
    known = task_names()
    if name in known:
        return name
    also = f" (record names {', '.join(sorted(RECORD_ALIASES))} are accepted too)" if aliases else ""
    raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}{also}. Install the package that "
                           f"provides it (a task registers under the 'arm.tasks' entry-point group)")


def get_task(name: str, *, aliases: bool = True) -> Task:
    """The task registered as ``name`` (or the owner of record name ``name``), one shared instance."""
    cls = registry.get(KIND, canonical_task(name, aliases=aliases))
    task = _INSTANCES.get(cls)
    if task is None:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise UnknownTaskError(f"task {name!r} is registered as {cls!r}, which is not a subclass of "
                                   f"arm_data.tasks.Task")
        task = _INSTANCES[cls] = cls()
    return task


def task_id(name: str) -> int:
    """The integer id of a task (its index in :func:`task_names`; built-ins are 0..3)."""
    if name in BUILTIN_TASKS:  # the hot path of batching: no registry lookup
        return BUILTIN_TASKS.index(name)
    names = task_names()
    if name not in names:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {names}")
    return names.index(name)


def record_name(task: str) -> str:
    """The name records of ``task``'s schema carry on disk (``t2i`` -> ``pair``; a plugin's own name)."""
    for record, owner in RECORD_ALIASES.items():
        if owner == task:
            return record
    return task


def vocab_specials(tasks: Iterable[str]) -> tuple[str, ...]:
    """The special tokens of a vocabulary serving ``tasks``: the built-in ones
    (:data:`~arm_data.vocab.DEFAULT_SPECIAL_TOKENS`, ids unchanged), then the tokens the
    built-ins lack that the tasks use (:meth:`~arm_data.tasks.Task.vocab_tokens`), task by
    task in name order. Text and special ids never move (the shape and image blocks after
    the specials do, so such a layout is another vocabulary, stored in the checkpoint). The
    built-in tasks add none: their layout is the one existing checkpoints carry.
    """
    out = list(DEFAULT_SPECIAL_TOKENS)
    for name in sorted({canonical_task(t) for t in tasks}):
        out.extend(tok for tok in get_task(name).vocab_tokens() if tok not in out)
    return tuple(out)

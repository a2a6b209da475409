"""Several pre-tokenization sources in one run, each with its record tasks and a weight.

``arm-data pretokenize`` takes sources as repeated ``--source SPEC`` or as a ``--sources
FILE``. A spec is ``PATH[:TASKS][@WEIGHT]``::

    shapes:train:pair,edit@2      ShapesWorld scenes, pair + edit records, weight 2
    data/photos:pair@0.7          a folder / JSONL / WebDataset path, pair records, weight 0.7
    data/vqa.jsonl:vqa            weight 1 (the default)
    data/edits                    the run's --tasks, weight 1

TASKS name records (``pair``, ``vqa``, ``edit``, ``interleaved``) or any registered task
(:mod:`arm_data.tasks`, a plugin's too): a task reading another task's records stands for
those (``t2i`` -> ``pair``, a plugin's ``caption`` -> ``pair``), as in a one-source run.

A sources file (YAML or JSON; relative paths are relative to the file) lists the same::

    - {path: photos, tasks: [pair], weight: 0.7}
    - {path: vqa.jsonl, tasks: [vqa], weight: 0.2}
    - {path: "shapes:train", tasks: [edit], weight: 0.1}

**What a weight means**: the source's share of the run's *items* (weights are normalised
over the sources). An item is one record of a dataset path, or one ShapesWorld scene
(which gives its pair record, its QA records and its edit record, as the tasks say). With
``--count N`` source ``i`` contributes ``N * w_i / sum(w)`` items (rounded by largest
remainder, so the shares add up to ``N``), cycling through its items in order when it has
fewer; without ``--count``, ``N`` is the largest total at which no dataset source repeats
an item (each source's share fits in its size), so the smallest source relative to its
weight is used whole and the others in part (their first items). ShapesWorld sources are
unbounded: a run of only ShapesWorld sources needs ``--count``.

Sources are laid out one after another in the order given (source 0's items, then source
1's, ...); each record's ``index`` is its item's position in that layout (repeated copies of
one item share it, so validation's hold-out by item keeps them on one side) and its
``extra["mix_source"]`` the source's number. The shards' manifest records every source
(path, tasks, weight, items taken and available), so a resumed run with other sources or
weights is refused, and one with the same ones is byte-identical.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arm_data.tasks import task_names

__all__ = ["SourceSpec", "parse_source", "read_sources_file", "MixedSource", "make_sources", "shares"]

_TASK_LIST = re.compile(r"^[A-Za-z_]+(?:,[A-Za-z_]+)*$")
# "@weight" at the very end; a '/' after the '@' means the '@' belongs to a directory name
_WEIGHT = re.compile(r"^(?P<body>.*)@(?P<weight>[^@/\\]*)$")


@dataclass(frozen=True)
class SourceSpec:
    """One source of a run: ``shapes:SPLIT`` or a dataset path, its tasks and weight.

    ``tasks`` None means the run's ``--tasks``; ``origin`` says where the user wrote it
    (``--source '...'`` or ``FILE:LINE``), for error messages.
    """

    path: str
    tasks: tuple[str, ...] | None = None
    weight: float = 1.0
    origin: str = ""

    def __post_init__(self) -> None:
        where = self.origin or repr(self.path)
        if not self.path:
            raise ValueError(f"{where}: empty source path")
        if self.tasks is not None:
            _record_tasks(self.tasks, where)
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) \
                or not math.isfinite(self.weight) or self.weight <= 0:
            raise ValueError(f"{where}: weight must be a number > 0, got {self.weight!r}")

    @property
    def is_shapes(self) -> bool:
        return self.path.startswith("shapes:")


def parse_source(text: str) -> SourceSpec:
    """``PATH[:TASKS][@WEIGHT]`` -> :class:`SourceSpec` (see the module docstring).

    A string that names an existing path as a whole is that path (so a file named
    ``a:b@c`` still works); otherwise ``@WEIGHT`` is split off the end, then ``:TASKS``
    (a comma list of words) off what is left.
    """
    origin = f"--source {text!r}"
    body, weight = text, 1.0
    m = _WEIGHT.match(text)
    if m and not os.path.exists(text):
        body = m["body"]
        try:
            weight = float(m["weight"])
        except ValueError:
            raise ValueError(f"{origin}: weight {m['weight']!r} is not a number (PATH[:TASKS][@WEIGHT])") from None
    tasks: tuple[str, ...] | None = None
    if body.startswith("shapes:"):
        parts = body.split(":")
        if len(parts) > 3:
            raise ValueError(f"{origin}: expected shapes:SPLIT[:TASKS][@WEIGHT]")
        body = ":".join(parts[:2])
        if len(parts) == 3:
            tasks = _task_list(parts[2], origin)
    elif ":" in body and not os.path.exists(body):
        head, _, tail = body.rpartition(":")
        if _TASK_LIST.match(tail) or tail == "":
            body, tasks = head, _task_list(tail, origin)
    return SourceSpec(body, tasks, weight, origin)


def _task_list(text: str, origin: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tasks:
        raise ValueError(f"{origin}: no tasks after ':'; choose from {_choices()}")
    return tasks


def _source_tasks() -> tuple[str, ...]:
    """The record names a source gives, in order (:func:`arm_data.pretokenize.source_tasks`)."""
    # deferred: breaks a cycle (pretokenize imports this module for its CLI)
    from arm_data.pretokenize import source_tasks

    return source_tasks()


def _choices() -> str:
    """What a source's tasks may name: the record names, then the other registered tasks."""
    names = _source_tasks()
    return ", ".join([*names, *(t for t in task_names() if t not in names)])


def _record_tasks(tasks: Sequence[str], where: str) -> tuple[str, ...]:
    """``tasks`` (record names or any registered task, e.g. a plugin's) as the record names
    a source gives (:func:`arm_data.pretokenize.record_tasks`); errors name ``where``."""
    # deferred: breaks a cycle (pretokenize imports this module for its CLI)
    from arm_data.pretokenize import record_tasks

    if not tasks:
        raise ValueError(f"{where}: no tasks given; choose from {_choices()}")
    try:
        return tuple(record_tasks(tasks))
    except ValueError as e:  # UnknownTaskError: names the known tasks and what to install
        raise ValueError(f"{where}: {e}") from None


def read_sources_file(path: str | os.PathLike) -> list[SourceSpec]:
    """A YAML/JSON list of ``{path, tasks, weight}`` (or ``{sources: [...]}``) -> specs.

    Relative paths are taken relative to the file's directory (ShapesWorld specs as they
    are). Errors name the file and the entry's line.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--sources {str(file)!r}: no such file")
    text = file.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{file}{line}: not valid YAML/JSON ({getattr(e, 'problem', e)})") from None
    if isinstance(data, dict) and set(data) == {"sources"}:
        data = data["sources"]
        node = next(v for k, v in node.value if k.value == "sources")
    if not isinstance(data, list) or not data:
        raise ValueError(f"{file}: expected a non-empty list of sources ({{path, tasks, weight}} each), "
                         f"or a mapping with one key 'sources' holding that list")
    specs = []
    for k, (entry, item_node) in enumerate(zip(data, node.value, strict=True)):
        where = f"{file}:{item_node.start_mark.line + 1}"
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: source {k} must be a mapping {{path, tasks, weight}}, "
                             f"got {type(entry).__name__}")
        unknown = sorted(set(entry) - {"path", "tasks", "weight"})
        if unknown:
            raise ValueError(f"{where}: source {k} has unknown key(s) {unknown}; allowed: path, tasks, weight")
        src = entry.get("path")
        if not isinstance(src, str) or not src:
            raise ValueError(f"{where}: source {k} needs a 'path' (a dataset path or shapes:SPLIT)")
        if not src.startswith("shapes:") and not os.path.isabs(src):
            src = str(file.parent / src)
        origin = f"{where} (source {k}, {entry['path']!r})"
        tasks = entry.get("tasks")
        if isinstance(tasks, str):
            tasks = _task_list(tasks, origin)
        elif tasks is not None:
            if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                raise ValueError(f"{origin}: tasks must be a list of {_choices()}")
            tasks = tuple(tasks)
        weight = entry.get("weight", 1.0)
        specs.append(SourceSpec(src, tasks, weight, origin))
    return specs


def shares(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` items by ``weights`` (largest remainder; ties go to the earlier source)."""
    w = sum(weights)
    exact = [total * x / w for x in weights]
    out = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


class MixedSource:
    """Several sources laid end to end, each giving its share of items (see the module docstring).

    Args:
        parts: ``(spec, source, items)`` per source: ``items`` is its share; a dataset
            source with fewer items is cycled through in order.
    """

    def __init__(self, parts: Sequence[tuple[SourceSpec, Any, int]], tasks: Sequence[str]) -> None:
        self.parts = list(parts)
        self.tasks = tuple(t for t in _source_tasks() if t in set(tasks))
        self._starts = [0]
        for _, _, n in self.parts:
            self._starts.append(self._starts[-1] + n)

    def __len__(self) -> int:
        return self._starts[-1]

    def describe(self) -> dict[str, Any]:
        out = []
        for (spec, src, n), start in zip(self.parts, self._starts, strict=False):
            d = dict(src.describe())
            d.update(tasks=list(src.tasks), weight=float(spec.weight), items=n, start=start,
                     available=None if spec.is_shapes else len(src))
            out.append(d)
        return {"kind": "mix", "sources": out}

    def load(self, i: int, image_size: tuple[int, int]) -> list[Any]:
        s = bisect.bisect_right(self._starts, i) - 1
        spec, src, _ = self.parts[s]
        j = i - self._starts[s]
        if not spec.is_shapes:
            j %= len(src)
        records = src.load(j, image_size)
        for r in records:
            r.index = self._starts[s] + j
            r.extra = {**r.extra, "mix_source": s}
        return records


def make_sources(specs: Sequence[SourceSpec], default_tasks: Sequence[str], count: int | None,
                 seed: int = 0, num_questions: int = 4, difficulty: Any = "full") -> MixedSource:
    """Build every source of ``specs`` and split the run's items among them by weight.

    Args:
        specs: the sources (from :func:`parse_source` or :func:`read_sources_file`).
        default_tasks: tasks of a spec that names none (``--tasks``).
        count: the run's total items; None = the largest total at which no dataset source
            repeats an item.
        seed, num_questions, difficulty: ShapesWorld settings (every ``shapes:`` source).
    """
    # deferred: breaks a cycle (pretokenize imports this module for its CLI)
    from arm_data.pretokenize import RecordsSource, ShapesSource

    if not specs:
        raise ValueError("no sources given: use --source SPEC (repeatable) or --sources FILE")
    if count is not None and count < 1:
        raise ValueError(f"--count must be >= 1, got {count}")
    if any(s.tasks is None for s in specs):
        _record_tasks(default_tasks, "--tasks")
    built: list[tuple[SourceSpec, tuple[str, ...], Any]] = []
    for spec in specs:
        where = spec.origin or repr(spec.path)
        tasks = _record_tasks(spec.tasks if spec.tasks is not None else default_tasks, where)
        if spec.is_shapes:
            built.append((spec, tasks, None))
            continue
        if not os.path.exists(spec.path) and not any(c in spec.path for c in "*?{"):
            raise FileNotFoundError(f"{where}: no such dataset path {spec.path!r} (or use shapes:train|val|heldout)")
        try:
            src = RecordsSource(spec.path, tasks)
        except (ValueError, OSError) as e:
            raise type(e)(f"{where}: {e}") from None
        if spec.tasks is not None:  # tasks the user named must be there
            empty = [t for t, r in zip(tasks, src.readers, strict=True) if len(r) == 0]
            if empty:
                raise ValueError(f"{where}: no {'/'.join(empty)} records in {spec.path!r} ({src.format} format)")
        if len(src) == 0:
            raise ValueError(f"{where}: no {'/'.join(tasks)} records in {spec.path!r} ({src.format} format)")
        built.append((spec, tasks, src))
    weights = [s.weight for s, _, _ in built]
    total_w = sum(weights)
    if count is None:
        finite = [(s, src) for s, _, src in built if src is not None]
        if not finite:
            raise ValueError("ShapesWorld is unbounded: give --count (the run's items, shared by weight)")
        # the largest N with N * w / W <= len for every dataset source (a hair of slack for floats)
        count = min(math.floor(len(src) * total_w / s.weight + 1e-9) for s, src in finite)
    ns = shares(weights, count)
    parts = []
    for (spec, tasks, src), n in zip(built, ns, strict=True):
        if n == 0:
            raise ValueError(f"{spec.origin or spec.path}: weight {spec.weight:g} gives it 0 of the run's "
                             f"{count} items; raise --count or its weight")
        if src is None:
            try:
                src = ShapesSource(spec.path.split(":", 1)[1], seed, tasks, n, num_questions, difficulty)
            except ValueError as e:
                raise ValueError(f"{spec.origin or spec.path}: {e}") from None
        parts.append((spec, src, n))
    return MixedSource(parts, [t for _, tasks, _ in built for t in tasks])

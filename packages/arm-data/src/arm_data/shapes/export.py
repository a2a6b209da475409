"""Export ShapesWorld splits to disk in the three on-disk formats (folder, JSONL, wds).

The layouts are those of ``.agents/formats.md`` and are written by the shared writers of
:mod:`arm_data.datasets.writers` (so the real-data readers read them back exactly):

* ``pair``: image + caption; extra fields ``spec``, ``caption_attributes`` and
  ``caption_relations`` (what to check when the caption is a T2I prompt), ``split``,
  ``index``, ``seed``.
* ``vqa``: image + ``conversation`` (all questions of the sample as user/assistant turns);
  extra ``qa`` (the pairs with their kinds) and ``spec``.
* ``edit``: source + target images + instruction; extra ``source_spec``, ``target_spec``,
  ``edit`` (the :class:`EditSpec`).

A record is built by the task owning its schema (:meth:`arm_data.tasks.Task.read` of the
fields below, so what is written is what a reader gives back); ``task`` may also name a
registered task reading one of these schemas (it is exported under the schema's record
name). Keys are ``<split>-<index:08d>`` (no dots). Images are PNG (lossless). Every file and
shard is written atomically (temp file in the same directory + rename), so an
interrupted export never leaves a half-written file behind; samples are generated and
written chunk by chunk, so memory stays flat for large counts.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from PIL import Image

from arm_data.datasets.writers import INDEX_NAME, write_folder, write_jsonl, write_wds
from arm_data.records import ImageRef, Record
from arm_data.shapes.splits import check_split
from arm_data.shapes.world import ShapesSample, ShapesWorld
from arm_data.tasks import get_task, record_name, task_names

FORMATS: tuple[str, ...] = ("folder", "jsonl", "wds")


def _png(image: Image.Image) -> ImageRef:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return ImageRef(buf.getvalue(), name="shapesworld.png")


Fields = tuple[dict[str, Any], dict[str, ImageRef]]


def _pair_fields(sample: ShapesSample) -> Fields:
    return ({"text": sample.caption, "spec": sample.spec.to_dict(),
             "caption_attributes": sorted(sample.caption_attributes),
             "caption_relations": [list(r) for r in sample.caption_relations]},
            {"image": _png(sample.image)})


def _vqa_fields(sample: ShapesSample) -> Fields:
    conv = []
    for qa in sample.qa:
        conv += [{"role": "user", "text": qa.question}, {"role": "assistant", "text": qa.answer}]
    return ({"conversation": conv, "spec": sample.spec.to_dict(), "qa": [q.to_dict() for q in sample.qa]},
            {"image": _png(sample.image)})


def _edit_fields(sample: ShapesSample) -> Fields:
    e = sample.edit
    return ({"instruction": e.instruction, "source_spec": e.source.to_dict(), "target_spec": e.target.to_dict(),
             "edit": e.edit.to_dict()},
            {"source": _png(e.source_image), "target": _png(e.target_image)})


#: What a scene gives each record schema (by the task owning it): the JSON fields (the
#: task's own and the extra ones) and the images.
SCENE_FIELDS: dict[str, Callable[[ShapesSample], Fields]] = {
    "t2i": _pair_fields, "und": _vqa_fields, "edit": _edit_fields,
}
#: The record names of the schemas ShapesWorld makes (``pair``, ``vqa``, ``edit``).
TASKS: tuple[str, ...] = tuple(record_name(schema) for schema in SCENE_FIELDS)


def export_tasks() -> tuple[str, ...]:
    """What an export's ``task`` may name: :data:`TASKS`, then every other registered task
    reading one of those schemas (``t2i``, ``und``, ``text``, a plugin's), by name."""
    others = (t for t in task_names() if t not in TASKS and get_task(t, aliases=False).schema in SCENE_FIELDS)
    return (*TASKS, *others)


def _schema(task: str) -> str:
    """The schema (owning task's name) of ``task``, one ShapesWorld provides."""
    schema = get_task(task).schema
    if schema not in SCENE_FIELDS:
        raise ValueError(f"task {task!r} reads {record_name(schema)!r} records, which ShapesWorld does not make; "
                         f"it makes {', '.join(TASKS)}")
    return schema


def sample_record(sample: ShapesSample, task: str) -> Record:
    """The :mod:`arm_data.records` record of one sample for ``task`` (a record name such as
    ``pair``, or a task reading one of ShapesWorld's schemas), built by its task's ``read``."""
    schema = _schema(task)
    key = f"{sample.split}-{sample.index:08d}"
    fields, images = SCENE_FIELDS[schema](sample)
    base = {"split": sample.split, "index": sample.index, "seed": sample.seed}
    return get_task(schema).read({**base, **fields}, images, key, f"ShapesWorld {key}")


def _records(world: ShapesWorld, task: str, start: int, count: int) -> Iterator[Any]:
    for i in range(start, start + count):
        yield sample_record(world[i], task)


def _atomic_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode("utf-8"))


def export_split(out: str | os.PathLike, split: str = "train", task: str = "pair",
                 fmt: str = "wds", count: int = 100, width: int = 64, height: int = 64,
                 seed: int = 0, start: int = 0, samples_per_shard: int = 1000,
                 num_questions: int = 4) -> dict[str, Any]:
    """Write samples ``start .. start+count-1`` of ``split`` to ``out``.

    Args:
        out: output directory (created).
        split: ``train``, ``val`` or ``heldout``.
        task: ``pair``, ``vqa`` or ``edit`` (or a registered task reading one of these).
        fmt: ``folder``, ``jsonl`` or ``wds``.
        count: number of samples.
        width, height: image size in pixels.
        seed: world seed.
        start: first sample index.
        samples_per_shard: samples per tar shard (``wds``) / per write chunk.
        num_questions: questions per image (``vqa``).

    Returns a summary dict (nothing but the format's own files is written, so the
    real-data readers see no stray files).
    """
    check_split(split)
    task = record_name(_schema(task))  # written under its record name, as the readers expect
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if count < 1 or start < 0 or samples_per_shard < 1:
        raise ValueError(f"need count >= 1, start >= 0, samples_per_shard >= 1; got "
                         f"{count}, {start}, {samples_per_shard}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    world = ShapesWorld(split=split, seed=seed, width=width, height=height,
                        length=start + count, num_questions=max(1, num_questions))
    shards: list[dict[str, Any]] = []
    if fmt == "jsonl":
        write_jsonl(_records(world, task, start, count), root)
    else:
        for s, lo in enumerate(range(start, start + count, samples_per_shard)):
            n = min(samples_per_shard, start + count - lo)
            chunk = list(_records(world, task, lo, n))
            if fmt == "folder":
                write_folder(chunk, root)
            else:
                # One call per shard keeps memory flat; the pattern carries the shard number
                # itself (write_wds formats it with the call's shard counter, 0, which a
                # pattern without a placeholder ignores). index.json is rewritten below.
                name = f"shard-{s:06d}.tar"
                write_wds(chunk, root, samples_per_shard=n, pattern=name)
                shards.append({"path": name, "num_samples": n})
    if fmt == "wds":
        _atomic_json(root / INDEX_NAME, {"format": "wds", "task": task, "num_samples": count,
                                         "shards": shards})
    return {"dataset": "shapesworld", "split": split, "task": task, "format": fmt,
            "count": count, "start": start, "seed": seed, "width": width, "height": height,
            "out": str(root)}

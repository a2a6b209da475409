"""Writers for the three on-disk formats: the exact inverse of the readers.

``write_folder``, ``write_jsonl`` and ``write_wds`` take records
(:mod:`arm_data.records`) and write them so that :class:`FolderRecords`,
:class:`JsonlRecords` and :class:`WdsRecords` read back the same samples: the same
pixels (images held as files or bytes are copied byte for byte; decoded PIL images are
written as PNG, which is lossless), the same texts and the same extra fields. They serve
format conversion (e.g. a folder to shards) and the ShapesWorld exporter.

Shards are written atomically (a temp file in the same directory, then ``os.replace``)
with fixed member metadata (mtime 0), so writing the same records twice gives
byte-identical shards. ``DIR/index.json`` lists every shard's sample count::

    {"format": "wds", "task": "pair", "num_samples": 250,
     "shards": [{"path": "shard-000000.tar", "num_samples": 100}, ...]}

and the reader uses it to notice shards that lost whole samples.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import webdataset as wds
from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from PIL import Image

from arm_data.datasets.common import schema_task
from arm_data.records import ImageLike, ImageRef, Record

__all__ = ["record_fields", "image_bytes", "write_folder", "write_jsonl", "write_wds", "INDEX_NAME"]

INDEX_NAME = "index.json"
_PIL_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tif", "PPM": "ppm"}


def record_fields(record: Record) -> dict[str, Any]:
    """The record's JSON fields without its images: ``task``, its text fields (the task's
    :meth:`~arm_data.tasks.Task.record_fields`) and ``extra``."""
    task = getattr(record, "task", None)
    if not isinstance(task, str):
        raise TypeError(f"not a record: {type(record).__name__}")
    out: dict[str, Any] = {"task": task, **schema_task(task).record_fields(record)}
    clash = set(out) & set(record.extra)
    if clash:
        raise ValueError(f"record {record.key!r}: extra fields {sorted(clash)} clash with the task's own fields")
    out.update(record.extra)
    return out


def image_bytes(image: ImageLike) -> tuple[bytes, str]:
    """Encoded bytes and extension of an image: files/bytes as they are, PIL images as PNG."""
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue(), "png"
    if isinstance(image, ImageRef):
        data = image.read_bytes()
        if isinstance(image.source, str):
            ext = Path(image.source).suffix.lstrip(".").lower()
            if ext:
                return data, ext
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or "PNG"
        return data, _PIL_EXT.get(fmt, fmt.lower())
    raise TypeError(f"expected an ImageRef or a PIL image; got {type(image).__name__}")


def _key(record: Record, i: int) -> str:
    key = record.key or f"{i:06d}"
    if "." in key or "/" in key or "\\" in key or not key:
        raise ValueError(f"sample key {key!r} must not contain '.', '/' or '\\' (keys name files and tar members)")
    return key


def _atomic_write(path: Path, data: bytes) -> None:
    """The library's atomic writer, without fsync: folders hold many small files."""
    atomic_write_bytes(path, data, fsync=False)


def _json_bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _members(record: Record, key: str) -> dict[str, bytes]:
    """Member suffix -> bytes, as both the folder and the shard layouts name them."""
    fields = record_fields(record)
    task = schema_task(fields.pop("task"))
    images = task.record_image_refs(record)
    if not task.image_fields:
        raise ValueError(f"record {record.key!r}: task {record.task!r} has no fixed image fields, so folders and "
                         "tar shards cannot hold it; write a JSONL manifest")
    out: dict[str, bytes] = {}
    for role, img in images.items():  # one image is <key>.<ext>, several <key>.<role>.<ext>
        data, ext = image_bytes(img)
        out[f"{role}.{ext}" if len(images) > 1 else ext] = data
    if task.text_field and task.text_field in fields:
        out["txt"] = fields.pop(task.text_field).encode("utf-8")
    json_required = any("json" in alt and "txt" not in alt for alt in task.sidecars)
    if fields or json_required:
        out["json"] = _json_bytes(fields)
    return out


def _single_task(records: list[Record]) -> str:
    tasks = {r.task for r in records}
    if len(tasks) > 1:
        raise ValueError(f"this format holds one task per directory; got {sorted(tasks)} (JSONL can mix them)")
    return tasks.pop() if tasks else "pair"


def write_folder(records: Iterable[Record], root: str | os.PathLike) -> int:
    """Write records of one task as a folder with sidecars; returns how many were written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    recs = list(records)
    _single_task(recs)
    for i, rec in enumerate(recs):
        key = _key(rec, i)
        for suffix, data in _members(rec, key).items():
            _atomic_write(root / f"{key}.{suffix}", data)
    return len(recs)


def write_jsonl(records: Iterable[Record], root: str | os.PathLike, image_dir: str = "images") -> int:
    """Write records (tasks may be mixed) as ``root/manifest.jsonl`` + ``root/<image_dir>/``.

    Each line carries ``"key"`` so the reader restores the same keys.
    """
    root = Path(root)
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    lines = []
    n = 0
    for i, rec in enumerate(records):
        key = _key(rec, i)
        fields = record_fields(rec)
        images = schema_task(rec.task).record_image_refs(rec)
        for role, img in images.items():
            data, ext = image_bytes(img)
            name = f"{key}.{role}.{ext}" if len(images) > 1 else f"{key}.{ext}"
            _atomic_write(root / image_dir / name, data)
            fields[role] = f"{image_dir}/{name}"
        fields["key"] = key
        lines.append(json.dumps(fields, ensure_ascii=False, sort_keys=True))
        n += 1
    _atomic_write(root / "manifest.jsonl", ("\n".join(lines) + "\n").encode("utf-8") if lines else b"")
    return n


def write_wds(
    records: Iterable[Record],
    root: str | os.PathLike,
    samples_per_shard: int = 1000,
    pattern: str = "shard-{:06d}.tar",
) -> list[str]:
    """Write records of one task as WebDataset shards plus ``index.json``; returns the shard paths."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1; got {samples_per_shard}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    recs = list(records)
    task = _single_task(recs)
    paths: list[str] = []
    index: list[dict[str, Any]] = []
    for s, start in enumerate(range(0, len(recs), samples_per_shard)):
        chunk = recs[start:start + samples_per_shard]
        buf = io.BytesIO()
        with wds.TarWriter(buf, encoder=False, mtime=0.0, user="arm", group="arm") as sink:
            for i, rec in enumerate(chunk, start=start):
                key = _key(rec, i)
                sink.write({"__key__": key, **_members(rec, key)})
        path = root / pattern.format(s)
        _atomic_write(path, buf.getvalue())
        paths.append(str(path))
        index.append({"path": path.name, "num_samples": len(chunk)})
    meta = {"format": "wds", "task": task, "num_samples": len(recs), "shards": index}
    _atomic_write(root / INDEX_NAME, json.dumps(meta, indent=1).encode("utf-8"))
    return paths

"""Format (b): a JSONL manifest with image paths and fields, read as a map-style record source.

``DIR/manifest.jsonl`` holds one JSON object per line::

    {"task": "pair", "image": "images/000001.png", "text": "a red circle", ...extra}
    {"task": "vqa", "image": "...", "question": "...", "answer": "..."}      (or "conversation")
    {"task": "edit", "source": "...", "target": "...", "instruction": "..."}
    {"task": "interleaved", "segments": [{"text": "..."}, {"image": "..."}, ...]}   (MMC4/OBELICS-style)

Image paths are relative to the manifest's directory (absolute paths are allowed). An
optional ``"key"`` field names the sample (default: ``<manifest name>:<line>``). A line
without ``"task"`` takes the reader's ``task``; lines of other tasks are not this
reader's and are passed over (a mixed manifest serves three readers). Blank lines are
allowed. The task (:class:`arm_data.tasks.Task`) says which fields name images
(:meth:`~arm_data.tasks.Task.image_refs`) and reads the rest, so a registered plugin task's
records, a variable number of images included, read through this reader too.

The whole manifest is validated when the reader is built: an invalid JSON line, a line
that is not UTF-8 or lacks a field is reported to the :class:`ErrorPolicy` as
``manifest.jsonl:<line>`` and left out. Only the byte offsets of the good lines are
kept (two int64 numpy arrays, so a 10M-line manifest costs 160 MB and forked DataLoader
workers share it); a record is re-parsed from its line when asked for. Images stay lazy
(missing image files are found when they are decoded, like corrupt ones).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from arm_tokenizer.images import DEFAULT_MAX_PIXELS

from arm_data.datasets.common import parse_json_object, schema_task
from arm_data.errors import BadSampleError, ErrorPolicy
from arm_data.records import ImageRef, Record, record_from_fields

__all__ = ["JsonlRecords", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.jsonl"


class JsonlRecords:
    """Records of one task from a JSONL manifest (map-style: ``len`` + index).

    Example::

        recs = JsonlRecords("data/shapes-jsonl", task="vqa")   # reads data/shapes-jsonl/manifest.jsonl
        recs[0].turns()
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        task: str = "pair",
        policy: ErrorPolicy | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        """
        Args:
            manifest: the ``.jsonl`` file, or a directory holding ``manifest.jsonl``.
            task: which records to take (``pair``, ``vqa``, ``edit`` or a registered
                task); lines of other tasks are passed over, lines without a ``"task"``
                field are taken as this task.
            policy: receives bad lines (default: a fresh ``ErrorPolicy()``).
            max_pixels: decompression-bomb limit for the images.
        """
        self._task = schema_task(task)
        path = Path(manifest)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"JSONL manifest {str(path)!r} does not exist")
        self.path = path
        self.root = path.parent
        self.task = task
        self.policy = policy if policy is not None else ErrorPolicy()
        self.max_pixels = max_pixels
        self.other_tasks = 0  # lines that belong to other tasks (not errors)
        # Byte offset and line number of each of this task's good lines, as numpy arrays:
        # 16 bytes a sample, and no Python objects for DataLoader workers to copy-on-touch.
        offsets, lines = self._scan()
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lines = np.asarray(lines, dtype=np.int64)

    def _resolve(self, value: object, name: str, where: str) -> ImageRef:
        if not isinstance(value, str) or not value:
            raise BadSampleError(where, "invalid_record", f"{name!r} must be a non-empty path string")
        p = Path(value)
        if not p.is_absolute():
            p = self.root / p
        return ImageRef(str(p), max_pixels=self.max_pixels)

    def _record(self, raw: bytes, lineno: int) -> Record | None:
        """Parse one line into a record (``None`` for another task's line).

        Raises:
            BadSampleError: ``invalid_json``, ``bad_utf8`` or ``invalid_record``, at file:line.
        """
        where = f"{self.path}:{lineno}"
        # without its line break: a line cut short then fails where it ends, at this line
        obj = parse_json_object(raw.rstrip(b"\r\n"), where, first_line=lineno)
        task = obj.get("task", self.task)
        if task != self.task:
            if not isinstance(task, str):
                raise BadSampleError(where, "invalid_record", f"'task' must be a string; got {type(task).__name__}")
            try:
                other = schema_task(task)
            except ValueError as e:
                raise BadSampleError(where, "invalid_record", str(e).split(". ")[0]) from None
            if other is not self._task:
                return None  # another reader's line
        images = {name: self._resolve(value, name, where)
                  for name, value in self._task.image_refs(obj, where).items()}
        key = obj.pop("key", None)
        key = str(key) if key is not None else f"{self.path.name}:{lineno}"
        return record_from_fields(task, obj, images, key=key, where=where)

    def _scan(self) -> tuple[list[int], list[int]]:
        """Validate every line once (reporting bad ones) and keep where the good ones are."""
        offsets: list[int] = []
        lines: list[int] = []
        with open(self.path, "rb") as f:
            offset = 0
            for lineno, raw in enumerate(f, start=1):
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                try:
                    rec = self._record(raw, lineno)
                except BadSampleError as e:
                    self.policy.skip(e)
                    continue
                if rec is None:
                    self.other_tasks += 1
                    continue
                offsets.append(start)
                lines.append(lineno)
                self.policy.ok()
        return offsets, lines

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Record:
        """Record ``i``, re-read from its line (images not decoded).

        Raises:
            IndexError: past the end.
            BadSampleError: if the manifest changed since it was indexed.
        """
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} out of range for {self!r}")
        with open(self.path, "rb") as f:
            f.seek(int(self.offsets[i]))
            raw = f.readline()
        rec = self._record(raw, int(self.lines[i]))
        if rec is None:
            raise BadSampleError(f"{self.path}:{int(self.lines[i])}", "invalid_record",
                                 "the manifest changed after it was indexed")
        return rec

    def keys(self) -> list[str]:
        """The sample keys, in manifest order."""
        return [self[i].key for i in range(len(self))]

    def __repr__(self) -> str:
        return f"JsonlRecords({str(self.path)!r}, task={self.task!r}, n={len(self)})"

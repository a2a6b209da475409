"""Format (a): a folder of images with sidecar files, read as a map-style record source.

Layout per task (``<key>`` may contain dots and, with ``recursive=True``, sub-folders)::

    pair:  <key>.<png|jpg|...>   <key>.txt (caption)       [<key>.json (extra fields)]
    vqa:   <key>.<png|jpg|...>   <key>.json ("question" + "answer", or "conversation")
    edit:  <key>.source.<ext>    <key>.target.<ext>   <key>.txt (instruction)   [<key>.json]

The task says which (:class:`arm_data.tasks.Task`): its ``image_fields`` (one image is
``<key>.<ext>``, several are ``<key>.<field>.<ext>``), the field its ``.txt`` fills
(``text_field``) and the sidecars a sample needs (``sidecars``), so a plugin task whose
records have fixed image fields reads through this reader too.

Indexing lists the directory only; sidecars are read and images decoded when a record is
asked for, so a folder of a million samples indexes in seconds. Structural problems found
while indexing (an image without its caption, a caption without its image, two images
for one key, an edit without its target) go to the :class:`ErrorPolicy` as
``missing_sidecar`` / ``invalid_record`` and the sample is left out of the index. Problems
found when reading a record (non-UTF-8 caption, broken JSON) raise
:class:`BadSampleError` from :meth:`FolderRecords.__getitem__`; the torch datasets in
:mod:`arm_data.datasets.tasks` hand those to the policy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from arm_tokenizer.images import DEFAULT_MAX_PIXELS

from arm_data.datasets.common import IMAGE_EXTENSIONS, read_json_object, read_text, schema_task
from arm_data.errors import BadSampleError, ErrorPolicy
from arm_data.records import ImageRef, Record, record_from_fields

__all__ = ["FolderRecords"]

_NONE = 255  # "no such file" in the per-sample extension table


def _split_name(rel: str) -> tuple[str, str]:
    """``"a/b.source.png"`` -> (``"a/b.source"``, ``"png"``)."""
    base, _, ext = rel.rpartition(".")
    return (base, ext.lower()) if base else (rel, "")


class FolderRecords:
    """Records of one task read from a folder with sidecars (map-style: ``len`` + index).

    Example::

        recs = FolderRecords("data/pairs", task="pair")
        rec = recs[0]              # PairRecord(image=ImageRef(...), text="a red circle", ...)
        img = rec.load_image()     # decoded now
    """

    def __init__(
        self,
        root: str | os.PathLike,
        task: str = "pair",
        policy: ErrorPolicy | None = None,
        recursive: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        """
        Args:
            root: the folder.
            task: which records to read: ``pair``, ``vqa``, ``edit`` or a registered task
                (its record schema says which files make a sample).
            policy: receives index-time problems (default: a fresh ``ErrorPolicy()``).
            recursive: also index sub-folders (keys then contain ``/``).
            max_pixels: decompression-bomb limit for the images.
        """
        self._task = schema_task(task)
        self._images = self._task.image_fields
        if not self._images:
            raise ValueError(f"task {task!r} has no fixed image fields, so a folder with sidecars cannot hold "
                             "its records; use a JSONL manifest")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {str(self.root)!r} does not exist")
        self.task = task
        self.policy = policy if policy is not None else ErrorPolicy()
        self.recursive = recursive
        self.max_pixels = max_pixels
        # The index is numpy arrays, not Python objects: a million samples cost their key
        # bytes plus 4 bytes, and forked DataLoader workers share them instead of copying
        # every object they touch (reference counts write to the object's memory).
        self._cols = (*self._images, "txt", "json")
        self.exts: list[str] = []
        self._ext_ids: dict[str, int] = {}
        keys, layout = self._index()
        self._keys = np.array([k.encode("utf-8") for k in keys], dtype=bytes) if keys else np.zeros(0, "S1")
        self._layout = np.array(layout, dtype=np.uint8).reshape(len(keys), len(self._cols))

    def _list(self) -> list[str]:
        """Relative file names, sorted. Hidden files and folders (``.DS_Store``, macOS
        ``._x.png`` resource forks, writers' ``.x.tmp`` temp files) are not samples."""
        if not self.recursive:
            return sorted(e.name for e in os.scandir(self.root) if e.is_file() and not e.name.startswith("."))
        out = []
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            out.extend(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/") for f in files if not f.startswith("."))
        return sorted(out)

    def _index(self) -> tuple[list[str], list[tuple[int, ...]]]:
        """Group file names by key; report incomplete groups; return the complete ones as
        keys and, per key, the extension id of each column of ``self._cols`` (``_NONE`` if absent)."""
        groups: dict[str, dict[str, list[str]]] = {}
        for rel in self._list():
            base, ext = _split_name(rel)
            if ext in IMAGE_EXTENSIONS:
                if len(self._images) > 1:
                    key, _, role = base.rpartition(".")
                    if not key or role not in self._images:
                        continue  # not one of the sample's named images; ignored, like any unrelated file
                else:
                    key, role = base, self._images[0]
            elif ext in ("txt", "json"):
                key, role = base, ext
            else:
                continue
            groups.setdefault(key, {}).setdefault(role, []).append(rel)

        keys: list[str] = []
        layout: list[tuple[int, int, int, int]] = []
        for key in sorted(groups):
            g = groups[key]
            where = str(self.root / key)
            dup = [r for r, files in g.items() if len(files) > 1]
            if dup:
                self.policy.skip(BadSampleError(where, "invalid_record", f"several {dup[0]} files for one key: {g[dup[0]]}"))
                continue
            missing = [r for r in self._images if r not in g]
            missing += [alt[0] for alt in self._task.sidecars if not any(a in g for a in alt)]
            if missing:
                have = ", ".join(f[0] for f in g.values())
                self.policy.skip(BadSampleError(where, "missing_sidecar", f"missing {' and '.join(missing)} (found {have})"))
                continue
            keys.append(key)
            layout.append(tuple(self._ext_id(g[r][0]) if r in g else _NONE for r in self._cols))  # type: ignore[misc]
            self.policy.ok()
        return keys, layout

    def _ext_id(self, rel: str) -> int:
        ext = rel.rpartition(".")[2]  # as spelled on disk (".JPG" stays "JPG")
        if ext not in self._ext_ids:
            if len(self.exts) >= _NONE:
                raise ValueError(f"more than {_NONE} distinct file extensions in {str(self.root)!r}")
            self._ext_ids[ext] = len(self.exts)
            self.exts.append(ext)
        return self._ext_ids[ext]

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[str]:
        """The sample keys, in index order."""
        return [k.decode("utf-8") for k in self._keys.tolist()]

    def files(self, i: int) -> dict[str, str]:
        """Sample ``i``'s files: ``{"image"|"source"|"target"|"txt"|"json": path}``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {self!r}")
        key = self._keys[i].decode("utf-8")
        out = {}
        for role, ext_id in zip(self._cols, self._layout[i].tolist(), strict=True):
            if ext_id != _NONE:
                infix = f".{role}" if len(self._images) > 1 and role in self._images else ""
                out[role] = str(self.root / f"{key}{infix}.{self.exts[ext_id]}")
        return out

    def __getitem__(self, i: int) -> Record:
        """Read record ``i``'s sidecars (images stay lazy).

        Raises:
            IndexError: past the end.
            BadSampleError: unreadable sidecar (``bad_utf8``, ``invalid_json``,
                ``missing_file``) or missing fields (``invalid_record``).
        """
        path = self.files(i)
        key = self._keys[i].decode("utf-8")
        fields = read_json_object(path["json"]) if "json" in path else {}
        if "txt" in path and self._task.text_field:
            fields[self._task.text_field] = read_text(path["txt"])
        images = {r: ImageRef(path[r], max_pixels=self.max_pixels) for r in self._images}
        return record_from_fields(self.task, fields, images, key=key, where=str(self.root / key))

    def __repr__(self) -> str:
        return f"FolderRecords({str(self.root)!r}, task={self.task!r}, n={len(self)})"

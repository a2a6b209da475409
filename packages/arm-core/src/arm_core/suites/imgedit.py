"""ImgEdit, basic set (Ye et al., 2025, https://github.com/PKU-YuanGroup/ImgEdit).

Prompt file: ``basic_edit.json``, a JSON object ``key -> {id: "<category>/<file>.jpg", prompt,
edit_type}``; the images live under a folder given by ``--images`` (default: the JSON's own
folder), at ``<images>/<id>``. Layout its GPT-4o scorer reads: a flat folder of ``<key>.png``::

    OUT/<key>.png
"""

from __future__ import annotations

import os
from pathlib import Path

from arm_core.suites.base import (
    PromptItem,
    Suite,
    SuiteError,
    SuiteFormatError,
    read_json,
    require_str,
    safe_name,
)


class ImgEditSuite(Suite):
    """ImgEdit's ``basic_edit.json`` + images in, ``<key>.png`` out."""

    name = "imgedit"
    task = "edit"
    samples = 1
    fixed_samples = True

    def __init__(self, samples: int | None = None, method: str = "arm",
                 images: str | os.PathLike | None = None) -> None:
        super().__init__(samples, method)
        self.images = None if images is None else Path(images)

    def read(self, path: str | os.PathLike) -> list[PromptItem]:
        path = Path(path)
        data = read_json(path, "ImgEdit's basic_edit.json maps key -> {id, prompt, edit_type}")
        if not isinstance(data, dict):
            raise SuiteFormatError(path, "", f"expected a JSON object key -> {{id, prompt, edit_type}}, "
                                   f"got {type(data).__name__}; is this ImgEdit's basic_edit.json?")
        root = self.images or path.parent
        items = []
        for key, obj in data.items():
            where = f"key {key!r}"
            safe_name(key, path, where, "key")
            if not isinstance(obj, dict):
                raise SuiteFormatError(path, where, f"expected an object {{id, prompt, edit_type}}, "
                                       f"got {type(obj).__name__}")
            prompt = require_str(obj, "prompt", path, where, self.name)
            image_id = require_str(obj, "id", path, where, self.name)
            tag = str(obj.get("edit_type") or "all")
            items.append(PromptItem(key, prompt, tag, obj, source=root / image_id, where=f"{path}:{where}"))
        if not items:
            raise SuiteError(f"{path}: no entries (an empty {self.name} file)")
        return items

    def outputs(self, item: PromptItem, out: Path) -> list[Path]:
        return [out / f"{item.item_id}.png"]

"""GEdit-Bench (Liu et al., Step1X-Edit, 2025, https://github.com/stepfun-ai/Step1X-Edit):
instruction editing in 11 task types, English and Chinese.

Prompt files: a local export of the dataset (``stepfun-ai/GEdit-Bench``) with its fields
``task_type``, ``key``, ``instruction``, ``instruction_language`` (``en`` / ``cn``) and
``input_image``: either a parquet file (``input_image`` as the datasets ``Image`` struct
``{bytes, path}``; needs ``pyarrow``) or a JSONL file whose ``input_image`` is an image path
relative to the JSONL's folder. Layout its VIEScore script reads::

    OUT/<method>/fullset/<task_type>/<en|cn>/<key>.png
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from arm_core.suites import base
from arm_core.suites.base import PromptItem, Suite, SuiteError, SuiteFormatError

LANGUAGES = ("en", "cn")
FIELDS = ("task_type", "key", "instruction", "instruction_language", "input_image")


class GEditSuite(Suite):
    """GEdit-Bench records in, ``<method>/fullset/<task>/<lang>/<key>.png`` out."""

    name = "gedit"
    task = "edit"
    samples = 1
    fixed_samples = True

    def read(self, path: str | os.PathLike) -> list[PromptItem]:
        path = Path(path)
        rows = self._parquet_rows(path) if path.suffix.lower() == ".parquet" else base.read_jsonl(path, self.name)
        items = []
        for where_n, obj in rows:
            where = f"line {where_n}" if path.suffix.lower() != ".parquet" else f"row {where_n}"
            vals = {k: base.require_str(obj, k, path, where, self.name,
                                        f"GEdit-Bench records hold {', '.join(FIELDS)}")
                    for k in FIELDS[:4]}
            lang = vals["instruction_language"]
            if lang not in LANGUAGES:
                raise SuiteFormatError(path, where, f"instruction_language {lang!r} is not one of "
                                       f"{', '.join(LANGUAGES)}")
            base.safe_name(vals["task_type"], path, where, "task_type")
            base.safe_name(vals["key"], path, where, "key")
            if "input_image" not in obj:
                raise SuiteFormatError(path, where, "missing field 'input_image'")
            source = self._source(obj["input_image"], path, where)
            record = {k: v for k, v in obj.items() if k not in ("input_image", "input_image_raw")}
            items.append(PromptItem(f"{vals['task_type']}/{lang}/{vals['key']}", vals["instruction"],
                                    vals["task_type"], record, source=source, where=f"{path}:{where}"))
        if not items:
            raise SuiteError(f"{path}: no records (an empty {self.name} export)")
        return items

    @staticmethod
    def _source(value: Any, path: Path, where: str) -> Any:
        if isinstance(value, dict):  # the datasets Image struct
            if value.get("bytes"):
                return bytes(value["bytes"])
            value = value.get("path")
        if not isinstance(value, str) or not value:
            raise SuiteFormatError(path, where, f"input_image must be an image path or "
                                   f"{{bytes, path}}, got {type(value).__name__}")
        return path.parent / value

    @staticmethod
    def _parquet_rows(path: Path):
        try:  # deferred: pyarrow is optional, needed only for GEdit's parquet files
            import pyarrow.parquet as pq
        except ImportError:
            raise SuiteError(f"{path}: reading parquet needs pyarrow (`pip install pyarrow`), or "
                             "export the records as JSONL with image paths") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises its own error types for bad files
            raise SuiteError(f"{path}: not a readable parquet file: {exc}") from exc
        return enumerate(rows)

    def outputs(self, item: PromptItem, out: Path) -> list[Path]:
        task, lang, key = item.item_id.split("/")
        return [out / self.method / "fullset" / task / lang / f"{key}.png"]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "method": self.method}

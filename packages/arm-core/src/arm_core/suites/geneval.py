"""GenEval (Ghosh et al., 2023, https://github.com/djghosh13/geneval): object-focused T2I.

Prompt file: ``evaluation_metadata.jsonl``, one JSON object a line with ``tag`` (one of
:data:`TAGS`), ``include`` (a list of ``{class, count, color?, position?: [relation, index]}``),
an optional ``exclude`` and ``prompt``. Layout its ``evaluate_images.py`` reads: one
zero-padded folder per prompt (its line index) holding ``metadata.jsonl`` (the prompt's line)
and ``samples/0000.png ...``, four samples a prompt by default::

    OUT/00000/metadata.jsonl
    OUT/00000/samples/0000.png ... 0003.png

The scorer skips entries of ``OUT`` that are not digit-named folders, so our manifest file
(``arm_suite_manifest.json``) beside them is harmless.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from arm_core.suites import base
from arm_core.suites.base import PromptItem, Suite, SuiteError, SuiteFormatError
from arm_core.suites.scorers.base import SuiteItem

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def check_clause(c: Any, path: Path, where: str, field: str) -> None:
    """One ``include`` / ``exclude`` entry: ``{class, count, color?, position?}``."""
    if not isinstance(c, dict) or not isinstance(c.get("class"), str):
        raise SuiteFormatError(path, where, f"each {field} entry needs a 'class' string, got {c!r}")
    if "count" in c and (not isinstance(c["count"], int) or c["count"] < 0):
        raise SuiteFormatError(path, where, f"{field} 'count' must be a non-negative integer, got {c['count']!r}")
    pos = c.get("position")
    if pos is not None and not (isinstance(pos, list) and len(pos) == 2 and isinstance(pos[0], str)
                                and isinstance(pos[1], int)):
        raise SuiteFormatError(path, where, f"{field} 'position' must be [relation, index], got {pos!r}")


class GenEvalSuite(Suite):
    """GenEval's metadata in, its ``<index>/samples/<n>.png`` layout out (see the module docstring)."""

    name = "geneval"
    samples = 4

    def read(self, path: str | os.PathLike) -> list[PromptItem]:
        path = Path(path)
        if path.is_dir():
            raise SuiteError(f"{path} is a folder; --prompts for {self.name} is its "
                             "evaluation_metadata.jsonl file")
        items = []
        for n, obj in base.read_jsonl(path, self.name):
            where = f"line {n}"
            prompt = base.require_str(obj, "prompt", path, where, self.name,
                                      "GenEval lines hold tag, include and prompt")
            tag = base.require_str(obj, "tag", path, where, self.name)
            if "include" not in obj or not isinstance(obj["include"], list):
                raise SuiteFormatError(path, where, "missing 'include' (a list of {class, count, ...}); "
                                       "is this a GenEval evaluation_metadata.jsonl?")
            for c in obj["include"]:
                check_clause(c, path, where, "include")
            for c in obj.get("exclude", []) or []:
                check_clause(c, path, where, "exclude")
            items.append(PromptItem(f"{len(items):05d}", prompt, tag, obj, where=f"{path}:{where}"))
        if not items:
            raise SuiteError(f"{path}: no prompts (an empty {self.name} file)")
        return items

    def outputs(self, item: PromptItem, out: Path) -> list[Path]:
        return [out / item.item_id / "samples" / f"{i:04d}.png" for i in range(self.n_samples)]

    def write(self, item: PromptItem, images: list, out: Path) -> list[Path]:
        # deferred: checkpoint imports torch; reading and checking prompt files stays torch-free
        from arm_tokenizer.framework.checkpoint import atomic_write_bytes

        meta = out / item.item_id / "metadata.jsonl"
        if not meta.exists():
            atomic_write_bytes(meta, (json.dumps(item.record) + "\n").encode())
        return super().write(item, images, out)

    def done(self, item: PromptItem, out: Path) -> bool:
        return (out / item.item_id / "metadata.jsonl").exists() and super().done(item, out)

    def read_outputs(self, items: list[PromptItem], out: Path) -> list[SuiteItem]:
        # like GenEval's evaluate_images.py: every sample in the folder, however many
        res = []
        for it in items:
            samples = sorted((out / it.item_id / "samples").glob("*.png"))
            if not samples:
                raise SuiteError(f"{out}: no samples for {self.name} item {it.item_id} "
                                 f"({out / it.item_id / 'samples'}/*.png); run `arm-lm suite generate` "
                                 "first (it resumes where it stopped)")
            res.append(SuiteItem(self.name, it.item_id, it.prompt, samples, tag=it.tag, record=it.record))
        return res

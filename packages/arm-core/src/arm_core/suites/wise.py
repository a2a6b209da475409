"""WISE (Niu et al., 2025, https://github.com/PKU-YuanGroup/WISE): world-knowledge T2I.

Prompt files: its three JSON files (``cultural_common_sense.json``,
``spatio-temporal_reasoning.json``, ``natural_science.json``), each a list of objects with
``prompt_id`` and ``Prompt`` (plus ``Category``, ``Subcategory``, ``Explanation``). ``--prompts``
is their folder (every ``*.json`` in it) or one of them. Layout its judge reads: a flat folder
of ``<prompt_id>.png``::

    OUT/<prompt_id>.png
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
    safe_name,
)

PROMPT_KEYS = ("Prompt", "prompt")


class WISESuite(Suite):
    """WISE's JSON files in, ``<prompt_id>.png`` out (see the module docstring)."""

    name = "wise"
    samples = 1
    fixed_samples = True

    def read(self, path: str | os.PathLike) -> list[PromptItem]:
        path = Path(path)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not files:
            raise SuiteError(f"{path}: no *.json files (WISE ships three JSON prompt files)")
        items: list[PromptItem] = []
        seen: dict[str, str] = {}
        for f in files:
            data = read_json(f, "WISE prompt files are JSON lists of {prompt_id, Prompt, ...}")
            if not isinstance(data, list):
                raise SuiteFormatError(f, "", f"expected a JSON list of prompts, got {type(data).__name__}; "
                                       "is this a WISE prompt file?")
            for n, obj in enumerate(data):
                where = f"entry {n}"
                if not isinstance(obj, dict):
                    raise SuiteFormatError(f, where, f"expected an object, got {type(obj).__name__}")
                if "prompt_id" not in obj:
                    raise SuiteFormatError(f, where, f"missing field 'prompt_id' (fields: "
                                           f"{', '.join(sorted(obj)) or 'none'}); is this a WISE file?")
                key = next((k for k in PROMPT_KEYS if k in obj), None)
                if key is None or not isinstance(obj[key], str) or not obj[key].strip():
                    raise SuiteFormatError(f, where, "missing field 'Prompt' (a non-empty string)")
                pid = safe_name(str(obj["prompt_id"]), f, where, "prompt_id")
                if pid in seen:
                    raise SuiteFormatError(f, where, f"prompt_id {pid} repeats {seen[pid]}")
                seen[pid] = f"{f}:{where}"
                tag = str(obj.get("Category") or obj.get("Subcategory") or f.stem)
                items.append(PromptItem(pid, obj[key].strip(), tag, obj, where=f"{f}:{where}"))
        return items

    def outputs(self, item: PromptItem, out: Path) -> list[Path]:
        return [out / f"{item.item_id}.png"]

"""Score a generated suite with a registered scorer (kind ``scorer``) into a JSON and a table.

``score_suite`` reads the suite's prompt file (by default the one the manifest names), finds
each prompt's images in the suite's layout (:meth:`~.base.Suite.read_outputs`), runs the
scorer (:class:`~.scorers.base.Scorer`; NaN or a missing score is an error naming the item)
and writes ``<results>/scores-<scorer>.json`` (the table and every per-image score) and
``<results>/scores-<scorer>.md`` (the per-tag and overall table).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from arm_tokenizer.framework import registry
from arm_tokenizer.framework.checkpoint import atomic_write_bytes

from arm_core.suites.base import SuiteError
from arm_core.suites.generate import MANIFEST, get_suite
from arm_core.suites.scorers.base import Scorer, ScoreTable

__all__ = ["load_scorer", "score_suite"]


def load_scorer(name: str | Scorer, **kwargs: Any) -> Scorer:
    """A scorer by registry name (``arm-tokenizer list scorer``) or an instance as is."""
    if isinstance(name, Scorer):
        return name
    scorer = registry.create("scorer", name, **kwargs)
    if not isinstance(scorer, Scorer):
        raise SuiteError(f"scorer {name!r} ({type(scorer).__qualname__}) does not subclass "
                         "arm_core.suites.scorers.base.Scorer")
    return scorer


def score_suite(scorer: str | Scorer, suite: str, out: str | os.PathLike, *,
                prompts: str | os.PathLike | None = None, results: str | os.PathLike | None = None,
                method: str = "arm", images: str | os.PathLike | None = None,
                scorer_args: dict[str, Any] | None = None) -> tuple[ScoreTable, Path]:
    """Score the images of ``suite`` in ``out``; returns the table and the JSON's path.

    Args:
        scorer: registry name or :class:`Scorer`.
        suite: the suite name (its layout).
        out: the directory ``suite generate`` wrote.
        prompts: the suite's prompt file (default: the one recorded in the manifest).
        results: where the JSON and markdown go (default: ``out``).
        method: GEdit's ``<method>`` folder.
        images: ImgEdit's image folder.
        scorer_args: constructor arguments of a scorer given by name.
    """
    out = Path(out)
    manifest: dict[str, Any] = {}
    if (out / MANIFEST).exists():
        manifest = json.loads((out / MANIFEST).read_text())
    if prompts is None:
        prompts = manifest.get("prompts")
        if prompts is None:
            raise SuiteError(f"{out}: no {MANIFEST} naming the prompt file; pass --prompts")
    if manifest.get("suite", {}).get("suite", suite) != suite:
        raise SuiteError(f"{out} holds the {manifest['suite']['suite']!r} suite, not {suite!r}")
    kw: dict[str, Any] = {"method": method}
    if suite == "imgedit":
        kw["images"] = images
    if manifest.get("suite", {}).get("samples"):
        kw["samples"] = manifest["suite"]["samples"]
    s = get_suite(suite, **kw)
    prompt_items = s.read(prompts)
    skipped = {x["item_id"] for x in manifest.get("skipped", [])}
    generated = manifest.get("images")
    prompt_items = [it for it in prompt_items if it.item_id not in skipped
                    and (generated is None or it.item_id in generated)]
    items = s.read_outputs(prompt_items, out)
    sc = load_scorer(scorer, **(scorer_args or {}))
    records = sc(items)
    table = sc.summarize(records, suite=suite)
    results = Path(results) if results is not None else out
    label = sc.name.replace("/", "_")
    path = results / f"scores-{label}.json"
    atomic_write_bytes(path, json.dumps({"table": table.to_dict(), "prompts": str(prompts),
                                         "model": manifest.get("model"),
                                         "records": [r.to_dict() for r in records]}, indent=1).encode())
    md = f"### {suite} scored by `{sc.name}`\n\n" + table.to_markdown()
    atomic_write_bytes(results / f"scores-{label}.md", md.encode())
    return table, path

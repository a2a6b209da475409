"""DPG-Bench (Hu et al., ELLA, 2024, https://github.com/TencentQQGYLab/ELLA): dense prompts.

Prompt files: the ``dpg_bench/prompts/`` folder (``<item_id>.txt``, the prompt as its text) or
``dpg_bench.csv`` (``item_id, text, proposition_id, ...``: one row per proposition, so an item
repeats; its ``category_broad`` becomes our tag). Layout ``compute_dpg_bench.py`` reads: a flat
folder of ``<item_id>.png``, each a 2x2 grid of four samples (it crops the four tiles back
out at the resolution it is told)::

    OUT/<item_id>.png
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from PIL import Image

from arm_core.suites.base import (
    PromptItem,
    Suite,
    SuiteError,
    SuiteFormatError,
    safe_name,
    save_png,
)
from arm_core.suites.scorers.base import SuiteItem


def grid_2x2(images: list[Image.Image]) -> Image.Image:
    """Four equally sized images as one 2x2 grid (row-major)."""
    w, h = images[0].size
    out = Image.new("RGB", (2 * w, 2 * h))
    for i, im in enumerate(images):
        out.paste(im.convert("RGB").resize((w, h)), ((i % 2) * w, (i // 2) * h))
    return out


def split_2x2(grid: Image.Image) -> list[Image.Image]:
    """The four tiles of a 2x2 grid (the inverse of :func:`grid_2x2`)."""
    w, h = grid.size[0] // 2, grid.size[1] // 2
    return [grid.crop(((i % 2) * w, (i // 2) * h, (i % 2 + 1) * w, (i // 2 + 1) * h)) for i in range(4)]


class DPGSuite(Suite):
    """DPG-Bench prompts in, ``<item_id>.png`` 2x2 grids out (see the module docstring)."""

    name = "dpg"
    samples = 4
    fixed_samples = True

    def read(self, path: str | os.PathLike) -> list[PromptItem]:
        path = Path(path)
        items = self._read_folder(path) if path.is_dir() else self._read_csv(path)
        if not items:
            raise SuiteError(f"{path}: no prompts found (DPG-Bench: the prompts/ folder of "
                             "<item_id>.txt files, or dpg_bench.csv)")
        return items

    def _read_folder(self, path: Path) -> list[PromptItem]:
        items = []
        for f in sorted(path.glob("*.txt")):
            text = f.read_text(encoding="utf-8").strip()
            if not text:
                raise SuiteFormatError(f, "", "empty prompt file (DPG prompts/<item_id>.txt hold the prompt)")
            items.append(PromptItem(f.stem, text, "all", {"item_id": f.stem}, where=str(f)))
        return items

    def _read_csv(self, path: Path) -> list[PromptItem]:
        if path.suffix.lower() != ".csv":
            raise SuiteError(f"{path}: DPG-Bench prompts are the prompts/ folder or dpg_bench.csv, "
                             f"not a {path.suffix or 'suffix-less'} file")
        try:
            rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SuiteError(f"{path}: cannot read the DPG-Bench csv: {exc}") from exc
        by_id: dict[str, PromptItem] = {}
        for n, row in enumerate(rows, 2):  # line 1 is the header
            where = f"line {n}"
            for key in ("item_id", "text"):
                if not (row.get(key) or "").strip():
                    cols = ", ".join(k for k in row if k) or "none"
                    raise SuiteFormatError(path, where, f"missing {key!r} (columns: {cols}); is this "
                                           "DPG-Bench's dpg_bench.csv?")
            item_id = safe_name(row["item_id"].strip(), path, where, "item_id")
            if item_id not in by_id:
                by_id[item_id] = PromptItem(item_id, row["text"].strip(),
                                            (row.get("category_broad") or "all").strip() or "all",
                                            {"item_id": item_id}, where=f"{path}:{where}")
        return list(by_id.values())

    def outputs(self, item: PromptItem, out: Path) -> list[Path]:
        return [out / f"{item.item_id}.png"]

    def write(self, item: PromptItem, images: list[Image.Image], out: Path) -> list[Path]:
        path = out / f"{item.item_id}.png"
        if not path.exists():
            save_png(grid_2x2(images), path)
        return [path]

    def read_outputs(self, items: list[PromptItem], out: Path) -> list[SuiteItem]:
        res = super().read_outputs(items, out)
        for it in res:  # the scorer sees the four samples, as DPG's own scorer does
            with Image.open(it.images[0]) as grid:
                it.images = split_2x2(grid.convert("RGB"))
        return res

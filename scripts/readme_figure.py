#!/usr/bin/env python
"""The README's picture from a finished demo run.

    python scripts/readme_figure.py [--run runs/demo] [--out docs/demo.png]

Composes the first examples of text to image, editing and VQA (before and after RL) of the
run's report, two per row, with the same layout as the report's ``report/overview.png``,
from the images and texts the report stage saved (``report/examples.json``), so the picture
stays under 900 px wide with sharp text. A run whose report predates ``examples.json`` gets
its ``overview.png`` rescaled instead. The PNG is written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_WIDTH = 900
N_EXAMPLES = 4  # per section


def figure(run: Path, n: int = N_EXAMPLES):
    """The picture of ``run`` as a PIL image (SystemExit with one line if the run lacks a report)."""
    from demo_report import compose_overview
    from PIL import Image

    figdir = run / "report"
    examples, overview = figdir / "examples.json", figdir / "overview.png"
    if examples.exists():
        ex = json.loads(examples.read_text())
        rl = " and after" if ex.get("sampling", {}).get("rl") else ""
        title = f"ARM on ShapesWorld ('{ex.get('difficulty', 'full')}' world): held-out examples, before{rl} RL"
        img = compose_overview(ex, figdir, sections=("t2i", "edit", "vqa"), n=n,
                               per_row={"t2i": 2, "edit": 2, "vqa": 2}, title=title)
    elif overview.exists():
        with Image.open(overview) as im:
            img = im.convert("RGB")
    else:
        raise SystemExit(f"readme_figure: {run} has no finished demo report ({examples} missing); "
                         f"run `make demo` (or scripts/demo.py --out {run}) first")
    if img.width > MAX_WIDTH:
        img = img.resize((MAX_WIDTH, round(img.height * MAX_WIDTH / img.width)), resample=Image.LANCZOS)
    return img


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Make the README's picture (docs/demo.png) from a finished demo run.")
    p.add_argument("--run", default="runs/demo", help="the demo's output directory (default runs/demo)")
    p.add_argument("--out", default="docs/demo.png", help="the PNG to write (default docs/demo.png)")
    p.add_argument("--n", type=int, default=N_EXAMPLES, help="examples per task (default 4)")
    a = p.parse_args(argv)
    run, out = Path(a.run), Path(a.out)
    run, out = (run if run.is_absolute() else ROOT / run), (out if out.is_absolute() else ROOT / out)
    if not run.is_dir():
        raise SystemExit(f"readme_figure: no demo run at {run}; run `make demo` first, or pass --run DIR")
    img = figure(run, a.n)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    # few colours (flat ShapesWorld scenes, text): a palette PNG is a fraction of the size
    img.quantize(colors=256, method=2, dither=0).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, out)
    print(f"wrote {out} ({img.width}x{img.height}, {out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the demo's ``report.html`` and ``metrics.json`` from a finished demo directory.

Everything shown is produced by the library's public APIs from the stages' outputs:
reconstructions by ``VisualTokenizer``, samples by the ``TextToImage``/``Edit``/``Understand``
pipelines of the LM before and after RL, scores by the ShapesWorld evaluator, and training
curves from the stages' CSV logs. The examples come from the held-out split of the
ShapesWorld the demo trained on (its difficulty, read from ``<out>/eval/``).

The report opens with ``<out>/report/overview.png``, one picture of every task (prompts ->
images, sources -> edits, image -> question -> answer, reconstructions, before and after
RL), then the same examples as HTML grids, the quality bars with standard errors, training
curves, stage and metric tables. Images are PNG files under ``<out>/report/`` linked
relatively, so the report opens from disk in any browser; ``report/examples.json`` holds
what the pictures show, so ``scripts/readme_figure.py`` can compose the README's picture
from it.
"""

from __future__ import annotations

import csv
import html
import json
import math
import time
from pathlib import Path
from typing import Any

from arm_tokenizer.framework.checkpoint import atomic_path, atomic_write_bytes

N_SHOW = 6  # examples per section
CELL = 96  # px of one image in the overview (nearest-neighbour upscaled)
TAGS = ("lm", "rl")  # the LM before RL (SFT) and the RL policy
TAG_LABEL = {"lm": "before RL", "rl": "after RL"}
EVAL_FILE = {"lm": "sft", "rl": "rl"}  # <out>/eval/<name>.json of each tag

# The quality bars of the headline table: key, label, target (met when value >= target).
BARS: list[tuple[str, str, float]] = [
    ("tokenizer_parse_back", "tokenizer parse-back, strict (held-out)", 0.80),
    ("t2i_heldout", "T2I overall, held-out, best CFG", 0.50),
    ("t2i_seen", "T2I overall, seen split, best CFG", 0.70),
    ("vqa_heldout", "VQA accuracy, held-out", 0.70),
    ("edit_adherence", "edit adherence, best setting", 0.50),
    ("edit_consistency", "edit consistency, best setting", 0.70),
]


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_save_png(img: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _csv_rows(out: Path, stage: str) -> list[dict]:
    rows: list[dict] = []
    for f in sorted((out / f"{stage}-logs" / "csv").glob("version_*/metrics.csv")):
        with open(f) as fh:
            rows += list(csv.DictReader(fh))
    return rows


def _last(rows: list[dict], *names: str) -> float | None:
    for row in reversed(rows):
        for n in names:
            if row.get(n) not in (None, ""):
                return float(row[n])
    return None


def difficulty_of(out: Path) -> str:
    """The ShapesWorld difficulty the demo in ``out`` trained and evaluated on: the
    tokenizer evaluation's ``difficulty``, else an LM evaluation's ``settings.difficulty``,
    else ``full`` (runs from before difficulties existed)."""
    tok = _read_json(Path(out) / "eval" / "tokenizer.json") or {}
    if tok.get("difficulty"):
        return str(tok["difficulty"])
    for name in EVAL_FILE.values():
        ev = _read_json(Path(out) / "eval" / f"{name}.json") or {}
        if (ev.get("settings") or {}).get("difficulty"):
            return str(ev["settings"]["difficulty"])
    return "full"


def _parse_setting(key: Any) -> dict[str, float]:
    """``"cfg=3,img=1.25"`` -> ``{"cfg": 3.0, "img": 1.25}`` (``arm-lm evaluate``'s run keys)."""
    out: dict[str, float] = {}
    for part in str(key or "").split(","):
        name, eq, value = part.partition("=")
        try:
            if eq:
                out[name.strip()] = float(value)
        except ValueError:
            pass
    return out


def _sampling(out: Path, tag: str) -> dict[str, float]:
    """The guidance the examples of ``tag`` are drawn with: its evaluation's best T2I scale
    and best edit setting (ARM's CFG 3 / text 1.5, image 1.25 when it was not evaluated)."""
    ev = _read_json(out / "eval" / f"{EVAL_FILE[tag]}.json") or {}
    s = ev.get("summary") or {}
    t2i = _parse_setting((s.get("t2i") or {}).get("best_scale")).get("cfg", 3.0)
    edit = _parse_setting((s.get("edit") or {}).get("best_scale"))
    text = edit.get("cfg", 1.5)
    default_img = (ev.get("settings") or {}).get("edit_image_scale", 1.25)
    image = edit.get("img", 1.0 if text == 1.0 else default_img if isinstance(default_img, (int, float)) else 1.25)
    return {"t2i_cfg": float(t2i), "edit_text": float(text), "edit_image": float(image)}


def _plot_curves(out: Path, figdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for stage in ("teacher", "tokenizer", "lm", "rl"):
        rows = _csv_rows(out, stage)
        if not rows:
            continue
        keys = [k for k in rows[0] if k.startswith("train/") and ("loss" in k or "reward" in k)
                and not k.endswith("_epoch")]
        keys += [k for k in rows[0] if k.startswith("val/") and k.split("/")[-1] in ("psnr", "loss", "codebook_usage")]
        keys = keys[:6]
        if not keys:
            continue
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=False):
            pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if pts:
                ax.plot(*zip(*pts, strict=False), lw=1.2)
            ax.set_title(key, fontsize=8)
            ax.tick_params(labelsize=7)
        fig.suptitle(stage, fontsize=9)
        fig.tight_layout()
        path = figdir / f"curves_{stage}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path.name)
    return files


def _save(img, figdir: Path, name: str) -> str:
    img.resize((128, 128 * img.height // img.width), resample=0).save(figdir / name)
    return name


def _examples(out: Path, figdir: Path, difficulty: str) -> dict[str, Any]:
    """Reconstructions, T2I / edit / VQA samples before and after RL, on the first
    ``N_SHOW`` held-out scenes of the demo's world (the scenes ``arm-lm evaluate`` scores
    first). JSON-able: images are file names under ``figdir``."""
    import torch
    from arm_data.shapes import ShapesWorld, evaluate_edit, evaluate_t2i
    from arm_tokenizer.tokenizer import VisualTokenizer

    tok = VisualTokenizer.from_pretrained(out / "tokenizer")
    h, w = tok.image_size
    world = ShapesWorld(split="heldout", seed=0, width=w, height=h, difficulty=difficulty)
    samples = [world[i] for i in range(N_SHOW)]
    ex: dict[str, Any] = {"difficulty": difficulty, "split": "heldout", "n": N_SHOW, "sampling": {},
                          "recon": [], "t2i": [], "edit": [], "vqa": []}
    with torch.no_grad():
        recon = tok.decode_to_pil(tok.encode([s.image for s in samples]))
    for i, (s, r) in enumerate(zip(samples, recon, strict=False)):
        score = evaluate_t2i(r, s.spec).score
        ex["recon"].append({"orig": _save(s.image, figdir, f"recon_{i}_orig.png"),
                            "recon": _save(r, figdir, f"recon_{i}_recon.png"), "score": score})
    ex["t2i"] = [{"caption": s.caption} for s in samples]
    ex["edit"] = [{"instruction": s.edit.instruction,
                   "source": _save(s.edit.source_image, figdir, f"edit_{i}_src.png")}
                  for i, s in enumerate(samples)]
    ex["vqa"] = [{"image": _save(s.image, figdir, f"vqa_{i}.png"), "question": s.qa[0].question,
                  "truth": s.qa[0].answer} for i, s in enumerate(samples)]

    from arm_core.evaluate import normalize_answer
    from arm_core.pipelines import load_pipelines

    for tag in TAGS:
        lm_dir = out / tag
        if not (lm_dir / "config.json").exists():
            continue
        cfg = ex["sampling"][tag] = _sampling(out, tag)
        t2i, edit, und = load_pipelines(lm_dir, out / "tokenizer")
        imgs = t2i([s.caption for s in samples], guidance_scale=cfg["t2i_cfg"], seed=0, progress=False)
        for i, (s, img) in enumerate(zip(samples, imgs, strict=False)):
            ex["t2i"][i][tag] = _save(img, figdir, f"t2i_{tag}_{i}.png")
            ex["t2i"][i][f"{tag}_score"] = evaluate_t2i(img, s.spec, check=s.caption_attributes,
                                                        relations=s.caption_relations).score
        edited = edit([s.edit.source_image for s in samples], [s.edit.instruction for s in samples],
                      guidance_scale=cfg["edit_text"], image_guidance_scale=cfg["edit_image"],
                      seed=0, progress=False)
        for i, (s, img) in enumerate(zip(samples, edited, strict=False)):
            r = evaluate_edit(img, s.edit.source, s.edit.target, edit=s.edit.edit,
                              source_image=s.edit.source_image)
            ex["edit"][i][tag] = _save(img, figdir, f"edit_{tag}_{i}.png")
            ex["edit"][i][f"{tag}_scores"] = (r.adherence, r.consistency)
        answers = und([s.image for s in samples], [e["question"] for e in ex["vqa"]],
                      temperature=0.0, progress=False)
        for e, a in zip(ex["vqa"], answers, strict=False):
            e[tag] = a
            e[f"{tag}_correct"] = normalize_answer(a) == normalize_answer(str(e["truth"]))
    return ex


# -- the overview picture -------------------------------------------------------------------------
_INK, _GREY, _GREEN, _RED = (20, 20, 20), (110, 110, 110), (0, 130, 0), (200, 0, 0)
_BAND, _PAPER = (45, 55, 75), (255, 255, 255)
_PAD, _GAP, _GROUP_GAP, _LINE = 12, 6, 20, 15

SECTION_TITLES = {
    "t2i": "Text to image: held-out prompt -> generated image (rule-evaluator score under each, 1 = every clause holds)",
    "edit": "Editing: source + instruction -> edited image (adherence: the edit was made / consistency: nothing else changed)",
    "vqa": "Visual question answering: image + question -> answer (green: right, red: wrong)",
    "recon": "Tokenizer: original -> decode(encode(original)) (parse-back score of the reconstruction)",
}


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font: Any, width: int, max_lines: int = 4) -> list[str]:
    """Greedy word wrap to ``width`` px (long words are cut), at most ``max_lines`` lines."""
    lines: list[str] = []
    for word in str(text).split():
        while font.getlength(word) > width and len(word) > 1:  # a word wider than the column
            cut = 1
            while cut < len(word) - 1 and font.getlength(word[:cut + 1]) <= width:
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and font.getlength(lines[-1] + "...") > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += "..."
    return lines or [""]


def _columns(section: str, cell: int, sampling: dict) -> tuple[list[tuple[str, int]], int]:
    """``[(header, width)]`` of one example's columns and the group's width."""
    def guidance(tag: str) -> str:
        cfg = sampling.get(tag)
        if not cfg:
            return ""
        if section == "t2i":
            return f"\nCFG {cfg['t2i_cfg']:g}"
        return f"\ntext {cfg['edit_text']:g} / img {cfg['edit_image']:g}" if section == "edit" else ""

    if section == "recon":
        return [("original", cell), ("reconstruction", cell)], 2 * cell + _GAP
    group = 3 * cell + 138 * cell // 96  # the same width for T2I, edit and VQA, so columns align
    if section == "t2i":
        images = [(TAG_LABEL[t] + guidance(t), cell) for t in TAGS]
        return [("prompt", group - 2 * cell - 2 * _GAP), *images], group
    if section == "edit":
        images = [(TAG_LABEL[t] + guidance(t), cell) for t in TAGS]
        return [("source", cell), ("instruction", group - 3 * cell - 3 * _GAP), *images], group
    slack = group - cell - 4 * _GAP
    answer = slack * 10 // 52
    return [("image", cell), ("question", slack - 3 * answer), ("truth", answer),
            ("before RL", answer), ("after RL", answer)], group


def _cells(section: str, e: dict) -> list[tuple]:
    """One example's cells: ``("img", file or None, caption, color)`` or ``("text", str, color)``."""
    def img(tag: str, caption: str) -> tuple:
        return ("img", e.get(tag), caption if tag in e else "", _INK)

    if section == "recon":
        return [("img", e["orig"], "", _INK), ("img", e["recon"], f"parse {_num(e['score'])}", _INK)]
    if section == "t2i":
        return [("text", e["caption"], _INK),
                *(img(t, f"score {_num(e.get(t + '_score'))}") for t in TAGS)]
    if section == "edit":
        return [("img", e["source"], "", _INK), ("text", e["instruction"], _INK),
                *(img(t, "adh {} / con {}".format(*map(_num, e.get(t + "_scores") or (None, None))))
                  for t in TAGS)]
    answers = [("text", str(e[t]) if str(e[t]).strip() else "(empty)", _GREEN if e.get(t + "_correct") else _RED)
               if t in e else ("text", "-", _GREY) for t in TAGS]
    return [("img", e["image"], "", _INK), ("text", e["question"], _INK), ("text", str(e["truth"]), _INK),
            *answers]


def _num(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def compose_overview(ex: dict, figdir: Path, sections: tuple[str, ...] = ("t2i", "edit", "vqa", "recon"),
                     n: int = N_SHOW, per_row: dict[str, int] | None = None, cell: int = CELL,
                     title: str | None = None) -> Any:
    """One PIL image of ``ex``'s first ``n`` examples of each section: a title band per
    section, column headers, and ``per_row[section]`` examples side by side per row."""
    from PIL import Image, ImageDraw

    per_row = {"t2i": 3, "edit": 3, "vqa": 3, "recon": 6, **(per_row or {})}
    font, small, bold = _font(12), _font(11), _font(13)
    sampling = ex.get("sampling", {})
    sections = tuple(s for s in sections if ex.get(s))
    layout = {s: _columns(s, cell, sampling) for s in sections}
    width = 2 * _PAD + max((per_row[s] * g + (per_row[s] - 1) * _GROUP_GAP
                            for s, (_, g) in layout.items()), default=400)

    # measure: rows of (cells, height)
    plan: list[tuple[str, list[list[tuple]], list[int], int]] = []
    for s in sections:
        cols, _ = layout[s]
        items = ex[s][:n]
        rows = [items[i:i + per_row[s]] for i in range(0, len(items), per_row[s])]
        heights = []
        for row in rows:
            h = 0
            for e in row:
                for (kind, *rest), (_, w) in zip(_cells(s, e), cols, strict=False):
                    h = max(h, cell + _LINE + 2 if kind == "img" else len(_wrap(rest[0], font, w)) * _LINE)
            heights.append(h)
        header_lines = max(len(head.split("\n")) for head, _ in cols)
        plan.append((s, rows, heights, header_lines * 13 + 4))
    title_h = 26 if title else 0
    height = _PAD + title_h + sum(22 + 6 + hh + sum(hs) + _GAP * len(hs) + 8 for _, _, hs, hh in plan) + _PAD - 8
    canvas = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(canvas)
    y = _PAD
    if title:
        draw.text((_PAD, y + 2), title, fill=_INK, font=_font(15))
        y += title_h
    placeholder = None
    for s, rows, heights, header_h in plan:
        cols, group = layout[s]
        draw.rectangle((0, y, width, y + 21), fill=_BAND)
        draw.text((_PAD, y + 4), SECTION_TITLES[s], fill=(255, 255, 255), font=bold)
        y += 22 + 6
        for k in range(min(per_row[s], len(ex[s][:n]))):  # column headers over each group
            x = _PAD + k * (group + _GROUP_GAP)
            for head, w in cols:
                draw.multiline_text((x, y), head, fill=_GREY, font=small, spacing=2)
                x += w + _GAP
        y += header_h
        for k in range(1, min(per_row[s], len(ex[s][:n]))):  # a faint rule between groups
            x = _PAD + k * (group + _GROUP_GAP) - _GROUP_GAP // 2
            draw.line((x, y - header_h, x, y + sum(heights) + _GAP * (len(heights) - 1)), fill=(220, 220, 220))
        for row, h in zip(rows, heights, strict=False):
            for k, e in enumerate(row):
                x = _PAD + k * (group + _GROUP_GAP)
                for (kind, *rest), (_, w) in zip(_cells(s, e), cols, strict=False):
                    if kind == "img":
                        name, caption, color = rest
                        if name and (figdir / name).exists():
                            with Image.open(figdir / name) as im:
                                tile = im.convert("RGB").resize((cell, cell), resample=Image.NEAREST)
                        else:  # e.g. a report written before the RL stage
                            if placeholder is None:
                                placeholder = Image.new("RGB", (cell, cell), (236, 236, 236))
                                ImageDraw.Draw(placeholder).multiline_text(
                                    (cell // 2, cell // 2), "not yet\n(no RL)", fill=_GREY, font=small,
                                    anchor="mm", align="center")
                            tile = placeholder
                        canvas.paste(tile, (x, y))
                        draw.rectangle((x - 1, y - 1, x + cell, y + cell), outline=(200, 200, 200))
                        if caption:
                            draw.text((x, y + cell + 2), caption, fill=color, font=small)
                    else:
                        text, color = rest
                        for j, line in enumerate(_wrap(text, font, w)):
                            draw.text((x, y + j * _LINE), line, fill=color, font=font)
                    x += w + _GAP
            y += h + _GAP
        y += 8
    return canvas


# -- metrics and bars -----------------------------------------------------------------------------
def collect_metrics(out: Path) -> dict[str, Any]:
    """The numbers of every stage in one JSON-able dict."""
    order = ["teacher", "tokenizer", "eval_tokenizer", "tokens", "lm", "eval_sft", "rl", "eval_rl",
             "suite_shapes", "report"]
    stages = {}
    for f in sorted((out / "stages").glob("*.json"),
                    key=lambda f: order.index(f.stem) if f.stem in order else len(order)):
        d = json.loads(f.read_text())
        stages[d["stage"]] = {"seconds": d["seconds"], "summary": d["summary"]}
    tok_rows = _csv_rows(out, "tokenizer")
    metrics: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "difficulty": difficulty_of(out),
        "stages": stages,
        "total_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
        "tokenizer": {"val_psnr": _last(tok_rows, "val/psnr"), "val_ssim": _last(tok_rows, "val/ssim"),
                      "codebook_usage": _last(tok_rows, "val/codebook_usage", "train/codebook_usage")},
    }
    f = out / "eval" / "tokenizer.json"
    if f.exists():
        metrics["tokenizer"]["heldout"] = json.loads(f.read_text())
    for tag in ("sft", "rl"):
        ev = _read_json(out / "eval" / f"{tag}.json")
        if ev is not None:
            metrics[tag] = ev.get("summary", {})
            metrics.setdefault("eval_settings", {})[tag] = ev.get("settings", {})
    suite = _read_json(out / "eval" / "suite_shapes.json")
    if suite is not None:
        metrics["suite_shapes"] = suite
    metrics["bars"] = quality_bars(metrics)
    return metrics


def _suite_table(suite: dict) -> list[str]:
    """The shapes suite's GenEval-style table: one row per tag, SFT and RL columns."""
    cols = [t for t in ("sft", "rl") if t in suite]
    tags = list(dict.fromkeys(k for t in cols for k in suite[t]["per_tag"]))
    rows = ["<h2>Benchmark suite: shapes (GenEval format)</h2><p>ShapesWorld prompts written as "
            "GenEval's <code>evaluation_metadata.jsonl</code>, generated by <code>arm-lm suite generate</code> "
            "in GenEval's layout and scored by the <code>shapes</code> rule scorer: the fraction of images "
            "whose every clause holds, per tag; overall = the mean over tags.</p>"
            "<table><tr><th>tag</th>" + "".join(f"<th>{'before RL (SFT)' if t == 'sft' else 'after RL'}</th>"
                                                  for t in cols) + "</tr>"]
    for tag in tags:
        rows.append(f"<tr><td>{html.escape(tag)}</td>"
                    + "".join(f"<td>{_fmt(suite[t]['per_tag'].get(tag))}</td>" for t in cols) + "</tr>")
    rows.append("<tr><td><b>overall</b></td>" + "".join(f"<td><b>{_fmt(suite[t]['overall'])}</b></td>"
                                                       for t in cols) + "</tr></table>")
    return rows


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not math.isnan(x) else None


def quality_bars(m: dict) -> dict[str, Any]:
    """``{bar: {"label", "target", "sft": {value, se, target, met}, "rl": {...}}}`` and the
    ``difficulty``. ``met`` is ``value >= target`` (None where the value is missing). The
    tokenizer's parse-back is the same before and after RL (RL trains the LM only); its
    standard error is the binomial one over the scenes whose originals parse."""
    held = m.get("tokenizer", {}).get("heldout") or {}
    p, n = _finite(held.get("parse_back_strict")), held.get("n")
    n_ok = round((held.get("originals_strict") or 1.0) * n) if isinstance(n, int) else 0
    tok_se = (p * (1 - p) / (n_ok - 1)) ** 0.5 if p is not None and n_ok > 1 else None

    def split_names(tag: str) -> tuple[str, str]:
        s = (m.get("eval_settings") or {}).get(tag) or {}
        return s.get("split") or "heldout", s.get("seen_split") or "val"

    def figures(tag: str) -> dict[str, tuple[Any, Any]]:
        s = m.get(tag) or {}
        held_split, seen = split_names(tag)
        t2i, vqa, vqa_se, edit = s.get("t2i") or {}, s.get("vqa") or {}, s.get("vqa_se") or {}, s.get("edit") or {}
        best, best_se = edit.get("best") or {}, edit.get("best_se") or {}
        seen_t2i = t2i.get(f"{seen}@best") or {}
        return {
            "tokenizer_parse_back": (p, tok_se),
            "t2i_heldout": (t2i.get("best"), t2i.get("best_se")),
            "t2i_seen": (seen_t2i.get("overall"), seen_t2i.get("overall_se")),
            "vqa_heldout": (vqa.get(held_split), vqa_se.get(held_split)),
            "edit_adherence": (best.get("adherence"), best_se.get("adherence")),
            "edit_consistency": (best.get("consistency"), best_se.get("consistency")),
        }

    per_tag = {tag: figures(tag) for tag in ("sft", "rl")}
    bars: dict[str, Any] = {"difficulty": m.get("difficulty", "full")}
    for key, label, target in BARS:
        if key == "t2i_seen":
            label = label.replace("seen split", f"seen split ({split_names('sft')[1]})")
        bars[key] = {"label": label, "target": target}
        for tag in ("sft", "rl"):
            value, se = (_finite(v) for v in per_tag[tag][key])
            if tag == "rl" and not m.get("rl"):  # no RL evaluation yet: nothing to report for it
                value = se = None
            bars[key][tag] = {"value": value, "se": se, "target": target,
                              "met": None if value is None else value >= target}
    return bars


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.3f}"
    return "n/a" if x is None else html.escape(str(x))


def _metric_rows(m: dict) -> list[tuple[str, Any, Any]]:
    def get(tag: str, *path: str) -> Any:
        node: Any = m.get(tag, {})
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        return node

    seen = ((m.get("eval_settings") or {}).get("sft") or {}).get("seen_split") or "val"
    rows = [("tokenizer PSNR (val, dB)", m["tokenizer"]["val_psnr"], None),
            ("tokenizer SSIM (val)", m["tokenizer"]["val_ssim"], None),
            ("tokenizer codebook usage", m["tokenizer"]["codebook_usage"], None)]
    held = m["tokenizer"].get("heldout", {})
    rows += [(f"tokenizer {label}", held.get(key), None) for label, key in (
        ("PSNR (held-out, dB)", "psnr"), ("parse-back, strict (held-out)", "parse_back_strict"),
        ("codebook usage (held-out)", "codebook_usage"), ("linear probe: color", "probe_color"),
        ("linear probe: shape", "probe_shape"), ("caption retrieval R@1 (ridge)", "retrieval_r1_ridge"))]
    # the per-object probe by crowding: where VQA and T2I need the tokens to keep an object's shape
    object_shape = (held.get("object_probe") or {}).get("shape") or {}
    rows += [(f"tokenizer object probe: shape, {label}", object_shape.get(group), None)
             for label, group in (("one-object scenes", "single"), ("two objects", "two"),
                                  ("3+ objects", "three_plus"))]
    rows += [
        ("T2I overall, held-out, CFG 1", get("sft", "t2i", "cfg1"), get("rl", "t2i", "cfg1")),
        ("T2I overall, held-out, best CFG", get("sft", "t2i", "best"), get("rl", "t2i", "best")),
        (f"T2I overall, seen ({seen}), best CFG", get("sft", "t2i", f"{seen}@best", "overall"),
         get("rl", "t2i", f"{seen}@best", "overall")),
        ("VQA accuracy, held-out", get("sft", "vqa", "heldout"), get("rl", "vqa", "heldout")),
        (f"VQA accuracy, seen ({seen})", get("sft", "vqa", seen), get("rl", "vqa", seen)),
        ("edit adherence, CFG 1", get("sft", "edit", "cfg1", "adherence"), get("rl", "edit", "cfg1", "adherence")),
        ("edit consistency, CFG 1", get("sft", "edit", "cfg1", "consistency"), get("rl", "edit", "cfg1", "consistency")),
        ("edit adherence, best CFG", get("sft", "edit", "best", "adherence"), get("rl", "edit", "best", "adherence")),
        ("edit consistency, best CFG", get("sft", "edit", "best", "consistency"), get("rl", "edit", "best", "consistency")),
    ]
    return rows


def _bar_cell(fig: dict) -> str:
    if fig["value"] is None:
        return "<td>n/a</td>"
    se = "" if fig["se"] is None else f" &plusmn; {fig['se']:.3f}"
    mark = '<span class="met">met</span>' if fig["met"] else '<span class="miss">not met</span>'
    return f"<td>{fig['value']:.3f}{se} {mark}</td>"


# -- the report -----------------------------------------------------------------------------------
def write_report(out: Path, root: Path, profile: str = "") -> Path:
    out = Path(out)
    figdir = out / "report"
    figdir.mkdir(parents=True, exist_ok=True)
    metrics = collect_metrics(out)
    metrics["profile"] = profile
    difficulty = metrics["difficulty"]
    curves = _plot_curves(out, figdir)
    ex = _examples(out, figdir, difficulty)
    _atomic_write(figdir / "examples.json", json.dumps(ex, indent=2, default=float))
    has_rl = "rl" in ex["sampling"]
    title = (f"ARM on ShapesWorld ('{difficulty}' world, profile {profile or 'n/a'}): "
             f"held-out examples, before {'and after ' if has_rl else ''}RL")
    _atomic_save_png(compose_overview(ex, figdir, title=title), figdir / "overview.png")
    metrics["examples"] = {
        "recon_parse_score": [e["score"] for e in ex["recon"]],
        "t2i_scores": {t: [e.get(f"{t}_score") for e in ex["t2i"]] for t in TAGS},
        "edit_scores": {t: [e.get(f"{t}_scores") for e in ex["edit"]] for t in TAGS},
        "vqa_correct": {t: [e.get(f"{t}_correct") for e in ex["vqa"]] for t in TAGS},
        "sampling": ex["sampling"],
    }
    _atomic_write(out / "metrics.json", json.dumps(metrics, indent=2, default=float))

    img = lambda name: (f'<img src="report/{name}" width="128" height="128">' if name  # noqa: E731
                        else '<span class="na">not yet (no RL)</span>')

    def guidance(tag: str, task: str) -> str:
        cfg = ex["sampling"].get(tag)
        if not cfg:
            return ""
        return (f" (CFG {cfg['t2i_cfg']:g})" if task == "t2i"
                else f" (text {cfg['edit_text']:g} / image {cfg['edit_image']:g})")

    parts = [f"""<!doctype html><html><head><meta charset="utf-8"><title>ARM demo report</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}}
img{{image-rendering:pixelated;border:1px solid #ccc}} .grid td{{vertical-align:top;font-size:13px}}
.overview{{max-width:100%;height:auto;border:none}} .met{{color:#080}} .miss{{color:#c00}} .na{{color:#888}}
.right{{color:#080}} .wrong{{color:#c00}}</style></head><body>
<h1>ARM on ShapesWorld</h1>
<p>Profile <b>{html.escape(profile)}</b>, ShapesWorld difficulty <b>{html.escape(difficulty)}</b>,
{metrics['date']}, total {metrics['total_seconds']:.0f} s. Held-out scenes (compositions never seen in
training) of the world the demo trained on, before and after RL. Rows: <b>text to image</b> (prompt &rarr;
images, evaluator score), <b>editing</b> (source + instruction &rarr; edits, adherence / consistency),
<b>VQA</b> (image + question &rarr; answers; green right, red wrong), the tokenizer's
<b>reconstructions</b> (original &rarr; decode(encode(original)), parse-back score).</p>
<p><img class="overview" src="report/overview.png" alt="overview of the examples"></p>"""]
    parts.append("<h2>Text to image</h2><table class=grid><tr><th>prompt</th>" + "".join(
        f"<th>{TAG_LABEL[t]}{guidance(t, 't2i')}</th>" for t in TAGS) + "</tr>")
    for e in ex["t2i"]:
        cells = "".join(f"<td>{img(e.get(t))}<br>score {_fmt(e.get(t + '_score'))}</td>" if t in e
                        else f"<td>{img(None)}</td>" for t in TAGS)
        parts.append(f"<tr><td>{html.escape(e['caption'])}</td>{cells}</tr>")
    parts.append("</table><h2>Editing</h2><table class=grid><tr><th>source</th><th>instruction</th>" + "".join(
        f"<th>{TAG_LABEL[t]}{guidance(t, 'edit')}</th>" for t in TAGS) + "</tr>")
    for e in ex["edit"]:
        cells = "".join(f"<td>{img(e[t])}<br>adherence {_fmt(e[t + '_scores'][0])}, consistency "
                        f"{_fmt(e[t + '_scores'][1])}</td>" if t in e else f"<td>{img(None)}</td>" for t in TAGS)
        parts.append(f"<tr><td>{img(e['source'])}</td><td>{html.escape(e['instruction'])}</td>{cells}</tr>")
    parts.append("</table><h2>Visual question answering</h2><table class=grid>"
                 "<tr><th>image</th><th>question</th><th>truth</th><th>before RL</th><th>after RL</th></tr>")
    for e in ex["vqa"]:
        answers = "".join(
            f'<td class="{"right" if e.get(t + "_correct") else "wrong"}">{html.escape(str(e[t]))}</td>'
            if t in e else '<td class="na">n/a</td>' for t in TAGS)
        parts.append(f"<tr><td>{img(e['image'])}</td><td>{html.escape(e['question'])}</td>"
                     f"<td>{html.escape(str(e['truth']))}</td>{answers}</tr>")
    parts.append("</table><h2>Tokenizer reconstructions</h2><table class=grid><tr>")
    for e in ex["recon"]:
        parts.append(f"<td>{img(e['orig'])}<br>{img(e['recon'])}<br>parse score {_fmt(e['score'])}</td>")
    parts.append("</tr></table><p>Top: original, bottom: decode(encode(image)).</p>")

    bars = metrics["bars"]
    n_eval = ((metrics.get("eval_settings") or {}).get("sft") or {}).get("n")
    parts.append(f"<h2>Quality bars</h2><p>Held-out split unless noted, {n_eval or 'n/a'} scenes per figure, "
                 "&plusmn; one standard error; a figure meets its bar when it is &ge; the target.</p>"
                 "<table><tr><th>bar</th><th>target</th><th>before RL (SFT)</th><th>after RL</th></tr>")
    for key, _, target in BARS:
        parts.append(f"<tr><td>{html.escape(bars[key]['label'])}</td><td>&ge; {target:.2f}</td>"
                     f"{_bar_cell(bars[key]['sft'])}{_bar_cell(bars[key]['rl'])}</tr>")
    parts.append("</table>")
    if metrics.get("suite_shapes"):
        parts.extend(_suite_table(metrics["suite_shapes"]))
    parts.append("<h2>Training curves</h2>")
    for c in curves:
        parts.append(f'<p><img src="report/{c}" style="width:100%;height:auto;image-rendering:auto"></p>')
    parts.append("<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>summary</th></tr>")
    for name, s in metrics["stages"].items():
        parts.append(f"<tr><td>{name}</td><td>{s['seconds']:.0f}</td><td>{html.escape(s['summary'])}</td></tr>")
    parts.append("</table><h2>Metrics</h2><table><tr><th>metric</th><th>before RL (SFT)</th><th>after RL</th></tr>")
    for label, before, after in _metric_rows(metrics):
        parts.append(f"<tr><td>{label}</td><td>{_fmt(before)}</td><td>{_fmt(after)}</td></tr>")
    parts.append("</table><h2>Files</h2><p><code>metrics.json</code> (every number above, the bars under "
                 "<code>bars</code>), <code>eval/*.json</code> (the full evaluations), "
                 "<code>report/overview.png</code> and <code>report/examples.json</code> (the examples; "
                 "<code>python scripts/readme_figure.py --run &lt;this directory&gt;</code> makes the README's "
                 "picture from them), derived configs in <code>configs/</code>, logs in <code>logs/</code> "
                 "and <code>*-logs/</code>.</p></body></html>")
    path = out / "report.html"
    _atomic_write(path, "\n".join(parts))
    return path

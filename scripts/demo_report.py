"""Write the demo's ``report.html`` and ``metrics.json`` from a finished demo directory.

Everything shown is produced by the library's public APIs from the stages' outputs:
reconstructions by ``VisualTokenizer``, samples by the ``TextToImage``/``Edit``/``Understand``
pipelines of the LM before and after RL, scores by the ShapesWorld evaluator, and training
curves from the stages' CSV logs. Images are PNG files under ``<out>/report/`` linked
relatively, so the report opens from disk in any browser.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any

N_SHOW = 6  # examples per section


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
        for ax, key in zip(axes[0], keys):
            pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if pts:
                ax.plot(*zip(*pts), lw=1.2)
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


def _examples(out: Path, figdir: Path) -> dict[str, Any]:
    """Reconstructions, T2I / edit / VQA samples before and after RL."""
    import torch

    from arm_data.shapes import ShapesWorld, evaluate_edit, evaluate_t2i
    from arm_tokenizer.tokenizer import VisualTokenizer

    tok = VisualTokenizer.from_pretrained(out / "tokenizer")
    h, w = tok.image_size
    world = ShapesWorld(split="heldout", seed=0, width=w, height=h)
    samples = [world[i] for i in range(N_SHOW)]
    ex: dict[str, Any] = {"recon": [], "t2i": [], "edit": [], "vqa": []}
    with torch.no_grad():
        recon = tok.decode_to_pil(tok.encode([s.image for s in samples]))
    for i, (s, r) in enumerate(zip(samples, recon)):
        score = evaluate_t2i(r, s.spec).score
        ex["recon"].append({"orig": _save(s.image, figdir, f"recon_{i}_orig.png"),
                            "recon": _save(r, figdir, f"recon_{i}_recon.png"), "score": score})

    from arm_core.pipelines import Edit, TextToImage, Understand

    for tag in ("lm", "rl"):
        lm_dir = out / tag
        if not (lm_dir / "config.json").exists():
            continue
        t2i = TextToImage.from_pretrained(lm_dir, out / "tokenizer")
        imgs = t2i([s.caption for s in samples], guidance_scale=3.0, seed=0, progress=False)
        for i, (s, img) in enumerate(zip(samples, imgs)):
            if len(ex["t2i"]) <= i:
                ex["t2i"].append({"caption": s.caption})
            ex["t2i"][i][tag] = _save(img, figdir, f"t2i_{tag}_{i}.png")
            ex["t2i"][i][f"{tag}_score"] = evaluate_t2i(img, s.spec, check=s.caption_attributes,
                                                        relations=s.caption_relations).score
        edit = Edit.from_pretrained(lm_dir, out / "tokenizer")
        srcs = [s.edit.source_image for s in samples]
        edited = edit(srcs, [s.edit.instruction for s in samples], seed=0, progress=False)
        for i, (s, img) in enumerate(zip(samples, edited)):
            if len(ex["edit"]) <= i:
                ex["edit"].append({"instruction": s.edit.instruction,
                                   "source": _save(s.edit.source_image, figdir, f"edit_{i}_src.png")})
            r = evaluate_edit(img, s.edit.source, s.edit.target, edit=s.edit.edit,
                              source_image=s.edit.source_image)
            ex["edit"][i][tag] = _save(img, figdir, f"edit_{tag}_{i}.png")
            ex["edit"][i][f"{tag}_scores"] = (r.adherence, r.consistency)
        und = Understand.from_pretrained(lm_dir, out / "tokenizer")
        qas = [s.qa[0] for s in samples]
        answers = und([s.image for s in samples], [q.question for q in qas], progress=False)
        for i, (s, q, a) in enumerate(zip(samples, qas, answers)):
            if len(ex["vqa"]) <= i:
                ex["vqa"].append({"image": _save(s.image, figdir, f"vqa_{i}.png"),
                                  "question": q.question, "truth": q.answer})
            ex["vqa"][i][tag] = a
    return ex


def collect_metrics(out: Path) -> dict[str, Any]:
    """The numbers of every stage in one JSON-able dict."""
    order = ["teacher", "tokenizer", "eval_tokenizer", "tokens", "lm", "eval_sft", "rl", "eval_rl", "report"]
    stages = {}
    for f in sorted((out / "stages").glob("*.json"),
                    key=lambda f: order.index(f.stem) if f.stem in order else len(order)):
        d = json.loads(f.read_text())
        stages[d["stage"]] = {"seconds": d["seconds"], "summary": d["summary"]}
    tok_rows = _csv_rows(out, "tokenizer")
    metrics: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "stages": stages,
        "total_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
        "tokenizer": {"val_psnr": _last(tok_rows, "val/psnr"), "val_ssim": _last(tok_rows, "val/ssim"),
                      "codebook_usage": _last(tok_rows, "val/codebook_usage", "train/codebook_usage")},
    }
    f = out / "eval" / "tokenizer.json"
    if f.exists():
        metrics["tokenizer"]["heldout"] = json.loads(f.read_text())
    for tag in ("sft", "rl"):
        f = out / "eval" / f"{tag}.json"
        if f.exists():
            metrics[tag] = json.loads(f.read_text()).get("summary", {})
    return metrics


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
             for label, group in (("one-object scenes", "single"), ("3+ objects", "three_plus"))]
    rows += [
        ("T2I overall, held-out, CFG 1", get("sft", "t2i", "cfg1"), get("rl", "t2i", "cfg1")),
        ("T2I overall, held-out, best CFG", get("sft", "t2i", "best"), get("rl", "t2i", "best")),
        ("VQA accuracy, held-out", get("sft", "vqa", "heldout"), get("rl", "vqa", "heldout")),
        ("edit adherence, CFG 1", get("sft", "edit", "cfg1", "adherence"), get("rl", "edit", "cfg1", "adherence")),
        ("edit consistency, CFG 1", get("sft", "edit", "cfg1", "consistency"), get("rl", "edit", "cfg1", "consistency")),
        ("edit adherence, best CFG", get("sft", "edit", "best", "adherence"), get("rl", "edit", "best", "adherence")),
        ("edit consistency, best CFG", get("sft", "edit", "best", "consistency"), get("rl", "edit", "best", "consistency")),
    ]
    return rows


def write_report(out: Path, root: Path, profile: str = "") -> Path:
    out = Path(out)
    figdir = out / "report"
    figdir.mkdir(parents=True, exist_ok=True)
    metrics = collect_metrics(out)
    metrics["profile"] = profile
    curves = _plot_curves(out, figdir)
    ex = _examples(out, figdir)
    metrics["examples"] = {
        "recon_parse_score": [e["score"] for e in ex["recon"]],
        "t2i_scores": {t: [e.get(f"{t}_score") for e in ex["t2i"]] for t in ("lm", "rl")},
    }
    _atomic_write(out / "metrics.json", json.dumps(metrics, indent=2, default=float))

    img = lambda name: f'<img src="report/{name}" width="128" height="128">'  # noqa: E731
    parts = [f"""<!doctype html><html><head><meta charset="utf-8"><title>ARM demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}}
img{{image-rendering:pixelated;border:1px solid #ccc}} .grid td{{vertical-align:top;font-size:13px}}</style></head><body>
<h1>ARM on ShapesWorld</h1>
<p>Profile <b>{html.escape(profile)}</b>, {metrics['date']}, total {metrics['total_seconds']:.0f} s.
Everything below was produced by the demo's stages (<code>scripts/demo.py</code>) on held-out
compositions (attribute combinations never seen in training).</p>
<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>summary</th></tr>"""]
    for name, s in metrics["stages"].items():
        parts.append(f"<tr><td>{name}</td><td>{s['seconds']:.0f}</td><td>{html.escape(s['summary'])}</td></tr>")
    parts.append("</table><h2>Metrics</h2><table><tr><th>metric</th><th>before RL (SFT)</th><th>after RL</th></tr>")
    for label, before, after in _metric_rows(metrics):
        parts.append(f"<tr><td>{label}</td><td>{_fmt(before)}</td><td>{_fmt(after)}</td></tr>")
    parts.append("</table><h2>Tokenizer reconstructions</h2><table class=grid><tr>")
    for e in ex["recon"]:
        parts.append(f"<td>{img(e['orig'])}<br>{img(e['recon'])}<br>parse score {_fmt(e['score'])}</td>")
    parts.append("</tr></table><p>Top: original, bottom: decode(encode(image)).</p>")
    parts.append("<h2>Text to image (CFG 3)</h2><table class=grid>")
    for e in ex["t2i"]:
        cells = "".join(f"<td>{img(e[t])}<br>{t.replace('lm', 'before RL').replace('rl', 'after RL')}: "
                        f"{_fmt(e.get(t + '_score'))}</td>" for t in ("lm", "rl") if t in e)
        parts.append(f"<tr><td>{html.escape(e['caption'])}</td>{cells}</tr>")
    parts.append("</table><h2>Editing (text 1.5 / image 1.25)</h2><table class=grid>")
    for e in ex["edit"]:
        cells = "".join(f"<td>{img(e[t])}<br>{'before' if t == 'lm' else 'after'} RL: adherence "
                        f"{_fmt(e[t + '_scores'][0])}, consistency {_fmt(e[t + '_scores'][1])}</td>"
                        for t in ("lm", "rl") if t in e)
        parts.append(f"<tr><td>{img(e['source'])}<br>{html.escape(e['instruction'])}</td>{cells}</tr>")
    parts.append("</table><h2>Visual question answering</h2><table class=grid>"
                 "<tr><th>image</th><th>question</th><th>truth</th><th>before RL</th><th>after RL</th></tr>")
    for e in ex["vqa"]:
        parts.append(f"<tr><td>{img(e['image'])}</td><td>{html.escape(e['question'])}</td>"
                     f"<td>{html.escape(str(e['truth']))}</td><td>{html.escape(str(e.get('lm', '')))}</td>"
                     f"<td>{html.escape(str(e.get('rl', '')))}</td></tr>")
    parts.append("</table><h2>Training curves</h2>")
    for c in curves:
        parts.append(f'<p><img src="report/{c}" style="width:100%;height:auto;image-rendering:auto"></p>')
    parts.append("<h2>Files</h2><p><code>metrics.json</code>, derived configs in <code>configs/</code>, "
                 "logs in <code>logs/</code> and <code>*-logs/</code>.</p></body></html>")
    path = out / "report.html"
    _atomic_write(path, "\n".join(parts))
    return path

"""Accuracy of the ShapesWorld evaluator on ground-truth renders (clean and degraded).

    python -m arm_data.shapes.accuracy --scenes 2000 --out accuracy.json [--workers 2]

For every split and resolution (64x64, 128x128, 256x256 and the non-square 96x64 by
default), ``--scenes`` random scenes are rendered and parsed; each spec object is paired
with a detection by position (Hungarian assignment on centroid distance, so an attribute
error is not hidden by the matching) and counts as correct for an attribute when the
paired detection has the same value (an unpaired object is wrong on every attribute).
``count`` is per image (exactly as many detections as objects). ``strict`` is the share
of images where everything is right, ``t2i_score`` the mean :func:`evaluate_t2i` score.

The degraded rows use 64x64 renders after JPEG quality 50, additive Gaussian noise
sigma=0.05 (pixels in [0, 1], clipped) or a Gaussian blur of sigma = 1 px, and report
the same figures. ``speed`` times :func:`parse_image` on one core (images per minute, wall and CPU time).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from multiprocessing import get_context
from typing import Any

import numpy as np
from PIL import Image, ImageFilter
from scipy.optimize import linear_sum_assignment

from arm_data.shapes.evaluator import evaluate_t2i
from arm_data.shapes.perception import parse_image
from arm_data.shapes.rendering import render
from arm_data.shapes.splits import SPLITS, sample_rng, sample_scene

ATTRIBUTES = ("color", "shape", "size", "region")
DEGRADATIONS = ("none", "jpeg50", "noise0.05", "blur1")
DEFAULT_SIZES = ((64, 64), (128, 128), (256, 256), (96, 64))


def degrade(image: Image.Image, kind: str, index: int) -> Any:
    """Apply one degradation (deterministic in ``index``)."""
    if kind == "none":
        return image
    if kind == "jpeg50":
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=50)
        buf.seek(0)
        return Image.open(buf).convert("RGB")
    if kind == "noise0.05":
        a = np.asarray(image, dtype=np.float64) / 255.0
        a = a + np.random.default_rng(index).normal(0.0, 0.05, a.shape)
        return np.clip(a, 0.0, 1.0)
    if kind == "blur1":
        return image.filter(ImageFilter.GaussianBlur(1))
    raise ValueError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")


def score_one(args: tuple[str, int, int, int, str, int]) -> dict[str, Any]:
    """Render, degrade and parse scene ``index``; per-attribute hits for it."""
    split, seed, width, height, deg, index = args
    spec = sample_scene(sample_rng(seed, split, index), split)
    image = degrade(render(spec, width, height), deg, index)
    parsed = parse_image(image)
    det = parsed.objects
    pair: dict[int, int] = {}
    if det:
        cost = np.array([[np.hypot(o.x - d.x, o.y - d.y) for d in det] for o in spec.objects])
        rows, cols = linear_sum_assignment(cost)
        pair = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    hits = {a: 0 for a in ATTRIBUTES}
    errors = []
    for i, o in enumerate(spec.objects):
        d = det[pair[i]] if i in pair else None
        for a in ATTRIBUTES:
            ok = d is not None and getattr(d, a) == getattr(o, a)
            hits[a] += ok
            if not ok:
                errors.append(f"{a}:{getattr(o, a)}->{getattr(d, a) if d else None}")
    count_ok = len(det) == spec.count
    t2i = evaluate_t2i(image, spec, parsed=parsed).score
    return {"objects": spec.count, "hits": hits, "count_ok": count_ok,
            "strict": count_ok and not errors, "t2i": t2i, "errors": errors}


def run_condition(split: str, width: int, height: int, deg: str, scenes: int, seed: int,
                  pool) -> dict[str, Any]:
    jobs = [(split, seed, width, height, deg, i) for i in range(scenes)]
    results = pool.map(score_one, jobs, chunksize=32) if pool else list(map(score_one, jobs))
    n_obj = sum(r["objects"] for r in results)
    row: dict[str, Any] = {"split": split, "width": width, "height": height, "degradation": deg,
                           "scenes": scenes, "objects": n_obj}
    for a in ATTRIBUTES:
        row[a] = sum(r["hits"][a] for r in results) / n_obj
    row["count"] = sum(r["count_ok"] for r in results) / scenes
    row["strict"] = sum(r["strict"] for r in results) / scenes
    row["t2i_score"] = float(np.mean([r["t2i"] for r in results]))
    errs: dict[str, int] = {}
    for r in results:
        for e in r["errors"]:
            errs[e] = errs.get(e, 0) + 1
    row["top_errors"] = dict(sorted(errs.items(), key=lambda kv: -kv[1])[:5])
    return row


def measure_speed(n: int = 300, seed: int = 0) -> dict[str, float]:
    """parse_image throughput on 64x64 renders in this process (one core)."""
    images = [render(sample_scene(sample_rng(seed, "val", i), "val"), 64, 64) for i in range(n)]
    parse_image(images[0])  # warm caches (shape prototypes)
    t, c = time.perf_counter(), time.process_time()
    for im in images:
        parse_image(im)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    for i in range(n):
        render(sample_scene(sample_rng(seed, "val", i), "val"), 64, 64)
    dr = time.perf_counter() - t
    # Wall time depends on what else runs on the machine; CPU time is the one-core cost.
    return {"parse_images_per_minute_64px": 60 * n / dt, "parse_ms_per_image_64px": 1000 * dt / n,
            "parse_cpu_ms_per_image_64px": 1000 * dc / n,
            "parse_images_per_cpu_minute_64px": 60 * n / max(dc, 1e-9),
            "render_images_per_minute_64px": 60 * n / dr}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m arm_data.shapes.accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=2000, help="scenes per (split, size, degradation)")
    p.add_argument("--out", required=True, help="JSON output file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    p.add_argument("--sizes", nargs="+", default=[f"{w}x{h}" for w, h in DEFAULT_SIZES],
                   help="clean-render sizes WxH")
    p.add_argument("--degraded-size", default="64x64", help="size of the degraded renders")
    p.add_argument("--degradations", nargs="*", choices=DEGRADATIONS[1:], default=list(DEGRADATIONS[1:]),
                   help="degradations to run at --degraded-size (none: clean renders only)")
    p.add_argument("--workers", type=int, default=1, help="processes (speed is timed on one)")
    a = p.parse_args(argv)
    sizes = []
    for s in a.sizes + [a.degraded_size]:
        try:
            w, h = (int(v) for v in s.lower().split("x"))
        except ValueError:
            p.error(f"size {s!r} must look like 64x64")
        sizes.append((w, h))
    deg_size = sizes.pop()
    conds = [(sp, w, h, "none") for w, h in sizes for sp in a.splits]
    conds += [(sp, deg_size[0], deg_size[1], d) for d in a.degradations for sp in a.splits]
    pool = get_context("spawn").Pool(a.workers) if a.workers > 1 else None
    rows = []
    t0 = time.perf_counter()
    try:
        for sp, w, h, d in conds:
            row = run_condition(sp, w, h, d, a.scenes, a.seed, pool)
            rows.append(row)
            print(f"{sp:8s} {w:3d}x{h:<3d} {d:9s} " + " ".join(
                f"{k}={row[k]:.4f}" for k in (*ATTRIBUTES, "count", "strict")), flush=True)
    finally:
        if pool:
            pool.close()
    speed = measure_speed()
    out = {"scenes_per_condition": a.scenes, "seed": a.seed, "rows": rows, "speed": speed,
           "elapsed_s": time.perf_counter() - t0, "python": platform.python_version(),
           "machine": platform.machine()}
    # deferred: checkpoint imports torch, which ShapesWorld's accuracy report does without
    from arm_tokenizer.framework.checkpoint import atomic_write_bytes

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    atomic_write_bytes(a.out, json.dumps(out, indent=1).encode())
    print(json.dumps(speed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

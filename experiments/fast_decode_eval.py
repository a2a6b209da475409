#!/usr/bin/env python
"""ShapesWorld held-out text-to-image score with and without speculative decoding and int8.

Speculative Jacobi decoding samples from the same distribution as plain decoding and int8
weights change the logits by ~2% (packages/arm-core/tests/test_quantize.py), so the score
of an exported LM should not move beyond its standard error. This scores the same
captions (``evaluate_t2i_split``, as ``arm-lm evaluate`` does) under each setting and
reports each score ± SE and its difference from plain decoding in units of the
difference's SE (independent samples: ``sqrt(se_a² + se_b²)``)::

    OMP_NUM_THREADS=1 python experiments/fast_decode_eval.py --lm runs/demo-seed1/lm \\
        --n 400 --guidance-scale 3 --out benchmarks/results/fast_decode_eval.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from arm_core.evaluate import evaluate_t2i_split
from arm_core.pipelines import TextToImage
from arm_tokenizer.framework.deprecation import add_renamed_flag

SETTINGS = {"plain": {}, "speculative": {"speculative": 8}, "int8": {"quantize": "int8"},
            "speculative+int8": {"speculative": 8, "quantize": "int8"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm", required=True, help="exported LM directory")
    ap.add_argument("--n", type=int, default=400, help="held-out captions")
    ap.add_argument("--guidance-scale", type=float, default=3.0, help="guidance scale")
    add_renamed_flag(ap, "--cfg", "--guidance-scale")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--difficulty", default="demo")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    res: dict = {"lm": a.lm, "n": a.n, "cfg": a.guidance_scale, "seed": a.seed, "difficulty": a.difficulty,
                 "split": "heldout", "threads": torch.get_num_threads(), "settings": {}}
    for name in a.settings:
        pipe = TextToImage.from_pretrained(a.lm, **SETTINGS[name])
        t = time.perf_counter()
        r = evaluate_t2i_split(pipe, "heldout", a.n, a.guidance_scale, seed=a.seed, batch_size=a.batch_size,
                               difficulty=a.difficulty)
        row = {"overall": r["overall"], "overall_se": r["overall_se"], "strict": r["strict"],
               "seconds": round(time.perf_counter() - t, 1), **SETTINGS[name]}
        base = res["settings"].get("plain")
        if base is not None and name != "plain":
            se = math.hypot(base["overall_se"], r["overall_se"])
            row["diff_vs_plain"] = r["overall"] - base["overall"]
            row["diff_in_se"] = row["diff_vs_plain"] / se
            row["within_one_se_of_plain"] = abs(r["overall"] - base["overall"]) <= base["overall_se"]
        res["settings"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a perfect LM would score through a given tokenizer: the evaluator's ceiling.

An LM that emitted exactly the tokens of the right image would still be judged on the
decoder's drawing of them. This script scores that drawing, on the same scenes that
``arm-lm evaluate`` uses:

* T2I: ``evaluate_t2i(decode(encode(image)), spec)``, the overall clause score (the same
  figure as ``arm-data shapes eval-tokenizer``'s ``parse_back_score`` on these scenes);
* editing: ``evaluate_edit(decode(encode(target image)), source, target)``, adherence and
  consistency, against the source image's background as ``arm-lm evaluate`` does.

Below these figures no amount of LM training or RL can go further on this tokenizer.

    python experiments/tokenizer_ceiling.py --tokenizer runs/gpu/tokenizer-ft --n 150 \\
        --out ceiling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from arm_data.shapes import evaluate_edit
from arm_data.shapes.evaluator import clause_pass_rates, evaluate_t2i
from arm_data.shapes.tokenizer_eval import shapes_scenes
from arm_tokenizer.tokenizer import VisualTokenizer


def roundtrip(tok: VisualTokenizer, images: list, batch: int, seed: int) -> list:
    """``decode(encode(images))`` as PIL images (a generative decoder sampled with ``seed``)."""
    out = []
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(images), batch):
        ids = tok.encode(images[i: i + batch])
        kw = {"generator": gen} if getattr(tok.decoder, "generative", False) else {}
        out += tok.decode_to_pil(ids, **kw)
    return out


@torch.no_grad()
def ceiling(tok: VisualTokenizer, split: str, n: int, batch: int = 32, seed: int = 0) -> dict:
    samples = shapes_scenes(split, n, seed=0, size=tok.image_size[0])
    t2i = [evaluate_t2i(im, s.spec).score
           for s, im in zip(samples, roundtrip(tok, [s.image for s in samples], batch, seed), strict=True)]
    trips = [s.edit for s in samples]
    adh, con, con_clauses = [], [], []
    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    targets = roundtrip(tok, [t.target_image for t in trips], batch, seed)
    for t, im in zip(trips, targets, strict=True):
        r = evaluate_edit(im, t.source, t.target, edit=t.edit, source_image=t.source_image)
        adh.append(r.adherence)
        con.append(r.consistency)
        con_clauses += r.consistency_clauses
        by_kind[t.edit.kind].append((r.adherence, r.consistency))
    return {"split": split, "n": n, "t2i_overall": statistics.fmean(t2i),
            "edit_adherence": statistics.fmean(adh), "edit_consistency": statistics.fmean(con),
            # which consistency clauses fail (presence, color, ..., background)
            "consistency_by_clause": dict(sorted(clause_pass_rates(con_clauses).items())),
            "edit_by_kind": {k: {"adherence": statistics.fmean(a for a, _ in v),
                                 "consistency": statistics.fmean(c for _, c in v), "n": len(v)}
                             for k, v in sorted(by_kind.items())}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", nargs="+", required=True, help="exported tokenizer directories")
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    res = {}
    for d in args.tokenizer:
        t = time.perf_counter()
        res[d] = ceiling(VisualTokenizer.from_pretrained(d).eval(), args.split, args.n)
        res[d]["seconds"] = round(time.perf_counter() - t, 1)
        print(json.dumps({d: res[d]}), file=sys.stderr, flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

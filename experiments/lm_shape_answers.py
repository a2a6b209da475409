"""An LM's answers to "which shape is <colour>?" about lone objects, held-out pairs against seen
ones: does it name the shape the training split's colour prior allows instead
(benchmarks/results/heldout_pairs.md)? Greedy answers, one question per single-object scene
(ShapesWorld seed 5), ``N`` scenes per split.

    python experiments/lm_shape_answers.py runs/gpu-local/lm runs/gpu-local/tokenizer-perc 150 [grey]

With ``grey`` the LM sees each image's luminance instead (the question still names the
colour): with no hue in the picture the colour prior has nothing to act on.

Prints JSON: per held-out pair (and ``seen pair`` on val), the right answers and the wrong
ones by what was said.
"""
import json
import sys
from collections import Counter, defaultdict

import torch
from arm_core.pipelines import Understand
from arm_data.shapes import ShapesWorld
from arm_data.shapes.splits import HELDOUT_PAIRS

torch.set_num_threads(1)
pipe = Understand.from_pretrained(sys.argv[1], sys.argv[2])
grey = len(sys.argv) > 4 and sys.argv[4] == "grey"
res = {}
for split in ("heldout", "val"):
    w = ShapesWorld(split=split, seed=5, qa_kinds=("shape",), num_questions=1)
    imgs, qs, keys, ans = [], [], [], []
    i = 0
    while len(qs) < int(sys.argv[3]):
        s = w[i]
        i += 1
        if s.spec.count != 1:
            continue
        o = s.spec.objects[0]
        imgs.append(s.image.convert("L").convert("RGB") if grey else s.image)
        qs.append(s.qa[0].question)
        ans.append(s.qa[0].answer)
        keys.append(f"{o.color} {o.shape}" if (o.color, o.shape) in HELDOUT_PAIRS else "seen pair")
    out = pipe(imgs, qs, progress=False)
    by = defaultdict(Counter)
    for k, a, p in zip(keys, ans, out, strict=True):
        by[k]["right" if p.strip().lower() == a.strip().lower() else f"said:{p.strip().lower()}"] += 1
    res[split] = {k: dict(v.most_common()) for k, v in sorted(by.items())}
    res[split + "_example"] = [qs[0], ans[0], out[0]]
print(json.dumps(res, indent=1))

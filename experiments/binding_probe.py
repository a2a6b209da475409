"""Can a small attention model answer "what shape is the red object?" from a tokenizer's codes?

``probe_objects.py`` reads each object's shape from the tokens *at its place*: a linear probe
that is told where the object is. VQA must also find the object the question names. This
probe sits between the two and the LM: a two-block transformer over the 64 code ids (what
the LM's embedding table reads) plus one query token, trained from scratch on ShapesWorld
train scenes to answer two questions about every object whose naming attribute is unique in
its scene:

- ``shape``: the shape of the object of a given colour ("what shape is the red object?");
- ``color``: the colour of the object of a given shape ("what colour is the star?").

Accuracy on ``--split`` scenes is split by the scene's object count, as ``arm-lm evaluate``'s
VQA and ``object_probe`` are. Several tokenizers in one call are trained with the same seed,
data and steps.

    python experiments/binding_probe.py runs/tokcap/fsq1000 runs/tokcap/fsq4096-bin-mlp

Prints one JSON line per tokenizer.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from arm_data.shapes.palette import COLORS as PALETTE
from arm_data.shapes.palette import SHAPES
from arm_data.shapes.spec import count_group
from arm_data.shapes.tokenizer_eval import scene_images, shapes_scenes
from arm_tokenizer.tokenizer import VisualTokenizer

p = argparse.ArgumentParser()
p.add_argument("tokenizers", nargs="+", help="exported VisualTokenizer directories")
p.add_argument("--train", type=int, default=10000, help="train-split scenes")
p.add_argument("--test", type=int, default=1000, help="scenes of --split to test on")
p.add_argument("--split", default="val")
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--width", type=int, default=64)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)

TASKS = ("shape", "color")
COLORS = tuple(PALETTE)


def questions(samples):
    """(scene index, task, given attribute id, answer id, count group) for every object whose
    naming attribute is unique in its scene."""
    out = []
    for k, s in enumerate(samples):
        objs = s.spec.objects
        group = count_group(len(objs))
        for o in objs:
            if sum(other.color == o.color for other in objs) == 1:
                out.append((k, 0, COLORS.index(o.color), SHAPES.index(o.shape), group))
            if sum(other.shape == o.shape for other in objs) == 1:
                out.append((k, 1, SHAPES.index(o.shape), COLORS.index(o.color), group))
    return out


class Reader(nn.Module):
    """Code ids + a query token (task and given attribute) -> answer logits."""

    def __init__(self, codebook: int, tokens: int, width: int) -> None:
        super().__init__()
        self.codes = nn.Embedding(codebook, width)
        self.pos = nn.Parameter(torch.randn(tokens + 1, width) * 0.02)
        self.given = nn.ModuleList([nn.Embedding(len(COLORS), width), nn.Embedding(len(SHAPES), width)])
        block = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, 2, enable_nested_tensor=False)
        self.heads = nn.ModuleList([nn.Linear(width, len(SHAPES)), nn.Linear(width, len(COLORS))])

    def forward(self, codes, task: int, given):
        q = self.given[task](given)[:, None]
        h = self.blocks(torch.cat([q, self.codes(codes)], 1) + self.pos)
        return self.heads[task](h[:, 0])


def run(path, tok, train, test, qtrain, qtest):
    def codes(samples):   # encode: the code ids only, without proj_out
        x = scene_images(samples)
        return torch.cat([tok.encode(x[i : i + 64]) for i in range(0, len(x), 64)])

    ctrain, ctest = codes(train), codes(test)
    torch.manual_seed(0)
    model = Reader(tok.codebook_size, ctrain.shape[1], a.width)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=a.steps, pct_start=0.05)
    by_task = {t: torch.tensor([(q[0], q[2], q[3]) for q in qtrain if q[1] == t]) for t in range(len(TASKS))}
    g = torch.Generator().manual_seed(0)
    start = time.time()
    for step in range(a.steps):
        t = step % len(TASKS)   # alternate the two questions
        rows = by_task[t][torch.randint(len(by_task[t]), (a.batch,), generator=g)]
        loss = F.cross_entropy(model(ctrain[rows[:, 0]], t, rows[:, 1]), rows[:, 2])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    res = {}
    with torch.no_grad():
        for t, name in enumerate(TASKS):
            qs = [q for q in qtest if q[1] == t]
            idx = torch.tensor([q[0] for q in qs])
            pred = model(ctest[idx], t, torch.tensor([q[2] for q in qs])).argmax(-1)
            right = (pred == torch.tensor([q[3] for q in qs])).tolist()
            groups = {}
            for q, r in zip(qs, right, strict=True):
                groups.setdefault(q[4], []).append(r)
            res[name] = {gname: round(sum(v) / len(v), 4) for gname, v in sorted(groups.items())}
            res[f"{name}_n"] = {gname: len(v) for gname, v in sorted(groups.items())}
    return {"tokenizer": path, "split": a.split, "train_scenes": len(train), "steps": a.steps,
            "final_train_loss": round(loss.item(), 4), "seconds": round(time.time() - start, 1), **res}


toks = {path: VisualTokenizer.from_pretrained(path) for path in a.tokenizers}
sizes = {tok.image_size[0] for tok in toks.values()}
if len(sizes) != 1:
    raise SystemExit(f"the tokenizers read different image sizes {sorted(sizes)}; compare like with like")
size = sizes.pop()
train = shapes_scenes("train", a.train, 1, size)
test = shapes_scenes(a.split, a.test, 0, size)
qtrain, qtest = questions(train), questions(test)
for path, tok in toks.items():
    print(json.dumps(run(path, tok, train, test, qtrain, qtest)), flush=True)

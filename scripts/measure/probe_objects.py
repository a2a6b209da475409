"""Do a tokenizer's tokens carry each object's shape and color in crowded scenes, or only
when the object is alone? ``evaluate_tokenizer``'s object probe (linear probes on every
object of ShapesWorld scenes with any object count, split by the scene's object count),
run at more readouts and on more scenes: fit on the objects of ``--train`` train-split
scenes, tested on those of ``--test`` scenes of ``--split``.

Three feature sets: the frozen tower's output before quantization (``encoder``), the
de-quantized tokens (``tokens``: ``proj_out`` of the codes, what ``eval-tokenizer``
probes) and the one-hot code ids (``codes``: what the LM's embedding table reads), each
at the object's own token (radius 0) and its 3x3 / 5x5 neighbourhood (radius 1 / 2; one-hot
codes stop at 3x3). The gap between ``encoder`` and the others is what quantization loses.

    python scripts/measure/probe_objects.py runs/gpu/tokenizer --split val

Prints one JSON line per readout.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from arm_data.shapes.tokenizer_eval import object_probe_features, scene_images, shapes_scenes
from arm_tokenizer.tokenizer import VisualTokenizer

p = argparse.ArgumentParser()
p.add_argument("tokenizer", help="an exported VisualTokenizer directory")
p.add_argument("--train", type=int, default=1500, help="train-split scenes to fit the probes on")
p.add_argument("--test", type=int, default=600, help="scenes of --split to test on")
p.add_argument("--split", default="val")
a = p.parse_args()

tok = VisualTokenizer.from_pretrained(a.tokenizer).eval()


@torch.no_grad()
def features(samples):
    """One forward pass per batch for all three feature sets (codes as ids, one-hot later)."""
    x = scene_images(samples)
    outs = [tok(x[i : i + 64]) for i in range(0, len(x), 64)]
    return {"encoder": torch.cat([o.encoder_features for o in outs]).float(),
            "tokens": torch.cat([o.features for o in outs]).float(),
            "codes": torch.cat([o.quant.indices for o in outs]).long()}


train = shapes_scenes("train", a.train, 1, tok.image_size[0])
test = shapes_scenes(a.split, a.test, 0, tok.image_size[0])
ftr, fte = features(train), features(test)
for name in ftr:
    f_train, f_test = ftr[name], fte[name]
    if name == "codes":
        f_train, f_test = (F.one_hot(f, tok.codebook_size) for f in (f_train, f_test))
    for radius in (0, 1) if name == "codes" else (0, 1, 2):
        res = object_probe_features(f_train, f_test, train, test, radius=radius)
        print(json.dumps({"tokenizer": a.tokenizer, "split": a.split, "features": name, **res}), flush=True)

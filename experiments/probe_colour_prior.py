"""Is a tower's failure on held-out (colour, shape) pairs missing shape, or the reader's
colour prior? Linear shape probes on each object's 3x3 neighbourhood of a frozen image
tower, fit on train-split objects and tested on held-out-split objects, split by whether the
object's pair is held out (never in train) or seen, three ways:

- ``as_is``: the tower's features of the colour images;
- ``colour_projected``: the same after removing the span of the colour class means (fit on
  train, standardized features; a colour probe then reads near chance). A reader that
  cannot use colour as evidence for shape;
- ``grey``: features of the luminance images, train and test (``grey_fit_colour_test``: fit on
  grey, test on colour).

Every colour lacks one shape in train, so a reader fit by maximum likelihood can learn
"red, so not a triangle"; ``as_is`` low with ``colour_projected`` high says that is the
failure (benchmarks/results/heldout_pairs.md).

    python experiments/probe_colour_prior.py runs/gpu-local/teacher
    python experiments/probe_colour_prior.py runs/gpu-local/tokenizer --tokens

Prints one JSON line.
"""
import argparse
import json

import torch
from arm_data.shapes.palette import COLORS, SHAPES
from arm_data.shapes.splits import HELDOUT_PAIRS
from arm_data.shapes.tokenizer_eval import object_neighbourhoods, scene_images, shapes_scenes
from arm_tokenizer.images import luminance
from arm_tokenizer.probe import fit_linear_probe, labels_to_ids
from arm_tokenizer.teachers.frozen import load_image_tower
from arm_tokenizer.tokenizer import VisualTokenizer

p = argparse.ArgumentParser()
p.add_argument("directory", help="a teacher directory (a tokenizer's frozen encoder is its teacher's tower)")
p.add_argument("--tokens", action="store_true",
               help="directory is a VisualTokenizer: probe its de-quantized tokens (what the LM's codes stand for)")
p.add_argument("--train", type=int, default=1500)
p.add_argument("--test", type=int, default=600)
a = p.parse_args()


def load(directory):
    if not a.tokens:
        return load_image_tower(directory).eval()
    tok = VisualTokenizer.from_pretrained(directory).eval()
    return lambda x: tok(x).features


tower = load(a.directory)


@torch.no_grad()
def features(x):
    return torch.cat([tower(x[i : i + 64]) for i in range(0, len(x), 64)]).float()


train, test = shapes_scenes("train", a.train, 1, 64), shapes_scenes("heldout", a.test, 0, 64)
xtr, xte = scene_images(train), scene_images(test)


def labels(samples, attr, classes):
    return labels_to_ids([getattr(o, attr) for s in samples for o in s.spec.objects], list(classes))[0]


ys_tr, ys_te = labels(train, "shape", SHAPES), labels(test, "shape", SHAPES)
yc_tr, yc_te = labels(train, "color", COLORS), labels(test, "color", COLORS)
held = torch.tensor([(o.color, o.shape) in HELDOUT_PAIRS for s in test for o in s.spec.objects])


def shape_accuracy(f_train, f_test):
    hit = (fit_linear_probe(f_train, ys_tr, len(SHAPES))(f_test).argmax(1) == ys_te).float()
    return {"heldout_pair": round(float(hit[held].mean()), 4), "seen_pair": round(float(hit[~held].mean()), 4)}


nb = {(split, view): object_neighbourhoods(features(fn(x)), samples, 1).double()
      for split, x, samples in (("train", xtr, train), ("test", xte, test))
      for view, fn in (("colour", lambda z: z), ("grey", luminance))}
out = {"directory": a.directory, "n_objects": {"heldout_pair": int(held.sum()), "seen_pair": int((~held).sum())},
       "as_is": shape_accuracy(nb["train", "colour"], nb["test", "colour"]),
       "grey": shape_accuracy(nb["train", "grey"], nb["test", "grey"]),
       "grey_fit_colour_test": shape_accuracy(nb["train", "grey"], nb["test", "colour"])}
mu, sd = nb["train", "colour"].mean(0), nb["train", "colour"].std(0) + 1e-6
f_tr, f_te = (nb["train", "colour"] - mu) / sd, (nb["test", "colour"] - mu) / sd
means = torch.stack([f_tr[yc_tr == k].mean(0) for k in range(len(COLORS))])
basis = torch.linalg.qr(means.T)[0]
f_tr, f_te = f_tr - (f_tr @ basis) @ basis.T, f_te - (f_te @ basis) @ basis.T
colour_left = (fit_linear_probe(f_tr, yc_tr, len(COLORS))(f_te).argmax(1) == yc_te).float().mean()
out["colour_projected"] = {**shape_accuracy(f_tr, f_te), "colour_probe_after": round(float(colour_left), 4)}
print(json.dumps(out), flush=True)

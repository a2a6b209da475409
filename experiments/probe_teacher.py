"""Does a frozen image tower encode color and shape? Linear probes on single-object ShapesWorld
scenes (fit on 800 train scenes, tested on 400 val scenes, 64 px) over three readouts of the
tower's patch tokens: the token under the object's centre, its 3x3 neighbourhood
(concatenated) and the mean over all tokens; and, as a reference, the raw pixels of a 24x24
crop around the object.

    python experiments/probe_teacher.py runs/demo/teacher            # a teacher directory
    python experiments/probe_teacher.py runs/demo/tokenizer --tokenizer  # its de-quantized tokens

Prints one JSON line per readout.
"""
import argparse
import json

import torch
import torch.nn.functional as F

from arm_data.shapes.tokenizer_eval import scene_images, shapes_scenes
from arm_tokenizer.probe import linear_probe_accuracy

p = argparse.ArgumentParser()
p.add_argument("directory")
p.add_argument("--tokenizer", action="store_true", help="directory is a VisualTokenizer; probe its de-quantized features")
p.add_argument("--train", type=int, default=800)
p.add_argument("--test", type=int, default=400)
a = p.parse_args()

if a.tokenizer:
    from arm_tokenizer.tokenizer import VisualTokenizer

    tok = VisualTokenizer.from_pretrained(a.directory).eval()
    tokens_of = lambda x: tok(x).features  # noqa: E731
else:
    from arm_tokenizer.teachers.frozen import load_image_tower

    tokens_of = load_image_tower(a.directory).eval()

train = shapes_scenes("train", a.train, 1, 64, single_object=True)
test = shapes_scenes("val", a.test, 0, 64, single_object=True)


def readouts(samples):
    x = scene_images(samples)
    with torch.no_grad():
        f = torch.cat([tokens_of(x[i : i + 64]) for i in range(0, len(x), 64)]).float()
    b, n, c = f.shape
    g = int(n**0.5)
    f = f.view(b, g, g, c)
    padded = F.pad(f.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)
    at = [(min(g - 1, int(s.spec.objects[0].y * g)), min(g - 1, int(s.spec.objects[0].x * g))) for s in samples]
    xp = F.pad(x, (12, 12, 12, 12))
    px = [(int(s.spec.objects[0].y * 64), int(s.spec.objects[0].x * 64)) for s in samples]
    return {
        "object_token": torch.stack([f[k, i, j] for k, (i, j) in enumerate(at)]),
        "object_3x3": torch.stack([padded[k, i : i + 3, j : j + 3].reshape(-1) for k, (i, j) in enumerate(at)]),
        "mean": f.mean((1, 2)),
        "pixels_24x24": torch.stack([xp[k, :, i : i + 24, j : j + 24].reshape(-1) for k, (i, j) in enumerate(px)]),
    }


ftr, fte = readouts(train), readouts(test)
for name in ftr:
    row = {"directory": a.directory, "readout": name}
    for attr in ("color", "shape"):
        row[attr] = round(linear_probe_accuracy(ftr[name], [getattr(s.spec.objects[0], attr) for s in train],
                                                fte[name], [getattr(s.spec.objects[0], attr) for s in test]), 4)
    print(json.dumps(row), flush=True)

"""Do a tokenizer's tokens carry each object's shape and color in crowded scenes, or only
when the object is alone? ``evaluate_tokenizer``'s object probe (linear probes on every
object of ShapesWorld scenes with any object count, split by the scene's object count),
run at more readouts and on more scenes: fit on the objects of ``--train`` train-split
scenes, tested on those of ``--test`` scenes of ``--split``.

Feature sets: the frozen tower's output before quantization (``encoder``), the
de-quantized tokens (``tokens``: ``proj_out`` of the codes, what ``eval-tokenizer``
probes), the one-hot code ids (``codes``: what the LM's embedding table reads), the
quantizer's code vectors (``code_vectors``: for FSQ the per-dimension levels, a factorized
reading of the same ids) and, with ``--lm``, that LM's input-embedding rows of the codes
(``lm_embedding``: what a trained LM reads), each at the object's own token (radius 0) and
its 3x3 / 5x5 neighbourhood (radius 1 / 2; one-hot codes stop at 3x3). The gap between
``encoder`` and the others is what quantization loses; with ``--split heldout`` (colour-shape
pairs never in train) the gap between ``codes`` and ``code_vectors`` is what an id-per-code
reading loses in generalization.

    python experiments/probe_objects.py runs/gpu/tokenizer --split val
    python experiments/probe_objects.py runs/gpu-local/tokenizer --split heldout --lm runs/gpu-local/lm
    python experiments/probe_objects.py runs/gpu-local/teacher --teacher --split heldout

On ``heldout`` each line also has ``shape_by_pair`` / ``color_by_pair``: objects whose
(color, shape) pair never occurs in train against the rest.

Prints one JSON line per readout.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from arm_data.shapes.tokenizer_eval import object_probe_features, scene_images, shapes_scenes
from arm_tokenizer.tokenizer import VisualTokenizer

p = argparse.ArgumentParser()
p.add_argument("tokenizer", help="an exported VisualTokenizer directory (a teacher directory with --teacher)")
p.add_argument("--teacher", action="store_true", help="probe a teacher's image tower (feature set 'tower') instead")
p.add_argument("--train", type=int, default=1500, help="train-split scenes to fit the probes on")
p.add_argument("--test", type=int, default=600, help="scenes of --split to test on")
p.add_argument("--split", default="val")
p.add_argument("--lm", default=None, help="an exported arm-core LM on these codes: add its embedding rows")
a = p.parse_args()
if a.teacher and a.lm:
    p.error("--lm reads a tokenizer's codes; it does not apply to a --teacher tower")

if a.teacher:
    from arm_tokenizer.teachers.frozen import load_image_tower

    tower = load_image_tower(a.tokenizer).eval()
    size = 64
else:
    tok = VisualTokenizer.from_pretrained(a.tokenizer).eval()
    size = tok.image_size[0]


@torch.no_grad()
def features(samples):
    """One forward pass per batch for all three feature sets (codes as ids, one-hot later)."""
    x = scene_images(samples)
    if a.teacher:
        return {"tower": torch.cat([tower(x[i : i + 64]) for i in range(0, len(x), 64)]).float()}
    outs = [tok(x[i : i + 64]) for i in range(0, len(x), 64)]
    return {"encoder": torch.cat([o.encoder_features for o in outs]).float(),
            "tokens": torch.cat([o.features for o in outs]).float(),
            "codes": torch.cat([o.quant.indices for o in outs]).long()}


train = shapes_scenes("train", a.train, 1, size)
test = shapes_scenes(a.split, a.test, 0, size)
ftr, fte = features(train), features(test)
readings = {}
if not a.teacher:
    with torch.no_grad():
        vectors = tok.quantizer.indices_to_codes(torch.arange(tok.codebook_size)[None])
    readings["code_vectors"] = vectors.reshape(tok.codebook_size, -1).float()
if a.lm:
    from arm_core.checkpoint import load_lm

    lm = load_lm(a.lm)
    off = lm.config.image_offset
    readings["lm_embedding"] = lm.model.embed_tokens.weight.detach()[off: off + tok.codebook_size].float()
for name, table in readings.items():
    ftr[name], fte[name] = table[ftr["codes"]], table[fte["codes"]]
for name in ftr:
    f_train, f_test = ftr[name], fte[name]
    if name == "codes":
        f_train, f_test = (F.one_hot(f, tok.codebook_size) for f in (f_train, f_test))
    for radius in (0, 1) if name == "codes" else (0, 1, 2):
        res = object_probe_features(f_train, f_test, train, test, radius=radius)
        print(json.dumps({"tokenizer": a.tokenizer, "split": a.split, "features": name, **res}), flush=True)

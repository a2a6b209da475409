"""Do held-out images use image codes the LM rarely saw? Code counts over ``N`` training images
(ShapesWorld seed 0, the scenes the LM's shards start with), then, for 1,000 images each of val,
held-out and another training stream (seed 7), the fraction of tokens whose code was seen
never / fewer than 10 / fewer than 100 times, and of images with an unseen code.

    python experiments/rare_codes.py runs/gpu-local/tokenizer [N=10000]

Prints JSON.
"""
import json
import sys

import torch
from arm_data.shapes import ShapesWorld
from arm_tokenizer.tokenizer import VisualTokenizer

torch.set_num_threads(1)
tok = VisualTokenizer.from_pretrained(sys.argv[1])
n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 10000


def codes(split, seed, n):
    w = ShapesWorld(split=split, seed=seed, length=n)
    return torch.cat([tok.encode([w[i].image for i in range(s, min(n, s + 250))]) for s in range(0, n, 250)])


counts = torch.bincount(codes("train", 0, n_train).flatten(), minlength=tok.codebook_size)
out = {"train_images": n_train, "codes_used_train": int((counts > 0).sum())}
for name, split, seed in (("val", "val", 0), ("heldout", "heldout", 0), ("train_other", "train", 7)):
    f = counts[codes(split, seed, 1000)]
    out[name] = {"tokens_unseen": float((f == 0).float().mean()), "tokens_lt10": float((f < 10).float().mean()),
                 "tokens_lt100": float((f < 100).float().mean()),
                 "images_with_unseen": float((f == 0).any(1).float().mean())}
print(json.dumps(out, indent=1))

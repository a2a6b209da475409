"""Which teacher features carry the outlines, and does FSQ let them through? (issue 30)

Trains a conv decoder (MSE, AdamW, one-cycle lr) on a frozen ShapesWorld teacher's features
and reports the evaluator's parse-back of its reconstructions on ``--split`` scenes:

- ``--features last``: the last stage, what the demo tokenizer takes (4x4 tokens at 32 px);
- ``--features stride4``: plus the stride-4 stage folded onto the token grid (space-to-depth);
- ``--features stem``: plus the stem's stride-2 map folded onto the token grid.

With ``--fsq 8 5 5 5`` the features pass through transformer projection -> FSQ ->
transformer projection first, as in the tokenizer (pixel loss only). Measured on the demo
world, 1,500 steps (``benchmarks/results/README.md``, 2026-12-06): ``stem`` alone reaches
36.7 dB and 91.5% parse-back, ``stem`` through FSQ [8, 5, 5, 5] 26.4 dB and 16%.

    python experiments/feature_levels.py --teacher runs/demo/teacher --features stem --steps 1500
    python experiments/feature_levels.py --teacher runs/demo/teacher --features stem --fsq 8 5 5 5

``--gray-prob 0.5`` shows half the training images colour-free, to test whether the decoder
then draws held-out colour-shape pairs better (``--split heldout val``).

Prints one JSON line per split.
"""
import argparse
import json
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from arm_data.shapes.tokenizer_eval import reconstruction_metrics, scene_images, shapes_scenes
from arm_data.shapes.world import ShapesWorld
from arm_tokenizer.decoders.conv import ConvDecoder
from arm_tokenizer.encoders.timm_encoder import load_state_dict_file
from arm_tokenizer.images import luminance
from arm_tokenizer.projections import TransformerProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer

p = argparse.ArgumentParser()
p.add_argument("--teacher", default="runs/demo/teacher")
p.add_argument("--features", choices=["last", "stride4", "stem"], default="stem")
p.add_argument("--fsq", type=int, nargs="*", default=None, help="FSQ levels (none: continuous features)")
p.add_argument("--proj", choices=["transformer", "linear"], default="transformer",
               help="the projections around FSQ: the tokenizer's transformer, or one linear layer each")
p.add_argument("--no-round", action="store_true",
               help="the same bottleneck without FSQ's rounding (continuous, as wide as --fsq)")
p.add_argument("--grid", type=int, default=0,
               help="token grid side (0: the last stage's); coarser maps are repeated onto it, finer folded")
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--difficulty", default="demo")
p.add_argument("--split", nargs="+", default=["val"], help="splits to evaluate on (one JSON line each)")
p.add_argument("--gray-prob", type=float, default=0.0,
               help="probability that a training image is shown colour-free (its luminance in all channels)")
p.add_argument("--n-test", type=int, default=200)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
torch.manual_seed(a.seed)

meta = json.loads((Path(a.teacher) / "image_tower.json").read_text())
size = int(meta["image_size"])
tower = timm.create_model(meta["model_name"], num_classes=0, **meta["model_kwargs"])
tower.load_state_dict(load_state_dict_file(str(Path(a.teacher) / "image_tower.safetensors")))
tower.eval().requires_grad_(False)
mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
std = torch.tensor(meta["std"]).view(1, 3, 1, 1)


@torch.no_grad()
def features(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, h*w, C) on the last stage's grid."""
    _, maps = tower.forward_intermediates(((x + 1) / 2 - mean) / std)
    last = maps[-1]
    extra = {"last": [], "stride4": [maps[1]], "stem": [maps[0]]}[a.features]
    side = a.grid or last.shape[-1]

    def onto_grid(m: torch.Tensor) -> torch.Tensor:
        if m.shape[-1] >= side:
            return F.pixel_unshuffle(m, m.shape[-1] // side)
        return m.repeat_interleave(side // m.shape[-1], -1).repeat_interleave(side // m.shape[-2], -2)

    parts = [onto_grid(last)] + [onto_grid(m) for m in extra]
    return torch.cat(parts, 1).flatten(2).transpose(1, 2)


probe = scene_images(shapes_scenes("train", 2, a.seed, size, difficulty=a.difficulty))
grid_side = int(features(probe).shape[1] ** 0.5)
dim = features(probe).shape[-1]
modules: list[torch.nn.Module] = []
if a.fsq:
    if a.proj == "linear":
        pin, pout = torch.nn.Linear(dim, len(a.fsq)), torch.nn.Linear(len(a.fsq), 128)
    else:
        pin = TransformerProjection(in_dim=dim, out_dim=len(a.fsq), width=128, depth=2, heads=4)
        pout = TransformerProjection(in_dim=len(a.fsq), out_dim=128, width=128, depth=2, heads=4)
    quant = FSQQuantizer(levels=a.fsq)
    modules += [pin, pout]
dec = ConvDecoder(in_dim=128 if a.fsq else dim, patch_size=size // grid_side, channels=128,
                  num_res_blocks=2, final_res_blocks=1, min_channels=64)
modules.append(dec)


def reconstruct(x: torch.Tensor) -> torch.Tensor:
    f = features(x)
    if a.fsq:
        z = pin(f)
        f = pout(torch.tanh(z) if a.no_round else quant(z).quantized)
    return dec(f, (grid_side, grid_side))


params = [q for m in modules for q in m.parameters()]
opt = torch.optim.AdamW(params, lr=a.lr / 2, betas=(0.9, 0.95))
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.05)
world = ShapesWorld(split="train", seed=a.seed, width=size, height=size, difficulty=a.difficulty)
start = time.time()
for step in range(a.steps):
    x = scene_images([world[step * a.batch + j] for j in range(a.batch)])
    if a.gray_prob > 0:
        # Colour-free views: shapes without the colour they co-occur with in training.
        x = torch.where(torch.rand(x.shape[0], 1, 1, 1) < a.gray_prob, luminance(x), x)
    loss = F.mse_loss(reconstruct(x), x)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
seconds = round(time.time() - start, 1)
for split in a.split:
    test = shapes_scenes(split, a.n_test, a.seed, size, difficulty=a.difficulty)
    x = scene_images(test)
    with torch.no_grad():
        metrics = reconstruction_metrics(reconstruct(x), x, test)
    print(json.dumps({"split": split, "features": a.features, "fsq": a.fsq, "proj": a.proj, "no_round": a.no_round,
                      "gray_prob": a.gray_prob, "dim": dim, "steps": a.steps, "seconds": seconds,
                      "final_loss": loss.item(), **metrics}))

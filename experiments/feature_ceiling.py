"""How much of a scene survives a frozen teacher tower: the reconstruction ceiling.

Trains the quickstart's conv decoder straight on the tower's *continuous* patch features
(no projection, no quantizer), so the held-out PSNR and parse-back it reaches bound what
any tokenizer behind that frozen tower can reach with that decoder. The gap between this
and the tokenizer is the quantizer's; the gap between this and 28 dB is the tower's.

    python experiments/feature_ceiling.py --teacher runs/reproduce/teacher --steps 1500

Features of the training scenes are computed once (the tower is frozen); L1 loss, AdamW,
cosine schedule. Prints one JSON line.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from arm_data.shapes.tokenizer_eval import reconstruction_metrics, scene_images, shapes_scenes
from arm_tokenizer.decoders.conv import ConvDecoder
from arm_tokenizer.teachers.frozen import load_image_tower

p = argparse.ArgumentParser()
p.add_argument("--teacher", default="runs/reproduce/teacher")
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--n-train", type=int, default=8192)
p.add_argument("--n-test", type=int, default=150)
p.add_argument("--channels", type=int, default=128)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
tower = load_image_tower(a.teacher)
t0 = time.time()


@torch.no_grad()
def features(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([tower(x[i:i + 256]) for i in range(0, len(x), 256)])


x_train = scene_images(shapes_scenes("train", a.n_train, 7, 64))
f_train = features(x_train)
test = shapes_scenes("heldout", a.n_test, 0, 64)
x_test = scene_images(test)
f_test = features(x_test)
side = int(f_train.shape[1] ** 0.5)
dec = ConvDecoder(in_dim=f_train.shape[-1], patch_size=64 // side, channels=a.channels, num_res_blocks=1)
opt = torch.optim.AdamW(dec.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.05)
t1 = time.time()
for step in range(a.steps):
    idx = torch.randint(0, len(x_train), (a.batch,))
    loss = F.l1_loss(dec(f_train[idx], (side, side)), x_train[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    if step % 250 == 0:
        print(f"step {step} l1 {loss.item():.4f}", flush=True)
dec.eval()
with torch.no_grad():
    r = dec(f_test, (side, side)).clamp(-1, 1)
print(json.dumps({
    "teacher": a.teacher, "steps": a.steps, "batch": a.batch, "n_train": a.n_train, "n_test": a.n_test,
    **reconstruction_metrics(r, x_test, test),
    "feature_seconds": round(t1 - t0, 1), "train_seconds": round(time.time() - t1, 1),
}))

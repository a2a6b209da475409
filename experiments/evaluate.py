"""Held-out evaluation of an exported tokenizer: PSNR/SSIM, codebook usage, evaluator parse-back."""
import argparse, json
import numpy as np, torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from arm_tokenizer.tokenizer import VisualTokenizer
from arm_tokenizer.images import pil_to_tensor, tensor_to_pil
from arm_data.shapes import ShapesWorld, evaluate_t2i

p = argparse.ArgumentParser(); p.add_argument("export"); p.add_argument("--n", type=int, default=256)
p.add_argument("--split", default="heldout"); p.add_argument("--steps", type=int, default=None)
a = p.parse_args()
tok = VisualTokenizer.from_pretrained(a.export).eval()
world = ShapesWorld(split=a.split, seed=0, width=64, height=64)
samples = [world[i] for i in range(a.n)]
x = torch.stack([pil_to_tensor(s.image) for s in samples])
counts = torch.zeros(tok.codebook_size)
recons = []
with torch.no_grad():
    for i in range(0, a.n, 64):
        idx = tok.encode(x[i:i + 64])
        counts += torch.bincount(idx.flatten(), minlength=tok.codebook_size).float()
        kw = {"steps": a.steps} if a.steps else {}
        recons.append(tok.decode(idx, **kw))
r = torch.cat(recons)
u8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round() / 255.0   # PSNR on 8-bit images, as saved
psnr = float(peak_signal_noise_ratio(u8(r), u8(x), data_range=1.0))
ssim = float(structural_similarity_index_measure(u8(r), u8(x), data_range=1.0))
orig_ok = [evaluate_t2i(s.image, s.spec).strict for s in samples]
rec_ok = [evaluate_t2i(tensor_to_pil(r[i]), samples[i].spec).strict for i in range(a.n)]
out = {"split": a.split, "n": a.n, "psnr": round(psnr, 2), "ssim": round(ssim, 4),
       "codebook_usage": round(float((counts > 0).float().mean()), 4), "codebook_size": tok.codebook_size,
       "evaluator_strict_originals": float(np.mean(orig_ok)), "evaluator_strict_reconstructions": float(np.mean(rec_ok)),
       "evaluator_parse_back_given_original_ok": float(np.mean([b for a_, b in zip(orig_ok, rec_ok) if a_]))}
print(json.dumps(out, indent=1))

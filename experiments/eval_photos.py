"""Reconstruction PSNR/SSIM of an exported tokenizer on scikit-image's bundled photographs,
resized (cover + center crop) to the tokenizer's resolution."""
import argparse, json
import numpy as np, torch
from PIL import Image
import skimage.data as sd
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from arm_tokenizer.tokenizer import VisualTokenizer
from arm_tokenizer.images import ImageTransform

NAMES = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel", "camera", "moon"]
p = argparse.ArgumentParser(); p.add_argument("export"); p.add_argument("--steps", type=int, default=None); a = p.parse_args()
tok = VisualTokenizer.from_pretrained(a.export).eval()
h, w = tok.image_size
tf = ImageTransform((h, w), crop="center")
xs, used = [], []
for n in NAMES:
    try:
        arr = getattr(sd, n)()
    except Exception as e:  # some images need pooch downloads
        continue
    img = Image.fromarray(arr).convert("RGB")
    xs.append(tf.to_tensor(img)); used.append(n)
x = torch.stack(xs)
with torch.no_grad():
    kw = {"steps": a.steps} if a.steps else {}
    r = tok.decode(tok.encode(x), **kw)
u8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round() / 255.0
per = [round(float(peak_signal_noise_ratio(u8(r[i:i+1]), u8(x[i:i+1]), data_range=1.0)), 2) for i in range(len(used))]
out = {"images": used, "size": [h, w], "psnr_mean": round(float(np.mean(per)), 2), "psnr_per_image": dict(zip(used, per)),
       "ssim": round(float(structural_similarity_index_measure(u8(r), u8(x), data_range=1.0)), 4)}
print(json.dumps(out, indent=1))

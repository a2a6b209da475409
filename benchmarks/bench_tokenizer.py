"""Tokenizer throughput: encode and decode images/s, CPU always, CUDA when present.

Configurations (architectures as in the shipped YAMLs; random weights, since throughput
does not depend on their values):

``quickstart``
    Built from ``configs/tokenizer/shapes-quickstart.yaml`` itself (so the figure follows the
    shipped config): at 64 px, the frozen teacher tower (timm ``resnet10t``, output stride 8,
    width 64) -> 2-block transformer projection -> FSQ [8,5,5,5] -> 2-block projection back
    -> conv decoder. Only the teacher checkpoint path is dropped (random weights).
``cnn``
    The from-scratch CNN encoder (patch 8, width 128) with a projection/FSQ/conv decoder of
    the same shape, 64 px.
``siglip2_base``
    ARM's structure with SigLIP2-base: ``vit_base_patch16_siglip_224.v2_webli`` (built with
    ``pretrained=False``; 224 px, 196 tokens, width 768), 6-block transformer projections
    (width 768), FSQ 2^16, and a conv decoder (16x upsampling). ARM decodes with a 24-layer
    Pixel DiT; ``--pixel-dit`` adds that decoder (``steps`` Euler steps), by default only on
    CUDA since it takes tens of seconds per image on a CPU.

encode = ``VisualTokenizer.encode`` on float tensors (checks included); decode =
``VisualTokenizer.decode`` from token ids. Each figure: median of ``--repeats`` timed runs
after one warm-up, batch ``--batch`` (default 8 on CPU, 64 on CUDA). JSON goes to stdout and
to ``--out``::

    OMP_NUM_THREADS=2 python benchmarks/bench_tokenizer.py --out bench-results/tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "tokenizer" / "shapes-quickstart.yaml"


def _from_yaml(path: Path):
    """The ``VisualTokenizer`` a tokenizer YAML trains, through the registry, without its
    teacher weights (throughput does not depend on them)."""
    import yaml
    from arm_tokenizer.framework import registry
    from arm_tokenizer.tokenizer import VisualTokenizer

    model = yaml.safe_load(path.read_text())["model"]["init_args"]

    def part(kind: str, key: str):
        cfg = model[key]
        args = {k: v for k, v in (cfg.get("init_args") or {}).items() if k != "checkpoint_path"}
        return registry.create(kind, cfg["class_path"], **args)

    return VisualTokenizer(part("encoder", "encoder"), part("quantizer", "quantizer"), part("decoder", "decoder"),
                           proj_in=part("projection", "proj_in"), proj_out=part("projection", "proj_out"),
                           image_size=model["image_size"])


def build(name: str, pixel_dit: bool = False):
    from arm_tokenizer.decoders.conv import ConvDecoder
    from arm_tokenizer.encoders.cnn import CNNEncoder
    from arm_tokenizer.encoders.timm_encoder import TimmEncoder
    from arm_tokenizer.projections import TransformerProjection
    from arm_tokenizer.quantizers.fsq import FSQQuantizer
    from arm_tokenizer.tokenizer import VisualTokenizer

    torch.manual_seed(0)
    if name == "quickstart":
        return _from_yaml(QUICKSTART)
    if name == "cnn":
        return VisualTokenizer(
            CNNEncoder(patch_size=8, width=32, max_width=128, out_dim=128), FSQQuantizer(levels=[8, 5, 5, 5]),
            ConvDecoder(in_dim=128, patch_size=8, channels=128, num_res_blocks=1),
            proj_in=TransformerProjection(in_dim=128, out_dim=4, width=128, depth=2, heads=4),
            proj_out=TransformerProjection(in_dim=4, out_dim=128, width=128, depth=2, heads=4),
            image_size=64,
        )
    if name == "siglip2_base":
        enc = TimmEncoder("vit_base_patch16_siglip_224.v2_webli", pretrained=False, frozen=True)
        if pixel_dit:
            from arm_tokenizer.decoders.pixel_dit import PixelDiTDecoder

            dec = PixelDiTDecoder(in_dim=768, patch_size=16, hidden_dim=768, depth=24, num_heads=12)
        else:
            dec = ConvDecoder(in_dim=768, patch_size=16, channels=256, num_res_blocks=1)
        return VisualTokenizer(
            enc, FSQQuantizer(levels=[2] * 16), dec,
            proj_in=TransformerProjection(in_dim=768, out_dim=16, width=768, depth=6, heads=12),
            proj_out=TransformerProjection(in_dim=16, out_dim=768, width=768, depth=6, heads=12),
            image_size=224,
        )
    raise ValueError(f"unknown configuration {name!r}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (allocator, cuDNN autotune)
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_one(name: str, device: torch.device, batch: int, repeats: int, pixel_dit: bool = False,
              steps: int = 25) -> dict[str, Any]:
    tok = build(name, pixel_dit).to(device).eval()
    h, w = tok.image_size
    x = torch.rand(batch, 3, h, w, device=device) * 2 - 1
    ids = tok.encode(x)
    kwargs = {"steps": steps} if pixel_dit else {}
    t_enc = timed(lambda: tok.encode(x), device, repeats)
    t_dec = timed(lambda: tok.decode(ids, **kwargs), device, repeats)
    n_params = sum(p.numel() for p in tok.parameters())
    return {
        "config": name + ("+pixel_dit" if pixel_dit else ""),
        "device": str(device),
        "image_size": [h, w],
        "tokens_per_image": tok.tokens_per_image,
        "codebook_size": tok.codebook_size,
        "params_M": round(n_params / 1e6, 2),
        "batch": batch,
        "encode_images_per_s": round(batch / t_enc, 2),
        "decode_images_per_s": round(batch / t_dec, 2),
        **({"decode_steps": steps} if pixel_dit else {}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--configs", default="quickstart,cnn,siglip2_base")
    p.add_argument("--batch", type=int, default=None, help="images per call (default 8 CPU / 64 CUDA)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pixel-dit", choices=["auto", "on", "off"], default="auto",
                   help="also time SigLIP2-base with the 24-layer Pixel DiT decoder (auto: CUDA only)")
    p.add_argument("--steps", type=int, default=25, help="Pixel DiT sampling steps")
    p.add_argument("--no-cuda", action="store_true")
    args = p.parse_args(argv)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    results = []
    for device in devices:
        batch = args.batch or (64 if device.type == "cuda" else 8)
        for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
            with torch.inference_mode():
                results.append(bench_one(name, device, batch, args.repeats))
            print(json.dumps(results[-1]), file=sys.stderr)
            dit = args.pixel_dit == "on" or (args.pixel_dit == "auto" and device.type == "cuda")
            if name == "siglip2_base" and dit:
                with torch.inference_mode():
                    results.append(bench_one(name, device, min(batch, 16), args.repeats, True, args.steps))
                print(json.dumps(results[-1]), file=sys.stderr)
    report = {
        "benchmark": "tokenizer_encode_decode",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the suite path: images/s of the ``shapes`` suite through ``suite generate``
(batched CFG generation in Lightning's predict loop, PNGs written in GenEval's layout) vs a
per-prompt loop over the same pipeline (one pipeline call per prompt, same files written).

Both run in this process on the same model: the demo's ``shapes-small`` LM shape (random
weights: speed does not depend on them) with a toy visual tokenizer at the demo's 4x4 token
grid, CFG 1.5, on the CPU. ``samples=1``: one image a prompt, so the loop runs batch 1 and the
suite batch 16; ``samples=4`` (GenEval's default): the loop's calls already hold a prompt's
four samples. JSON goes to stdout and ``--out``.

    python benchmarks/bench_suites.py --out bench-results/suites.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from arm_core.checkpoint import LMCheckpoint
from arm_core.config import Config
from arm_core.model import GPT
from arm_core.pipelines import TextToImage
from arm_core.suites.generate import GenerationSettings, generate_suite
from arm_core.suites.shapes import ShapesSuite, make_prompts, write_prompts


def build_pipeline(root: Path) -> TextToImage:
    from arm_data.shapes import ShapesWorld
    from arm_data.text_tokenizer import TextTokenizer
    from arm_tokenizer.encoders.cnn import CNNEncoder
    from arm_tokenizer.projections import LinearProjection
    from arm_tokenizer.quantizers.fsq import FSQQuantizer
    from arm_tokenizer.testing.toys import ToyDecoder
    from arm_tokenizer.tokenizer import VisualTokenizer

    world = ShapesWorld("train", 0, 64, 64, length=400, difficulty="demo")
    text = TextTokenizer.train([world[i].caption for i in range(len(world))], vocab_size=512)
    torch.manual_seed(0)
    vis = VisualTokenizer(CNNEncoder(patch_size=16, width=8, max_width=16, out_dim=16),
                          FSQQuantizer(levels=[4, 4, 4, 4, 4]), ToyDecoder(in_dim=16, patch_size=16),
                          proj_in=LinearProjection(16, 5), proj_out=LinearProjection(5, 16),
                          image_size=64).eval()
    layout = text.layout(codebook_size=vis.codebook_size, max_grid_h=8, max_grid_w=8)
    cfg = Config.from_name("shapes-small").with_vocab(layout.total_size, layout.image_offset,
                                                      layout.codebook_size, text_vocab_size=layout.text_vocab_size)
    model = GPT(cfg).eval()
    lm = LMCheckpoint(model=model, config=cfg, layout=layout, text_tokenizer_path=None,
                      visual_tokenizer_dir=None, directory=root)
    return TextToImage(lm, vis, text_tokenizer=text)


def per_prompt_loop(pipe: TextToImage, prompts: Path, out: Path, samples: int) -> float:
    suite = ShapesSuite(samples=samples)
    items = suite.read(prompts)
    t0 = time.perf_counter()
    for i, it in enumerate(items):
        images = pipe([it.prompt], guidance_scale=1.5, num_images_per_prompt=samples, seed=i,
                      batch_size=samples, progress=False)
        suite.write(it, images, out)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--per-tag", type=int, default=4, help="prompts per GenEval tag (6 tags)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict = {"device": "cpu", "threads": torch.get_num_threads(), "batch_size": args.batch_size,
                     "model": "shapes-small (random weights), 4x4 token grid, CFG 1.5"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipe = build_pipeline(root)
        prompts = write_prompts(root / "shapes.jsonl", make_prompts(args.per_tag, "val", "demo"))
        n = 6 * args.per_tag
        pipe([make_prompts(1, "val", "demo")[0]["prompt"]], progress=False)   # warm-up
        for samples in (1, 4):
            loop_s = per_prompt_loop(pipe, prompts, root / f"loop{samples}", samples)
            t0 = time.perf_counter()
            generate_suite("shapes", prompts, root / f"suite{samples}", pipeline=pipe, model_id="bench",
                           samples=samples, settings=GenerationSettings(batch_size=args.batch_size),
                           accelerator="cpu")
            suite_s = time.perf_counter() - t0
            images = n * samples
            results[f"samples{samples}"] = {
                "prompts": n, "images": images,
                "suite_images_per_s": round(images / suite_s, 2),
                "loop_images_per_s": round(images / loop_s, 2),
                "speedup": round(loop_s / suite_s, 2)}
            print(f"== samples={samples}: {json.dumps(results[f'samples{samples}'])}", file=sys.stderr, flush=True)
    results["speedup"] = results["samples1"]["speedup"]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

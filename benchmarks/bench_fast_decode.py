"""Faster image decoding: speculative Jacobi decoding and int8 weight-only decode, vs plain.

Every ratio compares figures measured in this run, on this device, with the same prompts
and seeds:

``speculative``
    Text-to-image through ``Engine`` with ``speculative=W`` (``arm_core.speculative``) vs
    plain decoding, at batch 1 and 16, without CFG and with CFG 1.5 (two branches): forward
    passes per ``generate`` call (one forward serves the whole batch), codes per forward
    (per row), drafts accepted per image, images/s and the speed-up. The LM is the demo's
    (``runs/demo/lm``, else ``runs/demo-seed1/lm``: ShapesWorld captions as prompts), since
    acceptance depends on how predictable a trained model is; without one, a random
    ``shapes-small`` model with random prompts (``model_source: random``, acceptance not
    representative).
``int8``
    Plain decoding with int8 weight-only linears (``arm_core.quantize``, torchao) vs fp32:
    images/s with CFG 1.5 at batch 1 and 16 on the demo LM, and at batch 1 on a wider
    random model (``n_embd`` 1,024, 4 layers) where the weights dominate a step; plus
    ``max |Δ logit|`` of the first step. Skipped with a note when torchao is missing.
``decode_bytes``
    The bytes one image-code decode step reads: every linear weight on the path (the
    codes-only head instead of the text head) plus the KV cache of all branches at the
    middle of the span, fp32 / bf16 / int8, for the demo LM and ARM-7B's shape (counted on
    the meta device). With the measured steps/s of plain batch-1 decoding this gives the
    bytes/s a step achieves; on CUDA, also the fraction of the HBM roofline.

A shared CPU makes timings noisy: the two sides of each ratio are interleaved (plain,
speculative, plain, ...) and the median taken. JSON goes to stdout and ``--out``::

    OMP_NUM_THREADS=2 python benchmarks/bench_fast_decode.py --out bench-results/fast_decode.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Engine, Guidance
from arm_core.model import GPT

ROOT = Path(__file__).resolve().parents[1]
DEMO_LMS = [ROOT / "runs" / "demo" / "lm", ROOT / "runs" / "demo-seed1" / "lm"]
# Peak HBM bandwidth (bytes/s) by device name (vendor datasheets), as bench_core.
HBM = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Workload:
    """A model plus text-to-image prompts (conditional and unconditional) and the constraint."""

    def __init__(self, model: GPT, prompts: list[list[int]], uncond: list[int],
                 constraint: ImageSpanConstraint, n_codes: int, source: str) -> None:
        self.model, self.prompts, self.uncond = model, prompts, uncond
        self.constraint, self.n_codes, self.source = constraint, n_codes, source

    def run(self, engine: Engine, batch: int, cfg: float | None, calls: int, seed: int = 0):
        """Time ``calls`` generate calls of ``batch`` prompts; returns (seconds, outputs)."""
        outs = []
        dev = self.model.embed_tokens.weight.device
        _sync(dev)
        t = time.perf_counter()
        for c in range(calls):
            rows = [self.prompts[(c * batch + i) % len(self.prompts)] for i in range(batch)]
            g = None if cfg is None else Guidance([self.uncond] * batch, guidance_scale=cfg)
            outs.append(engine.generate(rows, self.n_codes + 1, constraint=self.constraint,
                                        guidance=g, eos_ids=[self.constraint.eoi_id],
                                        seed=seed + c, temperature=1.0))
        _sync(dev)
        return time.perf_counter() - t, outs


def demo_workload(device: torch.device, n_prompts: int = 64) -> Workload | None:
    lm_dir = next((d for d in DEMO_LMS if (d / "model.safetensors").exists()), None)
    if lm_dir is None:
        return None
    from arm_core.checkpoint import load_lm
    from arm_data.formats import TaskFormatter
    from arm_data.shapes import ShapesWorld

    lm = load_lm(lm_dir, device=device)
    vis = lm.load_visual_tokenizer(None, device=device)
    size = vis.image_size if isinstance(vis.image_size, int) else int(vis.image_size[0])
    fmt = TaskFormatter(lm.layout, lm.load_text_tokenizer())
    world = ShapesWorld(split="heldout", seed=0, width=size, height=size, length=n_prompts,
                        difficulty="demo")
    h, w = (int(x) for x in vis.grid)
    prompts = [fmt.t2i_prompt(world[i].caption, h, w) for i in range(n_prompts)]
    return Workload(lm.model.eval(), prompts, fmt.t2i_prompt(None, h, w),
                    ImageSpanConstraint.from_layout(lm.layout), h * w, f"demo LM {lm_dir.relative_to(ROOT)}")


def random_workload(cfg: Config, device: torch.device, grid=(4, 4), n_prompts: int = 64) -> Workload:
    """Random prompts ending in ``<h><w><boi>`` (text ids 0-3 serve as boi, eoi, shapes)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(cfg).eval()
    boi, eoi, hid, wid = 0, 1, 2, 3
    constraint = ImageSpanConstraint(boi, eoi, cfg.image_offset, cfg.image_codebook_size,
                                     height_tokens={hid: grid[0]}, width_tokens={wid: grid[1]})
    hi = min(cfg.text_vocab_size, cfg.image_offset)
    prompts = [torch.randint(4, hi, (12,)).tolist() + [hid, wid, boi] for _ in range(n_prompts)]
    return Workload(model, prompts, [5, hid, wid, boi], constraint, grid[0] * grid[1],
                    f"random {cfg.name}")


def _interleaved(runs: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median seconds per side, the sides alternating so shared-CPU load hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def bench_speculative(work: Workload, window: int, inits: list[str], images: dict[int, int],
                      cfgs: list[float | None], repeats: int) -> list[dict[str, Any]]:
    """``images``: batch size -> images per timed run."""
    res = []
    for batch, n_images in images.items():
        calls = max(1, n_images // batch)
        for cfg in cfgs:
            engines = {"plain": Engine(work.model)}
            for init in inits:
                engines[f"spec_{init}"] = Engine(work.model, speculative=window, speculative_init=init)
            for e in engines.values():                                   # warm-up
                work.run(e, batch, cfg, 1)
            stats: dict[str, Any] = {}
            runs = {}
            for k, e in engines.items():
                def run(e=e, k=k, batch=batch, cfg=cfg, calls=calls, stats=stats):
                    t, outs = work.run(e, batch, cfg, calls)
                    stats[k] = outs
                    return t
                runs[k] = run
            secs = _interleaved(runs, repeats)
            row: dict[str, Any] = {"batch": batch, "cfg": cfg or 1.0, "window": window,
                                   "codes_per_image": work.n_codes, "images": calls * batch}
            for k, outs in stats.items():
                fw = sum(o.forward_passes for o in outs) / len(outs)
                row[f"{k}_forwards_per_call"] = fw
                row[f"{k}_images_per_s"] = calls * batch / secs[k]
                if outs[0].accepted_drafts is not None:
                    acc = torch.cat([o.accepted_drafts for o in outs]).float()
                    row[f"{k}_accepted_per_image"] = float(acc.mean())
                    # per row: its codes + eoi over the forwards it needed (prefill included)
                    row[f"{k}_tokens_per_forward_per_row"] = float(
                        ((work.n_codes + 1) / (work.n_codes + 1 - acc)).mean())
                if k != "plain":
                    row[f"{k}_speedup"] = secs["plain"] / secs[k]
                    row[f"{k}_forward_ratio"] = row["plain_forwards_per_call"] / fw
            res.append(row)
            print(f"== speculative {json.dumps(row)}", file=sys.stderr, flush=True)
    return res


def bench_int8(work: Workload, images: dict[int, int], repeats: int,
               label: str) -> list[dict[str, Any]]:
    from arm_core.quantize import quantize

    q_model = quantize(copy.deepcopy(work.model), "int8")
    ids = torch.tensor([work.prompts[0]], device=work.model.embed_tokens.weight.device)
    with torch.no_grad():
        ref, out = work.model(ids)[0, -1], q_model(ids)[0, -1]
    q_work = copy.copy(work)
    q_work.model = q_model
    res = []
    for batch, n_images in images.items():
        calls = max(1, n_images // batch)
        eng = {"fp32": (work, Engine(work.model)), "int8": (q_work, Engine(q_model))}
        for w_, e in eng.values():
            w_.run(e, batch, 1.5, 1)
        secs = _interleaved({k: (lambda w_=w_, e=e, b=batch, c=calls: w_.run(e, b, 1.5, c)[0])
                             for k, (w_, e) in eng.items()}, repeats)
        row = {"model": label, "batch": batch, "cfg": 1.5, "images": calls * batch,
               "fp32_images_per_s": calls * batch / secs["fp32"],
               "int8_images_per_s": calls * batch / secs["int8"],
               "int8_speedup": secs["fp32"] / secs["int8"],
               "max_abs_logit_diff": float((out - ref).abs().max()),
               "max_abs_logit": float(ref.abs().max())}
        res.append(row)
        print(f"== int8 {json.dumps(row)}", file=sys.stderr, flush=True)
    return res


def step_bytes(cfg: Config, context: int, rows: int, weight_bytes_per: float,
               kv_bytes_per: int, scale_bytes: int = 0) -> dict[str, float]:
    """Bytes one image-code decode step reads: the linear weights on its path (blocks +
    codes-only head; per-output-channel scales for int8) and the KV cache of ``rows``
    branch rows at ``context`` cached tokens."""
    with torch.device("meta"):
        m = GPT(cfg)
    lin = [mod for name, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)
           and name != "lm_head"]
    numel = sum(mod.weight.numel() for mod in lin)
    if m.visual_head is None:                       # image rows of the shared head
        numel += cfg.image_codebook_size * cfg.n_embd
    outs = sum(mod.weight.shape[0] for mod in lin)
    weights = numel * weight_bytes_per + outs * scale_bytes
    kv = 2 * cfg.n_layer * cfg.n_query_groups * cfg.head_size * context * rows * kv_bytes_per
    return {"weight_bytes": weights, "kv_bytes": kv, "total_bytes": weights + kv}


def bench_bytes(cfg: Config, prompt_len: int, n_codes: int, batch: int,
                measured_steps_per_s: float | None, device: torch.device) -> dict[str, Any]:
    ctx = prompt_len + n_codes // 2
    out: dict[str, Any] = {"model": cfg.name, "context_tokens": ctx, "batch": batch,
                           "cfg_branches": 2}
    for name, wb, kvb, sb in (("fp32", 4, 4, 0), ("bf16", 2, 2, 0), ("int8", 1, 4, 4)):
        out[name] = step_bytes(cfg, ctx, 2 * batch, wb, kvb, sb)
    if measured_steps_per_s is not None:
        out["measured_steps_per_s"] = measured_steps_per_s
        out["achieved_bytes_per_s_fp32"] = measured_steps_per_s * out["fp32"]["total_bytes"]
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            bw = next((v for k, v in HBM.items() if k in name), None)
            if bw is not None:
                out["hbm_bytes_per_s"] = bw
                out["roofline_fraction_fp32"] = out["achieved_bytes_per_s_fp32"] / bw
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--window", type=int, default=8, help="speculative drafts per forward")
    ap.add_argument("--images", type=int, default=32, help="images per timed run at batch 16 "
                    "(batch 1: 8)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timed runs per side")
    ap.add_argument("--smoke", action="store_true", help="tiny model, one repeat")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    dev = torch.device(args.device)
    results: dict[str, Any] = {"env": {"torch": torch.__version__, "python": platform.python_version(),
                                       "threads": torch.get_num_threads(), "device": str(dev)}}

    def write() -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))

    t0 = time.perf_counter()
    work = None if args.smoke else demo_workload(dev)
    if work is None:
        cfg = Config.from_name("tiny") if args.smoke else Config.from_name("shapes-small")
        work = random_workload(cfg, dev, (2, 3) if args.smoke else (4, 4))
    results["workload"] = {"model_source": work.source, "params": work.model.num_parameters(),
                           "codes_per_image": work.n_codes}
    reps = 1 if args.smoke else args.repeats
    small = 4 if args.smoke else 8
    images = {1: small, 16: args.images}                # batch -> images per timed run
    spec = bench_speculative(work, args.window, ["random", "repeat"], images, [None, 1.5], reps)
    results["speculative"] = spec
    write()
    plain_b1 = next(r for r in spec if r["batch"] == 1 and r["cfg"] == 1.5)
    steps_s = plain_b1["plain_images_per_s"] * (work.n_codes + 1)
    try:
        import torchao  # noqa: F401
    except ImportError:
        results["int8"] = {"skipped": "torchao not installed: pip install 'arm-core[quant]'"}
    else:
        rows = bench_int8(work, images, reps, work.source)
        if not args.smoke:
            wide = Config.from_dict({**Config.from_name("shapes-small").to_dict(), "name": "wide-1024",
                                     "n_embd": 1024, "n_head": 16, "n_query_groups": 4,
                                     "head_size": 64, "intermediate_size": 2816, "n_layer": 4})
            rows += bench_int8(random_workload(wide, dev), {1: small}, reps, "random wide-1024")
        results["int8"] = rows
    write()
    P = max(len(p) for p in work.prompts)
    results["decode_bytes"] = [
        bench_bytes(work.model.config, P, work.n_codes, 1, steps_s, dev),
        bench_bytes(Config.from_name("arm-7b"), 32, 32 * 32, 1, None, dev)]
    results["seconds"] = round(time.perf_counter() - t0, 1)
    write()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Batch-1 decode of the 7B shape on CUDA under several compile settings (one GPU call).

For each variant: tokens/s of ``Engine.generate`` (greedy, 256 new tokens after a 128-token
prompt) and of the compiled decode step replayed alone, so the loop's own overhead shows;
both as a fraction of the bandwidth roofline (weights read per token / HBM bytes/s, the
datasheet rate and the copy rate measured here). JSON to ``--out``.

    python experiments/decode_variants.py --out decode.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from arm_core.config import Config  # noqa: E402
from arm_core.generation import Engine  # noqa: E402
from arm_core.model import GPT  # noqa: E402
from bench_core import _default_dtype, _free, _peaks, _timed, copy_rate, decode_weight_bytes  # noqa: E402

VARIANTS = {
    "reduce-overhead": dict(compile_mode="reduce-overhead"),
    "cudagraphs+coordinate_descent": dict(compile_options={"triton.cudagraphs": True,
                                                           "coordinate_descent_tuning": True}),
}


def _variant(model: GPT, kw: dict, prompt: list[int], n: int,
             dev: torch.device) -> tuple[float, float, float]:
    """(compile + warm-up seconds, generate tok/s, decode-step-alone tok/s) for one setting."""
    t0 = time.perf_counter()
    engine = Engine(model, max_seq_len=model.config.max_seq_len, compile=True, **kw)
    engine.generate([prompt], n, temperature=0)                        # compile + warm-up
    engine.generate([prompt], n, temperature=0)
    compile_s = time.perf_counter() - t0
    gen = [_timed(lambda: engine.generate([prompt], n, temperature=0), dev) for _ in range(3)]
    # the decode step alone: graph replays at one position, no sampling or bookkeeping
    ids = torch.zeros(1, 1, dtype=torch.long, device=dev)
    pos = torch.full((1, 1), len(prompt), device=dev)
    cpos = torch.tensor([len(prompt)], device=dev)

    def steps() -> None:
        for _ in range(n):
            torch.compiler.cudagraph_mark_step_begin()
            engine._decode(ids, pos, cpos)
    steps()
    step = [_timed(steps, dev) for _ in range(3)]
    return compile_s, n / statistics.median(gen), n / statistics.median(step)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--hbm-bandwidth", type=float, default=3.35e12, help="bytes/s if unknown GPU")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model, no inductor")
    args = ap.parse_args()
    dev = torch.device("cpu" if args.smoke else "cuda")
    name = "cpu" if args.smoke else torch.cuda.get_device_name(0)
    _, bw = _peaks(dev, 0.0, args.hbm_bandwidth)
    measured_bw = copy_rate(dev, 2 ** (20 if args.smoke else 28))
    cfg = Config.from_name("tiny" if args.smoke else "qwen2.5-7b",
                           max_seq_len=args.prompt_len + args.new_tokens)
    torch.manual_seed(0)
    with _default_dtype(torch.bfloat16), torch.device(dev):
        model = GPT(cfg).eval()
    weight_bytes = decode_weight_bytes(model)
    roof = bw / weight_bytes
    res = {"device": name, "torch": torch.__version__, "weight_bytes": weight_bytes,
           "datasheet_bandwidth": bw, "measured_copy_bandwidth": measured_bw,
           "roofline_tok_s": roof, "variants": {}}
    prompt = torch.randint(0, cfg.text_vocab_size, (args.prompt_len,)).tolist()
    for v in args.variants:
        kw = dict(VARIANTS[v], compile_backend="eager") if args.smoke else VARIANTS[v]
        compile_s, g, s = _variant(model, kw, prompt, args.new_tokens, dev)
        res["variants"][v] = {"compile_s": compile_s, "generate_tok_s": g, "step_only_tok_s": s,
                              "generate_fraction_of_roofline": g / roof,
                              "step_only_fraction_of_roofline": s / roof,
                              "generate_fraction_of_measured_bw": g * weight_bytes / measured_bw}
        print(f"== {v}: {json.dumps(res['variants'][v])}", flush=True)
        args.out.write_text(json.dumps(res, indent=2))
        _free(dev)
    args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

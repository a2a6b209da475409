"""Benchmarks of the ARM LM (arm_core): decode, training throughput, MFU, roofline, CFG generation.

Every figure that is compared is measured in the same run, and reported as a ratio:

CPU (always)
  ``cpu_decode``: greedy decoding with the KV cache (``Engine``) vs full recompute of the
  whole sequence per token, tokens/s and the speed-up.
  ``cpu_train``: training tokens/s (forward + backward + AdamW) of our model vs a
  ``transformers`` ``LlamaForCausalLM`` of the same shape (when transformers is installed).

  ``cpu_image_head``: text-to-image generation with CFG through ``Engine`` with
  ``image_head_steps`` on (inside an image span only the image codes are scored) vs off
  (the full head and a vocab-wide sampler every step), and RL's teacher-forced scoring
  (``score_guided``, forward + backward) with ``image_head`` on vs off; on the demo's
  ``shapes-small`` shape and on ARM-7B's vocabulary (152,064 text ids + 65,536 codes) over
  a small body, where the head is most of a step.

CUDA (when a GPU is present)
  ``cuda_mfu``: bf16 training step of the ``llama-1b`` shape; model FLOPs utilization
  = (6·N + 12·L·T·d) FLOPs/token x tokens/s / peak bf16 FLOP/s (PaLM's accounting,
  N = non-embedding parameters + the head); the HF Llama of the same shape beside it.
  ``cuda_decode_roofline``: batch-1 decode of the ``qwen2.5-7b`` shape in bf16 with a
  static KV cache, CUDA graphs and coordinate-descent-tuned kernels; roofline tokens/s =
  HBM bandwidth / bytes of the weights one step reads; HF ``generate`` beside it.
  ``cuda_cfg_image_gen``: many images at once, each ``h·w`` constrained image tokens with
  CFG (one doubled batch), vs HF ``generate`` with ``guidance_scale`` (HF's decoder-only
  CFG), tokens/s; and our engine with the full head at every step (``image_head_steps``
  off) beside it.

``--smoke`` runs every section, CUDA ones included, with tiny shapes on the available
device: a quick check that the script itself works. ``--only`` picks sections. On CUDA the
card's own ceilings are measured first (a bf16 matmul, a device copy) and MFU and the
roofline fraction are also given against them. JSON goes to stdout and ``--out``.

    python benchmarks/bench_core.py --out bench-results/core.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Engine, Guidance, score_guided
from arm_core.hf import config_to_hf
from arm_core.lightning_module import lm_loss
from arm_core.model import GPT

# Peak dense bf16 FLOP/s and HBM bandwidth (bytes/s) by device name (vendor datasheets).
PEAKS = {"H100": (989e12, 3.35e12), "H200": (989e12, 4.8e12), "A100": (312e12, 2.0e12)}
# Batch-1 decode on CUDA: CUDA graphs plus inductor's coordinate-descent tuning of its
# kernels; on an H200 this read 197 tok/s against 188 for mode="reduce-overhead" alone
# (7B shape, experiments/decode_variants.py, benchmarks/results/cuda_h200.md).
CUDA_DECODE_COMPILE = {"compile_options": {"triton.cudagraphs": True,
                                           "coordinate_descent_tuning": True}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int = 1) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


class _default_dtype:
    """Create parameters directly in ``dtype`` (no fp32 copy of a 7B model first)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype, self.prev = dtype, torch.get_default_dtype()

    def __enter__(self) -> None:
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc) -> None:
        torch.set_default_dtype(self.prev)


def _free(device: torch.device) -> None:
    torch._dynamo.reset()                 # compiled code holds references to the model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _hf_model(cfg: Config, device, dtype):
    try:
        import transformers
    except ImportError:
        return None
    hf_cfg = config_to_hf(Config.from_dict({**cfg.to_dict(), "qkv_bias": False,
                                            "separate_visual_head": False,
                                            "image_codebook_size": 0, "image_offset": 0,
                                            "text_vocab_size": None}), "llama")
    hf_cfg.pop("architectures"), hf_cfg.pop("model_type")
    hf_cfg["torch_dtype"] = None
    conf = transformers.LlamaConfig(**hf_cfg)
    conf._attn_implementation = "sdpa"
    with _default_dtype(dtype), torch.device(device):
        return transformers.LlamaForCausalLM(conf)


# ---- decode --------------------------------------------------------------------------------
def bench_cpu_decode(cfg: Config, prompt_len: int, new_tokens: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    prompt = torch.randint(0, cfg.text_vocab_size, (prompt_len,)).tolist()
    engine = Engine(model, max_seq_len=prompt_len + new_tokens)
    engine.generate([prompt], 4, temperature=0)                       # warm-up
    t_cache = _timed(lambda: engine.generate([prompt], new_tokens, temperature=0), torch.device("cpu"))
    cached = engine.generate([prompt], new_tokens, temperature=0).tokens[0].tolist()

    def recompute():
        seq = list(prompt)
        with torch.inference_mode():
            for _ in range(new_tokens):
                seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
        return seq[prompt_len:]
    t_full = _timed(recompute, torch.device("cpu"))
    return {"model": cfg.name, "params": model.num_parameters(), "prompt_len": prompt_len,
            "new_tokens": new_tokens, "kv_cache_tok_s": new_tokens / t_cache,
            "recompute_tok_s": new_tokens / t_full, "speedup": t_full / t_cache,
            "same_tokens": cached == recompute()}


# ---- image-span head -----------------------------------------------------------------------
def _t2i_prompts(cfg: Config, n_images: int, grid: tuple[int, int], prompt_len: int):
    """Random text-to-image prompts ending in ``<h><w><boi>``, their unconditional twins and
    the constraint (text ids 0-3 serve as boi, eoi and the shape tokens)."""
    boi, eoi, hid, wid = 0, 1, 2, 3
    constraint = ImageSpanConstraint(boi, eoi, cfg.image_offset, cfg.image_codebook_size,
                                     height_tokens={hid: grid[0]}, width_tokens={wid: grid[1]})
    prompts = [torch.randint(4, min(cfg.text_vocab_size, cfg.image_offset), (prompt_len,)).tolist()
               + [hid, wid, boi] for _ in range(n_images)]
    return constraint, prompts, [[5, hid, wid, boi]] * n_images


def bench_cpu_image_head(cfg: Config, n_images: int, grid: tuple[int, int],
                         repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    constraint, prompts, uncond = _t2i_prompts(cfg, n_images, grid, 12)
    eoi, n_tok = constraint.eoi_id, grid[0] * grid[1]
    guidance = Guidance(uncond, guidance_scale=1.5)
    kw = dict(temperature=1.0, top_k=1000, constraint=constraint, seed=0, guidance=guidance,
              eos_ids=[eoi])
    res: dict[str, Any] = {"model": cfg.name, "vocab_size": cfg.vocab_size,
                           "image_codes": cfg.image_codebook_size,
                           "params": model.num_parameters(), "n_images": n_images,
                           "grid": list(grid), "cfg_scale": 1.5, "top_k": 1000}
    cpu = torch.device("cpu")
    outs = {}
    for on in (False, True):
        engine = Engine(model, max_seq_len=15 + n_tok + 1, image_head_steps=on)
        engine.generate(prompts, n_tok + 1, **kw)                     # warm-up
        t = _timed(lambda e=engine: e.generate(prompts, n_tok + 1, **kw), cpu, repeats)
        res[f"generate_tok_s_image_head_{'on' if on else 'off'}"] = n_images * n_tok / t
        outs[on] = engine.generate(prompts, n_tok + 1, temperature=0, constraint=constraint,
                                   guidance=guidance, eos_ids=[eoi])
    res["generate_speedup"] = (res["generate_tok_s_image_head_on"]
                               / res["generate_tok_s_image_head_off"])
    res["greedy_tokens_equal"] = bool(torch.equal(outs[True].tokens, outs[False].tokens))
    # RL's scoring of the rollouts: teacher forcing both CFG branches, then backward
    sampled = Engine(model).generate(prompts, n_tok + 1, **kw)
    model.train()
    lps = {}
    for on in (False, True):
        def step(on=on):
            model.zero_grad(set_to_none=True)
            lp = score_guided(model, prompts, sampled.tokens, sampled.mask, guidance=guidance,
                              temperature=1.0, top_k=1000, constraint=constraint, image_head=on)
            lp.sum().backward()
            lps[on] = lp.detach()
        step()
        res[f"score_s_image_head_{'on' if on else 'off'}"] = _timed(step, cpu, repeats)
    model.zero_grad(set_to_none=True)
    res["score_speedup"] = res["score_s_image_head_off"] / res["score_s_image_head_on"]
    res["score_max_abs_diff"] = float((lps[True] - lps[False]).abs().max())
    # float32 logits the scorer materializes: every position x V, against codes x K plus the
    # eoi column x V
    rows = 2 * n_images
    res["score_logit_mb_off"] = rows * (n_tok + 1) * cfg.vocab_size * 4 / 2**20
    res["score_logit_mb_on"] = rows * (n_tok * cfg.image_codebook_size + cfg.vocab_size) * 4 / 2**20
    return res


# ---- training throughput ----------------------------------------------------------------------
def _eager_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def _train_stepper(model, batch: int, seq: int, vocab: int, device, autocast_dtype=None,
                   fused: bool = False, loss_fn=_eager_ce):
    """A closure running one forward + backward + AdamW step, warmed up (and compiled).
    ``loss_fn(logits, targets)`` returns the loss (or ``(loss, stats)``, as ``lm_loss``)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)
    ids = torch.randint(0, vocab, (batch, seq + 1), device=device)

    def step():
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(ids[:, :-1])
            logits = out.logits if hasattr(out, "logits") else out
            loss = loss_fn(logits, ids[:, 1:])
            loss = loss[0] if isinstance(loss, tuple) else loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step()
    step()
    return step


def _train_tok_s(model, batch: int, seq: int, vocab: int, steps: int, device, autocast_dtype=None,
                 fused: bool = False, loss_fn=_eager_ce) -> float:
    step = _train_stepper(model, batch, seq, vocab, device, autocast_dtype, fused, loss_fn)
    return batch * seq / _timed(step, device, steps)


def bench_cpu_train(cfg: Config, batch: int, seq: int, steps: int) -> dict[str, Any]:
    """Ours vs HF, steps interleaved (ours, HF, ours, ...) and the median step time taken,
    so load from other processes on a shared machine hits both alike."""
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    ours = GPT(cfg).train()
    res: dict[str, Any] = {"model": cfg.name, "params": ours.num_parameters(), "batch": batch,
                           "seq": seq, "steps": steps}
    runners = {"ours": _train_stepper(ours, batch, seq, cfg.vocab_size, cpu)}
    hf = _hf_model(cfg, cpu, torch.float32)
    if hf is not None:
        runners["hf"] = _train_stepper(hf.train(), batch, seq, cfg.vocab_size, cpu)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(steps):
        for k, step in runners.items():
            times[k].append(_timed(step, cpu))
    for k, ts in times.items():
        res[f"{k}_tok_s"] = batch * seq / statistics.median(ts)
    if "hf" in times:
        res["ours_over_hf"] = res["ours_tok_s"] / res["hf_tok_s"]
    return res


def _flops_per_token(cfg: Config, seq: int) -> float:
    n = sum(p.numel() for n_, p in _meta_model(cfg).named_parameters() if not n_.startswith("embed"))
    if cfg.tie_embeddings:                # the head matmul still runs, on the embedding rows
        n += cfg.n_text_logits * cfg.n_embd
    return 6 * n + 12 * cfg.n_layer * seq * cfg.n_head * cfg.head_size


def _meta_model(cfg: Config) -> GPT:
    with torch.device("meta"):
        return GPT(cfg)


def _peaks(device: torch.device, peak_flops: float, hbm_bandwidth: float) -> tuple[float, float]:
    """Datasheet (bf16 FLOP/s, HBM bytes/s) of a known GPU, else the given fallbacks."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for key, val in PEAKS.items():
        if key in name:
            return val
    return peak_flops, hbm_bandwidth


def _rate(fn, work: float, device: torch.device) -> float:
    """``work`` per second of ``fn``: median of 10 timed calls after 3 warm-ups."""
    for _ in range(3):
        fn()
    return work / statistics.median([_timed(fn, device) for _ in range(10)])


def copy_rate(device: torch.device, numel: int = 2 ** 28) -> float:
    """Bytes read + written per second by a device-to-device copy of ``numel`` fp32 values."""
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    return _rate(lambda: dst.copy_(src), 2 * numel * 4, device)


def decode_weight_bytes(model: GPT) -> int:
    """Bytes one decode step must read: every weight but the embedding table, of which it
    reads one row (a tied table is read whole, by the head)."""
    tied = model.config.tie_embeddings
    return sum(p.numel() * p.element_size() for n, p in model.named_parameters()
               if tied or not n.startswith("embed"))


def measure_ceilings(device) -> dict[str, float]:
    """What this card reaches: a large bf16 matmul (FLOP/s) and a device copy (bytes/s, read +
    written), on random data (zeros run faster)."""
    def matmul() -> float:
        a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
        return _rate(lambda: a @ b, 2 * 8192 ** 3, device)

    out = {"matmul_bf16_flops": matmul(), "copy_bytes_per_s": copy_rate(device)}
    _free(device)
    return out


def _largest_fitting_batch(measure, batch: int, device) -> tuple[int, float]:
    """``(b, measure(b))`` for the largest ``b`` of ``batch, batch/2, ...`` that fits in memory."""
    while batch >= 1:
        try:
            return batch, measure(batch)
        except torch.cuda.OutOfMemoryError:
            _free(device)
            batch //= 2
    raise torch.cuda.OutOfMemoryError("not even batch 1 fits")


def bench_cuda_mfu(cfg: Config, batch: int, seq: int, steps: int, device, args) -> dict[str, Any]:
    """Training MFU of ours and of HF, each at the largest batch up to ``batch`` that fits (HF's
    loss takes fp32 logits, 15.7 GiB at 16 x 2,048 x 128k, so it may fit fewer sequences)."""
    peak, _ = _peaks(device, args.peak_flops, args.hbm_bandwidth)
    fpt = _flops_per_token(cfg, seq)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(cfg).train()
    # our training step as LMTrainer(compile=True) runs it: the model and lm_loss compiled
    run = torch.compile(model) if args.compile else model
    loss_fn = torch.compile(lm_loss) if args.compile else lm_loss
    res = {"model": cfg.name, "seq": seq, "flops_per_token": fpt, "peak_flops": peak,
           "compile": args.compile}
    fused = device.type == "cuda"
    b, tok_s = _largest_fitting_batch(lambda b: _train_tok_s(
        run, b, seq, cfg.vocab_size, steps, device, torch.bfloat16, fused=fused, loss_fn=loss_fn),
        batch, device)
    res.update(batch=b, ours_tok_s=tok_s, ours_mfu=tok_s * fpt / peak)
    if args.measured_flops:                         # against the matmul rate this card reaches
        res["ours_fraction_of_measured_matmul"] = tok_s * fpt / args.measured_flops
    model = run = None                              # free it before HF's model is built
    _free(device)
    hf = _hf_model(cfg, device, torch.float32)
    if hf is not None:
        hf_b, hf_tok = _largest_fitting_batch(lambda b: _train_tok_s(
            hf.train(), b, seq, cfg.vocab_size, steps, device, torch.bfloat16, fused=fused),
            batch, device)
        res.update(hf_batch=hf_b, hf_tok_s=hf_tok, hf_mfu=hf_tok * fpt / peak,
                   ours_over_hf=tok_s / hf_tok)
        del hf
        _free(device)
    return res


def bench_cuda_decode(cfg: Config, prompt_len: int, new_tokens: int, device, args) -> dict[str, Any]:
    _, bw = _peaks(device, args.peak_flops, args.hbm_bandwidth)
    torch.manual_seed(0)
    with _default_dtype(torch.bfloat16), torch.device(device):
        model = GPT(cfg).eval()
    weight_bytes = decode_weight_bytes(model)
    prompt = torch.randint(0, cfg.text_vocab_size, (prompt_len,)).tolist()
    engine = Engine(model, max_seq_len=prompt_len + new_tokens, compile=args.compile,
                    **(CUDA_DECODE_COMPILE if device.type == "cuda" else {}))
    engine.generate([prompt], new_tokens, temperature=0)               # compile + warm-up
    engine.generate([prompt], new_tokens, temperature=0)
    t = _timed(lambda: engine.generate([prompt], new_tokens, temperature=0), device)
    roofline = bw / weight_bytes
    # the prefill is included in t: a (small) underestimate of the per-token decode rate
    res = {"model": cfg.name, "weight_bytes": weight_bytes, "hbm_bandwidth": bw,
           "roofline_tok_s": roofline, "ours_tok_s": new_tokens / t,
           "ours_fraction_of_roofline": new_tokens / t / roofline, "compile": args.compile}
    if args.measured_bandwidth:                     # against the copy rate this card reaches
        res["ours_fraction_of_measured_bandwidth"] = new_tokens / t * weight_bytes / args.measured_bandwidth
    engine = model = None
    _free(device)
    hf = _hf_model(cfg, device, torch.bfloat16)
    if hf is not None:
        hf.eval()
        ids = torch.tensor([prompt], device=device)
        gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        with torch.inference_mode():
            hf.generate(ids, **gen)
            th = _timed(lambda: hf.generate(ids, **gen), device)
        res.update(hf_tok_s=new_tokens / th, hf_fraction_of_roofline=new_tokens / th / roofline,
                   ours_over_hf=th / t)
        del hf
    _free(device)
    return res


def bench_cfg_image_gen(cfg: Config, n_images: int, grid: tuple[int, int], prompt_len: int,
                        device, args) -> dict[str, Any]:
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with _default_dtype(dtype), torch.device(device):
        model = GPT(cfg).eval()
    constraint, prompts, uncond = _t2i_prompts(cfg, n_images, grid, prompt_len)
    eoi, n_tok = constraint.eoi_id, grid[0] * grid[1]
    engine = Engine(model, max_seq_len=prompt_len + 3 + n_tok + 1, compile=args.compile,
                    compile_mode="reduce-overhead" if device.type == "cuda" else None)
    kw = dict(temperature=1.0, top_k=100, constraint=constraint, seed=0,
              guidance=Guidance(uncond, guidance_scale=1.5), eos_ids=[eoi])
    engine.generate(prompts, n_tok + 1, **kw)
    engine.generate(prompts, n_tok + 1, **kw)
    t = _timed(lambda: engine.generate(prompts, n_tok + 1, **kw), device)
    out = engine.generate(prompts, n_tok + 1, **kw)
    ok = bool((out.tokens[:, :n_tok] >= cfg.image_offset).all() and (out.tokens[:, n_tok] == eoi).all())
    # the same engine with the full head at every step (its full-head step is compiled
    # already: the eoi step used it)
    engine.image_head_steps = False
    engine.generate(prompts, n_tok + 1, **kw)
    t_full = _timed(lambda: engine.generate(prompts, n_tok + 1, **kw), device)
    res = {"model": cfg.name, "n_images": n_images, "grid": list(grid), "cfg_scale": 1.5,
           "ours_image_tok_s": n_images * n_tok / t, "spans_well_formed": ok,
           "ours_full_head_image_tok_s": n_images * n_tok / t_full,
           "image_head_speedup": t_full / t}
    engine = model = None
    _free(device)
    hf = _hf_model(cfg, device, dtype)
    if hf is not None:
        hf.eval()
        # HF's decoder-only CFG (guidance_scale + negative_prompt_ids) with the same budget;
        # left-padded batch; HF has no image-span constraint, so only the token count matches
        P = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (P - len(p)) + p for p in prompts], device=device)
        att = (torch.arange(P, device=device)[None] >= torch.tensor(
            [P - len(p) for p in prompts], device=device)[:, None]).long()
        neg = torch.tensor(uncond, device=device)
        gen = dict(attention_mask=att, max_new_tokens=n_tok + 1, min_new_tokens=n_tok + 1,
                   do_sample=True, top_k=100, guidance_scale=1.5, negative_prompt_ids=neg,
                   pad_token_id=0)
        try:
            with torch.inference_mode():
                hf.generate(ids, **gen)
                th = _timed(lambda: hf.generate(ids, **gen), device)
            res.update(hf_image_tok_s=n_images * n_tok / th, ours_over_hf=th / t)
        except Exception as e:                 # report, do not hide, an HF API mismatch
            res["hf_error"] = f"{type(e).__name__}: {e}"[:300]
        del hf
        _free(device)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, every section")
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA sections")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile the CUDA paths (default: on for CUDA, off for --smoke)")
    ap.add_argument("--peak-flops", type=float, default=989e12, help="peak bf16 FLOP/s if unknown GPU")
    ap.add_argument("--hbm-bandwidth", type=float, default=3.35e12, help="bytes/s if unknown GPU")
    ap.add_argument("--mfu-batch", type=int, default=16,
                    help="sequences of 2,048 tokens per MFU step (halved until it fits)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only these sections (e.g. cuda_mfu cuda_decode_roofline)")
    args = ap.parse_args(argv)
    args.measured_flops = args.measured_bandwidth = None
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    cuda = torch.cuda.is_available() and not args.no_cuda
    if args.compile is None:
        args.compile = cuda and not args.smoke
    results: dict[str, Any] = {
        "env": {"torch": torch.__version__, "python": platform.python_version(),
                "threads": torch.get_num_threads(), "cuda": cuda,
                "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"}}
    s = args.smoke
    shapes = Config.from_name("shapes-small")
    tiny = Config.from_name("tiny")

    def wanted(name: str) -> bool:
        return args.only is None or name in args.only

    def write() -> None:                             # after every section: a killed run keeps
        if args.out is not None:                     # what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
    if wanted("cpu_decode"):
        results["cpu_decode"] = bench_cpu_decode(tiny if s else shapes, 8 if s else 32, 8 if s else 128)
        write()
    if wanted("cpu_train"):
        results["cpu_train"] = bench_cpu_train(tiny if s else shapes, 2 if s else 4, 16 if s else 256,
                                               1 if s else 5)
        write()
    if wanted("cpu_image_head"):
        # ARM-7B's vocabulary over a small body: the share of the head in a step at that vocab
        arm_vocab = tiny if s else Config.from_dict({**Config.from_name(
            "arm-7b", n_layer=2, n_embd=256, n_head=4, n_query_groups=2, head_size=64,
            intermediate_size=704, max_seq_len=512).to_dict(), "name": "arm-7b-vocab-small-body"})
        results["cpu_image_head"] = [
            bench_cpu_image_head(tiny if s else shapes, 2 if s else 16, (2, 3) if s else (8, 8),
                                 1 if s else 5)]
        if not s:
            results["cpu_image_head"].append(bench_cpu_image_head(arm_vocab, 4, (8, 8), 3))
        write()
    dev = torch.device("cuda" if cuda else "cpu")
    if cuda and not s:
        results["ceilings"] = measure_ceilings(dev)
        args.measured_flops = results["ceilings"]["matmul_bf16_flops"]
        args.measured_bandwidth = results["ceilings"]["copy_bytes_per_s"]
        write()
    if cuda or s:
        one_b = tiny if s else Config.from_name("llama-1b", max_seq_len=2048)
        seven_b = tiny if s else Config.from_name("qwen2.5-7b", max_seq_len=4096)
        # ARM's vocabulary (text + image codes) on a 1B body
        img = tiny if s else Config.from_dict({**Config.from_name(
            "arm-7b", n_layer=16, n_embd=2048, n_head=32, n_query_groups=8, head_size=64,
            intermediate_size=8192, max_seq_len=4096).to_dict(), "name": "arm-1b"})
        sections = {
            "cuda_mfu": lambda: bench_cuda_mfu(one_b, 2 if s else args.mfu_batch, 16 if s else 2048, 1 if s else 10, dev, args),
            "cuda_decode_roofline": lambda: bench_cuda_decode(seven_b, 8 if s else 128, 8 if s else 256, dev, args),
            "cuda_cfg_image_gen": lambda: bench_cfg_image_gen(img, 2 if s else 32, (2, 3) if s else (16, 16),
                                                              6 if s else 32, dev, args),
        }
        for name, fn in sections.items():
            if not wanted(name):
                continue
            t = time.perf_counter()
            try:
                results[name] = fn()
            except torch.cuda.OutOfMemoryError as e:
                results[name] = {"error": f"out of memory: {e}"[:300]}
            results[name]["section_s"] = round(time.perf_counter() - t, 1)
            print(f"== {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
            write()
    print(json.dumps(results, indent=2))
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""On a CUDA machine: check the LM's CUDA paths and train the quickstart LM there.

Run on a lent GPU (one short call); everything it measures goes into ``<out>/cuda_check.json``
and the trained LM into ``<out>/lm`` (evaluate it on any machine with ``arm-lm evaluate``).

1. ``calibrate``: ``LMTrainer`` (the ``shapes-small`` quickstart LM) fitted by Lightning on
   pre-tokenized ShapesWorld, CUDA, ``bf16-mixed``, ``compile=True``, a few dozen steps:
   the compiled bf16 path runs, and its steady step rate sizes the main run.
2. ``fit``: the same, as many steps as ``--train-seconds`` allows at that rate (a full
   warm-up + cosine schedule, so the run ends with the learning rate decayed), exported.
3. ``fsdp``: ``BlockFSDPStrategy`` (transformer blocks wrapped, activation checkpointing),
   one device, ``bf16-mixed``: losses finite and falling.
4. ``engine``: on the trained LM in fp32, greedy decoding with the KV cache equals full
   recompute token for token, and the compiled engine (inductor, CUDA graphs) equals eager.

    python experiments/cuda_check.py --data runs/sft2/tokens --out runs/gpu

``--smoke`` runs every section on the CPU with a few steps and no inductor (the script's own
check, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

TASK_WEIGHTS = {"t2i": 0.5, "und": 0.25, "edit": 0.25}


class _Record(pl.Callback):
    """Wall time of every step and the loss every ``every`` steps (one sync each)."""

    def __init__(self, every: int) -> None:
        self.every, self.times, self.losses = every, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())
        step = len(self.times)
        if step % self.every == 0 or step == 1:
            self.losses.append((step, float(outputs["loss"])))


def _fit(args, dm: pl.LightningDataModule, steps: int, *, compile: bool, strategy: Any = "auto",
         export: Path | None = None, every: int = 25, warmup: int | None = None) -> dict[str, Any]:
    from arm_core.lightning_module import LMTrainer

    pl.seed_everything(0)
    module = LMTrainer(preset="shapes-small", model_overrides={"max_seq_len": 512}, lr=args.lr,
                       warmup_steps=min(warmup or args.warmup, max(1, steps // 10)),
                       max_steps=steps, compile=compile,
                       visual_tokenizer=args.visual_tokenizer,
                       export_dir=str(export) if export is not None else "")
    rec = _Record(every)
    trainer = pl.Trainer(accelerator=args.device, devices=1, precision="bf16-mixed", strategy=strategy,
                         max_steps=steps, callbacks=[rec], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0,
                         gradient_clip_val=1.0 if strategy == "auto" else None)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    wall = time.perf_counter() - t0
    ts = rec.times
    half = len(ts) // 2
    steady = (ts[-1] - ts[half]) / max(1, len(ts) - 1 - half) if len(ts) > 2 else float("nan")
    return {"steps": trainer.global_step, "batch": args.batch, "seq_len": 512,
            "compile": compile, "wall_s": wall, "first_step_s": ts[0] - t0 if ts else None,
            "steady_step_s": steady, "tokens_per_s": args.batch * 512 / steady,
            "losses": rec.losses, "lr": args.lr}


def _engine_checks(lm_dir: Path, device: str) -> dict[str, Any]:
    from arm_core.checkpoint import load_lm
    from arm_core.generation import Engine

    ck = load_lm(lm_dir)
    model = ck.model.to(device).float().eval()
    torch.backends.cuda.matmul.allow_tf32 = False       # fp32 argmax must not see tf32 rounding
    g = torch.Generator().manual_seed(0)
    # text-only prompts of different lengths drawn from the text vocabulary
    prompts = [torch.randint(4, ck.config.text_vocab_size, (int(n),), generator=g).tolist()
               for n in torch.randint(6, 24, (8,), generator=g)]
    new = 48
    eager = Engine(model, max_seq_len=128).generate(prompts, new, temperature=0).tokens.cpu()

    def recompute(p: list[int]) -> list[int]:
        seq = list(p)
        with torch.inference_mode():
            for _ in range(new):
                seq.append(int(model(torch.tensor([seq], device=device))[0, -1].argmax()))
        return seq[len(p):]
    full = [recompute(p) for p in prompts]
    same_full = sum(eager[i].tolist() == full[i] for i in range(len(prompts)))
    cuda = device == "cuda"
    compiled = Engine(model, max_seq_len=128, compile=True,
                      compile_mode="reduce-overhead" if cuda else None,
                      compile_backend="inductor" if cuda else "eager")
    compiled.generate(prompts, new, temperature=0)                        # compile + graphs
    comp = compiled.generate(prompts, new, temperature=0).tokens.cpu()
    same_comp = sum(torch.equal(eager[i], comp[i]) for i in range(len(prompts)))
    tok_agree = float((eager == comp).float().mean())
    return {"prompts": len(prompts), "new_tokens": new,
            "cache_equals_recompute": f"{same_full}/{len(prompts)}",
            "compiled_equals_eager": f"{same_comp}/{len(prompts)}",
            "compiled_token_agreement": tok_agree}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="pre-tokenized ShapesWorld shards")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--train-seconds", type=float, default=150.0, help="budget of the main fit")
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--calibrate-steps", type=int, default=60)
    ap.add_argument("--fsdp-steps", type=int, default=20)
    ap.add_argument("--visual-tokenizer", default=None, help="recorded in the export")
    ap.add_argument("--smoke", action="store_true", help="CPU, a few steps, no inductor")
    args = ap.parse_args()
    args.device = "cpu" if args.smoke else "cuda"
    if args.smoke:
        args.batch, args.workers, args.max_steps = 2, 0, 6
        args.calibrate_steps, args.fsdp_steps = 4, 0
    elif not torch.cuda.is_available():
        raise SystemExit("cuda_check.py: no CUDA device (use --smoke to check the script on a CPU)")
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
                           "torch": torch.__version__,
                           "lightning": pl.__version__}

    def save() -> None:
        (args.out / "cuda_check.json").write_text(json.dumps(res, indent=2))

    def section(name: str, fn) -> Any:
        t = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:                          # keep going: report every section
            res[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        res[name]["section_s"] = round(time.perf_counter() - t, 1)
        print(f"== {name}: {json.dumps(res[name])[:600]}", flush=True)
        save()
        return res[name]

    from arm_data.datamodules.tokens import TokenDataModule

    # one data module for every fit: its corpus is read and tokenized once
    dm = TokenDataModule(data_dir=args.data, seq_len=512, batch_size=args.batch,
                         task_weights=TASK_WEIGHTS, num_workers=args.workers, seed=0)
    compile = not args.smoke
    cal = section("calibrate", lambda: _fit(args, dm, args.calibrate_steps, compile=compile, every=10,
                                            warmup=10))
    rate = cal.get("steady_step_s")
    steps = args.max_steps
    if rate is not None and math.isfinite(rate):
        steps = min(args.max_steps, max(100, int(args.train_seconds / rate)))
    res["planned_steps"] = steps
    section("fit", lambda: _fit(args, dm, steps, compile=compile, export=args.out / "lm", every=100))
    from arm_core.lightning_module import BlockFSDPStrategy
    if args.fsdp_steps:
        section("fsdp", lambda: _fit(args, dm, args.fsdp_steps, compile=False, every=1, warmup=5,
                                     strategy=BlockFSDPStrategy(activation_checkpointing=True)))
    if (args.out / "lm" / "config.json").exists():
        section("engine", lambda: _engine_checks(args.out / "lm", args.device))
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

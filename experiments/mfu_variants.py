"""Training MFU of the ``llama-1b`` shape under several step settings, in one run.

``bench_core.py``'s ``cuda_mfu`` section measures one setting; this script measures what
each change to the training step is worth, on the same card in the same process:

* ``eager_ce``: the model compiled, the loss in eager PyTorch on ``logits.float()`` (what
  the bench measured before LMTrainer compiled its loss);
* ``compiled_loss``: the model and ``lm_loss`` compiled, as ``LMTrainer(compile=True)`` runs;
* the same at a larger batch (fewer optimizer steps per token);
* the same with inductor's coordinate-descent tuning of its generated kernels.

    python experiments/mfu_variants.py --out mfu_variants.json

MFU uses the bench's accounting (6·N + 12·L·T·d FLOPs per token, the datasheet's peak).
JSON is written after each variant, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from arm_core.config import Config  # noqa: E402
from arm_core.lightning_module import lm_loss  # noqa: E402
from arm_core.model import GPT  # noqa: E402
from bench_core import (  # noqa: E402  (benchmarks/ is not a package)
    _eager_ce,
    _flops_per_token,
    _free,
    _peaks,
    _train_tok_s,
    measure_ceilings,
)

VARIANTS = {  # name: (batch, compile the loss, inductor options)
    "eager_ce_b8": (8, False, None),
    "compiled_loss_b8": (8, True, None),
    "compiled_loss_b16": (16, True, None),
    "compiled_loss_b16_coordinate_descent": (16, True, {"coordinate_descent_tuning": True}),
}


def measure(cfg: Config, batch: int, seq: int, steps: int, compile_loss: bool,
            options: dict | None, device: torch.device) -> float:
    """Training tokens/s of one variant (compile time excluded: the stepper warms up)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(cfg).train()
    run = torch.compile(model, dynamic=False, options=options)
    loss_fn = torch.compile(lm_loss, dynamic=False, options=options) if compile_loss else _eager_ce
    try:
        return _train_tok_s(run, batch, seq, cfg.vocab_size, steps, device, torch.bfloat16,
                            fused=True, loss_fn=loss_fn)
    finally:
        del model, run
        _free(device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(VARIANTS))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("mfu_variants.py needs a CUDA GPU")
    dev = torch.device("cuda")
    cfg = Config.from_name("llama-1b", max_seq_len=2048)
    seq = 2048
    peak, _ = _peaks(dev, 989e12, 3.35e12)
    fpt = _flops_per_token(cfg, seq)
    res: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                 "model": cfg.name, "seq": seq, "flops_per_token": fpt, "peak_flops": peak,
                 "ceilings": measure_ceilings(dev), "variants": {}}
    matmul = res["ceilings"]["matmul_bf16_flops"]
    for name, (batch, compile_loss, options) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        try:
            tok_s = measure(cfg, batch, seq, args.steps, compile_loss, options, dev)
            row = {"batch": batch, "tok_s": tok_s, "mfu": tok_s * fpt / peak,
                   "fraction_of_measured_matmul": tok_s * fpt / matmul}
        except torch.cuda.OutOfMemoryError as e:
            row = {"batch": batch, "error": f"out of memory: {e}"[:300]}
            _free(dev)
        row["section_s"] = round(time.perf_counter() - t, 1)
        res["variants"][name] = row
        print(f"== {name}: {json.dumps(row)}", file=sys.stderr, flush=True)
        args.out.write_text(json.dumps(res, indent=2))
    args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

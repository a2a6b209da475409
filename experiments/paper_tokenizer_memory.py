"""Memory of ARM's full-size tokenizer recipe per image, forward and backward, measured on CPU.

Builds ``configs/tokenizer/arm-siglip2-fsq.yaml`` at full size with random weights (the real
SigLIP2-SO400M-512 and Qwen2.5-0.5B configs, :mod:`arm_tokenizer.testing.full_size`; frozen
towers in bf16 as the config says, trainable parts fp32), then runs one training step's
forward (tokenizer + the four losses, as ``TokenizerTrainer.training_step`` does) under
bf16 autocast, as ``precision: bf16-mixed`` does, and the backward.

Measured:
- saved for backward: bytes of the distinct tensor storages autograd keeps
  (``torch.autograd.graph.saved_tensors_hooks``), parameters excluded, per part of the model,
  at batch 1 and batch 2: the difference is the cost of one more image, the rest is per step
  (autocast's bf16 copies of the fp32 weights);
- weights: parameter and buffer bytes;
- peak resident memory of the process (``ru_maxrss``) after the batch-1 forward+backward.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/paper_tokenizer_memory.py [--out FILE.json]

Run it alone: the process peaks at about 21 GB resident (6.35 GB of weights, the random
initialisation's leftovers in the allocator, the step) and took 7 minutes on 2 shared CPU cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "tokenizer" / "arm-siglip2-fsq.yaml"
CAPTION = "a cup of coffee on a saucer, seen from above, on a wooden table"


def build(tmp: Path):
    from arm_tokenizer.framework.lightning_cli import ARMLightningCLI, translate_argv
    from arm_tokenizer.testing.full_size import without_weights, write_full_size_dirs
    from lightning.pytorch import LightningDataModule, LightningModule

    siglip, qwen = write_full_size_dirs(tmp)
    text = PAPER.read_text()
    text = text.replace("name_or_path: &siglip2 google/siglip2-so400m-patch16-512", f"name_or_path: &siglip2 {siglip}")
    text = text.replace("name_or_path: &qwen Qwen/Qwen2.5-0.5B", f"name_or_path: &qwen {qwen}")
    (tmp / "paper.yaml").write_text(text)
    argv, _ = translate_argv(["--config", str(tmp / "paper.yaml"), "--trainer.accelerator", "cpu",
                              "--trainer.logger", "false"])
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")  # args given on purpose
    with without_weights("cpu"):
        cli = ARMLightningCLI(LightningModule, LightningDataModule, subclass_mode_model=True,
                              subclass_mode_data=True, args=argv, run=False)
    return cli.model


class SavedBytes:
    """Distinct storages autograd saves for backward, parameters and buffers excluded."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.skip = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.seen: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in self.skip and s.device.type != "meta":
            self.seen.setdefault(s.data_ptr(), s.nbytes())
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    @contextmanager
    def hooks(self) -> Iterator[None]:
        with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
            yield


def step(model, batch_size: int, backward: bool) -> dict[str, int]:
    """One training step's forward (and backward): saved bytes per part, cumulative."""
    model.train()
    images = torch.rand(batch_size, 3, 512, 512) * 2 - 1
    batch = {"images": images, "captions": [CAPTION] * batch_size}
    saved = SavedBytes(model)
    parts: dict[str, int] = {}
    with saved.hooks(), torch.autocast("cpu", dtype=torch.bfloat16):
        tok = model.tokenizer
        feats = tok.encoder(images)
        parts["encoder (frozen)"] = saved.total
        pre = tok.proj_in(feats)
        parts["proj_in"] = saved.total - sum(parts.values())
        quant = tok.quantizer(pre)
        parts["fsq"] = saved.total - sum(parts.values())
        features = tok.proj_out(quant.quantized)
        parts["proj_out"] = saved.total - sum(parts.values())
        from arm_tokenizer.tokenizer import TokenizerForward

        grid = tuple(tok.encoder.grid_shape(512, 512))
        out = TokenizerForward(feats, pre, quant, features, grid)
        inputs = model._loss_inputs(batch, images, out)
        total = quant.aux_loss if torch.is_tensor(quant.aux_loss) else torch.zeros(())
        for loss in model.losses:
            value = loss(inputs).loss
            total = total + loss.weight * value
            parts[f"loss {loss.name}"] = saved.total - sum(parts.values())
    parts["total saved"] = saved.total
    if backward:
        total.backward()
    return parts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        model = build(Path(tmp))
    built = time.time() - t0
    weights = {
        "frozen_bytes": sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad),
        "trainable_bytes": sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in model.buffers()),
    }
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t1 = time.time()
    two = step(model, 2, backward=False)
    t2 = time.time()
    one = step(model, 1, backward=True)
    t3 = time.time()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    per_image = {k: two[k] - one[k] for k in one}
    per_step = {k: one[k] - per_image[k] for k in one}
    res = {"weights": weights, "saved_batch1": one, "saved_batch2": two, "saved_per_image": per_image,
           "saved_per_step": per_step, "rss_after_build": rss_built, "rss_peak_after_fwd_bwd_batch1": rss_peak,
           "seconds": {"build": built, "forward_batch2": t2 - t1, "forward_backward_batch1": t3 - t2}}
    gb = 1e9
    print(f"weights: frozen {weights['frozen_bytes'] / gb:.2f} GB, trainable {weights['trainable_bytes'] / gb:.2f} GB")
    for k in one:
        print(f"{k:18s} per image {per_image[k] / gb:7.3f} GB   per step {per_step[k] / gb:7.3f} GB")
    print(f"peak RSS {rss_peak / gb:.2f} GB (after build {rss_built / gb:.2f} GB); times {res['seconds']}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

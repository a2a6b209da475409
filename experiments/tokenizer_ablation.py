"""ARM's tokenizer loss ablation, in miniature on ShapesWorld.

The paper (arXiv 2606.11188) trains its tokenizer with
``1·L_cap + 5·L_pix + 5·L_sig + 1·L_feat`` and ablates the terms, reporting ImageNet
zero-shot accuracy / PSNR / codebook usage:

    cap+pix        0.2 / 15.2 / 69.4%
    +sig          79.4 /  9.3 / 70.5%
    +feat         58.1 / 17.1 / 71.0%
    all four      80.2 / 19.6 / 75.6%

Here every row trains the same tokenizer — the frozen ShapesWorld teacher's image tower
(``TimmEncoder``) -> MLP -> FSQ ``[8, 5, 5, 5]`` (1,000 codes) -> MLP -> ``ConvDecoder`` — built
as a ``TokenizerTrainer`` (its optimizer, LR schedule, loss components and ARM's weights),
for the same number of steps on the same images in the same order, from the same initial
weights (the tokenizer is built under one seed before the losses). The loop itself is
plain PyTorch over frozen-encoder features computed once (exact, since the encoder is
frozen), because on a shared 2-core CPU the per-step overheads decide whether five rows fit
in minutes. ``pix`` only is added as the baseline the issue asks for. Each row reports:

- linear-probe accuracy for the color and the shape of single-object scenes on
  mean-pooled de-quantized token features (:mod:`arm_tokenizer.probe`), train split ->
  val split;
- zero-shot retrieval R@1 (image -> caption among the N val captions, through the frozen
  teacher text encoder) with the L_sig head where the row has one, and with a ridge map
  fit on training scenes for every row;
- PSNR of ``decode(encode(x))`` on val scenes, codebook usage (distinct codes / 1,000)
  over the val tokens, and the wall time of training on this machine.

Run (after training the teacher with ``configs/tokenizer/shapes-teacher.yaml``)::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/tokenizer_ablation.py --teacher runs/teacher \\
        --steps 400 --out results/tokenizer_ablation

The result of such a run is ``benchmarks/results/tokenizer_ablation.md``. Lab material: not
installed with any package, not API (see ``experiments/README.md``).

ShapesWorld comes from arm-data, which sits *above* arm-tokenizer: this experiment finds
it through the registry (the ``shapes_world`` datamodule and the world its dataset wraps),
never by importing arm-data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arm_tokenizer.losses.base import TokenizerLoss

__all__ = ["PAPER_TABLE", "ROWS", "SceneSet", "load_scenes", "build_trainer", "evaluate", "run", "main"]

# ImageNet zero-shot top-1 (%), PSNR (dB), codebook usage (%) from the paper's ablation.
PAPER_TABLE: dict[str, tuple[float, float, float] | None] = {
    "pix": None,
    "cap+pix": (0.2, 15.2, 69.4),
    "cap+pix+sig": (79.4, 9.3, 70.5),
    "cap+pix+feat": (58.1, 17.1, 71.0),
    "all": (80.2, 19.6, 75.6),
}
ROWS: dict[str, tuple[str, ...]] = {
    "pix": ("pix",),
    "cap+pix": ("cap", "pix"),
    "cap+pix+sig": ("cap", "pix", "sig"),
    "cap+pix+feat": ("cap", "pix", "feat"),
    "all": ("cap", "pix", "sig", "feat"),
}
ARM_WEIGHTS = {"cap": 1.0, "pix": 5.0, "sig": 5.0, "feat": 1.0}


# ----------------------------------------------------------------------------- data
@dataclass
class SceneSet:
    """Scenes as uint8 images ``(N, 3, H, W)`` plus captions and single-object labels."""

    images: torch.Tensor
    captions: list[str]
    colors: list[str]
    shapes: list[str]

    def float_images(self, sl: slice | None = None) -> torch.Tensor:
        x = self.images if sl is None else self.images[sl]
        return x.float() / 127.5 - 1.0

    def __len__(self) -> int:
        return self.images.shape[0]


def _world(split: str, seed: int, size: int) -> Any:
    """A ShapesWorld sample source (``world[i].spec/.image/.caption``) for ``split``.

    Found through the registry: the ``shapes_world`` datamodule's dataset carries its world.
    """
    from arm_tokenizer.framework import registry

    comp = registry.find("datamodule", "shapes_world")
    if comp is None:
        raise RuntimeError("the ablation needs ShapesWorld from arm-data (pip install arm-data): no "
                           "datamodule 'shapes_world' is registered")
    dm = comp.load()(image_size=size, seed=seed, train_split=split, train_length=10**7)
    world = getattr(dm.dataset("train"), "world", None)
    if world is None or not hasattr(world, "__getitem__"):
        raise RuntimeError(f"{comp.class_path}.dataset('train') has no ShapesWorld `.world` to sample scenes from")
    return world


def load_scenes(split: str, n: int, seed: int = 0, size: int = 64, single_object: bool = False,
                max_scan: int = 40) -> SceneSet:
    """The first ``n`` ShapesWorld scenes of ``split`` (only 1-object scenes when asked)."""
    world = _world(split, seed, size)
    images, captions, colors, shapes = [], [], [], []
    i = 0
    while len(images) < n:
        if i >= n * max_scan:
            raise RuntimeError(f"found only {len(images)} of {n} {'single-object ' if single_object else ''}"
                               f"scenes in the first {i} samples of split {split!r}")
        s = world[i]
        i += 1
        objs = list(s.spec.objects)
        if single_object and len(objs) != 1:
            continue
        arr = np.asarray(s.image.convert("RGB"), dtype=np.uint8)
        images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
        captions.append(s.caption)
        colors.append(str(objs[0].color) if objs else "")
        shapes.append(str(objs[0].shape) if objs else "")
    return SceneSet(torch.stack(images), captions, colors, shapes)


# ----------------------------------------------------------------------------- model
def build_trainer(teacher: str, losses: tuple[str, ...], levels: list[int], lr: float, steps: int,
                  seed: int, decoder_channels: int = 64, decoder_min_channels: int = 16,
                  decoder_res_blocks: int = 1) -> Any:
    """A ``TokenizerTrainer`` for one row: identical tokenizer init for every row."""
    from arm_tokenizer.decoders.conv import ConvDecoder
    from arm_tokenizer.encoders.timm_encoder import TimmEncoder
    from arm_tokenizer.lightning_module import TokenizerTrainer
    from arm_tokenizer.losses.caption import CaptionLoss
    from arm_tokenizer.losses.feature import FeatureLoss
    from arm_tokenizer.losses.pixel import PixelReconstructionLoss
    from arm_tokenizer.losses.siglip import SigLIPLoss
    from arm_tokenizer.projections import MLPProjection
    from arm_tokenizer.quantizers.fsq import FSQQuantizer
    from arm_tokenizer.teachers.frozen import TeacherCaptionLM, TeacherTextEncoder

    tower = json.loads((Path(teacher) / "image_tower.json").read_text())
    torch.manual_seed(seed)
    encoder = TimmEncoder(model_name=tower["model_name"], model_kwargs=tower["model_kwargs"],
                          checkpoint_path=str(Path(teacher) / "image_tower.safetensors"), frozen=True)
    width = encoder.out_dim
    code_dim = len(levels)
    parts = dict(
        encoder=encoder, quantizer=FSQQuantizer(levels=levels),
        proj_in=MLPProjection(width, code_dim, hidden_dim=width), proj_out=MLPProjection(code_dim, width, hidden_dim=width),
        decoder=ConvDecoder(in_dim=width, patch_size=encoder.patch_size, channels=decoder_channels,
                            min_channels=decoder_min_channels, num_res_blocks=decoder_res_blocks),
    )
    torch.manual_seed(seed + 1)
    terms: list[TokenizerLoss] = []
    for name in losses:
        if name == "pix":
            terms.append(PixelReconstructionLoss(weight=ARM_WEIGHTS["pix"], distance="l1"))
        elif name == "feat":
            terms.append(FeatureLoss(weight=ARM_WEIGHTS["feat"]))
        elif name == "sig":
            terms.append(SigLIPLoss(TeacherTextEncoder(teacher), in_dim=width, weight=ARM_WEIGHTS["sig"]))
        elif name == "cap":
            terms.append(CaptionLoss(TeacherCaptionLM(teacher), in_dim=width, weight=ARM_WEIGHTS["cap"]))
        else:
            raise ValueError(f"unknown loss {name!r}; choose from {sorted(ARM_WEIGHTS)}")
    return TokenizerTrainer(**parts, losses=terms, image_size=int(tower.get("image_size", 64)), lr=lr, warmup_steps=min(50, steps // 10),
                            max_steps=steps, grad_clip=1.0, num_grid_images=0, val_lpips=False)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _pooled_and_indices(tokenizer: Any, images: torch.Tensor, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor, float]:
    feats, idx, se, n = [], [], 0.0, 0
    for i in range(0, images.shape[0], batch):
        x = images[i : i + batch]
        out = tokenizer(x)
        feats.append(out.features.mean(1))
        idx.append(out.quant.indices.reshape(-1))
        recon = tokenizer.decoder.decode(out.features, out.grid).clamp(-1, 1)
        se += float(((recon - x) / 2).pow(2).sum())  # in [0, 1] units
        n += x.numel()
    mse = se / n
    return torch.cat(feats), torch.cat(idx), 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def evaluate(tokenizer: Any, text_encoder: Any, data: dict[str, SceneSet], sig_loss: Any | None = None) -> dict:
    """Probe / retrieval / PSNR / usage for one trained tokenizer (see module docstring)."""
    from arm_tokenizer.probe import linear_probe_accuracy, retrieval_at_1, ridge_retrieval_at_1

    tokenizer.eval()
    ptr, _, _ = _pooled_and_indices(tokenizer, data["probe_train"].float_images())
    pte, _, _ = _pooled_and_indices(tokenizer, data["probe_test"].float_images())
    rtr, _, _ = _pooled_and_indices(tokenizer, data["retrieval_train"].float_images())
    val = data["val"]
    vfeat, vidx, psnr = _pooled_and_indices(tokenizer, val.float_images())
    txt_tr = text_encoder.encode_text(data["retrieval_train"].captions)
    txt_val = text_encoder.encode_text(val.captions)
    res = {
        "probe_color": linear_probe_accuracy(ptr, data["probe_train"].colors, pte, data["probe_test"].colors),
        "probe_shape": linear_probe_accuracy(ptr, data["probe_train"].shapes, pte, data["probe_test"].shapes),
        "retrieval_r1_sig_head": None,
        "retrieval_r1_ridge": ridge_retrieval_at_1(rtr, txt_tr, vfeat, txt_val, val.captions),
        "psnr": psnr,
        "codebook_usage": float(torch.unique(vidx).numel() / tokenizer.codebook_size),
    }
    if sig_loss is not None:
        img = []
        for i in range(0, len(val), 128):
            img.append(sig_loss.embed_tokens(tokenizer(val.float_images(slice(i, i + 128))).features))
        res["retrieval_r1_sig_head"] = retrieval_at_1(torch.cat(img), txt_val, val.captions)
    return res


@torch.no_grad()
def evaluate_teacher(teacher: str, data: dict[str, SceneSet]) -> dict:
    """The same probes on the teacher's own (continuous) patch features: the ceiling."""
    from arm_tokenizer.probe import linear_probe_accuracy, retrieval_at_1, ridge_retrieval_at_1
    from arm_tokenizer.teachers.frozen import TeacherTextEncoder, load_image_tower

    tower, text = load_image_tower(teacher), TeacherTextEncoder(teacher)

    def tokens(s: SceneSet) -> torch.Tensor:
        return torch.cat([tower(s.float_images(slice(i, i + 128))) for i in range(0, len(s), 128)])

    ptr, pte = tokens(data["probe_train"]).mean(1), tokens(data["probe_test"]).mean(1)
    val_tokens = tokens(data["val"])
    val = data["val"]
    txt_val = text.encode_text(val.captions)
    return {
        "probe_color": linear_probe_accuracy(ptr, data["probe_train"].colors, pte, data["probe_test"].colors),
        "probe_shape": linear_probe_accuracy(ptr, data["probe_train"].shapes, pte, data["probe_test"].shapes),
        "retrieval_r1_sig_head": retrieval_at_1(text.embed_image_tokens(val_tokens), txt_val, val.captions),
        "retrieval_r1_ridge": ridge_retrieval_at_1(
            tokens(data["retrieval_train"]).mean(1), text.encode_text(data["retrieval_train"].captions),
            val_tokens.mean(1), txt_val, val.captions),
        "psnr": None, "codebook_usage": None,
    }


# ----------------------------------------------------------------------------- driver
@torch.no_grad()
def encoder_features(encoder: Any, scenes: SceneSet, batch: int = 128) -> torch.Tensor:
    """The frozen encoder's patch tokens for every scene, computed once.

    The encoder is frozen (eval mode, no gradients), so its output for an image never
    changes: caching it is exact and removes its forward pass from every training step.
    """
    return torch.cat([encoder(scenes.float_images(slice(i, i + batch))) for i in range(0, len(scenes), batch)])


def _train(model: Any, scenes: SceneSet, steps: int, batch_size: int, seed: int, log_dir: Path,
           features: torch.Tensor | None = None, log_every: int = 25) -> float:
    """Train one row: the ``TokenizerTrainer``'s optimizer, LR schedule, losses and weights, in a
    plain loop over cached frozen-encoder features (Lightning's per-step overhead matters at
    this size on a shared 2-core CPU). Writes ``log_dir/metrics.csv``; returns wall seconds."""
    from arm_tokenizer.losses.base import LossInputs

    if any(loss.adversary() is not None for loss in model.losses):
        raise ValueError("the ablation loop has no discriminator step; use losses without a GAN")
    tok = model.tokenizer
    if features is None:
        features = encoder_features(tok.encoder, scenes)
    torch.manual_seed(seed)
    cfg = model.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    params = [p for group in opt.param_groups for p in group["params"]]
    grid = tuple(tok.grid)
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    used = torch.zeros(tok.codebook_size, dtype=torch.bool)
    log_dir.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        if len(order) < batch_size:
            order = torch.randperm(len(scenes), generator=gen).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        images = scenes.images[idx].float() / 127.5 - 1.0
        feats = features[idx]
        pre = tok.proj_in(feats)
        quant = tok.quantizer(pre)
        out_feats = tok.proj_out(quant.quantized)
        recon = None if tok.decoder.generative else tok.decoder(out_feats, grid)
        inputs = LossInputs(images=images, grid=grid, encoder_features=feats, pre_quant=pre,
                            quantized=quant.quantized, features=out_feats, indices=quant.indices,
                            decoder=tok.decoder, encoder=tok.encoder,
                            captions=[scenes.captions[i] for i in idx], reconstruction=recon, step=step)
        total = quant.aux_loss
        terms = {}
        for loss in model.losses:
            value = loss(inputs).loss
            total = total + loss.weight * value
            terms[loss.name] = float(value.detach())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        used[quant.indices.reshape(-1)] = True  # codebook usage logged from step 0
        if step % log_every == 0 or step == steps - 1:
            if not rows:
                rows.append(",".join(["step", "seconds", "loss_total", *[f"loss_{k}" for k in terms], "usage"]))
            rows.append(",".join(str(v) for v in [step, round(time.perf_counter() - start, 2),
                                                  round(float(total.detach()), 5),
                                                  *[round(v, 5) for v in terms.values()],
                                                  round(float(used.float().mean()), 4)]))
            used.zero_()
    seconds = time.perf_counter() - start
    (log_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
    model.eval()
    return seconds


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f}%" if pct else f"{v:.1f}"


def markdown_table(result: dict) -> str:
    """The side-by-side table (ours | paper) for the closing note."""
    lines = [
        "| losses | probe color | probe shape | R@1 (sig head) | R@1 (ridge) | PSNR dB | usage | train s "
        "| paper zero-shot | paper PSNR | paper usage |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = dict(result["rows"])
    for name, r in rows.items():
        p = PAPER_TABLE.get(name)
        paper = ("—", "—", "—") if p is None else (f"{p[0]}%", f"{p[1]}", f"{p[2]}%")
        lines.append(
            f"| {name} | {_fmt(r['probe_color'], True)} | {_fmt(r['probe_shape'], True)} | "
            f"{_fmt(r['retrieval_r1_sig_head'], True)} | {_fmt(r['retrieval_r1_ridge'], True)} | "
            f"{_fmt(r['psnr'])} | {_fmt(r['codebook_usage'], True)} | {_fmt(r.get('train_seconds'))} | "
            f"{paper[0]} | {paper[1]} | {paper[2]} |"
        )
    t = result.get("teacher")
    if t:
        lines.append(
            f"| teacher features (continuous, ceiling) | {_fmt(t['probe_color'], True)} | "
            f"{_fmt(t['probe_shape'], True)} | {_fmt(t['retrieval_r1_sig_head'], True)} | "
            f"{_fmt(t['retrieval_r1_ridge'], True)} | — | — | — | — | — | — |"
        )
    return "\n".join(lines) + "\n"


def run(teacher: str, out: str, rows: list[str], steps: int, batch_size: int = 32, lr: float = 1e-3,
        levels: list[int] | None = None, seed: int = 0, n_train: int = 4096, n_probe_train: int = 600,
        n_probe_test: int = 300, n_val: int = 300, threads: int | None = None,
        decoder_channels: int = 64, scene_cache: str | None = None) -> dict:
    """Train and evaluate every row; writes ``<out>.json`` and ``<out>.md``; returns the result."""
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown ablation rows {unknown}; choose from {list(ROWS)}")
    if threads:
        torch.set_num_threads(threads)
    levels = levels or [8, 5, 5, 5]
    from arm_tokenizer.teachers.frozen import TeacherTextEncoder, read_teacher_config

    teacher_cfg = read_teacher_config(teacher)
    t0 = time.perf_counter()
    cache = (Path(scene_cache) / f"scenes_s{seed}_{n_train}_{n_probe_train}_{n_probe_test}_{n_val}.pt"
             if scene_cache else None)
    if cache is not None and cache.is_file():
        raw = torch.load(cache, weights_only=True)
        data = {k: SceneSet(v["images"], list(v["captions"]), list(v["colors"]), list(v["shapes"]))
                for k, v in raw.items()}
    else:
        data = {
            "train": load_scenes("train", n_train, seed),
            "probe_train": load_scenes("train", n_probe_train, seed + 1, single_object=True),
            "probe_test": load_scenes("val", n_probe_test, seed, single_object=True),
            "retrieval_train": load_scenes("train", n_probe_train, seed + 2),
            "val": load_scenes("val", n_val, seed + 3),
        }
        if cache is not None:  # rendering ~6k scenes costs minutes on a busy CPU: keep them
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.tmp")
            torch.save({k: {"images": v.images, "captions": v.captions, "colors": v.colors, "shapes": v.shapes}
                        for k, v in data.items()}, tmp)
            os.replace(tmp, cache)
    data_seconds = time.perf_counter() - t0
    text = TeacherTextEncoder(teacher)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "setup": {
            "teacher": teacher, "teacher_metrics": teacher_cfg.get("metrics", {}), "steps": steps,
            "batch_size": batch_size, "lr": lr, "decoder_channels": decoder_channels, "fsq_levels": levels, "codebook_size": int(np.prod(levels)),
            "n_train_scenes": n_train, "n_probe_train": n_probe_train, "n_probe_test": n_probe_test,
            "n_val": n_val, "torch_threads": torch.get_num_threads(), "seed": seed,
            "loss_weights": ARM_WEIGHTS, "data_seconds": data_seconds,
            "probe_embedding": "mean-pooled de-quantized token features (proj_out(indices_to_codes(indices)))",
        },
        "rows": {},
        "teacher": evaluate_teacher(teacher, data),
        "paper": {k: v for k, v in PAPER_TABLE.items() if v is not None},
    }
    _write(out_path, result)  # the teacher's row first: useful even when no tokenizer row is asked for
    features = None
    for name in rows:
        model = build_trainer(teacher, ROWS[name], levels, lr, steps, seed, decoder_channels=decoder_channels)
        if features is None:  # identical frozen encoder in every row: encode the pool once
            t1 = time.perf_counter()
            features = encoder_features(model.tokenizer.encoder, data["train"])
            result["setup"]["encode_pool_seconds"] = time.perf_counter() - t1
        seconds = _train(model, data["train"], steps, batch_size, seed, out_path.parent / "logs" / name, features)
        sig = next((loss for loss in model.losses if type(loss).__name__ == "SigLIPLoss"), None)
        row = evaluate(model.tokenizer, text, data, sig)
        row["train_seconds"] = seconds
        row["losses"] = list(ROWS[name])
        result["rows"][name] = row
        print(f"[ablation] {name}: {json.dumps({k: v for k, v in row.items() if k != 'losses'})}", flush=True)
        _write(out_path, result)
    return result


def _write(out_path: Path, result: dict) -> None:
    for suffix, text in ((".json", json.dumps(result, indent=2) + "\n"), (".md", markdown_table(result))):
        target = out_path.with_suffix(suffix)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


def merge_results(parts: list[str], out: str) -> dict:
    """Merge the JSON results of runs that trained different rows (e.g. in parallel
    processes) with the same setup; rows keep the table's order."""
    results = [json.loads(Path(p).with_suffix(".json").read_text()) for p in parts]
    if not results:
        raise ValueError("merge_results: no result files given")
    keys = ("steps", "batch_size", "lr", "fsq_levels", "seed", "teacher")
    for r in results[1:]:
        diff = [k for k in keys if r["setup"].get(k) != results[0]["setup"].get(k)]
        if diff:
            raise ValueError(f"merge_results: runs differ in {diff}; only runs with one setup can share a table")
    merged = dict(results[0])
    rows = {k: v for r in results for k, v in r["rows"].items()}
    merged["rows"] = {k: rows[k] for k in ROWS if k in rows}
    merged["setup"] = dict(results[0]["setup"], merged_from=[str(p) for p in parts])
    _write(Path(out), merged)
    return merged


def main(argv: list[str] | None = None) -> int:
    """Run ARM's tokenizer loss ablation in miniature on ShapesWorld."""
    p = argparse.ArgumentParser(prog="experiments/tokenizer_ablation.py", description=main.__doc__)
    p.add_argument("--teacher", default="runs/teacher", help="teacher directory (shapes-teacher.yaml output)")
    p.add_argument("--out", default="results/tokenizer_ablation", help="output path stem (.json and .md)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows from {list(ROWS)}")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per row (equal budgets)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--decoder-channels", type=int, default=64, help="ConvDecoder width at the token grid")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--levels", default="8,5,5,5", help="FSQ levels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=4096, help="training scenes (shared by all rows)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--scene-cache", default=None, help="directory to keep the rendered scenes in between runs")
    p.add_argument("--merge", nargs="+", default=None, metavar="STEM",
                   help="only merge the results of earlier runs (their --out stems) into --out")
    a = p.parse_args(argv)
    if a.merge:
        print(markdown_table(merge_results(a.merge, a.out)))
        return 0
    run(a.teacher, a.out, [r.strip() for r in a.rows.split(",") if r.strip()], a.steps, a.batch_size, a.lr,
        [int(v) for v in a.levels.split(",")], a.seed, a.n_train, threads=a.threads,
        decoder_channels=a.decoder_channels, scene_cache=a.scene_cache)
    print(markdown_table(json.loads(Path(a.out).with_suffix(".json").read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

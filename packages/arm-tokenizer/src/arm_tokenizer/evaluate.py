"""``arm-tokenizer evaluate``: every figure of a tokenizer export on any image data.

::

    arm-tokenizer evaluate --tokenizer DIR --data PATH --out FILE.json \\
        [--labels FILE] [--prompt "a photo of a {}"] [--grid FILE.png] [--n 1000]

``--data`` is a folder of images (with optional ``.txt`` captions), a JSONL manifest or
WebDataset shards (those two through arm-data; see :mod:`arm_tokenizer.eval_data`). Every
image is resized to cover the tokenizer's own ``image_size`` and center-cropped
(``--crop pad`` fits and pads, ``--crop none`` squashes), encoded, quantized and decoded. The JSON holds:

* ``figures``: ``psnr`` (dB, mean over images) and ``ssim`` (torchmetrics, on [0, 1]
  pixels), ``lpips`` and ``rfid`` (see :mod:`arm_tokenizer.eval_metrics`: only from
  weights on this machine), ``codebook_usage`` / ``codebook_entropy_bits`` /
  ``codebook_perplexity`` over every evaluated code, ``zero_shot_top1`` /
  ``zero_shot_top5`` and ``retrieval_{i2t,t2i}_r{1,5}``. Every key is always there; a
  ``null`` figure has its reason under ``reasons``.
* ``n`` (images evaluated), ``skipped``, ``settings`` (sizes, crop, batch, device, seed,
  prompt, label file, text encoder, ...), ``codebook`` details, ``seconds``, ``versions``.

Zero-shot classification and retrieval are ARM's Table 7 measure: the image embedding is
the *tokenizer's* semantic features (quantized, projected back by ``proj_out``) through the
head L_sig trained, scored against the frozen text tower it trained with. The head is
exported beside the tokenizer by ``TokenizerTrainer.export`` (:mod:`arm_tokenizer.siglip_export`);
the text tower is rebuilt from its recorded config, or from ``--text-encoder``. Retrieval
uses the captions (identical caption strings count as matches); a recall at k that is
trivially 1 (k candidates or fewer) is ``null``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from arm_tokenizer.callbacks import make_grid
from arm_tokenizer.eval_data import (
    EvalError,
    check_labels,
    label_of,
    open_eval_data,
    read_labels,
    unmatched_keys,
    used_key,
)
from arm_tokenizer.eval_metrics import (
    codebook_stats,
    fid_metric,
    lpips_metric,
    retrieval_recall,
    topk_accuracy,
)
from arm_tokenizer.framework import registry
from arm_tokenizer.framework.checkpoint import atomic_write_bytes, package_versions
from arm_tokenizer.images import ImageTransform
from arm_tokenizer.losses.siglip import caption_match_labels
from arm_tokenizer.siglip_export import HeadError, find_siglip_heads, load_siglip_head
from arm_tokenizer.tokenizer import VisualTokenizer

__all__ = ["evaluate_command", "evaluate"]

FIGURES = ("psnr", "ssim", "lpips", "rfid", "codebook_usage", "codebook_entropy_bits", "codebook_perplexity",
           "zero_shot_top1", "zero_shot_top5", "retrieval_i2t_r1", "retrieval_i2t_r5", "retrieval_t2i_r1",
           "retrieval_t2i_r5")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="arm-tokenizer evaluate", description=evaluate_command.__doc__,
        epilog="Image size, grid and codebook come from the tokenizer's config.json. Figures that cannot be "
               "computed here (LPIPS/rFID without local weights, zero-shot without --labels or a SigLIP head) are "
               "null in the JSON with a reason.")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory (save_pretrained / TokenizerTrainer.export)")
    p.add_argument("--data", required=True, help="folder of images (+ .txt captions), JSONL manifest or WebDataset shards")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--format", default="auto", choices=["auto", "folder", "jsonl", "wds"], help="data format")
    p.add_argument("--n", type=int, default=None, help="evaluate at most this many images (default: all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--crop", default="center", choices=["center", "pad", "none"],
                   help="center: resize to cover the tokenizer's size, then center-crop; pad: fit inside it and "
                        "pad; none: squash to it")
    p.add_argument("--labels", help="label file: one class name per line (label = sub-folder or 'label' "
                                    "field) or a JSON {image: label}; enables zero-shot classification")
    p.add_argument("--prompt", default="a photo of a {}", help="class prompt template ({} = class name)")
    p.add_argument("--text-encoder", help="text encoder config replacing the recorded one: YAML/JSON file or "
                                          "inline, {class_path: teacher_text, init_args: {checkpoint: DIR}}")
    p.add_argument("--siglip-head", help="loss name of the SigLIP head when the export has several")
    p.add_argument("--grid", help="write a PNG of originals (top row) over reconstructions")
    p.add_argument("--grid-n", type=int, default=8, help="images in the grid")
    p.add_argument("--decode-steps", type=int, default=None, help="sampler steps of generative (DiT) decoders")
    p.add_argument("--seed", type=int, default=0, help="noise seed of generative decoders")
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg", "squeeze"], help="LPIPS backbone")
    p.add_argument("--fid-weights", help="torch-fidelity Inception weights file (default: the torch hub cache)")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                   help="an image that cannot be read: stop (raise) or count it and go on (skip)")
    return p


def evaluate_command(argv: list[str]) -> int:
    """Every figure of a tokenizer on any image data: PSNR, SSIM, LPIPS, rFID, codebook, zero-shot, retrieval."""
    args = _parser().parse_args(argv)
    try:
        report = evaluate(args)
    except EvalError as e:
        if os.environ.get("ARM_DEBUG") == "1":
            raise
        print(f"arm-tokenizer evaluate: error: {e}", file=sys.stderr)
        return 2
    f = report["figures"]
    shown = ", ".join(f"{k} {v:.4g}" for k, v in f.items() if isinstance(v, float))
    print(f"evaluated {report['n']} images -> {args.out}: {shown}")
    return 0


# ---------------------------------------------------------------------- setup
def _check_args(args: argparse.Namespace) -> None:
    if not Path(args.tokenizer).is_dir():  # before the data is listed, which may take a while
        raise EvalError(f"--tokenizer {args.tokenizer}: not a directory (expected config.json + model.safetensors)")
    if args.n is not None and args.n < 1:
        raise EvalError(f"--n must be >= 1, got {args.n}")
    if args.batch_size < 1:
        raise EvalError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.grid_n < 1:
        raise EvalError(f"--grid-n must be >= 1, got {args.grid_n}")
    if not args.out.endswith(".json"):
        raise EvalError(f"--out {args.out}: the report must end in .json")
    if args.grid and not args.grid.lower().endswith(".png"):
        raise EvalError(f"--grid {args.grid}: the grid must end in .png")
    try:
        args.prompt.format("x")
    except (IndexError, KeyError, ValueError) as e:
        raise EvalError(f"--prompt {args.prompt!r}: not a template with one {{}} for the class name ({e})") from None
    if "{}" not in args.prompt:
        raise EvalError(f"--prompt {args.prompt!r}: put {{}} where the class name goes")


def _device(name: str):
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise EvalError(f"--device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvalError(f"--device {name}: CUDA is not available on this machine")
    return device


def _load_tokenizer(path: str, device):
    if not Path(path).is_dir():
        raise EvalError(f"--tokenizer {path}: not a directory (expected config.json + model.safetensors)")
    try:
        return VisualTokenizer.from_pretrained(path, map_location=device)
    except (FileNotFoundError, ValueError, TypeError, ImportError) as e:
        raise EvalError(f"--tokenizer {path}: {e}") from None


def _text_encoder_config(spec: str | None) -> dict[str, Any] | None:
    """``--text-encoder``: a YAML/JSON file or inline mapping; short registry names resolved."""
    if spec is None:
        return None
    try:
        cfg = yaml.safe_load(Path(spec).read_text()) if Path(spec).is_file() else yaml.safe_load(spec)
    except (yaml.YAMLError, OSError) as e:
        raise EvalError(f"--text-encoder: cannot read {spec!r} ({e})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("class_path"), str):
        raise EvalError(f"--text-encoder {spec!r}: expected a mapping with class_path (and init_args), e.g. "
                        "{class_path: teacher_text, init_args: {checkpoint: runs/teacher}}")
    unknown = sorted(set(cfg) - {"class_path", "init_args"})
    if unknown:
        raise EvalError(f"--text-encoder: unknown keys {unknown}; give class_path and init_args")
    name = cfg["class_path"]
    if "." not in name:
        comp = registry.resolve(name, "text_encoder")
        if comp is None:
            close = registry.close_matches(name, "text_encoder")
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise EvalError(f"--text-encoder: no text encoder named {name!r}.{hint}")
        name = comp.class_path
    return {"class_path": name, "init_args": dict(cfg.get("init_args") or {})}


def _load_head(args: argparse.Namespace, device, required: bool):
    """``(LoadedHead, None)`` or ``(None, reason)``; an error when ``--labels`` needs it."""
    override = _text_encoder_config(args.text_encoder)
    if not find_siglip_heads(args.tokenizer):
        reason = (f"{args.tokenizer} has no SigLIP head (siglip_head.json): it was exported without an L_sig loss "
                  "(siglip_loss) or by an older TokenizerTrainer.export")
        if required:
            raise EvalError(f"--labels needs the tokenizer's SigLIP head, but {reason}")
        return None, reason
    try:
        return load_siglip_head(args.tokenizer, args.siglip_head, override, map_location=device), None
    except HeadError as e:
        raise EvalError(str(e)) from None
    except Exception as e:  # the recorded tower may be missing on this machine: any builder error
        reason = (f"cannot rebuild the text encoder of {args.tokenizer}'s SigLIP head ({type(e).__name__}: {e}); "
                  "pass --text-encoder with where it is on this machine")
        if required:
            raise EvalError(reason) from None
        return None, reason


# ---------------------------------------------------------------------- the loop
class _Accumulator:
    """Everything gathered batch by batch."""

    def __init__(self, tok, device, args, head, lpips, fid) -> None:
        self.tok, self.device, self.args, self.head, self.lpips, self.fid = tok, device, args, head, lpips, fid
        # per-image PSNR averaged over images (dim), as tokenizer papers report it
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3)).to(device)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
        self.lpips_sum, self.n = 0.0, 0
        self.counts = torch.zeros(tok.num_codebooks, tok.codebook_size, dtype=torch.float64)
        self.embeddings: list[torch.Tensor] = []
        self.captions: list[str | None] = []
        self.targets: list[int] = []
        self.grid_images: list[torch.Tensor] = []
        self.grid_recons: list[torch.Tensor] = []
        self.decode_kwargs = ({"steps": args.decode_steps}
                              if tok.decoder.generative and args.decode_steps is not None else {})

    def add(self, images, captions: list[str | None], targets: list[int]) -> None:
        x = images.to(self.device)
        with torch.no_grad():
            out = self.tok(x)
            recon = self.tok.decoder.decode(out.features, out.grid, **self.decode_kwargs).clamp(-1, 1).float()
            x01, r01 = (x.float() + 1) / 2, (recon + 1) / 2
            self.psnr.update(r01, x01)
            self.ssim.update(r01, x01)
            if self.lpips is not None:
                self.lpips_sum += float(self.lpips(recon, x.float()).sum())
            if self.fid is not None:
                self.fid.update(x01, real=True)
                self.fid.update(r01, real=False)
            idx = out.quant.indices.long().reshape(-1, self.tok.num_codebooks).cpu()
            for q in range(idx.shape[1]):
                self.counts[q] += torch.bincount(idx[:, q], minlength=self.tok.codebook_size).double()
            if self.head is not None:
                loss = self.head.loss
                src = out.features if loss.source == "features" else out.quant.quantized
                self.embeddings.append(loss.embed_tokens(src).float().cpu())
        self.n += x.shape[0]
        self.captions += captions
        self.targets += targets
        room = self.args.grid_n - sum(g.shape[0] for g in self.grid_images)
        if self.args.grid and room > 0:
            self.grid_images.append(x[:room].cpu())
            self.grid_recons.append(recon[:room].cpu())


def _iterate(data):
    """The samples, with a reader's error turned into one line (``--on-error raise``)."""
    it = iter(data)
    while True:
        try:
            yield next(it)
        except StopIteration:
            return
        except ValueError as e:  # arm-data's BadSampleError / TooManyBadSamplesError
            raise EvalError(f"--data: {e}") from None


def _run_loop(args, tok, data, spec, acc: _Accumulator) -> tuple[int, set[str]]:
    transform = ImageTransform(tok.image_size, crop=args.crop)
    patch = int(tok.encoder.patch_size)
    skipped, used = 0, set()
    batch: list[tuple[Any, torch.Tensor, int]] = []
    last_note, started, seen = time.monotonic(), time.monotonic(), 0

    def flush() -> None:
        acc.add(torch.stack([b[1] for b in batch]), [b[0].caption for b in batch], [b[2] for b in batch])
        batch.clear()

    for sample in _iterate(data):
        if args.n is not None and seen >= args.n:
            break
        try:
            image = sample.load()
        except ValueError as e:  # ImageLoadError / BadSampleError name the file and the reason
            if args.on_error == "raise":
                raise EvalError(f"{e} (--on-error skip to leave such images out)") from None
            skipped += 1
            continue
        w, h = image.size
        if min(w, h) < patch:
            raise EvalError(f"image {sample.name!r} is {w}x{h} pixels, smaller than one {patch}x{patch} patch of "
                            "the tokenizer's encoder: remove it or use larger images")
        target = -1
        if spec is not None:
            target = spec.classes.index(label_of(sample, spec))
            key = used_key(sample, spec)
            if key is not None:
                used.add(key)
        batch.append((sample, transform.to_tensor(image), target))
        seen += 1
        if len(batch) == args.batch_size:
            flush()
        if time.monotonic() - last_note > 30:  # a plain line: readable when output is a file
            last_note = time.monotonic()
            print(f"evaluate: {seen} images in {last_note - started:.0f} s", file=sys.stderr, flush=True)
    if batch:
        flush()
    return skipped, used


# ---------------------------------------------------------------------- figures
def _encode_texts(text_encoder, texts: list[str], batch_size: int):
    with torch.no_grad():
        out = [text_encoder.encode_text(texts[i:i + batch_size]).float().cpu()
               for i in range(0, len(texts), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)


def _zero_shot(args, spec, acc: _Accumulator, figures: dict, reasons: dict) -> dict[str, Any] | None:
    if spec is None:
        reasons["zero_shot_top1"] = reasons["zero_shot_top5"] = "no --labels file given"
        return None
    text = _encode_texts(acc.head.loss.text_encoder, [args.prompt.format(c) for c in spec.classes], args.batch_size)
    logits = torch.cat(acc.embeddings) @ text.t()
    targets = torch.tensor(acc.targets)
    figures["zero_shot_top1"] = topk_accuracy(logits, targets, 1)
    if len(spec.classes) > 5:
        figures["zero_shot_top5"] = topk_accuracy(logits, targets, 5)
    else:
        reasons["zero_shot_top5"] = f"trivially 1.0: only {len(spec.classes)} classes"
    return {"num_classes": len(spec.classes), "n": int(targets.numel()), "prompt": args.prompt,
            "labels": str(Path(spec.path).resolve())}


def _retrieval(args, acc: _Accumulator, figures: dict, reasons: dict) -> dict[str, Any] | None:
    keys = [f"retrieval_{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5)]
    rows = [i for i, c in enumerate(acc.captions) if c]
    if len(rows) < 2:
        for k in keys:
            reasons[k] = "the data has fewer than 2 captioned images"
        return None
    captions = [acc.captions[i] for i in rows]
    image = torch.cat(acc.embeddings)[rows]
    text = _encode_texts(acc.head.loss.text_encoder, captions, args.batch_size)
    sim = image @ text.t()
    match = caption_match_labels(captions, dedupe=True).bool()
    for k in (1, 5):
        if k >= len(rows):
            reasons[f"retrieval_i2t_r{k}"] = reasons[f"retrieval_t2i_r{k}"] = \
                f"trivially 1.0: only {len(rows)} captioned images"
            continue
        figures[f"retrieval_i2t_r{k}"] = retrieval_recall(sim, match, k)
        figures[f"retrieval_t2i_r{k}"] = retrieval_recall(sim.t(), match.t(), k)
    return {"n": len(rows), "distinct_captions": len(set(captions))}


def _finite(figures: dict[str, Any], reasons: dict[str, str]) -> None:
    for k, v in figures.items():
        if isinstance(v, float) and not math.isfinite(v):
            figures[k] = None
            reasons[k] = f"not finite ({v}): e.g. reconstructions identical to the originals"


def _write_grid(path: str, acc: _Accumulator) -> None:
    images, recons = torch.cat(acc.grid_images), torch.cat(acc.grid_recons)
    grid = make_grid(torch.cat([images, recons]), ncol=images.shape[0])
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by parsed ``args``; writes and returns the report."""
    started = time.perf_counter()
    _check_args(args)
    device = _device(args.device)
    spec = read_labels(args.labels) if args.labels else None
    data = open_eval_data(args.data, args.format, args.on_error)
    if spec is not None and data.sized:
        check_labels(data.samples, spec)  # before any image is encoded
    tok = _load_tokenizer(args.tokenizer, device)
    head, head_reason = _load_head(args, device, required=spec is not None)
    if head is not None and head.text_encoder_matches is False:
        print(f"arm-tokenizer evaluate: warning: the text encoder's weights differ from those {head.path.name} "
              "was trained against; zero-shot and retrieval figures measure another tower", file=sys.stderr)
    lpips, lpips_reason = lpips_metric(args.lpips_net, device)
    fid, fid_reason = fid_metric(args.fid_weights, device)

    torch.manual_seed(args.seed)
    acc = _Accumulator(tok, device, args, head, lpips, fid)
    skipped, used = _run_loop(args, tok, data, spec, acc)
    skipped += data.reader_skipped()
    if acc.n == 0:
        raise EvalError(f"--data {args.data}: no image could be evaluated"
                        + (f" ({skipped} skipped as unreadable)" if skipped else " (no images)"))
    if spec is not None and not data.sized and args.n is None:
        absent = unmatched_keys(spec, used)
        if absent:
            raise EvalError(f"--labels {spec.path} does not match the data: labels for images not present: "
                            + ", ".join(repr(k) for k in absent[:5]) + (f" ... ({len(absent)} in all)" if len(absent) > 5 else ""))

    figures: dict[str, Any] = dict.fromkeys(FIGURES)
    reasons: dict[str, str] = {}
    figures["psnr"] = float(acc.psnr.compute())
    figures["ssim"] = float(acc.ssim.compute())
    if lpips is not None:
        figures["lpips"] = acc.lpips_sum / acc.n
    else:
        reasons["lpips"] = lpips_reason
    if fid is None:
        reasons["rfid"] = fid_reason
    elif acc.n < 2:
        reasons["rfid"] = "rFID needs at least 2 images"
    else:
        figures["rfid"] = float(fid.compute())
    codebook = codebook_stats(acc.counts)
    figures["codebook_usage"] = codebook["usage"]
    figures["codebook_entropy_bits"] = codebook["entropy_bits"]
    figures["codebook_perplexity"] = codebook["perplexity"]
    zero_shot = retrieval = None
    if head is None:
        for k in FIGURES[7:]:
            reasons[k] = head_reason
    else:
        zero_shot = _zero_shot(args, spec, acc, figures, reasons)
        retrieval = _retrieval(args, acc, figures, reasons)
    _finite(figures, reasons)
    if args.grid:
        _write_grid(args.grid, acc)

    report = {
        "format": "arm-tokenizer-evaluate",
        "format_version": 1,
        "tokenizer": str(Path(args.tokenizer).resolve()),
        "data": args.data,
        "data_format": data.format,
        "n": acc.n,
        "skipped": skipped,
        "figures": figures,
        "reasons": reasons,
        "codebook": {"codebook_size": tok.codebook_size, "num_codebooks": tok.num_codebooks,
                     **{k: v for k, v in codebook.items() if k not in ("usage", "entropy_bits", "perplexity")}},
        "zero_shot": zero_shot,
        "retrieval": retrieval,
        "settings": {
            "image_size": list(tok.image_size), "grid": list(tok.grid), "crop": args.crop,
            "batch_size": args.batch_size, "device": str(device), "n_limit": args.n, "seed": args.seed,
            "decode_steps": args.decode_steps, "generative_decoder": bool(tok.decoder.generative),
            "labels": args.labels, "prompt": args.prompt, "lpips_net": args.lpips_net,
            "siglip_head": str(head.path) if head is not None else None,
            "text_encoder": head.text_encoder if head is not None else None,
            "text_encoder_overridden": args.text_encoder is not None,
            "text_encoder_matches_training": head.text_encoder_matches if head is not None else None,
            "grid_png": args.grid,
        },
        "seconds": round(time.perf_counter() - started, 3),
        "versions": package_versions(),
    }
    atomic_write_bytes(args.out, (json.dumps(report, indent=2) + "\n").encode())
    return report

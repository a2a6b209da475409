"""``arm-tokenizer encode`` / ``arm-tokenizer decode``: image folders <-> token files.

::

    arm-tokenizer encode --checkpoint DIR --images FOLDER --out tokens.safetensors
    arm-tokenizer decode --checkpoint DIR --tokens tokens.safetensors --out FOLDER

The token file is a safetensors file (no pickle) holding ``tokens``: int32 ``(B, N)`` (or
``(B, N, Q)`` for residual quantizers), with metadata ``files`` (JSON list of the source
paths relative to the folder, in row order), ``grid``, ``codebook_size``, ``image_size`` and
the ``checkpoint`` it was encoded with. ``decode`` writes one PNG per row, named after the
source file (``cat.jpg`` -> ``cat.png``; subfolders are kept), or ``000000.png``... when the
file has no names.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class CodecError(Exception):
    """Bad command-line input (printed as one line, exit status 2)."""


def _find_images(folder: Path, recursive: bool) -> list[Path]:
    if not folder.is_dir():
        raise CodecError(f"--images {folder}: not a directory")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CodecError(
            f"--images {folder}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)}"
            f"{'' if recursive else '; use --recursive for subfolders'})"
        )
    return files


def _load_tokenizer(path: str, device: str):
    # deferred: torch and the model load only when the command runs (`--help` stays fast)
    from arm_tokenizer.tokenizer import VisualTokenizer

    if not Path(path).is_dir():
        raise CodecError(f"--checkpoint {path}: not a directory (expected config.json + model.safetensors)")
    return VisualTokenizer.from_pretrained(path, map_location=device)


def _codec_parser(command: str, description: str | None, source: str, source_help: str,
                  out_help: str) -> argparse.ArgumentParser:
    """The arguments encode and decode share: the tokenizer, what to read, where to write, the
    batch size and the device (in this order in ``--help``)."""
    p = argparse.ArgumentParser(prog=f"arm-tokenizer {command}", description=description)
    p.add_argument("--checkpoint", required=True, help="tokenizer directory written by save_pretrained")
    p.add_argument(source, required=True, help=source_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    return p


def _run(command: str, body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a codec command: a :class:`CodecError` is one line on stderr and exit status 2."""
    try:
        return body(args)
    except CodecError as e:
        print(f"arm-tokenizer {command}: error: {e}", file=sys.stderr)
        return 2


def encode_command(argv: list[str]) -> int:
    """Encode a folder of images to a safetensors token file."""
    p = _codec_parser("encode", encode_command.__doc__, "--images", "folder of images", "output .safetensors file")
    p.add_argument("--recursive", action="store_true", help="also encode images in subfolders")
    return _run("encode", _encode, p.parse_args(argv))


def _encode(args: argparse.Namespace) -> int:
    # deferred: torch and the model load only when the command runs (`--help` stays fast)
    import torch
    from safetensors.torch import save

    from arm_tokenizer.framework.checkpoint import atomic_write_bytes
    from arm_tokenizer.images import ImageLoadError, load_image

    if args.batch_size < 1:
        raise CodecError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.out.endswith(".safetensors"):
        raise CodecError(f"--out {args.out}: the token file must end in .safetensors")
    folder = Path(args.images)
    files = _find_images(folder, args.recursive)
    tok = _load_tokenizer(args.checkpoint, args.device)
    chunks = []
    for i in range(0, len(files), args.batch_size):
        batch = files[i:i + args.batch_size]
        try:
            pil = [load_image(f) for f in batch]
        except ImageLoadError as e:
            raise CodecError(str(e)) from None
        chunks.append(tok.encode(pil).to("cpu", torch.int32))
    tokens = torch.cat(chunks)
    meta = {
        "files": json.dumps([f.relative_to(folder).as_posix() for f in files]),
        "grid": json.dumps(list(tok.grid)),
        "codebook_size": str(tok.codebook_size),
        "image_size": json.dumps(list(tok.image_size)),
        "checkpoint": os.fspath(Path(args.checkpoint).resolve()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, save({"tokens": tokens.contiguous()}, metadata=meta))
    print(f"encoded {len(files)} images -> {args.out} (tokens {tuple(tokens.shape)}, "
          f"{tok.tokens_per_image} per image, codebook {tok.codebook_size})")
    return 0


def decode_command(argv: list[str]) -> int:
    """Decode a safetensors token file to PNG images."""
    p = _codec_parser("decode", decode_command.__doc__, "--tokens", "token file written by `arm-tokenizer encode`",
                      "output folder for PNGs")
    p.add_argument("--steps", type=int, default=None, help="sampling steps for generative (DiT) decoders")
    p.add_argument("--seed", type=int, default=0, help="noise seed for generative decoders")
    return _run("decode", _decode, p.parse_args(argv))


def _decode(args: argparse.Namespace) -> int:
    # deferred: torch and the model load only when the command runs (`--help` stays fast)
    import torch
    from safetensors import SafetensorError, safe_open

    from arm_tokenizer.framework.checkpoint import atomic_write_bytes

    if not Path(args.tokens).is_file():
        raise CodecError(f"--tokens {args.tokens}: no such file")
    try:
        with safe_open(args.tokens, framework="pt") as f:
            if "tokens" not in f.keys():
                raise CodecError(f"--tokens {args.tokens}: no 'tokens' tensor (keys {list(f.keys())})")
            tokens = f.get_tensor("tokens")
            meta = f.metadata() or {}
    except SafetensorError as e:
        raise CodecError(f"--tokens {args.tokens}: not a safetensors file ({e})") from None
    tok = _load_tokenizer(args.checkpoint, args.device)
    grid = tuple(json.loads(meta["grid"])) if "grid" in meta else None
    if "codebook_size" in meta and int(meta["codebook_size"]) != tok.codebook_size:
        raise CodecError(
            f"--tokens were encoded with a codebook of {meta['codebook_size']} codes but --checkpoint has "
            f"{tok.codebook_size}: decode with the tokenizer that encoded them ({meta.get('checkpoint')})"
        )
    names = json.loads(meta["files"]) if "files" in meta else [f"{i:06d}" for i in range(len(tokens))]
    if len(names) != len(tokens):
        raise CodecError(f"--tokens metadata lists {len(names)} files for {len(tokens)} token rows")
    kwargs = {"steps": args.steps} if args.steps is not None else {}
    out = Path(args.out)
    torch.manual_seed(args.seed)
    try:
        for i in range(0, len(tokens), args.batch_size):
            images = tok.decode_to_pil(tokens[i:i + args.batch_size].long(), grid=grid, **kwargs)
            for name, img in zip(names[i:i + args.batch_size], images, strict=True):
                target = out / Path(name).with_suffix(".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                atomic_write_bytes(target, buf.getvalue())
    except (ValueError, TypeError) as e:
        raise CodecError(f"--tokens {args.tokens}: {e}") from None
    print(f"decoded {len(tokens)} images -> {out}")
    return 0

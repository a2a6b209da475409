"""``arm-data shapes ...``: export, inspect, render and evaluate ShapesWorld from a shell.

    arm-data shapes export --split train --task pair --format wds --count 100 --size 64 --out DIR
    arm-data shapes show --split heldout --index 3          # spec, caption, QA, edit as JSON
    arm-data shapes render --split heldout --index 3 --out x.png [--width 96 --height 64]
    arm-data shapes eval IMAGE --spec JSON_OR_FILE [--check count presence color]
    arm-data shapes eval-edit EDITED --source-spec S --target-spec T [--edit E] [--source-image SRC]
    arm-data shapes splits                                  # the held-out compositions
    arm-data shapes eval-tokenizer --tokenizer DIR [--teacher DIR] [--split heldout] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.edits import EditSpec
from arm_data.shapes.spec import SceneSpec
from arm_data.shapes.splits import HELDOUT_COUNTS, HELDOUT_PAIRS, SPLITS, TRAIN_COUNTS


def _json_arg(value: str, what: str) -> Any:
    """A JSON string or a path to a JSON file."""
    text = value
    if not value.lstrip().startswith("{") and os.path.exists(value):
        with open(value, encoding="utf-8") as f:
            text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {what} is neither valid JSON nor a JSON file: {e}") from None


def _size(args: argparse.Namespace) -> tuple[int, int]:
    w = args.width if args.width is not None else args.size
    h = args.height if args.height is not None else args.size
    return w, h


def _add_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=64, help="square image side (default 64)")
    p.add_argument("--width", type=int, help="image width (overrides --size)")
    p.add_argument("--height", type=int, help="image height (overrides --size)")


def _cmd_export(argv: list[str]) -> int:
    # deferred: export imports torch; `arm-data shapes --help` and the other subcommands stay fast
    from arm_data.shapes.export import FORMATS, export_split, export_tasks

    p = argparse.ArgumentParser(prog="arm-data shapes export", description="Export a split to disk.")
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--task", choices=export_tasks(), default="pair",
                   help="a record name, or a registered task reading one of ShapesWorld's schemas")
    p.add_argument("--format", choices=FORMATS, default="wds")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--num-questions", type=int, default=4)
    p.add_argument("--out", required=True)
    _add_size(p)
    a = p.parse_args(argv)
    w, h = _size(a)
    summary = export_split(a.out, split=a.split, task=a.task, fmt=a.format, count=a.count,
                           width=w, height=h, seed=a.seed, start=a.start,
                           samples_per_shard=a.samples_per_shard, num_questions=a.num_questions)
    print(json.dumps(summary))
    return 0


def _cmd_show(argv: list[str]) -> int:
    # deferred: the world imports numpy and PIL; `arm-data shapes --help` stays fast
    from arm_data.shapes.world import ShapesWorld

    p = argparse.ArgumentParser(prog="arm-data shapes show", description="Print one sample as JSON.")
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    s = ShapesWorld(split=a.split, seed=a.seed)[a.index]
    print(json.dumps(s.to_dict(), indent=1))
    return 0


def _cmd_render(argv: list[str]) -> int:
    # deferred: rendering imports numpy and PIL; `arm-data shapes --help` stays fast
    from arm_data.shapes.rendering import render
    from arm_data.shapes.world import ShapesWorld

    p = argparse.ArgumentParser(prog="arm-data shapes render",
                                description="Render a sample (or --spec) to an image file.")
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spec", help="scene spec JSON (or a file) instead of a sample")
    p.add_argument("--out", required=True, help="output image path (.png recommended)")
    _add_size(p)
    a = p.parse_args(argv)
    w, h = _size(a)
    spec = (SceneSpec.from_dict(_json_arg(a.spec, "--spec")) if a.spec
            else ShapesWorld(split=a.split, seed=a.seed).spec(a.index))
    render(spec, w, h).save(a.out)
    print(a.out)
    return 0


def _load(path: str):
    from PIL import Image  # deferred: `arm-data shapes --help` stays fast

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read image {path!r}: {e}") from None


def _cmd_eval(argv: list[str]) -> int:
    # deferred: the evaluator imports scipy; `arm-data shapes --help` stays fast
    from arm_data.shapes.evaluator import CLAUSE_KINDS, evaluate_t2i

    p = argparse.ArgumentParser(prog="arm-data shapes eval",
                                description="Score an image against a scene spec (JSON result).")
    p.add_argument("image")
    p.add_argument("--spec", required=True, help="scene spec JSON or a file holding it")
    p.add_argument("--check", nargs="+", choices=CLAUSE_KINDS + ("shape",), default=None,
                   help="clause kinds to check (default all)")
    p.add_argument("--verbose", action="store_true", help="also print detections")
    a = p.parse_args(argv)
    spec = SceneSpec.from_dict(_json_arg(a.spec, "--spec"))
    res = evaluate_t2i(_load(a.image), spec, check=a.check).to_dict()
    if not a.verbose:
        res.pop("detected")
    print(json.dumps(res, indent=1))
    return 0


def _cmd_eval_edit(argv: list[str]) -> int:
    # deferred: the evaluator imports scipy; `arm-data shapes --help` stays fast
    from arm_data.shapes.evaluator import evaluate_edit

    p = argparse.ArgumentParser(prog="arm-data shapes eval-edit",
                                description="Score an edited image: adherence and consistency.")
    p.add_argument("edited")
    p.add_argument("--source-spec", required=True)
    p.add_argument("--target-spec", required=True)
    p.add_argument("--edit", help="EditSpec JSON (recommended)")
    p.add_argument("--source-image", help="the source image, for background consistency")
    a = p.parse_args(argv)
    res = evaluate_edit(
        _load(a.edited), SceneSpec.from_dict(_json_arg(a.source_spec, "--source-spec")),
        SceneSpec.from_dict(_json_arg(a.target_spec, "--target-spec")),
        edit=EditSpec.from_dict(_json_arg(a.edit, "--edit")) if a.edit else None,
        source_image=_load(a.source_image) if a.source_image else None).to_dict()
    res.pop("detected")
    print(json.dumps(res, indent=1))
    return 0


def _cmd_splits(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="arm-data shapes splits",
                            description="Print the splits and held-out compositions.").parse_args(argv)
    print(json.dumps({"splits": list(SPLITS), "train_counts": list(TRAIN_COUNTS),
                      "heldout_counts": list(HELDOUT_COUNTS),
                      "heldout_pairs": [list(p) for p in HELDOUT_PAIRS]}, indent=1))
    return 0


def _cmd_eval_tokenizer(argv: list[str]) -> int:
    # deferred: torch loads only when this subcommand runs (`arm-data shapes --help` stays fast)
    import torch

    from arm_data.shapes.tokenizer_eval import evaluate_tokenizer

    p = argparse.ArgumentParser(
        prog="arm-data shapes eval-tokenizer",
        description="Reconstruction PSNR/SSIM, evaluator parse-back, codebook usage, linear probes "
                    "(per scene and per object, by object count) and caption retrieval of an exported "
                    "visual tokenizer on ShapesWorld.")
    p.add_argument("--tokenizer", required=True, help="a VisualTokenizer.save_pretrained directory")
    p.add_argument("--teacher", help="teacher directory whose frozen text tower scores retrieval")
    p.add_argument("--split", choices=SPLITS, default="heldout")
    p.add_argument("--n", type=int, default=256, help="scenes measured (default 256)")
    p.add_argument("--probe-train", type=int, default=400, help="single-object scenes to fit the probe")
    p.add_argument("--probe-test", type=int, default=200, help="single-object scenes to test the probe")
    p.add_argument("--probe-split", choices=SPLITS, default="val", help="split the probes are tested on")
    p.add_argument("--object-probe-train", type=int, default=600,
                   help="scenes (any object count) to fit the per-object probe on; 0 skips it")
    p.add_argument("--object-probe-test", type=int, default=300,
                   help="scenes to test the per-object probe on")
    p.add_argument("--decode-steps", type=int, help="sampler steps for a DiT decoder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", default="full",
                   help="the ShapesWorld the scenes come from: full (default) or demo (see arm_data.shapes.difficulty)")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args(argv)
    difficulty = get_difficulty(a.difficulty)  # before loading anything: a bad name is one line
    if not os.path.isdir(a.tokenizer):
        raise SystemExit(f"error: --tokenizer {a.tokenizer!r} is not a directory "
                         "(expected a VisualTokenizer.save_pretrained export)")
    # deferred: the tokenizer loads only when this subcommand runs, after the arguments check
    from arm_tokenizer.tokenizer import VisualTokenizer

    tokenizer = VisualTokenizer.from_pretrained(a.tokenizer)
    text_encoder = None
    if a.teacher:
        # deferred: the teacher imports timm (seconds), only with --teacher
        from arm_tokenizer.teachers.frozen import TeacherTextEncoder

        text_encoder = TeacherTextEncoder(checkpoint=a.teacher)
    torch.manual_seed(a.seed)
    res = evaluate_tokenizer(tokenizer, split=a.split, n=a.n, text_encoder=text_encoder,
                             probe_train=a.probe_train, probe_test=a.probe_test, probe_split=a.probe_split, seed=a.seed,
                             object_probe_train=a.object_probe_train, object_probe_test=a.object_probe_test,
                             decode_steps=a.decode_steps, difficulty=difficulty)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        # deferred: checkpoint imports torch; the module stays light for `arm-data shapes --help`
        from arm_tokenizer.framework.checkpoint import atomic_write_bytes

        atomic_write_bytes(a.out, (text + "\n").encode())
    return 0


SUBCOMMANDS = {
    "export": _cmd_export, "show": _cmd_show, "render": _cmd_render, "eval": _cmd_eval,
    "eval-edit": _cmd_eval_edit, "splits": _cmd_splits, "eval-tokenizer": _cmd_eval_tokenizer,
}


def shapes_command(argv: list[str]) -> int:
    """ShapesWorld: export splits, show/render samples, evaluate images against specs."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nsubcommands: " + ", ".join(SUBCOMMANDS))
        return 0
    cmd = SUBCOMMANDS.get(argv[0])
    if cmd is None:
        print(f"error: unknown shapes subcommand {argv[0]!r}; choose one of {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    try:
        return cmd(argv[1:])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

"""``arm-lm suite``: generate benchmark suites in their own layouts, write the ``shapes``
suite's prompts, and score generated suites.

    arm-lm suite prompts  --suite shapes --out shapes.jsonl [--per-tag 8 --split val --difficulty demo]
    arm-lm suite generate --suite geneval --prompts evaluation_metadata.jsonl --lm DIR --out DIR
    arm-lm suite score    --scorer shapes --suite shapes --out DIR

Bad input (a prompt file of another suite, a line missing ``prompt``, an output directory of
another model) is one message naming the file, line and field, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os

from arm_core.pipelines import add_sampling_flags
from arm_core.suites.generate import SUITES, GenerationSettings, generate_suite
from arm_core.suites.geneval import TAGS
from arm_core.suites.score import score_suite
from arm_core.suites.shapes import make_prompts, write_prompts


def _prompts(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="arm-lm suite prompts",
                                description="Write the shapes suite's prompts (GenEval's format).")
    p.add_argument("--suite", default="shapes", choices=["shapes"])
    p.add_argument("--out", required=True, help="the evaluation_metadata.jsonl to write")
    p.add_argument("--per-tag", type=int, default=8, help="prompts per GenEval tag")
    p.add_argument("--split", default="val", help="ShapesWorld split (val: seen pairs; heldout)")
    p.add_argument("--difficulty", default="demo", help="ShapesWorld difficulty preset (demo, full)")
    p.add_argument("--tags", nargs="+", default=list(TAGS), choices=list(TAGS))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    lines = make_prompts(a.per_tag, a.split, a.difficulty, a.seed, tuple(a.tags))
    print(write_prompts(a.out, lines), f"({len(lines)} prompts)")
    return 0


def _generate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="arm-lm suite generate",
                                description="Generate a benchmark suite in its official layout.")
    p.add_argument("--suite", required=True, choices=list(SUITES))
    p.add_argument("--prompts", required=True, help="the benchmark's own prompt file / folder")
    p.add_argument("--lm", required=True, help="exported LM directory")
    p.add_argument("--tokenizer", default=None, help="visual tokenizer dir (default: the LM's)")
    p.add_argument("--out", required=True, help="output directory (resumed when it matches)")
    p.add_argument("--samples", type=int, default=None, help="samples per prompt (GenEval: 4)")
    p.add_argument("--batch-size", type=int, default=16, help="images per engine call")
    add_sampling_flags(p)
    p.add_argument("--grid", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="token grid of generated images, via shape tokens (default: the tokenizer's)")
    p.add_argument("--method", default="arm", help="GEdit-Bench results/<method>/ folder name")
    p.add_argument("--images", default=None, help="ImgEdit image folder (default: the JSON's folder)")
    p.add_argument("--devices", default="1", help="Lightning devices (N shards the prompts)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    settings = GenerationSettings(guidance_scale=a.guidance_scale, image_guidance_scale=a.image_guidance_scale,
                                  temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                                  seed=a.seed, batch_size=a.batch_size,
                                  grid=tuple(a.grid) if a.grid else None)
    devices = int(a.devices) if a.devices.isdigit() else a.devices
    m = generate_suite(a.suite, a.prompts, a.out, lm=a.lm, tokenizer=a.tokenizer, settings=settings,
                       samples=a.samples, method=a.method, images=a.images, devices=devices,
                       accelerator=a.accelerator, limit=a.limit, progress=a.progress)
    if os.environ.get("LOCAL_RANK", "0") == "0":  # under DDP every rank returns; one reports
        print(json.dumps({"out": a.out, **m["counts"], "images_per_s": m["images_per_s"]}))
    return 0


def _score(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="arm-lm suite score",
                                description="Score a generated suite; writes JSON + markdown.")
    p.add_argument("--scorer", required=True, help="registered scorer (arm-tokenizer list scorer)")
    p.add_argument("--suite", required=True, choices=list(SUITES))
    p.add_argument("--out", required=True, help="the directory `suite generate` wrote")
    p.add_argument("--prompts", default=None, help="prompt file (default: the manifest's)")
    p.add_argument("--results", default=None, help="where scores-<scorer>.json/.md go (default: --out)")
    p.add_argument("--method", default="arm")
    p.add_argument("--images", default=None)
    p.add_argument("--scorer-args", default="{}", help="JSON object of scorer constructor arguments")
    a = p.parse_args(argv)
    try:
        args = json.loads(a.scorer_args)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--scorer-args is not a JSON object: {exc}") from None
    if not isinstance(args, dict):
        raise ValueError(f"--scorer-args must be a JSON object, got {a.scorer_args!r}")
    table, path = score_suite(a.scorer, a.suite, a.out, prompts=a.prompts, results=a.results,
                              method=a.method, images=a.images, scorer_args=args)
    print(table.to_markdown(), end="")
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


COMMANDS = {"prompts": _prompts, "generate": _generate, "score": _score}


def cli_suite(argv: list[str]) -> int:
    """Benchmark suites: `prompts` (shapes), `generate`, `score`."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] not in COMMANDS:
        raise ValueError(f"unknown suite command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
    return COMMANDS[argv[0]](argv[1:])

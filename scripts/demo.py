#!/usr/bin/env python
"""The whole ARM pipeline on ShapesWorld from one command (``make demo``).

Stages, each through the real console scripts and the YAML configs in ``configs/``:

1. ``teacher``    arm-tokenizer fit  configs/tokenizer/shapes-teacher.yaml   (SigLIP-style dual encoder + caption LM)
2. ``tokenizer``  arm-tokenizer fit  configs/tokenizer/shapes-quickstart.yaml (semantic tokenizer, all four losses)
   ``eval_tokenizer`` arm-data shapes eval-tokenizer                         (PSNR, parse-back, usage, probes, retrieval)
3. ``tokens``     arm-data pretokenize                                        (T2I, VQA and edit samples -> shards)
4. ``lm``         arm-lm fit         configs/lm/shapes-quickstart.yaml
5. ``eval_sft``   arm-lm evaluate                                             (held-out T2I, VQA, editing)
6. ``rl``         arm-rl fit         configs/rl/shapes-multitask-grpo.yaml
7. ``eval_rl``    arm-lm evaluate on the RL policy
   ``suite_shapes`` arm-lm suite prompts / generate / score                 (the shapes suite: GenEval's table, SFT and RL)
8. ``report``     runs/demo/report.html + runs/demo/metrics.json

The configs are used as they are, except that (a) their output paths ``runs/<x>`` and
``data/shapes-tokens`` are moved under the demo's output directory, (b) the profile sets
the step counts and data sizes, and (c) every training stage gets a ``last.ckpt``
checkpoint and CSV + TensorBoard logs. The derived configs are written to
``<out>/configs/`` so every stage can be re-run by hand.

Re-running skips stages whose outputs are complete (``<out>/stages/<stage>.json``); an
interrupted training stage resumes from its ``last.ckpt``. ``--fast`` is the tiny
profile the test suite runs end to end; ``--profile gpu`` (``make reproduce-gpu``) trains on
one CUDA GPU. ``--set STAGE:KEY=VALUE`` overrides any config key of one training stage
(``--set lm:trainer.max_steps=100``), after the profile's own settings, and
``--config STAGE=PATH`` trains a stage from another config than the shipped one
(``--config tokenizer=configs/tokenizer/shapes-local.yaml``); its export still lands where
the later stages look for it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The demo world and its configs: ShapesWorld's `demo` difficulty (4 shapes x 4 colors, 1-2
# objects, plain backgrounds) and 4x4 = 16 tokens per image, so that every stage learns in
# minutes on a CPU (configs/*/demo-*.yaml say what differs from the full-world configs).
DEMO_CONFIGS = {
    "teacher": "configs/tokenizer/demo-teacher.yaml",
    "tokenizer": "configs/tokenizer/demo-tokenizer.yaml",
    "lm": "configs/lm/demo.yaml",
    "rl": "configs/rl/demo-grpo.yaml",
}

# Step counts and sizes per profile. "small" is `make demo` on a CPU (<= 20 min on 2 cores,
# setup included) on the demo world; "gpu" is `make demo` on a CUDA machine and `make
# reproduce-gpu` (the full world); "full" is `make reproduce` (the full world on a CPU, hours);
# "fast" is the end-to-end test (the demo world, a few steps).
PROFILES: dict[str, dict] = {
    "fast": dict(teacher_steps=3, tokenizer_steps=4, batch=8, pretok_count=48, shard_size=16,
                 lm_steps=6, lm_batch=2, rl_steps=1, rl_group=2, rl_prompts=2,
                 eval_n=4, eval_cfg=[1.0, 3.0], val_batches=1,
                 difficulty="demo", configs=DEMO_CONFIGS),
    # small: measured alone on a 2-core CPU (benchmarks/results/README.md, 2026-12-06): teacher
    # 79 s, tokenizer 171 s, LM 1,400 steps 585 s (1,000 here), evaluations ~30 s each.
    "small": dict(teacher_steps=600, tokenizer_steps=1200, batch=32, pretok_count=8000, shard_size=2000,
                  lm_steps=1000, lm_batch=8, rl_steps=10, rl_group=8, rl_prompts=4,
                  eval_n=200, eval_cfg=[1.0, 3.0], val_batches=2,
                  difficulty="demo", configs=DEMO_CONFIGS),
    # "full": measured 1 h 51 min with 800 ViT-teacher steps (README); the ConvNet teacher gets 1,500.
    "full": dict(teacher_steps=1500, tokenizer_steps=2500, batch=32, pretok_count=10000, shard_size=1000,
                 lm_steps=1500, lm_batch=4, rl_steps=30, rl_group=8, rl_prompts=2,
                 eval_n=150, eval_cfg=[1.0, 1.5, 3.0], val_batches=4),
    # "gpu": the same pipeline with the compute of one CUDA GPU (training stages and
    # pre-tokenizing on the GPU, ShapesWorld rendered by DataLoader workers): 2.3x "full"'s
    # teacher and tokenizer samples, 30,000 scenes, 21x its LM sequences; the teacher with its
    # dense pixel term; the LM at batch 32 in bf16 with torch.compile, per-task loss means and
    # code-geometry init. About 8 min of stages on an H200 (benchmarks/results/gpu_pipeline.md;
    # that run's tokenizer had a 6,000-step cosine horizon, stopped at 2,840 by max_time).
    "gpu": dict(teacher_steps=1750, tokenizer_steps=3000, batch=64, pretok_count=30000, shard_size=2000,
                lm_steps=4000, lm_batch=32, rl_steps=30, rl_group=8, rl_prompts=2,
                eval_n=150, eval_cfg=[1.0, 1.5, 3.0], val_batches=4, accelerator="gpu",
                # editing's image scale trades adherence for consistency (gpu_local.md): ARM's
                # 1.25 and the stronger 3 that the consistency bar needed there
                eval_edit_image_scale=[1.25, 3.0],
                overrides={
                    "teacher": {"model.init_args.pixel_weight": 5.0},
                    "lm": {"trainer.precision": "bf16-mixed", "model.init_args.compile": True,
                           "model.init_args.warmup_steps": 200,
                           "model.init_args.task_loss_weights": {"t2i": 1.0, "und": 1.0, "edit": 1.0},
                           "model.init_args.code_init_share": 0.5},
                }),
}


@dataclass
class Ctx:
    out: Path
    profile: dict
    name: str
    threads: int
    seed: int = 0                                          # --seed: every training stage's seed_everything
    sets: dict[str, dict] = field(default_factory=dict)   # --set STAGE:KEY=VALUE, by stage
    configs: dict[str, str] = field(default_factory=dict)  # --config STAGE=PATH

    def config(self, stage: str) -> str:
        """The config a training stage trains from: ``--config``'s, else the profile's, else
        the shipped full-world one."""
        return self.configs.get(stage, self.profile.get("configs", DEFAULT_CONFIGS)[stage])

    @property
    def difficulty(self) -> str:
        """The ShapesWorld difficulty every stage trains and evaluates on."""
        return self.profile.get("difficulty", "full")

    def p(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    @property
    def gpu(self) -> bool:
        return self.profile.get("accelerator") == "gpu"

    def workers(self) -> int:
        """DataLoader workers that render ShapesWorld while the GPU trains (none on the CPU)."""
        return max(0, min(12, (os.cpu_count() or 2) - 2)) if self.gpu else 0

    def stage_overrides(self, stage: str) -> dict:
        """What the profile, then ``--set``, change in a training stage's config."""
        out: dict = {}
        if self.seed:
            # model initialisation, data order and sampling; the scenes (and so the evaluation's
            # held-out scenes) stay the same
            out["seed_everything"] = self.seed
        if stage in ("teacher", "tokenizer", "rl") and self.difficulty != "full":
            # the profile's world, whatever config the stage trains from (--config included)
            out["data.init_args.difficulty"] = self.difficulty
        if self.gpu:
            out["trainer.accelerator"] = "gpu"
            if stage in ("teacher", "tokenizer", "lm"):
                out["data.init_args.num_workers"] = self.workers() if stage != "lm" else min(4, self.workers())
        out.update(self.profile.get("overrides", {}).get(stage, {}))
        out.update(self.sets.get(stage, {}))
        return out


# The shipped config of each training stage, and the key that names where it exports: the
# demo points that key at the stage's own output, so a swapped config feeds the later stages.
DEFAULT_CONFIGS = {
    "teacher": "configs/tokenizer/shapes-teacher.yaml",
    "tokenizer": "configs/tokenizer/shapes-quickstart.yaml",
    "lm": "configs/lm/shapes-quickstart.yaml",
    "rl": "configs/rl/shapes-multitask-grpo.yaml",
}
EXPORT_KEYS = {"teacher": "model.init_args.output_dir", "tokenizer": "model.init_args.export_dir",
               "lm": "model.init_args.export_dir", "rl": "model.init_args.export_dir"}


def parse_configs(items: list[str]) -> dict[str, str]:
    """``["tokenizer=configs/x.yaml"]`` -> ``{"tokenizer": "configs/x.yaml"}``, checked to exist."""
    out: dict[str, str] = {}
    for item in items:
        stage, eq, path = item.partition("=")
        if not eq or not path:
            raise SystemExit(f"--config {item!r}: expected STAGE=PATH, "
                             f"e.g. tokenizer=configs/tokenizer/shapes-local.yaml")
        if stage not in DEFAULT_CONFIGS:
            raise SystemExit(f"--config {item!r}: unknown training stage {stage!r} "
                             f"(one of {', '.join(DEFAULT_CONFIGS)})")
        if not (ROOT / path).is_file():
            raise SystemExit(f"--config {item!r}: no such file {ROOT / path}")
        out[stage] = path
    return out


def parse_sets(items: list[str], stages: list[str]) -> dict[str, dict]:
    """``["lm:trainer.max_steps=100", ...]`` -> ``{"lm": {"trainer.max_steps": 100}}`` (YAML values)."""
    out: dict[str, dict] = {}
    for item in items:
        stage, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not key:
            raise SystemExit(f"--set {item!r}: expected STAGE:KEY=VALUE, e.g. lm:trainer.max_steps=100")
        if stage not in stages:
            raise SystemExit(f"--set {item!r}: unknown training stage {stage!r} (one of {', '.join(stages)})")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise SystemExit(f"--set {item!r}: the value is not YAML: {e}") from None
        out.setdefault(stage, {})[key] = parsed
    return out


# -- helpers ----------------------------------------------------------------------------------
def atomic_write(path: Path, text: str) -> None:
    # local: the library's one atomic writer imports torch, which this driver otherwise never
    # loads (every stage runs in its own process)
    from arm_tokenizer.framework.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def run(cmd: list[str], log: Path, threads: int) -> None:
    """Run a console script, streaming its output to the terminal and to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    print(f"   $ {' '.join(cmd)}", flush=True)
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())

        def tee(chunk: bytes) -> None:
            fh.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

        if sys.stdout.isatty():
            # A pseudo-terminal, so the stage's progress bars render as in a plain run.
            import pty

            master, slave = pty.openpty()
            proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, env=env, cwd=ROOT)
            os.close(slave)
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                tee(chunk)
            os.close(master)
            rc = proc.wait()
        else:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
                tee(chunk)
            rc = proc.wait()
    if rc != 0:
        raise SystemExit(f"stage command failed (exit {rc}); see {log}")


def rewrite_paths(node, out: Path):
    """Move the configs' output paths under the demo's output directory."""
    if isinstance(node, dict):
        return {k: rewrite_paths(v, out) for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_paths(v, out) for v in node]
    if isinstance(node, str):
        if node.startswith("data/shapes-tokens"):
            return str(out / "tokens") + node[len("data/shapes-tokens"):]
        if node.startswith("runs/"):
            return str(out / node[len("runs/"):])
    return node


def set_key(cfg: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def derived_config(ctx: Ctx, source: str, stage: str, overrides: dict, ckpt_every: int) -> Path:
    """Write ``<out>/configs/<stage>.yaml``: the shipped config with demo paths/profile."""
    cfg = rewrite_paths(yaml.safe_load((ROOT / source).read_text()), ctx.out)
    set_key(cfg, EXPORT_KEYS[stage], str(ctx.p(stage)))
    logs = ctx.p(f"{stage}-logs")
    trainer = cfg.setdefault("trainer", {})
    trainer["default_root_dir"] = str(logs)
    trainer["enable_checkpointing"] = True
    trainer["logger"] = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(logs), "name": "csv"}},
        {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": str(logs), "name": "tb"}},
    ]
    callbacks = [c for c in trainer.get("callbacks") or []
                 if "ModelCheckpoint" not in str(c.get("class_path", ""))]
    callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"dirpath": str(ctx.p(f"{stage}-ckpt")), "save_last": True,
                                    "every_n_train_steps": ckpt_every, "save_top_k": 0}})
    trainer["callbacks"] = callbacks
    for key, value in overrides.items():
        set_key(cfg, key, value)
    path = ctx.p("configs", f"{stage}.yaml")
    atomic_write(path, yaml.safe_dump(cfg, sort_keys=False))
    return path


def fit(ctx: Ctx, script: str, source: str, stage: str, overrides: dict, steps: int) -> None:
    # ~50 logged points per curve whatever the profile's length
    overrides = {"trainer.log_every_n_steps": max(1, min(25, steps // 50)), **overrides,
                 **ctx.stage_overrides(stage)}
    last = ctx.p(f"{stage}-ckpt", "last.ckpt")
    trained_from = ctx.p(f"{stage}-ckpt", "source")   # the config behind last.ckpt
    if last.exists() and trained_from.exists() and trained_from.read_text() != source:
        raise SystemExit(f"{stage}: {last} was trained from {trained_from.read_text()}, not {source}; "
                         f"use another --out, or --force {stage} to start it again")
    atomic_write(trained_from, source)
    config = derived_config(ctx, source, stage, overrides, ckpt_every=max(1, min(200, steps // 4)))
    cmd = [str(BIN / script), "fit", "--config", str(config)]
    if last.exists():
        print(f"   resuming from {last}")
        cmd += ["--ckpt_path", str(last)]
    run(cmd, ctx.p("logs", f"{stage}.log"), ctx.threads)


def metrics_csv(ctx: Ctx, stage: str) -> list[dict]:
    rows: list[dict] = []
    for f in sorted(ctx.p(f"{stage}-logs", "csv").glob("version_*/metrics.csv")):
        import csv

        with open(f) as fh:
            rows += list(csv.DictReader(fh))
    return rows


def steps_trained(ctx: Ctx, stage: str) -> int | None:
    """Optimizer steps the stage's logs reach (fewer than configured when trainer.max_time stopped it)."""
    steps = [int(r["step"]) for r in metrics_csv(ctx, stage) if r.get("step") not in (None, "")]
    return max(steps) + 1 if steps else None


def last_metric(ctx: Ctx, stage: str, *names: str) -> float | None:
    for row in reversed(metrics_csv(ctx, stage)):
        for n in names:
            if row.get(n) not in (None, ""):
                return float(row[n])
    return None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# -- stages -------------------------------------------------------------------------------------
def stage_teacher(ctx: Ctx) -> str:
    pr = ctx.profile
    fit(ctx, "arm-tokenizer", ctx.config("teacher"), "teacher", {
        "trainer.max_steps": pr["teacher_steps"], "trainer.limit_val_batches": pr["val_batches"],
        # one epoch = the whole run, validated at its end
        "trainer.val_check_interval": pr["teacher_steps"],
        "data.init_args.train_length": pr["teacher_steps"] * pr["batch"],
        "data.init_args.batch_size": pr["batch"],
    }, pr["teacher_steps"])
    loss = last_metric(ctx, "teacher", "train/loss", "train/loss_step")
    return f"teacher trained ({steps_trained(ctx, 'teacher')} steps, final loss {loss if loss is None else round(loss, 3)})"


def stage_tokenizer(ctx: Ctx) -> str:
    pr = ctx.profile
    fit(ctx, "arm-tokenizer", ctx.config("tokenizer"), "tokenizer", {
        "trainer.max_steps": pr["tokenizer_steps"], "trainer.limit_val_batches": pr["val_batches"],
        "trainer.val_check_interval": pr["tokenizer_steps"], "data.init_args.batch_size": pr["batch"],
        "data.init_args.train_length": pr["tokenizer_steps"] * pr["batch"],
    }, pr["tokenizer_steps"])
    psnr = last_metric(ctx, "tokenizer", "val/psnr")
    usage = last_metric(ctx, "tokenizer", "val/codebook_usage", "train/codebook_usage")
    return (f"tokenizer exported to {ctx.p('tokenizer')} ({steps_trained(ctx, 'tokenizer')} steps, "
            f"val PSNR {psnr}, codebook usage {usage})")


def stage_eval_tokenizer(ctx: Ctx) -> str:
    pr = ctx.profile
    out = ctx.p("eval", "tokenizer.json")
    n = max(16, pr["eval_n"] * 2)
    run([str(BIN / "arm-data"), "shapes", "eval-tokenizer", "--tokenizer", str(ctx.p("tokenizer")),
         "--teacher", str(ctx.p("teacher")), "--split", "heldout", "--n", str(n),
         "--difficulty", ctx.difficulty,
         "--probe-train", str(min(800, max(40, 4 * n))), "--probe-test", str(min(400, max(20, 2 * n))),
         "--object-probe-train", str(min(600, max(40, 3 * n))),
         "--object-probe-test", str(min(300, max(20, 2 * n))),
         "--out", str(out)],
        ctx.p("logs", "eval_tokenizer.log"), ctx.threads)
    m = json.loads(out.read_text())
    shape = {g: "n/a" if v is None else f"{v:.1%}" for g, v in m["object_probe"]["shape"].items()}
    return (f"held-out: PSNR {m['psnr']:.1f} dB, parse-back {m['parse_back_strict']:.1%}, "
            f"usage {m['codebook_usage']:.1%}, probe color {m['probe_color']:.1%} / shape "
            f"{m['probe_shape']:.1%}, object shape alone / among 3+ {shape['single']} / "
            f"{shape['three_plus']}, retrieval R@1 {m['retrieval_r1_ridge']:.1%}")


def stage_tokens(ctx: Ctx) -> str:
    pr = ctx.profile
    cmd = [str(BIN / "arm-data"), "pretokenize", "--tokenizer", str(ctx.p("tokenizer")),
           "--source", "shapes:train", "--difficulty", ctx.difficulty,
           "--out", str(ctx.p("tokens")), "--count", str(pr["pretok_count"]),
           "--shard-size", str(pr["shard_size"])]
    if ctx.gpu:
        cmd += ["--device", "cuda", "--workers", str(ctx.workers())]
    run(cmd, ctx.p("logs", "tokens.log"), ctx.threads)
    # The text tokenizer is trained on the shards' own texts (captions, questions, answers,
    # instructions), so every text the LM sees is covered.
    run([str(BIN / "arm-data"), "train-text-tokenizer", "--shards", str(ctx.p("tokens"))],
        ctx.p("logs", "tokens.log"), ctx.threads)
    manifest = json.loads(ctx.p("tokens", "manifest.json").read_text())
    return f"pre-tokenized {pr['pretok_count']} scenes into {len(manifest.get('shards', []))} shards"


def stage_lm(ctx: Ctx) -> str:
    pr = ctx.profile
    fit(ctx, "arm-lm", ctx.config("lm"), "lm", {
        "trainer.max_steps": pr["lm_steps"], "trainer.limit_val_batches": pr["val_batches"],
        "trainer.val_check_interval": None, "data.init_args.batch_size": pr["lm_batch"],
    }, pr["lm_steps"])
    loss = last_metric(ctx, "lm", "train/loss", "train/loss_step")
    return f"LM exported to {ctx.p('lm')} ({steps_trained(ctx, 'lm')} steps, final train loss {loss})"


def evaluate_command(ctx: Ctx, lm_dir: Path, out: Path) -> list[str]:
    """The ``arm-lm evaluate`` command line of the profile's evaluation of ``lm_dir``."""
    pr = ctx.profile
    cmd = [str(BIN / "arm-lm"), "evaluate", "--lm", str(lm_dir), "--tokenizer", str(ctx.p("tokenizer")),
           "--split", "heldout", "--n", str(pr["eval_n"]), "--guidance-scale", *map(str, pr["eval_cfg"]),
           "--difficulty", ctx.difficulty, "--seed", str(ctx.seed),
           "--out", str(out)]
    if pr.get("eval_edit_image_scale"):
        cmd += ["--image-guidance-scale", *map(str, pr["eval_edit_image_scale"])]
    if ctx.gpu and cuda_available():   # the gpu profile's LM may be evaluated on a CPU machine
        cmd += ["--device", "cuda"]
    return cmd


def evaluate(ctx: Ctx, lm_dir: Path, out: Path, log: str) -> dict:
    run(evaluate_command(ctx, lm_dir, out), ctx.p("logs", log), ctx.threads)
    return json.loads(out.read_text())


def stage_eval_sft(ctx: Ctx) -> str:
    m = evaluate(ctx, ctx.p("lm"), ctx.p("eval", "sft.json"), "eval_sft.log")
    return "SFT evaluated: " + headline(m)


def stage_rl(ctx: Ctx) -> str:
    pr = ctx.profile
    fit(ctx, "arm-rl", ctx.config("rl"), "rl", {
        "trainer.max_steps": pr["rl_steps"], "model.init_args.group_size": pr["rl_group"],
        "data.init_args.prompts_per_step": pr["rl_prompts"],
    }, pr["rl_steps"])
    reward = last_metric(ctx, "rl", "train/reward_mean", "train/reward/mean")
    return f"RL policy exported to {ctx.p('rl')} ({steps_trained(ctx, 'rl')} steps, last reward mean {reward})"


def stage_eval_rl(ctx: Ctx) -> str:
    m = evaluate(ctx, ctx.p("rl"), ctx.p("eval", "rl.json"), "eval_rl.log")
    return "RL evaluated: " + headline(m)


def stage_suite_shapes(ctx: Ctx) -> str:
    """The ``shapes`` benchmark suite (GenEval's format and table, ShapesWorld rules) on the
    SFT and RL models: ``arm-lm suite prompts`` -> ``suite generate`` -> ``suite score``."""
    pr = ctx.profile
    arm_lm = str(BIN / "arm-lm")
    prompts = ctx.p("suite", "shapes.jsonl")
    run([arm_lm, "suite", "prompts", "--suite", "shapes", "--out", str(prompts),
         "--per-tag", str(pr.get("suite_per_tag", 2 if ctx.name == "fast" else 8)), "--split", "val",
         "--difficulty", ctx.difficulty, "--seed", str(ctx.seed)], ctx.p("logs", "suite_shapes.log"), ctx.threads)
    tables = {}
    for tag, model in (("sft", "lm"), ("rl", "rl")):
        out = ctx.p("suite", f"shapes-{tag}")
        cmd = [arm_lm, "suite", "generate", "--suite", "shapes", "--prompts", str(prompts),
               "--lm", str(ctx.p(model)), "--tokenizer", str(ctx.p("tokenizer")), "--out", str(out),
               "--batch-size", "16", "--seed", str(ctx.seed),
               "--samples", str(pr.get("suite_samples", 1 if ctx.name == "fast" else 4))]
        if not (ctx.gpu and cuda_available()):
            cmd += ["--accelerator", "cpu"]
        run(cmd, ctx.p("logs", f"suite_shapes_{tag}.log"), ctx.threads)
        run([arm_lm, "suite", "score", "--scorer", "shapes", "--suite", "shapes", "--out", str(out)],
            ctx.p("logs", f"suite_shapes_{tag}.log"), ctx.threads)
        tables[tag] = json.loads((out / "scores-shapes.json").read_text())["table"]
        tables[tag]["images_per_s"] = json.loads((out / "arm_suite_manifest.json").read_text())["images_per_s"]
    atomic_write(ctx.p("eval", "suite_shapes.json"), json.dumps(tables, indent=2))
    return "shapes suite (GenEval-style overall): " + ", ".join(
        f"{'SFT' if t == 'sft' else 'RL'} {tables[t]['overall']:.3f}" for t in tables)


def stage_report(ctx: Ctx) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from demo_report import write_report

    path = write_report(ctx.out, ROOT, profile=ctx.name)
    return f"report written to {path}"


def headline(metrics: dict) -> str:
    """One line from arm-lm evaluate's summary (held-out split, best guidance scale)."""
    s = metrics.get("summary", {})
    parts = []
    if "t2i" in s:
        parts.append(f"T2I overall {s['t2i']['best']:.3f} (CFG {s['t2i']['best_scale']}; "
                     f"{s['t2i']['cfg1'] if s['t2i']['cfg1'] is None else round(s['t2i']['cfg1'], 3)} at CFG 1)")
    if "vqa" in s:
        parts.append("VQA " + ", ".join(f"{k} {v:.3f}" for k, v in s["vqa"].items() if v is not None))
    if "edit" in s:
        b = s["edit"]["best"]
        parts.append(f"edit adherence {b['adherence']:.3f} / consistency {b['consistency']:.3f}")
    return "; ".join(parts)


STAGES: list[tuple[str, Callable[[Ctx], str], list[str]]] = [
    ("teacher", stage_teacher, ["teacher/image_tower.safetensors", "teacher/teacher.json"]),
    ("tokenizer", stage_tokenizer, ["tokenizer/model.safetensors", "tokenizer/config.json"]),
    ("eval_tokenizer", stage_eval_tokenizer, ["eval/tokenizer.json"]),
    ("tokens", stage_tokens, ["tokens/manifest.json", "tokens/text_tokenizer.model"]),
    ("lm", stage_lm, ["lm/model.safetensors", "lm/config.json"]),
    ("eval_sft", stage_eval_sft, ["eval/sft.json"]),
    ("rl", stage_rl, ["rl/model.safetensors", "rl/config.json"]),
    ("eval_rl", stage_eval_rl, ["eval/rl.json"]),
    ("suite_shapes", stage_suite_shapes, ["eval/suite_shapes.json"]),
    ("report", stage_report, ["report.html", "metrics.json"]),
]


TRAINING_STAGES = list(DEFAULT_CONFIGS)


def resolve_profile(requested: str) -> tuple[str, str]:
    """The profile to run and why: ``auto`` is ``gpu`` on a machine with CUDA, else ``small``."""
    if requested != "auto":
        return requested, "asked for"
    if cuda_available():
        return "gpu", "chosen: a CUDA GPU is available; PROFILE=small runs the CPU demo"
    return "small", "chosen: no CUDA GPU; PROFILE=gpu|full|small overrides"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ARM pipeline on ShapesWorld.")
    parser.add_argument("--profile", choices=["auto", *sorted(PROFILES)], default="auto",
                        help="auto (default): gpu where CUDA is available, else small")
    parser.add_argument("--fast", action="store_true", help="shorthand for --profile fast")
    parser.add_argument("--out", default=None, help="output directory (default runs/demo, runs/demo-fast)")
    parser.add_argument("--only", nargs="*", help="run only these stages (their inputs must exist)")
    parser.add_argument("--force", nargs="*", default=[], help="re-run these stages even if complete")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed_everything of every training stage (initialisation, data order, sampling)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE:KEY=VALUE",
                        help="override a config key of one training stage (YAML value), e.g. "
                             "lm:trainer.max_steps=100; repeatable")
    parser.add_argument("--config", dest="configs", action="append", default=[], metavar="STAGE=PATH",
                        help="train a stage from this config instead of the shipped one, e.g. "
                             "tokenizer=configs/tokenizer/shapes-local.yaml; repeatable")
    args = parser.parse_args(argv)
    name, why = ("fast", "--fast") if args.fast else resolve_profile(args.profile)
    out = Path(args.out or ("runs/demo-fast" if name == "fast" else "runs/demo"))
    out = out if out.is_absolute() else ROOT / out
    ctx = Ctx(out=out, profile=copy.deepcopy(PROFILES[name]), name=name, threads=args.threads, seed=args.seed,
              sets=parse_sets(args.sets, TRAINING_STAGES), configs=parse_configs(args.configs))
    out.mkdir(parents=True, exist_ok=True)
    print(f"ARM demo, profile '{name}' ({why}), ShapesWorld difficulty '{ctx.difficulty}', output {out}")
    start = time.time()
    for i, (stage, fn, outputs) in enumerate(STAGES, 1):
        if args.only and stage not in args.only:
            continue
        marker = ctx.p("stages", f"{stage}.json")
        complete = marker.exists() and all(ctx.p(o).exists() for o in outputs)
        config = ctx.config(stage) if stage in TRAINING_STAGES else None
        forced = stage in args.force or "all" in args.force
        if complete and not forced:
            done = json.loads(marker.read_text())
            if done.get("config", config) != config:
                # the later stages were built on the old output, so skipping this one would mix the two
                raise SystemExit(f"{stage}: {out} holds a {stage} trained from {done['config']}, not "
                                 f"{config}; use another --out, or --force all to redo everything")
            print(f"[{i}/{len(STAGES)}] {stage}: complete, skipped ({done['summary']})")
            continue
        print(f"[{i}/{len(STAGES)}] {stage} ...", flush=True)
        t0 = time.time()
        if forced and stage != "report":   # a forced stage trains again rather than resuming
            shutil.rmtree(ctx.p(f"{stage}-ckpt"), ignore_errors=True)
        summary = fn(ctx)
        missing = [o for o in outputs if not ctx.p(o).exists()]
        if missing:
            raise SystemExit(f"stage {stage} finished but did not write {missing}")
        seconds = round(time.time() - t0, 1)
        atomic_write(marker, json.dumps({"stage": stage, "seconds": seconds, "summary": summary,
                                         "profile": name, **({"config": config} if config else {})},
                                        indent=2))
        print(f"[{i}/{len(STAGES)}] {stage}: {summary} ({seconds:.0f} s)", flush=True)
    print(f"done in {time.time() - start:.0f} s; open {ctx.p('report.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

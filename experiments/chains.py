"""Edit chains as interleaved documents on the demo world (issue 32): chain model vs single edits.

Question: does a model trained on ShapesWorld edit chains as documents (image, instruction,
image, instruction, image; :mod:`arm_data.shapes.chains`) follow 2-4 step chains better than
the single-edit model applied step by step, and does training on chains change its
single-edit and T2I scores?

Design (CPU, the demo-sized LM of ``runs/demo-seed1``; that run is read, never written):

1. ``prepare``: pre-tokenize 4,000 ``train`` scenes of the demo world with the demo tokenizer
   (pair, vqa, edit as the demo's shards, plus one chain per scene, ``interleaved``) into
   ``runs/chains/tokens``; write ``runs/chains/lm-init``: the demo LM with the ``<doc>`` row
   added to its vocabulary (appended after the built-in specials, so every shape and image
   id moves up by one; the rows move with them: outputs on old sequences are unchanged,
   checked here).
2. ``train``: two fine-tunes of ``lm-init`` with the same steps, schedule and seed:
   ``chain`` (task mix t2i .3 / und .2 / edit .2 / interleaved .3) and ``control`` (the
   demo's mix t2i .4 / und .3 / edit .3, no chains), so the chain arm's change is not
   confused with "more training".
3. ``eval``: on ``heldout`` chains (held-out compositions, n chains, each 2-4 steps), per step
   ``k``: edit adherence and consistency (:func:`arm_data.shapes.evaluate_edit` against the
   chain's step spec, the model's own previous image as the source) of
   (a) the chain model continuing the document (:class:`arm_core.documents.ContinueDocument`,
       ``next="image"``), (b) the demo LM ``runs/demo-seed1/lm`` editing step by step
       (:class:`arm_core.pipelines.Edit` on its previous output's codes), and, to separate the
       format from the extra training, (c) the control and (d) the chain model editing step by
       step; plus how often the chain model itself opens an image after an instruction
       (``next="auto"``). Then single-edit and T2I on ``heldout`` (n=200, as the demo's
       ``eval_sft``: CFG 3, edit image scale 1.25, seed 1) for the demo LM (re-measured),
       control and chain models, beside ``runs/demo-seed1/metrics.json``'s figures.

Writes ``benchmarks/results/chains_demo.json``. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/chains.py all [--steps 250] [--chains 120]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "runs" / "demo-seed1"
OUT = ROOT / "runs" / "chains"
RESULT = ROOT / "benchmarks" / "results" / "chains_demo.json"
BIN = ROOT / ".venv" / "bin"
DIFFICULTY = "demo"
SCENES = 4000
MIXES = {
    "chain": {"t2i": 0.3, "und": 0.2, "edit": 0.2, "interleaved": 0.3},
    # interleaved named at weight 0: the same vocabulary (with <doc>) as the chain arm
    "control": {"t2i": 0.4, "und": 0.3, "edit": 0.3, "interleaved": 0.0},
}
# the demo's eval_sft settings (runs/demo-seed1/metrics.json "eval_settings")
EVAL = dict(seed=1, data_seed=0, text_scale=3.0, image_scale=1.25, n=200)


def _mean(xs: list[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


def _se(xs: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    m = sum(xs) / n
    return float(math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n))


def _run(cmd: list[str], log: Path) -> float:
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    if rc:
        raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------- 1. prepare
def prepare() -> dict[str, Any]:
    out: dict[str, Any] = {}
    tokens = OUT / "tokens"
    if not (tokens / "manifest.json").is_file() or not json.loads((tokens / "manifest.json").read_text()).get(
            "shards") or len(json.loads((tokens / "manifest.json").read_text())["shards"]) < SCENES // 1000:
        out["pretokenize_seconds"] = round(_run(
            [str(BIN / "arm-data"), "pretokenize", "--tokenizer", str(DEMO / "tokenizer"), "--source",
             "shapes:train", "--tasks", "pair,vqa,edit,interleaved", "--count", str(SCENES), "--difficulty",
             DIFFICULTY, "--out", str(tokens), "--shard-size", "1000", "--workers", "1", "--threads", "1",
             "--no-progress"], OUT / "logs" / "pretokenize.log"), 1)
    # the demo's text tokenizer: the LM's text ids stay the demo's
    shutil.copyfile(DEMO / "tokens" / "text_tokenizer.model", tokens / "text_tokenizer.model")
    if not (OUT / "lm-init" / "model.safetensors").is_file():
        out["init_check_max_abs_diff"] = make_init(OUT / "lm-init")
    return out


def make_init(dest: Path) -> float:
    """The demo LM with ``<doc>`` appended to its specials; returns the largest logit difference
    between the two models on a demo sequence (ids shifted), which must be ~0."""
    from arm_core.checkpoint import load_lm, save_lm
    from arm_core.model import GPT
    from arm_data.tasks import vocab_specials
    from arm_data.vocab import VocabLayout

    ck = load_lm(DEMO / "lm")
    old = ck.layout
    new = VocabLayout(old.text_vocab_size, old.codebook_size, old.max_grid_h, old.max_grid_w,
                      vocab_specials(list(MIXES["chain"])))
    assert new.special_tokens[:old.num_special] == old.special_tokens
    s, add = old.shape_offset, new.num_special - old.num_special
    cfg = ck.config.with_vocab(new.total_size, new.image_offset, new.codebook_size, text_vocab_size=new.text_vocab_size)
    sd = dict(ck.model.state_dict())
    for key in ("embed_tokens.weight", "lm_head.weight"):
        w = sd[key]
        # a new special starts as the mean of the trained specials (rows below the shape tokens)
        init = w[old.special_offset:s].mean(0, keepdim=True).repeat(add, 1)
        sd[key] = torch.cat([w[:s], init, w[s:]])
    model = GPT(cfg)
    model.load_state_dict(sd)
    model.eval()
    # the same demo sequence in both vocabularies: shape/image ids shift by `add`
    ids = torch.tensor([[old.bos_id, old.special_id("<t2i>"), 5, 17, 40, *old.shape_token_ids(4, 4), old.boi_id,
                         *[old.image_offset + c for c in (3, 999, 0, 512)]]])
    shifted = torch.where(ids >= s, ids + add, ids)
    with torch.no_grad():
        a, b = ck.model.eval()(ids), model(shifted)
    keep = torch.cat([torch.arange(s), torch.arange(s + add, new.total_size)])
    diff = float((a - b[..., keep]).abs().max())
    save_lm(dest, model, cfg, layout=new, text_tokenizer=ck.text_tokenizer_path,
            visual_tokenizer_dir=DEMO / "tokenizer", metadata={"from": str(DEMO / "lm"), "added_specials": add})
    return diff


# ---------------------------------------------------------------------- 2. train
def train(arm: str, steps: int) -> dict[str, Any]:
    cfg = yaml.safe_load((DEMO / "configs" / "lm.yaml").read_text())
    d = OUT / arm
    t = cfg["trainer"]
    t.update(max_steps=steps, default_root_dir=str(d / "logs"), log_every_n_steps=10, limit_val_batches=0,
             enable_checkpointing=False)
    t["logger"] = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": str(d / "logs"), "name": "csv"}}]
    t.pop("callbacks", None)
    m = cfg["model"]["init_args"]
    m.update(init_from=str(OUT / "lm-init"), export_dir=str(d / "lm"), code_init_share=0.0, lr=5e-4,
             warmup_steps=20, task_loss_weights={k: 1.0 for k in MIXES[arm]},
             model_overrides={"max_seq_len": 256})  # the architecture is the export's
    dm = cfg["data"]["init_args"]
    dm.update(data_dir=str(OUT / "tokens"), task_weights=MIXES[arm], val_fraction=0.0)
    path = OUT / "configs" / f"{arm}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    seconds = _run([str(BIN / "arm-lm"), "fit", "--config", str(path)], OUT / "logs" / f"train-{arm}.log")
    losses = []
    for f in sorted((d / "logs" / "csv").glob("version_*/metrics.csv")):
        import csv

        with open(f) as fh:
            losses += [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    return {"steps": steps, "seconds": round(seconds, 1), "mix": MIXES[arm],
            "final_train_loss": losses[-1] if losses else None, "config": str(path.relative_to(ROOT))}


# ---------------------------------------------------------------------- 3. evaluate
def _score_steps(chains: list[Any], images: list[list[Any]], out: dict[int, dict[str, list[float]]]) -> None:
    """Add each step's adherence / consistency (``images[i][k]``: chain i's image k, 0 = its source)."""
    from arm_data.shapes import evaluate_edit

    for ch, ims in zip(chains, images, strict=True):
        for k in range(1, len(ims)):
            r = evaluate_edit(ims[k], ch.specs[k - 1], ch.specs[k], edit=ch.edits[k - 1], source_image=ims[k - 1])
            out[k]["adherence"].append(r.adherence)
            out[k]["consistency"].append(r.consistency)


def _summary(per_step: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    every: dict[str, list[float]] = defaultdict(list)
    for k in sorted(per_step):
        d = per_step[k]
        res[f"step{k}"] = {"n": len(d["adherence"]), **{m: _mean(d[m]) for m in ("adherence", "consistency")},
                           **{f"{m}_se": _se(d[m]) for m in ("adherence", "consistency")}}
        for m in ("adherence", "consistency"):
            every[m] += d[m]
    res["all_steps"] = {"n": len(every["adherence"]), **{m: _mean(v) for m, v in every.items()},
                        **{f"{m}_se": _se(v) for m, v in every.items()}}
    return res


def chain_document(cont: Any, chains: list[Any]) -> dict[str, Any]:
    """(a) The chain model continues each chain's document, one image per instruction."""
    from arm_data.formats import ImageTokens

    src = cont.encode_images([ch.image(0) for ch in chains])
    docs: list[list[Any]] = [[s] for s in src]
    images: list[list[Any]] = [[ch.image(0)] for ch in chains]
    for k in range(max(ch.steps for ch in chains)):
        live = [i for i, ch in enumerate(chains) if ch.steps > k]
        for i in live:
            docs[i].append(chains[i].instructions[k])
        outs = cont([docs[i] for i in live], next="image", max_segments=1, guidance_scale=EVAL["text_scale"],
                    image_guidance_scale=EVAL["image_scale"], temperature=1.0, seed=EVAL["seed"] + k, decode=False)
        for i, o in zip(live, outs, strict=True):
            img: ImageTokens = o.segments[0]
            docs[i].append(img)
            images[i].append(cont.decode_images(torch.tensor([img.codes]), (img.h, img.w))[0])
    per_step: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    _score_steps(chains, images, per_step)
    return _summary(per_step)


def opens_image(cont: Any, chains: list[Any]) -> dict[str, Any]:
    """How often the chain model, given ``[image, instruction]``, opens an image itself (greedy text)."""
    outs = cont([[ch.image(0), ch.instructions[0]] for ch in chains], next="auto", max_segments=1,
                max_text_tokens=24, guidance_scale=EVAL["text_scale"], image_guidance_scale=EVAL["image_scale"],
                seed=EVAL["seed"], decode=False)
    opened = [float(bool(o.opened_image)) for o in outs]
    return {"n": len(opened), "opens_image": _mean(opened), "opens_image_se": _se(opened),
            "stops": dict(sorted(_count(o.stop if not o.opened_image else "image" for o in outs).items()))}


def _count(xs: Any) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for x in xs:
        c[x] += 1
    return dict(c)


def step_by_step(edit: Any, chains: list[Any]) -> dict[str, Any]:
    """(b-d) A single-edit model applied step by step, each step editing its previous output's codes."""
    src = edit.encode_images([ch.image(0) for ch in chains])
    codes = [torch.tensor(s.codes) for s in src]
    images: list[list[Any]] = [[ch.image(0)] for ch in chains]
    for k in range(max(ch.steps for ch in chains)):
        live = [i for i, ch in enumerate(chains) if ch.steps > k]
        outs, new = edit(None, [chains[i].instructions[k] for i in live], source_codes=torch.stack([codes[i] for i in live]),
                         guidance_scale=EVAL["text_scale"], image_guidance_scale=EVAL["image_scale"],
                         temperature=1.0, seed=EVAL["seed"] + k, return_codes=True)
        for j, i in enumerate(live):
            codes[i] = new[j]
            images[i].append(outs[j])
    per_step: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    _score_steps(chains, images, per_step)
    return _summary(per_step)


def single_task_scores(lm_dir: Path) -> dict[str, Any]:
    """Held-out single edits and T2I as the demo's eval_sft measured them (n=200, CFG 3)."""
    from arm_core.evaluate import evaluate_edit_split, evaluate_t2i_split
    from arm_core.pipelines import load_pipelines

    t2i, edit, _ = load_pipelines(lm_dir, DEMO / "tokenizer")
    kw = dict(seed=EVAL["seed"], data_seed=EVAL["data_seed"], difficulty=DIFFICULTY, progress=False)
    t = evaluate_t2i_split(t2i, "heldout", EVAL["n"], EVAL["text_scale"], **kw)
    e = evaluate_edit_split(edit, "heldout", EVAL["n"], EVAL["text_scale"], EVAL["image_scale"], **kw)
    return {"t2i": {"overall": t["overall"], "overall_se": t["overall_se"], "n": t["n"]},
            "edit": {m: e[m] for m in ("n", "adherence", "adherence_se", "consistency", "consistency_se")}}


def evaluate(n_chains: int) -> dict[str, Any]:
    from arm_core.documents import ContinueDocument
    from arm_core.pipelines import Edit
    from arm_data.shapes.chains import EditChains

    size = 32  # the demo tokenizer's image_size
    chains = list(EditChains("heldout", seed=EVAL["data_seed"], width=size, height=size, length=n_chains,
                             difficulty=DIFFICULTY))
    res: dict[str, Any] = {"chains": {"n": len(chains), "split": "heldout",
                                      "steps": dict(sorted(_count(str(c.steps) for c in chains).items()))}}
    t0 = time.perf_counter()
    cont = ContinueDocument.from_pretrained(OUT / "chain" / "lm", DEMO / "tokenizer")
    res["chain_model_document"] = chain_document(cont, chains)
    res["chain_model_opens_image"] = opens_image(cont, chains)
    res["chain_model_step_by_step"] = step_by_step(Edit.from_pretrained(OUT / "chain" / "lm", DEMO / "tokenizer"), chains)
    res["control_step_by_step"] = step_by_step(Edit.from_pretrained(OUT / "control" / "lm", DEMO / "tokenizer"), chains)
    res["demo_lm_step_by_step"] = step_by_step(Edit.from_pretrained(DEMO / "lm", DEMO / "tokenizer"), chains)
    res["chain_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    res["single_tasks"] = {name: single_task_scores(d) for name, d in
                           (("demo_lm", DEMO / "lm"), ("control", OUT / "control" / "lm"),
                            ("chain", OUT / "chain" / "lm"))}
    sft = json.loads((DEMO / "metrics.json").read_text())["sft"]
    res["single_tasks"]["demo_metrics_json"] = {
        "t2i": {"overall": sft["t2i"]["best"], "overall_se": sft["t2i"]["best_se"], "scale": sft["t2i"]["best_scale"]},
        "edit": {**sft["edit"]["best"], **{f"{k}_se": v for k, v in sft["edit"]["best_se"].items()},
                 "scale": sft["edit"]["best_scale"]}}
    res["single_task_seconds"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["prepare", "train", "eval", "all"])
    p.add_argument("--steps", type=int, default=250, help="optimizer steps per fine-tune")
    p.add_argument("--chains", type=int, default=120, help="held-out chains to evaluate")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    result = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    result.setdefault("settings", {}).update(
        difficulty=DIFFICULTY, scenes=SCENES, mixes=MIXES, eval=EVAL, steps=a.steps, chains=a.chains,
        threads=1, demo_run=str(DEMO.relative_to(ROOT)))
    if a.stage in ("prepare", "all"):
        result["prepare"] = prepare()
    if a.stage in ("train", "all"):
        result["train"] = {arm: train(arm, a.steps) for arm in MIXES}
    if a.stage in ("eval", "all"):
        result["eval"] = evaluate(a.chains)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

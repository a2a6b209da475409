"""ShapesWorld evaluation of an ARM LM + visual tokenizer: T2I, VQA and editing.

The benchmark is arm-data's rule-based evaluator (``arm_data.shapes``), GenEval-style:

* **Text-to-image**: for ``n`` scenes of a split, generate an image from the caption and
  score it clause by clause against the scene spec, checking only what the caption states
  (``sample.caption_attributes``). Reported: ``overall`` (mean clause pass rate per image,
  averaged), ``strict`` (all clauses pass), ``by_clause`` (count / presence / color / size /
  region / relation pass rates) and the same split by object count (single-object and
  two-object prompts separately, 3+ beside them). Run on the held-out-composition split
  (attribute combinations never seen in training) and on a seen-composition split
  (``val``: same distribution as training, other scenes).
* **VQA**: the first ``questions_per_image`` questions of each scene, greedy answers,
  exact match after normalisation (case, punctuation, articles), per question kind and
  by the scene's object count (``by_objects``; each kind by it in ``by_kind_objects``).
* **Editing**: source image + instruction -> edited image, scored for instruction
  ``adherence`` and ``consistency`` (everything else unchanged), per edit kind.

Every generation setting is run at each guidance scale in ``guidance_scales`` (1 = no
guidance; ARM claims semantic tokens need little), and ``best`` picks the best scale per
task (T2I: overall on the main split; editing: adherence + consistency). Editing has a
second scale, over the source image (ARM: 1.25), which trades adherence for consistency;
``image_guidance_scales`` may list several, and each text scale above 1 is then run with
each (keys ``cfg=T,img=I``; with one image scale the keys stay ``cfg=T``; the keys and the
``settings`` entries ``cfg_scales`` / ``edit_image_scale`` keep the names earlier metrics
files have). Output is a JSON dict (:func:`evaluate_lm`), written by ``arm-lm evaluate``::

    arm-lm evaluate --lm runs/lm --tokenizer runs/tokenizer --split heldout --n 200 \\
        --guidance-scale 1.0 1.5 3.0 --image-guidance-scale 1.25 2 3 --out metrics.json

Which evaluation ``--tasks NAME`` runs is the task's to say: its
:attr:`arm_data.tasks.Task.evaluator` names one of :data:`EVALUATORS` (``t2i`` ->
``shapes_t2i``, ``und``/``vqa`` -> ``shapes_vqa``, ``edit`` -> ``shapes_edit``); a task
naming none is told to measure its loss with ``--data`` instead.

Used by the demo report and by arm-rl (before/after RL). On your own data (``--data``,
``--vqa``, ``--t2i-prompts``) the same command runs :mod:`arm_core.evaluate_data` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from arm_data.shapes import ShapesWorld
from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.spec import count_group
from arm_data.tasks import UnknownTaskError, get_task
from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from arm_tokenizer.framework.deprecation import add_renamed_flag, renamed_argument

from arm_core.pipelines import Edit, TextToImage, Understand, load_pipelines

__all__ = ["evaluate_lm", "evaluate_pipelines", "evaluate_t2i_split", "evaluate_vqa_split",
           "evaluate_edit_split", "normalize_answer", "write_metrics", "TASKS", "EVALUATORS", "Evaluator",
           "evaluators_for"]

#: The default ``--tasks``: the built-in tasks with a ShapesWorld evaluation (record names,
#: as the metrics' keys).
TASKS = ("t2i", "vqa", "edit")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces (VQA-style matching)."""
    t = _PUNCT.sub(" ", text.lower())
    t = _ARTICLES.sub(" ", t)
    return " ".join(t.split())


def _mean(xs: Sequence[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


def _se(xs: Sequence[float]) -> float | None:
    """Standard error of the mean of ``xs`` (sample standard deviation / sqrt(n))."""
    n = len(xs)
    if n < 2:
        return None
    m = sum(xs) / n
    return float((sum((x - m) ** 2 for x in xs) / (n - 1) / n) ** 0.5)


def _world(split: str, seed: int, size: tuple[int, int], n: int, difficulty: Any = "full") -> Any:
    h, w = size
    return ShapesWorld(split=split, seed=seed, width=w, height=h, length=max(1, n), difficulty=difficulty)


def _image_size(pipe: Any) -> tuple[int, int]:
    size = getattr(pipe.visual_tokenizer, "image_size", 64)
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def evaluate_t2i_split(pipe: TextToImage, split: str, n: int, guidance_scale: float | None = None, *,
                       seed: int = 0, data_seed: int = 0, temperature: float = 1.0,
                       top_k: int | None = None, batch_size: int = 32, progress: bool = False,
                       keep_images: int = 0, difficulty: Any = "full",
                       scale: float | None = None) -> dict[str, Any]:
    """Generate ``n`` images for the split's captions at ``guidance_scale`` (required) and
    score them (scenes from the ShapesWorld of ``difficulty``). ``scale``: the deprecated
    name of ``guidance_scale``."""
    guidance_scale = renamed_argument("evaluate_t2i_split", "scale", "guidance_scale", scale, guidance_scale)
    # deferred: the ShapesWorld evaluator imports scipy (~0.6 s), needed only when scoring
    from arm_data.shapes import evaluate_t2i
    from arm_data.shapes.evaluator import clause_pass_rates

    world = _world(split, data_seed, _image_size(pipe), n, difficulty)
    samples = [world[i] for i in range(n)]
    images = pipe([s.caption for s in samples], guidance_scale=guidance_scale, temperature=temperature,
                  top_k=top_k, seed=seed, batch_size=batch_size, progress=progress)
    scores, strict, clauses = [], [], []
    groups: dict[str, list[float]] = defaultdict(list)
    for s, im in zip(samples, images, strict=True):
        r = evaluate_t2i(im, s.spec, check=s.caption_attributes, relations=s.caption_relations)
        scores.append(r.score)
        strict.append(float(r.strict))
        clauses.extend(r.clauses)
        groups[count_group(s.spec.count)].append(r.score)
    out: dict[str, Any] = {
        "n": n, "overall": _mean(scores), "overall_se": _se(scores), "strict": _mean(strict),
        "by_clause": dict(sorted(clause_pass_rates(clauses).items())),
        "by_objects": {g: {"n": len(v), "overall": _mean(v)} for g, v in sorted(groups.items())},
    }
    if keep_images:
        out["_samples"] = [(s.caption, im) for s, im in zip(samples[:keep_images], images, strict=False)]
    return out


def evaluate_vqa_split(pipe: Understand, split: str, n: int, *, data_seed: int = 0,
                       questions_per_image: int = 1, max_new_tokens: int = 16,
                       batch_size: int = 32, progress: bool = False,
                       keep_examples: int = 0, difficulty: Any = "full") -> dict[str, Any]:
    """Greedy answers to the split's questions, exact match after normalisation.

    Besides ``by_kind``, ``by_objects`` groups accuracy by the scene's object count, and
    ``by_kind_objects`` each kind by it: a model that reads an attribute in one-object
    scenes but not in crowded ones either loses it in the tokens there or does not find the
    object the question names (``arm-data shapes eval-tokenizer``'s ``object_probe`` tells
    which)."""
    world = _world(split, data_seed, _image_size(pipe), n, difficulty)
    images, questions, answers, kinds, groups = [], [], [], [], []
    for i in range(n):
        s = world[i]
        for qa in s.qa[:questions_per_image]:
            images.append(s.image)
            questions.append(qa.question)
            answers.append(qa.answer)
            kinds.append(qa.kind)
            groups.append(count_group(s.spec.count))
    preds = pipe(images, questions, max_new_tokens=max_new_tokens, temperature=0.0,
                 batch_size=batch_size, progress=progress)
    correct = [float(normalize_answer(p) == normalize_answer(a)) for p, a in zip(preds, answers, strict=True)]
    by_kind: dict[str, list[float]] = defaultdict(list)
    by_objects: dict[str, list[float]] = defaultdict(list)
    by_kind_objects: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for k, g, c in zip(kinds, groups, correct, strict=True):
        by_kind[k].append(c)
        by_objects[g].append(c)
        by_kind_objects[k][g].append(c)
    out: dict[str, Any] = {
        "n": len(correct), "accuracy": _mean(correct), "accuracy_se": _se(correct),
        "by_kind": {k: _mean(v) for k, v in sorted(by_kind.items())},
        "by_objects": {g: {"n": len(v), "accuracy": _mean(v)} for g, v in sorted(by_objects.items())},
        "by_kind_objects": {k: {g: {"n": len(v), "accuracy": _mean(v)} for g, v in sorted(d.items())}
                            for k, d in sorted(by_kind_objects.items())},
    }
    if keep_examples:
        out["examples"] = [{"question": q, "answer": a, "prediction": p}
                           for q, a, p in list(zip(questions, answers, preds, strict=True))[:keep_examples]]
    return out


def evaluate_edit_split(pipe: Edit, split: str, n: int, guidance_scale: float | None = None,
                        image_guidance_scale: float | None = None, *,
                        seed: int = 0, data_seed: int = 0, temperature: float = 1.0,
                        top_k: int | None = None, batch_size: int = 32,
                        progress: bool = False, keep_images: int = 0,
                        difficulty: Any = "full", text_scale: float | None = None,
                        image_scale: float | None = None) -> dict[str, Any]:
    """Edit ``n`` source images by their instructions at ``guidance_scale`` (over the
    instruction) and ``image_guidance_scale`` (over the source image), both required, and
    score adherence / consistency (the result keeps the keys ``text_scale`` /
    ``image_scale``). ``text_scale`` / ``image_scale``: the deprecated argument names."""
    guidance_scale = renamed_argument("evaluate_edit_split", "text_scale", "guidance_scale", text_scale,
                                      guidance_scale)
    image_guidance_scale = renamed_argument("evaluate_edit_split", "image_scale", "image_guidance_scale",
                                            image_scale, image_guidance_scale)
    # deferred: the ShapesWorld evaluator imports scipy (~0.6 s), needed only when scoring
    from arm_data.shapes import evaluate_edit

    world = _world(split, data_seed, _image_size(pipe), n, difficulty)
    trips = [world[i].edit for i in range(n)]
    sources = [t.source_image for t in trips]
    outs = pipe(sources, [t.instruction for t in trips], guidance_scale=guidance_scale,
                image_guidance_scale=image_guidance_scale, temperature=temperature, top_k=top_k,
                seed=seed, batch_size=batch_size, progress=progress)
    adh, con = [], []
    by_kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"adherence": [], "consistency": []})
    for t, src, im in zip(trips, sources, outs, strict=True):
        r = evaluate_edit(im, t.source, t.target, edit=t.edit, source_image=src)
        adh.append(r.adherence)
        con.append(r.consistency)
        kind = getattr(t.edit, "kind", "edit")
        by_kind[kind]["adherence"].append(r.adherence)
        by_kind[kind]["consistency"].append(r.consistency)
    out: dict[str, Any] = {
        "n": n, "text_scale": guidance_scale, "image_scale": image_guidance_scale,
        "adherence": _mean(adh), "adherence_se": _se(adh),
        "consistency": _mean(con), "consistency_se": _se(con),
        "by_kind": {k: {m: _mean(v) for m, v in d.items()} | {"n": len(d["adherence"])}
                    for k, d in sorted(by_kind.items())},
    }
    if keep_images:
        out["_samples"] = [(t.instruction, s, im) for t, s, im in
                           zip(trips[:keep_images], sources, outs, strict=False)]
    return out


def evaluate_pipelines(t2i: TextToImage, edit: Edit, und: Understand, *, split: str = "heldout",
                       seen_split: str | None = "val", n: int = 200,
                       guidance_scales: Sequence[float] | None = None,
                       image_guidance_scales: float | Sequence[float] | None = None,
                       tasks: Sequence[str] = TASKS,
                       temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                       data_seed: int = 0, questions_per_image: int = 1, batch_size: int = 32,
                       progress: bool = True, difficulty: Any = "full",
                       cfg_scales: Sequence[float] | None = None,
                       edit_image_scale: float | Sequence[float] | None = None) -> dict[str, Any]:
    """All metrics for loaded pipelines (see the module docstring for the JSON layout), on the
    ShapesWorld of ``difficulty`` (``full``, ``demo`` or Difficulty fields), at each of
    ``guidance_scales`` (default 1, 1.5, 3) and, for editing, ``image_guidance_scales``
    (one or several; default 1.25). ``cfg_scales`` / ``edit_image_scale``: their deprecated
    names."""
    guidance_scales = renamed_argument("evaluate_pipelines", "cfg_scales", "guidance_scales", cfg_scales,
                                       guidance_scales, (1.0, 1.5, 3.0))
    image_guidance_scales = renamed_argument("evaluate_pipelines", "edit_image_scale", "image_guidance_scales",
                                             edit_image_scale, image_guidance_scales, 1.25)
    difficulty = get_difficulty(difficulty)
    plan = evaluators_for(tasks)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    scales = [float(s) for s in guidance_scales] or [1.0]
    if any(s <= 0 for s in scales):
        raise ValueError(f"guidance scales must be > 0, got {scales}")
    image_scales = _edit_image_scales(image_guidance_scales)
    splits = [split] + ([seen_split] if seen_split and seen_split != split else [])
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "settings": {"split": split, "seen_split": seen_split, "n": n, "cfg_scales": scales,
                     "edit_image_scale": image_scales[0] if len(image_scales) == 1 else image_scales,
                     "temperature": temperature,
                     "top_k": top_k, "seed": seed, "data_seed": data_seed,
                     "questions_per_image": questions_per_image, "tasks": list(tasks),
                     "difficulty": difficulty.name,
                     "lm": str(t2i.lm.directory)},
    }
    gen = dict(seed=seed, data_seed=data_seed, temperature=temperature, top_k=top_k,
               batch_size=batch_size, progress=progress, difficulty=difficulty)
    run = _Run(n=n, splits=splits, scales=scales, image_scales=image_scales,
               questions_per_image=questions_per_image, gen=gen)
    pipes = {"t2i": t2i, "edit": edit, "und": und}
    summary: dict[str, Any] = {}
    for ev in plan:
        res[ev.key] = ev.run(pipes[ev.pipeline], run)
    for ev in plan:
        summary.update(ev.summary(res[ev.key], split))
    res["summary"] = summary
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _edit_image_scales(image_guidance_scales: float | Sequence[float]) -> list[float]:
    scales = ([float(image_guidance_scales)] if isinstance(image_guidance_scales, (int, float))
              else [float(s) for s in image_guidance_scales])
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"image_guidance_scales must be one or more scales > 0, got {image_guidance_scales!r}")
    return scales


def _edit_settings(text_scales: Sequence[float],
                   image_scales: Sequence[float]) -> list[tuple[str, float, float]]:
    """``(key, text scale, image scale)`` per edit run. Text scale 1 is the unguided run
    (image scale 1 too), once; every other text scale runs with each image scale."""
    out = []
    for ts in text_scales:
        if ts == 1.0:
            out.append(("cfg=1", 1.0, 1.0))
        elif len(image_scales) == 1:
            out.append((f"cfg={ts:g}", ts, image_scales[0]))
        else:
            out.extend((f"cfg={ts:g},img={im:g}", ts, im) for im in image_scales)
    return out


@dataclass(frozen=True)
class _Run:
    """The settings every evaluator of one ``evaluate_pipelines`` call shares."""

    n: int
    splits: list[str]
    scales: list[float]
    image_scales: list[float]
    questions_per_image: int
    gen: dict[str, Any]


@dataclass(frozen=True)
class Evaluator:
    """A ShapesWorld evaluation that a task names (:attr:`arm_data.tasks.Task.evaluator`).

    Args:
        key: its entry in the metrics (``metrics["t2i"]``, ``metrics["summary"]["t2i"]``).
        pipeline: the pipeline it drives: ``t2i``, ``und`` or ``edit``.
        run: ``(pipeline, settings) -> {split: results}``.
        summary: ``(results, main split) -> headline entries of metrics["summary"]``.
    """

    key: str
    pipeline: str
    run: Callable[[Any, _Run], dict[str, Any]]
    summary: Callable[[dict[str, Any], str], dict[str, Any]]


def _run_t2i(pipe: TextToImage, r: _Run) -> dict[str, Any]:
    return {sp: {f"cfg={s:g}": evaluate_t2i_split(pipe, sp, r.n, s, **r.gen) for s in r.scales} for sp in r.splits}


def _run_vqa(pipe: Understand, r: _Run) -> dict[str, Any]:
    g = r.gen
    return {sp: evaluate_vqa_split(pipe, sp, r.n, data_seed=g["data_seed"], questions_per_image=r.questions_per_image,
                                   batch_size=g["batch_size"], progress=g["progress"], difficulty=g["difficulty"])
            for sp in r.splits}


def _run_edit(pipe: Edit, r: _Run) -> dict[str, Any]:
    return {sp: {key: evaluate_edit_split(pipe, sp, r.n, ts, im, **r.gen)
                 for key, ts, im in _edit_settings(r.scales, r.image_scales)}
            for sp in r.splits}


def _summary_t2i(res: dict[str, Any], split: str) -> dict[str, Any]:
    """Headline numbers: at guidance 1 and at the best scale of the main split."""
    runs = res[split]
    best = max(runs, key=lambda k: runs[k]["overall"] or 0.0)
    out = {"cfg1": runs.get("cfg=1", {}).get("overall"), "best_scale": best,
           "best": runs[best]["overall"], "best_se": runs[best].get("overall_se")}
    for sp, r in res.items():
        out[f"{sp}@best"] = {"overall": r[best]["overall"], "overall_se": r[best].get("overall_se"),
                             "by_objects": r[best]["by_objects"]}
    return {"t2i": out}


def _summary_vqa(res: dict[str, Any], split: str) -> dict[str, Any]:
    return {"vqa": {sp: r["accuracy"] for sp, r in res.items()},
            "vqa_se": {sp: r.get("accuracy_se") for sp, r in res.items()}}


def _summary_edit(res: dict[str, Any], split: str) -> dict[str, Any]:
    runs = res[split]
    best = max(runs, key=lambda k: (runs[k]["adherence"] or 0.0) + (runs[k]["consistency"] or 0.0))
    return {"edit": {"cfg1": {m: runs.get("cfg=1", {}).get(m) for m in ("adherence", "consistency")},
                     "best_scale": best,
                     "best": {m: runs[best][m] for m in ("adherence", "consistency")},
                     "best_se": {m: runs[best].get(f"{m}_se") for m in ("adherence", "consistency")}}}


#: The ShapesWorld evaluations, by the name a task gives (:attr:`arm_data.tasks.Task.evaluator`),
#: in the order metrics list them.
EVALUATORS: dict[str, Evaluator] = {
    "shapes_t2i": Evaluator("t2i", "t2i", _run_t2i, _summary_t2i),
    "shapes_vqa": Evaluator("vqa", "und", _run_vqa, _summary_vqa),
    "shapes_edit": Evaluator("edit", "edit", _run_edit, _summary_edit),
}


def evaluators_for(tasks: Sequence[str]) -> list[Evaluator]:
    """The evaluations ``tasks`` name (task or record names), each once, in :data:`EVALUATORS` order.

    Raises:
        ValueError: a task no installed package registers, or one without an evaluation
            (naming the task and what to do instead).
    """
    names: set[str] = set()
    for t in tasks:
        try:
            task = get_task(t)
        except UnknownTaskError as e:
            raise ValueError(f"unknown evaluation task {t!r}: {e}") from None
        if not task.evaluator:
            raise ValueError(f"task {t!r} has no ShapesWorld evaluation (its Task.evaluator is empty); measure its "
                             f"loss on token shards instead: arm-lm evaluate --data DIR --loss-tasks {task.name}")
        if task.evaluator not in EVALUATORS:
            raise ValueError(f"task {t!r} names the evaluation {task.evaluator!r}, which arm-core does not have; "
                             f"known: {', '.join(EVALUATORS)}")
        names.add(task.evaluator)
    return [ev for name, ev in EVALUATORS.items() if name in names]


def evaluate_lm(lm_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None,
                device: str = "cpu", speculative: int = 0, quantize: str | None = None,
                **kwargs: Any) -> dict[str, Any]:
    """Load an exported LM (+ tokenizer) and run :func:`evaluate_pipelines` on it
    (``speculative`` / ``quantize``: the decode options of :func:`load_pipelines`, recorded
    in the metrics so a comparison says what it compared)."""
    t2i, edit, und = load_pipelines(lm_dir, tokenizer_dir, device=device, speculative=speculative,
                                    quantize=quantize)
    out = evaluate_pipelines(t2i, edit, und, **kwargs)
    out["decode"] = {"speculative": speculative, "quantize": quantize}
    return out


def _strip_private(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [_strip_private(v) for v in obj]
    return obj


def write_metrics(metrics: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write metrics JSON atomically (private ``_samples`` keys, holding images, left out)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(_strip_private(metrics), indent=2, sort_keys=True) + "\n").encode())
    return path


def cli_evaluate(argv: list[str]) -> int:
    """Evaluate an LM on ShapesWorld (T2I, VQA, editing), or on your own data (per-task loss,
    VQA exact match, T2I alignment), and write metrics JSON."""
    p = argparse.ArgumentParser(
        prog="arm-lm evaluate", description=cli_evaluate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""\
examples:
  arm-lm evaluate --lm runs/lm --split heldout --n 200 --guidance-scale 1 1.5 3 --out metrics.json
  arm-lm evaluate --lm runs/lm --data data/val-tokens --vqa data/vqa.jsonl \\
      --t2i-prompts data/prompts.jsonl --guidance-scale 1.5 \\
      --scorer-encoder timm --scorer-encoder-args '{model_name: resnet10t, checkpoint_path:
      runs/teacher/image_tower.safetensors, model_kwargs: {output_stride: 8, channels: [32, 64, 64, 64]}}' \\
      --scorer-text-encoder teacher_text --scorer-text-args '{checkpoint: runs/teacher}' --out real.json

Any of --data, --vqa or --t2i-prompts evaluates on your own data (arm_core.evaluate_data)
instead of ShapesWorld; the ShapesWorld options are then not used.""")
    p.add_argument("--lm", required=True, help="exported LM directory")
    p.add_argument("--tokenizer", default=None, help="visual tokenizer dir (default: the LM's)")
    p.add_argument("--guidance-scale", type=float, nargs="+", default=None,
                   help="guidance scales over the text (ShapesWorld default: 1 1.5 3; your own data: 1)")
    add_renamed_flag(p, "--cfg", "--guidance-scale")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="metrics.json")
    p.add_argument("--speculative", type=int, default=0, metavar="N",
                   help="speculative Jacobi decoding of image spans, N draft codes per forward (0 = off)")
    p.add_argument("--quantize", default=None, choices=["int8", "int4"],
                   help="weight-only quantized decode via torchao (int4: CUDA only)")
    sw = p.add_argument_group("ShapesWorld")
    sw.add_argument("--split", default="heldout", help="main split (held-out compositions)")
    sw.add_argument("--seen-split", default="val", help="seen-composition split ('' to skip)")
    sw.add_argument("--n", type=int, default=200, help="scenes per split")
    sw.add_argument("--image-guidance-scale", type=float, nargs="+", default=[1.25],
                    help="editing's guidance over the source image (ARM: 1.25); several are "
                         "each run with every --guidance-scale above 1")
    add_renamed_flag(sw, "--edit-image-scale", "--image-guidance-scale")
    sw.add_argument("--tasks", nargs="+", default=list(TASKS),
                    help="tasks to evaluate, each by the evaluation its task names (default: t2i vqa edit)")
    sw.add_argument("--data-seed", type=int, default=0)
    sw.add_argument("--questions-per-image", type=int, default=1)
    sw.add_argument("--difficulty", default="full",
                    help="the ShapesWorld to evaluate on: full (default) or demo (arm_data.shapes.difficulty)")
    own = p.add_argument_group("your own data (each figure with its standard error)")
    own.add_argument("--data", default=None, metavar="DIR",
                     help="pre-tokenized shards (arm-data pretokenize): mean token loss per task")
    own.add_argument("--loss-tasks", nargs="+", default=["t2i", "und", "edit"],
                     help="tasks whose loss --data measures, of t2i und edit text")
    own.add_argument("--max-docs", type=int, default=None, help="at most this many documents per task")
    own.add_argument("--vqa", default=None, metavar="FILE.jsonl",
                     help='questions, one {"image", "question", "answer" or "answers", "kind"?} per line '
                          "(image paths relative to the file): VQAv2-normalised exact match")
    own.add_argument("--max-new-tokens", type=int, default=16, help="longest VQA answer")
    own.add_argument("--t2i-prompts", default=None, metavar="FILE",
                     help='prompts, one per line, or JSONL {"prompt", "image"?} (a reference image): '
                          "image-text alignment of the generated images")
    own.add_argument("--scorer-encoder", default=None, metavar="NAME",
                     help="registered image encoder of the alignment scorer (e.g. timm, hf_vision)")
    own.add_argument("--scorer-encoder-args", default=None, metavar="YAML", help="its init arguments")
    own.add_argument("--scorer-text-encoder", default=None, metavar="NAME",
                     help="registered text encoder of the scorer (e.g. teacher_text, hf_text)")
    own.add_argument("--scorer-text-args", default=None, metavar="YAML", help="its init arguments")
    own.add_argument("--scorer-head", default=None, metavar="TOKENIZER_DIR",
                     help="a tokenizer export with a SigLIP head (siglip_head.json, from L_sig): the image head "
                          "(and, without --scorer-text-encoder, the text encoder it was trained against)")
    own.add_argument("--scorer-image-size", default=None, metavar="N|H,W",
                     help="image size the scorer takes (default: the encoder's, else the images')")
    a = p.parse_args(argv)
    if a.data or a.vqa or a.t2i_prompts:
        return _cli_evaluate_data(a)
    m = evaluate_lm(a.lm, a.tokenizer, device=a.device, split=a.split,
                    seen_split=a.seen_split or None, n=a.n,
                    guidance_scales=a.guidance_scale or [1.0, 1.5, 3.0],
                    image_guidance_scales=a.image_guidance_scale, tasks=a.tasks,
                    temperature=a.temperature, top_k=a.top_k, seed=a.seed,
                    data_seed=a.data_seed, questions_per_image=a.questions_per_image,
                    batch_size=a.batch_size, difficulty=a.difficulty,
                    speculative=a.speculative, quantize=a.quantize)
    write_metrics(m, a.out)
    print(json.dumps(m["summary"], indent=2))
    print(f"wrote {a.out} ({m['seconds']} s)")
    return 0


def _cli_evaluate_data(a: Any) -> int:
    """``arm-lm evaluate`` with --data / --vqa / --t2i-prompts (arm_core.evaluate_data)."""
    # deferred: breaks the cycle with evaluate_data, which imports this module
    from arm_core.evaluate_data import (
        DualEncoder,
        evaluate_data,
        parse_component_args,
        parse_image_size,
    )

    scorer = None
    if a.t2i_prompts:
        if not (a.scorer_encoder and (a.scorer_text_encoder or a.scorer_head)):
            raise ValueError("--t2i-prompts needs a scorer: --scorer-encoder NAME with --scorer-text-encoder NAME "
                             "and/or --scorer-head TOKENIZER_DIR (arguments by --scorer-encoder-args / "
                             "--scorer-text-args)")
        scorer = DualEncoder.from_registry(
            a.scorer_encoder, a.scorer_text_encoder,
            parse_component_args(a.scorer_encoder_args, "--scorer-encoder-args"),
            parse_component_args(a.scorer_text_args, "--scorer-text-args"),
            parse_image_size(a.scorer_image_size), head_dir=a.scorer_head)
    m = evaluate_data(a.lm, a.tokenizer, data=a.data, loss_tasks=a.loss_tasks, max_documents=a.max_docs,
                      vqa=a.vqa, t2i_prompts=a.t2i_prompts, scorer=scorer,
                      guidance_scales=a.guidance_scale or [1.0],
                      temperature=a.temperature, top_k=a.top_k, seed=a.seed, batch_size=a.batch_size,
                      max_new_tokens=a.max_new_tokens, device=a.device)
    write_metrics(m, a.out)
    print(json.dumps(m["summary"], indent=2))
    print(f"wrote {a.out} ({m['seconds']} s)")
    return 0

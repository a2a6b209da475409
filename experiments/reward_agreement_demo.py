#!/usr/bin/env python
"""How well the model rewards agree with the ShapesWorld rule evaluator on the demo world
(benchmarks/results/suites_and_rewards.md, issue 33).

Reads a ``shapes`` suite that ``arm-lm suite generate`` wrote and ``arm-lm suite score
--scorer shapes`` scored (GenEval layout, ``scores-shapes.json``), and scores the same
images with

- ``judge``: an arm-core LM as a yes/no judge (:class:`arm_rl.rewards.judge.ARMJudge`, the
  questions :func:`~arm_rl.rewards.judge.questions_for` asks during RL);
- ``dual_encoder_alignment``: the teacher dual encoder's image-text cosine, its images
  resized to each ``--align-sizes`` (the teacher's own input size, and the reward's default
  of 64 px).

Reported per reward: the AUROC of separating the rule evaluator's strict passes from its
failures on the generated images, the Pearson correlation with the rule's partial credit,
and (the check ``arm-rl judge-agreement`` runs on the full world) the AUROC of true renders
of each prompt's scene under its own prompt vs under the next prompt's.

    OMP_NUM_THREADS=1 python experiments/reward_agreement_demo.py \\
        --suite /tmp/h13/suite/demo-seed1-lm-heldout --judge runs/demo-seed1/lm \\
        --teacher runs/demo-seed1/teacher --out /tmp/h13/agreement.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", required=True, help="a scored shapes-suite output directory")
    p.add_argument("--judge", required=True, help="exported arm-core LM used as the judge")
    p.add_argument("--tokenizer", default=None, help="visual tokenizer dir (default: the judge's)")
    p.add_argument("--teacher", required=True, help="teacher dual encoder directory")
    p.add_argument("--align-sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)

    from arm_data.shapes import SceneSpec, render
    from arm_rl.prompts import PromptRecord
    from arm_rl.recipes import auroc, pearson
    from arm_rl.rewards.alignment import DualEncoderAlignmentReward, TeacherDualEncoder
    from arm_rl.rewards.judge import ARMJudge, JudgeReward
    from PIL import Image

    suite = Path(a.suite)
    scores = json.loads((suite / "scores-shapes.json").read_text())
    lines = {f"{i:05d}": json.loads(x) for i, x in
             enumerate(Path(scores["prompts"]).read_text().splitlines())}

    recs, images, strict, partial, tags = [], [], [], [], []
    for r in scores["records"]:
        line = lines[r["item_id"]]
        extra = line["shapes"]
        rec = PromptRecord("t2i", line["prompt"], spec=SceneSpec.from_dict(extra["spec"]),
                           check=frozenset(extra["check"]),
                           relations=tuple(tuple(x) for x in extra["relations"]) or None,
                           index=int(r["item_id"]), split="heldout")
        for k, (s, c) in enumerate(zip(r["scores"], r["correct"], strict=True)):
            recs.append(rec)
            images.append(Image.open(suite / r["item_id"] / "samples" / f"{k:04d}.png").convert("RGB"))
            strict.append(bool(c))
            partial.append(float(s))
            tags.append(r["tag"])
    size = images[0].size
    # true renders of each distinct prompt's scene, under its own / the next prompt
    uniq = list({rec.index: rec for rec in recs}.values())
    renders = [render(rec.spec, *size) for rec in uniq]
    shifted = renders[1:] + renders[:1]
    # the rule evaluator on the true renders: its own ceiling at this image size
    from arm_data.shapes import evaluate_t2i

    lines_by_index = {int(k): v for k, v in lines.items()}
    ceiling = [evaluate_t2i(im, rec.spec, check=lines_by_index[rec.index]["shapes"]["check"],
                            relations=list(rec.relations or ()) or None)
               for im, rec in zip(renders, uniq, strict=True)]

    rewards = {"judge": JudgeReward(ARMJudge(checkpoint=a.judge, tokenizer_dir=a.tokenizer))}
    for s in a.align_sizes:
        rewards[f"align_{s}px"] = DualEncoderAlignmentReward(
            model=TeacherDualEncoder(a.teacher, image_size=s))
    strict_t, partial_t = torch.tensor(strict), torch.tensor(partial)
    res: dict = {"suite": str(suite), "judge": a.judge, "teacher": a.teacher,
                 "images": len(images), "strict_pass": int(strict_t.sum()),
                 "prompts": len(uniq), "image_size": list(size),
                 "rule_on_true_renders": {"strict": sum(r.strict for r in ceiling) / len(ceiling),
                                          "partial": sum(r.score for r in ceiling) / len(ceiling)},
                 "rewards": {}}
    print("rule on true renders", res["rule_on_true_renders"], flush=True)
    for name, rw in rewards.items():
        t0 = time.perf_counter()
        gen = rw(images, recs).float()
        matched, mismatched = rw(renders, uniq).float(), rw(shifted, uniq).float()
        res["rewards"][name] = {
            "auroc_strict_pass_vs_fail": auroc(gen[strict_t], gen[~strict_t]),
            "auroc_partial_ge_0.75_vs_below": auroc(gen[partial_t >= 0.75], gen[partial_t < 0.75]),
            "pearson_partial": pearson(gen, partial_t),
            "mean_pass": float(gen[strict_t].mean()), "mean_fail": float(gen[~strict_t].mean()),
            "auroc_matched_vs_mismatched_renders": auroc(matched, mismatched),
            "mean_matched": float(matched.mean()), "mean_mismatched": float(mismatched.mean()),
            "seconds": round(time.perf_counter() - t0, 1)}
        print(name, json.dumps(res["rewards"][name]), flush=True)
    res["n_partial_ge_0.75"] = int((partial_t >= 0.75).sum())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()

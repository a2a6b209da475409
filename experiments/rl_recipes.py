"""ARM's RL recipe table in miniature on ShapesWorld: SFT, T2I-RL, Edit-RL, T2I->Edit,
T2I->Edit->Joint, and T2I-RL with the self-judge alone, each evaluated on held-out
compositions with `arm-lm evaluate`.

Every RL run is `arm-rl fit` / `arm-rl staged` on the shipped configs in configs/rl/ with
only these overrides: steps, group size, prompts per step, learning rate and paths (the
derived configs are written next to the results so any row can be re-run by hand).

    python experiments/rl_recipes.py --sft runs/reproduce/lm --tokenizer runs/reproduce/tokenizer \
        --out runs/recipes --steps 30 --lr 2e-4

Writes <out>/recipes.json and <out>/recipes.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from arm_tokenizer.framework.deprecation import add_renamed_flag

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

p = argparse.ArgumentParser()
p.add_argument("--sft", required=True, help="exported SFT LM (the start of every recipe)")
p.add_argument("--tokenizer", required=True)
p.add_argument("--out", required=True)
p.add_argument("--steps", type=int, default=30, help="GRPO steps per stage")
p.add_argument("--group", type=int, default=8)
p.add_argument("--prompts", type=int, default=4, help="prompts per step")
p.add_argument("--lr", type=float, default=2e-4, help="ARM's 7B uses 1e-5 scale; a 5.6M-param LM needs more (our choice)")
p.add_argument("--n", type=int, default=100, help="held-out scenes per task in evaluation")
p.add_argument("--guidance-scale", nargs="+", default=["1"], help="evaluation guidance scales")
add_renamed_flag(p, "--cfg", "--guidance-scale")
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
out = Path(a.out).resolve()
(out / "configs").mkdir(parents=True, exist_ok=True)
env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}


def derive(name: str, source: str, extra: dict | None = None) -> Path:
    cfg = yaml.safe_load((ROOT / source).read_text())
    tr = cfg["trainer"]
    tr.update(max_steps=a.steps, enable_checkpointing=False, enable_progress_bar=False,
              default_root_dir=str(out / f"{name}-logs"))
    tr["logger"] = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                     "init_args": {"save_dir": str(out / f"{name}-logs"), "name": "csv"}}]
    tr.pop("callbacks", None)
    m = cfg["model"]["init_args"]
    m.update(group_size=a.group, lr=a.lr, export_dir=str(out / name), policy_checkpoint=a.sft,
             visual_tokenizer=a.tokenizer)
    m.update(extra or {})
    cfg["data"]["init_args"]["prompts_per_step"] = a.prompts
    path = out / "configs" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(cmd: list[str], log: str) -> None:
    t = time.time()
    with open(out / log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        sys.exit(f"{' '.join(cmd)} failed (rc {rc}); see {out / log}")
    print(f"{log}: {time.time() - t:.0f} s", flush=True)


def evaluate(lm: Path, name: str) -> dict:
    res = out / f"eval-{name}.json"
    if not res.exists():
        run([str(BIN / "arm-lm"), "evaluate", "--lm", str(lm), "--tokenizer", a.tokenizer, "--split", "heldout",
             "--n", str(a.n), "--guidance-scale", *a.guidance_scale, "--out", str(res)], f"eval-{name}.log")
    return json.loads(res.read_text())["summary"]


t2i = derive("t2i", "configs/rl/shapes-t2i-grpo.yaml")
edit = derive("edit", "configs/rl/shapes-edit-grpo.yaml")
joint = derive("joint", "configs/rl/shapes-multitask-grpo.yaml")
t2i_task = yaml.safe_load((ROOT / "configs/rl/shapes-t2i-grpo.yaml").read_text())["model"]["init_args"]["tasks"]["t2i"]
judge = derive("t2i-judge", "configs/rl/shapes-t2i-grpo.yaml",
               {"tasks": {"t2i": {**t2i_task, "reward": {"class_path": "judge"}}}})
seconds = {}
for name, cmd in [
    ("staged", [str(BIN / "arm-rl"), "staged", "--config", str(t2i), str(edit), str(joint), "--start", a.sft,
                "--out", str(out / "staged")]),
    ("edit-only", [str(BIN / "arm-rl"), "fit", "--config", str(edit), "--model.init_args.export_dir",
                   str(out / "edit-only")]),
    ("t2i-judge", [str(BIN / "arm-rl"), "fit", "--config", str(judge)]),
]:
    marker = out / f"{name}.done"
    if not marker.exists():
        t0 = time.time()
        run(cmd, f"{name}.log")
        seconds[name] = round(time.time() - t0, 1)
        marker.write_text(str(seconds[name]))
    else:
        seconds[name] = float(marker.read_text())

staged = [Path(s["export"]) for s in json.loads((out / "staged" / "stages.json").read_text())]
# (row, export, paper's figures for the same recipe from DESIGN.md: GenEval / WISE / GEdit G_O)
rows = [("SFT", Path(a.sft), "0.79 / 0.50 / 5.75"), ("T2I-RL", staged[0], "— / — / 5.92"),
        ("Edit-RL", out / "edit-only", "— / 0.54 / —"), ("T2I→Edit", staged[1], "—"),
        ("T2I→Edit→Joint", staged[2], "0.86 / 0.56 / 6.68"), ("T2I-RL, self-judge reward only", out / "t2i-judge", "—")]
table = []
for row, lm, paper in rows:
    m = evaluate(lm, row.replace("→", "-").replace(" ", "").replace(",", ""))
    table.append({"recipe": row, "export": str(lm), "t2i": m["t2i"]["cfg1"], "edit_adherence": m["edit"]["cfg1"]["adherence"],
                  "edit_consistency": m["edit"]["cfg1"]["consistency"], "vqa": m["vqa"]["heldout"], "paper": paper})
(out / "recipes.json").write_text(json.dumps({"settings": vars(a), "seconds": seconds, "rows": table}, indent=2) + "\n")
md = ["| recipe | T2I overall | edit adherence | edit consistency | VQA | paper GenEval / WISE / GEdit G_O |",
      "|---|---|---|---|---|---|"]
md += [f"| {r['recipe']} | {r['t2i']:.3f} | {r['edit_adherence']:.3f} | {r['edit_consistency']:.3f} | {r['vqa']:.3f} | {r['paper']} |"
       for r in table]
(out / "recipes.md").write_text("\n".join(md) + "\n")
print("\n".join(md))

"""Scorers as RL rewards (``scorer``) and RL prompt sets from files (``file_prompts``): GenEval,
DPG-Bench and edit-triplet files are read and validated with line numbers; the rule scorer
agrees with the rule reward; a GRPO step runs from YAML with ``siglip_score`` on GenEval
prompts and with ``vlm_judge`` on edit triplets, on tiny random transformers checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from arm_core.testing import one_step_trainer
from arm_rl.prompt_files import FilePromptDataModule, geneval_questions, read_prompt_file
from arm_rl.prompts import PromptRecord, ShapesPromptDataset
from arm_rl.rewards.base import RewardError
from arm_rl.rewards.scorer import ScorerReward, record_to_item
from arm_rl.rewards.shapes import ShapesT2IReward
from PIL import Image

GENEVAL = [
    {"tag": "two_object", "include": [{"class": "bus", "count": 1}, {"class": "dog", "count": 1}],
     "prompt": "a photo of a bus and a dog"},
    {"tag": "counting", "include": [{"class": "apple", "count": 3}], "exclude": [{"class": "apple", "count": 4}],
     "prompt": "a photo of three apples"},
    {"tag": "position", "include": [{"class": "cat", "count": 1},
                                    {"class": "car", "count": 1, "color": "red", "position": ["left of", 0]}],
     "prompt": "a photo of a red car left of a cat"},
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _render(spec, size=64):
    from arm_data.shapes import render

    return render(spec, size, size)


def _edit_file(tmp_path: Path, n: int = 2) -> Path:
    ds = ShapesPromptDataset(20, {"edit": 1.0}, seed=0)
    (tmp_path / "img").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        r = ds[i]
        _render(r.spec).save(tmp_path / "img" / f"{i}.png")
        rows.append({"source_image": f"img/{i}.png", "instruction": r.text, "id": f"e{i}",
                     **({"target_caption": "a blue square"} if i == 0 else {})})
    return _jsonl(tmp_path / "edits.jsonl", rows)


def test_geneval_file_becomes_t2i_records_with_questions(tmp_path):
    from arm_core.suites.shapes import make_prompts, write_prompts

    entries = read_prompt_file(_jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL))
    recs = [PromptRecord(**e) for e in entries]
    assert [r.task for r in recs] == ["t2i"] * 3 and recs[0].meta["tag"] == "two_object"
    assert recs[0].questions == [("Is there a bus in the image?", "yes"), ("Is there a dog in the image?", "yes")]
    assert ("Are there 4 or more apples in the image?", "no") in recs[1].questions
    assert ("Is the red car to the left of the cat?", "yes") in geneval_questions(GENEVAL[2])
    # ShapesWorld prompts in GenEval's format carry their scenes: the rule reward scores them
    shapes = write_prompts(tmp_path / "shapes.jsonl", make_prompts(per_tag=1, split="train"))
    srecs = [PromptRecord(**e) for e in read_prompt_file(shapes, "geneval")]
    assert all(r.spec is not None and r.meta["suite"] == "shapes" for r in srecs)
    good = ShapesT2IReward()([_render(r.spec) for r in srecs], srecs)
    assert good.mean() > 0.8


def test_dpg_folder_and_csv_and_edit_triplets(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a1.txt").write_text("A cat on a red sofa.\n")
    (tmp_path / "prompts" / "b2.txt").write_text("Two birds.")
    folder = read_prompt_file(tmp_path / "prompts")
    assert [(e["meta"]["item_id"], e["text"]) for e in folder] == [("a1", "A cat on a red sofa."), ("b2", "Two birds.")]
    csv_path = tmp_path / "dpg_bench.csv"
    csv_path.write_text("item_id,text,proposition_id,category_broad,question_natural_language\n"
                        "a1,A cat on a red sofa.,1,entity,Is there a cat?\n"
                        "a1,A cat on a red sofa.,2,attribute,Is the sofa red?\n"
                        "b2,Two birds.,1,entity,Are there birds?\n")
    by_csv = read_prompt_file(csv_path)
    assert by_csv[0]["questions"] == [("Is there a cat?", "yes"), ("Is the sofa red?", "yes")]
    assert by_csv[0]["meta"]["tag"] == "entity"
    dm = FilePromptDataModule(str(_edit_file(tmp_path)), prompts_per_step=2, shuffle=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert [r.task for r in batch] == ["edit", "edit"] and batch[0].source_image.size == (64, 64)
    assert batch[0].meta["target_caption"] == "a blue square" and "target_caption" not in batch[1].meta


@pytest.mark.parametrize("rows, fmt, match", [
    ([GENEVAL[0], {"tag": "colors", "include": []}], "geneval", r"line 2: missing field 'prompt'"),
    ([GENEVAL[0], "{not json"], "geneval", r"line 2: not valid JSON"),
    ([{"prompt": "a cat"}], "auto", r"line 1: cannot tell the prompt format"),
    ([{"source_image": "nope.png", "instruction": "make it red"}], "edits", r"line 1: source_image .*nope.png does not exist"),
    ([{"source_image": "bad.png", "instruction": "x"}], "edits", r"line 1: source_image .*bad.png is not a readable image"),
    ([{"source_image": "img/0.png", "instrction": "x"}], "edits", r"line 1: unknown field\(s\) \['instrction'\]"),
    ([GENEVAL[0]], "edits", r"line 1: unknown field"),
])
def test_bad_prompt_files_name_file_line_and_field(tmp_path, rows, fmt, match):
    from arm_core.suites.base import SuiteError

    _edit_file(tmp_path, 1)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    path = _jsonl(tmp_path / "prompts.jsonl", rows)
    with pytest.raises(SuiteError, match=match) as e:
        read_prompt_file(path, fmt)
    assert str(path) in str(e.value)


def test_scorer_reward_groups_rollouts_and_matches_the_rule_reward():
    ds = ShapesPromptDataset(40, {"t2i": 1.0}, seed=0)
    recs = [ds[i] for i in range(3)]
    rows = [r for r in recs for _ in range(2)]               # G = 2, rows of a group consecutive
    images = [_render(r.spec) if k % 2 == 0 else Image.new("RGB", (64, 64), "white")
              for k, r in enumerate(rows)]
    reward = ScorerReward("shapes", scale=2.0, shift=-1.0)
    v = reward(images, rows)
    rule = ShapesT2IReward()(images, rows)
    assert v.shape == (6,) and (v[0::2] > v[1::2]).all()    # true renders beat blank images
    torch.testing.assert_close((v + 1) / 2, rule)             # the same evaluator, the same clauses
    item = record_to_item(rows[0], images[:2], "0@0")
    assert item.suite == "shapes" and len(item.images) == 2 and item.record["questions"]
    with pytest.raises(RewardError, match="'nope'.*cannot build scorer 'nope'"):
        ScorerReward("nope")(images, rows)
    with pytest.raises(ValueError, match="device="):
        ScorerReward("siglip_score", args={"name_or_path": "x", "device": "cuda:1"})


def test_scorer_reward_on_policy_device_only_when_asked():
    lin = torch.nn.Linear(2, 2)
    r = ScorerReward("shapes", device="policy")
    r.bind(policy=lin)
    assert r.device == torch.device("cpu") and r.scorer.device == "cpu"
    assert ScorerReward("shapes", device="cuda:1").device == torch.device("cuda:1")   # not loaded yet


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    pytest.importorskip("transformers")
    from arm_core.suites.scorers.tiny_hf import build_tiny_qwen2_vl, build_tiny_siglip

    root = tmp_path_factory.mktemp("hf")
    return {"siglip": build_tiny_siglip(root / "siglip"), "qwen": build_tiny_qwen2_vl(root / "qwen")}


def _fit_yaml(tmp_path: Path, lm: Path, data: dict, tasks: dict) -> int:
    from arm_rl.cli import EXTRA_COMMANDS
    from arm_tokenizer.framework.cli_base import run_cli

    cfg = {"seed_everything": 0,
           "trainer": one_step_trainer(tmp_path),
           "model": {"class_path": "grpo",
                     "init_args": {"policy_checkpoint": str(lm), "group_size": 2, "beta": 0.01,
                                   "export_dir": str(tmp_path / "out"),
                                   "tasks": {t: {"top_k": None, "reward": r} for t, r in tasks.items()}}},
           "data": data}
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return run_cli("arm-rl", ["fit", "--config", str(path)], EXTRA_COMMANDS, trainable=True)


def _logged_reward(tmp_path: Path, task: str) -> float:
    import csv

    (metrics,) = (tmp_path / "logs" / "csv").glob("version_*/metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get(f"train/reward/{task}/mean")]
    return float(rows[-1][f"train/reward/{task}/mean"])


def test_grpo_step_from_yaml_with_siglip_score_on_geneval_prompts(tiny_lm, hf, tmp_path, monkeypatch):
    from arm_core.checkpoint import load_lm

    monkeypatch.chdir(tmp_path)
    prompts = _jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL)
    rc = _fit_yaml(tmp_path, tiny_lm / "lm",
                   {"class_path": "file_prompts", "init_args": {"path": str(prompts), "prompts_per_step": 2}},
                   {"t2i": {"class_path": "scorer",
                            "init_args": {"scorer": "siglip_score", "device": "cpu",
                                          "args": {"name_or_path": str(hf["siglip"]), "batch_size": 3}}}})
    assert rc == 0
    assert load_lm(tmp_path / "out").metadata["global_step"] == 1
    assert 0.0 < _logged_reward(tmp_path, "t2i") < 1.0          # SigLIP's match probability


def test_grpo_step_from_yaml_with_vlm_judge_on_edit_triplets(tiny_lm, hf, tmp_path, monkeypatch):
    from arm_core.checkpoint import load_lm

    monkeypatch.chdir(tmp_path)
    rc = _fit_yaml(tmp_path, tiny_lm / "lm",
                   {"class_path": "file_prompts",
                    "init_args": {"path": str(_edit_file(tmp_path)), "format": "edits", "prompts_per_step": 1}},
                   {"edit": {"class_path": "scorer",
                             "init_args": {"scorer": "vlm_judge", "scale": 0.1,
                                           "args": {"name_or_path": str(hf["qwen"]), "batch_size": 8}}}})
    assert rc == 0
    assert load_lm(tmp_path / "out").metadata["global_step"] == 1
    assert 0.0 < _logged_reward(tmp_path, "edit") < 1.0         # 0.1 x VIEScore's 0-10 overall


def test_a_bad_prompt_file_stops_arm_rl_fit_with_exit_2(tiny_lm, tmp_path, monkeypatch, capsys):
    from arm_rl.cli import main

    monkeypatch.delenv("ARM_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    bad = _jsonl(tmp_path / "evaluation_metadata.jsonl", [GENEVAL[0], {"tag": "colors", "include": []}])
    cfg = tmp_path / "rl.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"class_path": "grpo", "init_args": {"policy_checkpoint": str(tiny_lm / "lm")}},
                                   "data": {"class_path": "file_prompts", "init_args": {"path": str(bad)}},
                                   "trainer": {"accelerator": "cpu", "logger": False}}))
    monkeypatch.setattr(sys, "argv", ["arm-rl"])
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "line 2: missing field 'prompt'" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()

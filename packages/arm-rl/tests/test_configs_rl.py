"""configs/rl/*.yaml run through `arm-rl fit` for one step on the tiny fixture LM and export
an LM that arm-core loads; a composite rule + self-judge reward config runs too."""

from __future__ import annotations

from pathlib import Path

import yaml
from arm_rl.cli import EXTRA_COMMANDS
from arm_tokenizer.cli_base import run_cli

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "rl"
NAMES = ("shapes-t2i-grpo.yaml", "shapes-edit-grpo.yaml", "shapes-multitask-grpo.yaml")


def _fit(config: Path, lm: Path, *extra: str) -> int:
    return run_cli("arm-rl", ["fit", "--config", str(config), "--trainer.max_steps=1",
                              "--trainer.logger=false", "--trainer.callbacks=[]",
                              "--trainer.enable_checkpointing=false",
                              f"--model.init_args.policy_checkpoint={lm}",
                              "--model.init_args.group_size=2", "--model.init_args.sample_every_n_steps=1",
                              "--data.init_args.prompts_per_step=1", *extra],
                   EXTRA_COMMANDS, trainable=True)


def test_arm_defaults_in_the_shipped_configs():
    for name in NAMES:
        m = yaml.safe_load((CONFIGS / name).read_text())["model"]["init_args"]
        assert (m["group_size"], m["beta"], m["eps_low"], m["eps_high"], m["top_k"]) == (16, 0.01, 0.2, 0.2, 1000)
        assert m.get("t2i_temperature", 0.7) == 0.7 and m.get("edit_temperature", 1.0) == 1.0


def test_multitask_config_fits_one_step_and_exports(tiny_lm, tmp_path, monkeypatch):
    from arm_core.checkpoint import load_lm

    monkeypatch.chdir(tmp_path)
    assert _fit(CONFIGS / "shapes-multitask-grpo.yaml", tiny_lm / "lm") == 0
    ck = load_lm(tmp_path / "runs" / "rl")
    assert ck.metadata["global_step"] == 1 and ck.layout is not None


def test_staged_recipe_chains_the_t2i_and_edit_configs(tiny_lm, tmp_path, monkeypatch):
    import json

    from arm_core.checkpoint import load_lm

    monkeypatch.chdir(tmp_path)
    rc = EXTRA_COMMANDS["staged"](
        ["--config", str(CONFIGS / "shapes-t2i-grpo.yaml"), str(CONFIGS / "shapes-edit-grpo.yaml"),
         "--start", str(tiny_lm / "lm"), "--out", str(tmp_path / "staged"), "--reference", "start",
         "--trainer.max_steps=1", "--trainer.logger=false", "--trainer.callbacks=[]",
         "--trainer.enable_checkpointing=false", "--model.init_args.group_size=2",
         "--data.init_args.prompts_per_step=1"])
    assert rc == 0
    stages = json.loads((tmp_path / "staged" / "stages.json").read_text())
    assert [s["started_from"] for s in stages] == [str(tiny_lm / "lm"), stages[0]["export"]]
    second = load_lm(stages[1]["export"])
    assert second.metadata["started_from"] == stages[0]["export"]
    assert second.metadata["hparams"]["reference_checkpoint"] == str(tiny_lm / "lm")


def test_composite_with_self_judge(tiny_lm, tmp_path, monkeypatch):
    from arm_core.checkpoint import load_lm

    cfg = yaml.safe_load((CONFIGS / "shapes-t2i-grpo.yaml").read_text())
    cfg["model"]["init_args"]["t2i_reward"] = {
        "class_path": "composite",
        "init_args": {"rewards": [{"class_path": "shapes_t2i"}, {"class_path": "judge"}],
                      "weights": [1.0, 0.5]}}
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    assert _fit(path, tiny_lm / "lm") == 0
    assert load_lm(tmp_path / "runs" / "rl-t2i").metadata["global_step"] == 1

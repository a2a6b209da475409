"""configs/rl/*.yaml run through `arm-rl fit` for one step on the tiny fixture LM and export
an LM that arm-core loads; a composite rule + self-judge reward config runs too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from arm_rl.cli import EXTRA_COMMANDS
from arm_tokenizer.framework.cli_base import run_cli

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
    arm_temperature = {"t2i": 0.7, "edit": 1.0}
    for name in NAMES:
        m = yaml.safe_load((CONFIGS / name).read_text())["model"]["init_args"]
        assert (m["group_size"], m["beta"], m["eps_low"], m["eps_high"]) == (16, 0.01, 0.2, 0.2)
        assert m["tasks"] and all(t["top_k"] == 1000 and t["temperature"] == arm_temperature[n]
                                  for n, t in m["tasks"].items()), m["tasks"]


def test_shipped_configs_use_the_tasks_spelling():
    from arm_rl.rl_task import LEGACY_ARGUMENTS

    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        m = cfg["model"]["init_args"]
        assert not set(m) & {*LEGACY_ARGUMENTS, "top_k"}, path.name
        assert "task_weights" not in cfg["data"]["init_args"], path.name   # the mix is the tasks' weights


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
    cfg["model"]["init_args"]["tasks"]["t2i"]["reward"] = {
        "class_path": "composite",
        "init_args": {"rewards": [{"class_path": "shapes_t2i"}, {"class_path": "judge"}],
                      "weights": [1.0, 0.5]}}
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    assert _fit(path, tiny_lm / "lm") == 0
    assert load_lm(tmp_path / "runs" / "rl-t2i").metadata["global_step"] == 1


REWARD_MODULE = '''
import torch
from arm_rl.rewards.base import Reward, as_tensor

CALLS = []


class Brightness(Reward):
    """Mean brightness of each image in [0, 1], pulled towards ``target``."""

    def __init__(self, target: float = 0.5, name: str | None = None, device: str = "cpu") -> None:
        super().__init__(name, device)
        self.target = target

    def compute(self, images, records, codes=None):
        CALLS.append(len(images))
        mean = (as_tensor(images).mean(dim=(1, 2, 3)) + 1) / 2
        return 1 - (mean - self.target).abs()
'''


@pytest.fixture
def third_party_reward(arm_register):
    """A reward in a module of its own, registered ad hoc (as a pip plugin's entry point would)."""
    arm_register("reward:brightness=my_rewards:Brightness", my_rewards=REWARD_MODULE)


def test_a_third_party_reward_trains_by_name_from_yaml(tiny_lm, tmp_path, monkeypatch,
                                                        third_party_reward, capsys):
    import my_rewards

    cfg = yaml.safe_load((CONFIGS / "shapes-t2i-grpo.yaml").read_text())
    cfg["model"]["init_args"]["tasks"]["t2i"]["reward"] = {"class_path": "brightness",
                                                           "init_args": {"target": 0.8}}
    path = tmp_path / "bright.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    assert _fit(path, tiny_lm / "lm") == 0
    assert my_rewards.CALLS == [2]                    # one prompt x a group of 2, one call

    cfg["model"]["init_args"]["tasks"]["t2i"]["reward"]["class_path"] = "brightnes"
    path.write_text(yaml.safe_dump(cfg))
    assert _fit(path, tiny_lm / "lm") == 2
    err = capsys.readouterr().err
    assert "unknown component 'brightnes'" in err and "brightness" in err

"""`tasks: {name: {weight, sampling, reward}}`: parsed from YAML by the real `arm-rl fit`,
the old per-task arguments mapped onto it (with a DeprecationWarning), the prompt mix
following its weights, a plugin task trained with no arm-rl change, and the errors for a
task that cannot be trained."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from arm_core.testing import one_step_trainer
from arm_rl.cli import EXTRA_COMMANDS
from arm_rl.lightning_module import GRPOTrainer
from arm_rl.prompts import PromptRecord, ShapesPromptDataModule, ShapesPromptDataset
from arm_rl.rewards.base import Reward
from arm_rl.rewards.shapes import ShapesEditReward, ShapesT2IReward
from arm_rl.rl_task import RLTask
from arm_tokenizer.framework.cli_base import run_cli

ARM_RL = Path(sys.executable).with_name("arm-rl")


class CodeReward(Reward):
    """Fraction of the image's codes equal to 3: varies within a group, so a step has a gradient."""

    def compute(self, images, records, codes=None):
        return (codes == 3).float().mean(1)


def _yaml(tmp_path: Path, model: dict, data: dict | None = None, name: str = "rl.yaml") -> Path:
    cfg = {"seed_everything": 0,
           "trainer": one_step_trainer(tmp_path),
           "model": {"class_path": "grpo", "init_args": {"group_size": 2, "export_dir": str(tmp_path / "out"),
                                                         **model}},
           "data": {"class_path": "shapes_prompts",
                    "init_args": {"prompts_per_step": 2, "num_prompts": 16, **(data or {})}}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _logged(tmp_path: Path) -> set[str]:
    (metrics,) = (tmp_path / "logs" / "csv").glob("version_*/metrics.csv")
    return {k for row in csv.DictReader(metrics.open()) for k, v in row.items() if v}


TASKS_YAML = {
    "t2i": {"weight": 3.0, "temperature": 0.9, "top_k": 12, "guidance_scale": 1.5,
            "reward": {"class_path": "shapes_t2i", "init_args": {"strict_bonus": 0.5}}},
    "edit": {"weight": 1.0, "temperature": 1.0, "guidance_scale": 1.5, "image_guidance_scale": 1.25,
             "reward": {"class_path": "shapes_edit"}},
}


def test_tasks_from_yaml_print_config_and_one_step(tiny_lm, tmp_path, monkeypatch):
    from arm_core.checkpoint import load_lm

    path = _yaml(tmp_path, {"policy_checkpoint": str(tiny_lm / "lm"), "tasks": TASKS_YAML})
    out = subprocess.run([str(ARM_RL), "fit", "--config", str(path), "--print_config"], capture_output=True,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr
    tasks = yaml.safe_load(out.stdout)["model"]["init_args"]["tasks"]
    assert list(tasks) == ["t2i", "edit"]
    assert tasks["t2i"]["reward"] == {"class_path": "arm_rl.rewards.shapes.ShapesT2IReward",
                                      "init_args": {"strict_bonus": 0.5, "check_all": False, "name": "shapes_t2i"}}
    assert (tasks["t2i"]["temperature"], tasks["t2i"]["top_k"], tasks["t2i"]["guidance_scale"]) == (0.9, 12, 1.5)
    assert (tasks["edit"]["top_k"], tasks["edit"]["image_guidance_scale"]) == (1000, 1.25)   # RLTask's default

    monkeypatch.chdir(tmp_path)
    assert run_cli("arm-rl", ["fit", "--config", str(path), "--data.init_args.prompts_per_step=4"],
                   EXTRA_COMMANDS, trainable=True) == 0
    meta = load_lm(tmp_path / "out").metadata
    assert meta["global_step"] == 1
    assert meta["tasks"]["t2i"] == {"weight": 3.0, "temperature": 0.9, "top_k": 12, "guidance_scale": 1.5,
                                    "image_guidance_scale": 1.0, "reward": "shapes_t2i"}
    assert meta["tasks"]["edit"]["reward"] == "shapes_edit"
    assert "train/reward/mean" in _logged(tmp_path)


def test_the_prompt_mix_follows_the_tasks_weights(tiny_lm, tmp_path):
    tasks = {"t2i": RLTask(weight=3.0, reward=CodeReward()), "edit": RLTask(weight=1.0, reward=CodeReward())}
    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks=tasks, group_size=2, beta=0.0, export_dir="")
    dm = ShapesPromptDataModule(prompts_per_step=2, num_prompts=400)           # no mix of its own
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 1
    assert dm.task_weights == {"t2i": 0.75, "edit": 0.25} and dm.dataset.weights == dm.task_weights
    drawn = [dm.dataset.task_of(i) for i in range(400)]
    assert 0.65 < drawn.count("t2i") / 400 < 0.85                  # 3:1, not the old default (t2i only)

    # a mix given to the data module too must agree with the tasks' weights
    with pytest.raises(ValueError, match=r"data task_weights \{t2i: 0.5, edit: 0.5\} and the model's tasks "
                                         r"weights \{t2i: 0.75, edit: 0.25\} disagree"):
        ShapesPromptDataModule({"t2i": 1.0, "edit": 1.0}).follow_task_weights(module.task_weights(), ["t2i", "edit"])
    ShapesPromptDataModule({"t2i": 6.0, "edit": 2.0}).follow_task_weights(module.task_weights(), ["t2i", "edit"])
    # with no mix from the model (old spelling), the data's is kept but must be trained
    with pytest.raises(ValueError, match=r"draw \['edit'\] prompts, but the model trains only \['t2i'\]"):
        ShapesPromptDataModule({"edit": 1.0}).follow_task_weights(None, ["t2i"])


def test_old_per_task_arguments_warn_and_map_onto_tasks(tiny_lm, tmp_path):
    from arm_core.checkpoint import load_lm

    r_t2i, r_edit = CodeReward(), CodeReward()
    common = dict(policy_checkpoint=str(tiny_lm / "lm"), group_size=2, lr=1e-2, export_dir="", seed=5)
    with pytest.warns(DeprecationWarning, match=r"t2i_reward, .*edit_image_cfg_scale, top_k are deprecated.*"
                                                r"write tasks\.t2i\.reward, .*tasks\.edit\.image_guidance_scale"):
        old = GRPOTrainer(t2i_reward=r_t2i, edit_reward=r_edit, t2i_temperature=0.9, edit_temperature=0.8,
                          t2i_cfg_scale=1.5, edit_cfg_scale=2.0, edit_image_cfg_scale=1.25, top_k=None, **common)
    new = GRPOTrainer(tasks={
        "t2i": RLTask(temperature=0.9, top_k=None, guidance_scale=1.5, reward=r_t2i),
        "edit": RLTask(temperature=0.8, top_k=None, guidance_scale=2.0, image_guidance_scale=1.25, reward=r_edit)},
        **common)
    assert old.sampling == new.sampling and list(old.sampling) == ["t2i", "edit"]
    assert old.sampling["edit"].image_guidance_scale == 1.25 and old.sampling["t2i"].top_k is None
    assert old.rewards == {"t2i": r_t2i, "edit": r_edit} == new.rewards
    assert not old.task_mix_given and new.task_mix_given     # the old spelling leaves the mix to the data

    # defaults for what the old spelling leaves out: ARM's temperatures and the rule rewards
    with pytest.warns(DeprecationWarning, match="edit_temperature is deprecated"):
        partial = GRPOTrainer(edit_temperature=0.5)
    assert (partial.sampling["t2i"].temperature, partial.sampling["edit"].temperature) == (0.7, 0.5)
    assert isinstance(partial.rewards["t2i"], ShapesT2IReward) and isinstance(partial.rewards["edit"], ShapesEditReward)

    # the same step from both spellings (same seed): the same rollouts, so the same update
    def step(module, root):
        torch.manual_seed(0)
        trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
        trainer.fit(module, datamodule=ShapesPromptDataModule({"t2i": 0.5, "edit": 0.5}, prompts_per_step=2,
                                                              num_prompts=8))
        return module.policy.state_dict()

    a, b = step(old, tmp_path / "old"), step(new, tmp_path / "new")
    start = load_lm(tiny_lm / "lm").model.state_dict()
    assert any(not torch.allclose(a[k], start[k]) for k in a)     # it did step
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_old_spelling_yaml_still_trains(tiny_lm, tmp_path, monkeypatch):
    from arm_core.checkpoint import load_lm

    path = _yaml(tmp_path, {"policy_checkpoint": str(tiny_lm / "lm"), "t2i_reward": {"class_path": "shapes_t2i"},
                            "t2i_temperature": 0.7, "t2i_cfg_scale": 1.0, "top_k": 1000},
                 {"task_weights": {"t2i": 1.0}})
    monkeypatch.chdir(tmp_path)
    with pytest.warns(DeprecationWarning, match=r"t2i_reward, t2i_temperature, t2i_cfg_scale are deprecated"):
        assert run_cli("arm-rl", ["fit", "--config", str(path)], EXTRA_COMMANDS, trainable=True) == 0
    assert load_lm(tmp_path / "out").metadata["global_step"] == 1


def test_a_checkpoint_with_the_old_hyperparameters_loads(tiny_lm, tmp_path):
    """Checkpoints written before `tasks` saved t2i_temperature, edit_cfg_scale, ... as
    hyper-parameters: they load, mapped onto tasks."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks={"t2i": RLTask(reward=CodeReward())},
                         group_size=2, export_dir="")
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[ModelCheckpoint(dirpath=tmp_path, filename="last")])
    trainer.fit(module, datamodule=ShapesPromptDataModule({"t2i": 1.0}, prompts_per_step=1, num_prompts=4))
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    hp = ckpt["hyper_parameters"]
    for k in ("t2i_reward", "edit_reward", "t2i_temperature", "edit_temperature", "t2i_cfg_scale",
              "edit_cfg_scale", "edit_image_cfg_scale"):
        hp.pop(k, None)
    hp.update(t2i_temperature=0.7, edit_temperature=1.0, t2i_cfg_scale=1.0, edit_cfg_scale=1.0,
              edit_image_cfg_scale=1.0, top_k=1000)          # what the earlier release wrote
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.warns(DeprecationWarning, match="t2i_temperature"):
        loaded = GRPOTrainer.load_from_checkpoint(tmp_path / "old.ckpt")
    assert loaded.sampling["t2i"].temperature == 0.7 and loaded.sampling["edit"].top_k == 1000
    for k, v in module.policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[k], v, msg=k)


# ---------------------------------------------------------------------- a plugin task
TASK_MODULE = '''
import torch
from arm_data.formats import image_header
from arm_data.tasks import Task
from arm_rl.rewards.base import Reward

STYLE = "a drawing of"
SEEN = []


class StyledT2I(Task):
    """Text-to-image with a style phrase before the caption: a task arm-rl has never heard of."""

    name = "styled_t2i"
    token = "<t2i>"
    reads = "t2i"          # ShapesWorld captions are its prompt records

    def prompts(self, layout, condition, grid=None):
        h, w = grid
        head = [layout.bos_id, layout.special_id(self.token)]
        return {"full": head + list(condition["style"]) + list(condition["caption"]) + image_header(layout, h, w),
                "uncond": head + [layout.null_id] + image_header(layout, h, w)}

    def prompt_condition(self, record, images):
        return {"style": STYLE, "caption": record.text}


class Threes(Reward):
    """Fraction of codes equal to 3; remembers the tasks it scored."""

    def compute(self, images, records, codes=None):
        SEEN.extend(r.task for r in records)
        return (codes == 3).float().mean(1)
'''


@pytest.fixture
def plugin_task(arm_register):
    """A task and a reward in a module of their own, registered ad hoc (as a plugin's entry points would)."""
    arm_register("task:styled_t2i=my_task:StyledT2I,reward:threes=my_task:Threes", my_task=TASK_MODULE)


def test_a_plugin_task_trains_one_grpo_step_from_yaml(tiny_lm, tmp_path, monkeypatch, plugin_task):
    import my_task
    from arm_core.checkpoint import load_lm

    path = _yaml(tmp_path, {"policy_checkpoint": str(tiny_lm / "lm"),
                            "tasks": {"styled_t2i": {"temperature": 1.0, "guidance_scale": 1.5,
                                                     "reward": {"class_path": "threes"}}}})
    monkeypatch.chdir(tmp_path)
    assert run_cli("arm-rl", ["fit", "--config", str(path)], EXTRA_COMMANDS, trainable=True) == 0
    assert load_lm(tmp_path / "out").metadata["global_step"] == 1
    assert my_task.SEEN == ["styled_t2i"] * 4                     # 2 prompts x a group of 2
    assert "train/reward/styled_t2i/mean" in _logged(tmp_path)

    # its prompt is its own (the style phrase before the caption), built through the task
    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"),
                         tasks={"styled_t2i": RLTask(guidance_scale=1.5, reward=my_task.Threes())})
    module.configure_model()
    sampler = module.__dict__["_sampler"]
    rec = PromptRecord("styled_t2i", "a red circle")
    (prompt,), guidance = sampler.build_prompts("styled_t2i", [rec])
    text = sampler.formatter.text
    style, caption = text.encode(my_task.STYLE), text.encode("a red circle")
    assert prompt[2:2 + len(style) + len(caption)] == style + caption
    assert guidance is not None and guidance.guidance_scale == 1.5


# ---------------------------------------------------------------------- errors
def test_tasks_that_cannot_be_trained_are_errors_naming_the_task_and_what_it_lacks():
    r = ShapesT2IReward()
    with pytest.raises(ValueError, match=r"tasks\.und: task 'und' \(arm_data\.tasks\.und\.UndTask\) cannot make "
                                         r"an RL prompt: it does not implement prompt_condition\(\)"):
        GRPOTrainer(tasks={"und": RLTask(reward=r)})
    with pytest.raises(ValueError, match=r"tasks\.t2i has no reward: give tasks\.t2i\.reward"):
        GRPOTrainer(tasks={"t2i": RLTask(temperature=0.7)})
    with pytest.raises(ValueError, match=r"tasks\.painting: unknown task 'painting'"):
        GRPOTrainer(tasks={"painting": RLTask(reward=r)})
    with pytest.raises(ValueError, match=r"tasks\.t2i: RL sampling needs temperature > 0"):
        GRPOTrainer(tasks={"t2i": RLTask(temperature=0.0, reward=r)})
    with pytest.raises(ValueError, match=r"tasks\.t2i\.weight must be a finite number >= 0"):
        GRPOTrainer(tasks={"t2i": RLTask(weight=-1.0, reward=r)})
    with pytest.raises(ValueError, match="select no task"):
        GRPOTrainer(tasks={"t2i": RLTask(weight=0.0, reward=r)})
    with pytest.raises(ValueError, match="tasks is empty"):
        GRPOTrainer(tasks={})
    with pytest.raises(ValueError, match=r"both tasks and t2i_reward, top_k: t2i_reward is the old spelling of "
                                         r"tasks\.t2i\.reward; give tasks only"):
        GRPOTrainer(tasks={"t2i": RLTask(reward=r)}, t2i_reward=r, top_k=5)
    with pytest.raises(ValueError, match="both tasks and top_k"):
        GRPOTrainer(tasks={"t2i": RLTask(reward=r)}, top_k=5)
    # ShapesWorld gives captions and edits: a task reading other records needs another prompt source
    with pytest.raises(ValueError, match=r"task 'und' reads 'und' records, but ShapesWorld prompts are captions"):
        ShapesPromptDataset(4, {"und": 1.0})
    with pytest.raises(ValueError, match=r"PromptRecord\.task: unknown task 'painting'"):
        PromptRecord("painting", "a red circle")


def test_a_batch_with_prompts_of_an_untrained_task_is_an_error(tiny_lm):
    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), tasks={"t2i": RLTask(reward=CodeReward())})
    edit = ShapesPromptDataset(4, {"edit": 1.0})[0]
    with pytest.raises(ValueError, match=r"batch 3 has 1 'edit' prompt\(s\) .* but the model trains only "
                                         r"\['t2i'\]: add tasks\.edit"):
        module.make_rollouts([edit], 3)


def test_bad_tasks_in_yaml_are_one_line_naming_file_line_and_key(tiny_lm, tmp_path, capsys):
    bad = {"t2i": {"temprature": 0.7, "reward": {"class_path": "shapes_t2i"}}}
    path = _yaml(tmp_path, {"policy_checkpoint": str(tiny_lm / "lm"), "tasks": bad})
    assert run_cli("arm-rl", ["fit", "--config", str(path)], EXTRA_COMMANDS, trainable=True) == 2
    err = capsys.readouterr().err
    assert "model.init_args.tasks.t2i.temprature" in err and "RLTask takes no argument 'temprature'" in err, err
    assert f"{path}:" in err and "Traceback" not in err

    bad = {"t2i": {"reward": {"class_path": "shapes_t2ii"}}}
    path = _yaml(tmp_path, {"policy_checkpoint": str(tiny_lm / "lm"), "tasks": bad})
    assert run_cli("arm-rl", ["fit", "--config", str(path)], EXTRA_COMMANDS, trainable=True) == 2
    err = capsys.readouterr().err
    assert "tasks.t2i.reward.class_path" in err and "unknown component 'shapes_t2ii'" in err, err
    assert "shapes_t2i" in err

    path = _yaml(tmp_path, {"policy_checkpoint": str(tiny_lm / "lm"),
                            "tasks": {"t2i": {"reward": {"class_path": "shapes_t2i"}}},
                            "t2i_temperature": 0.7})
    assert run_cli("arm-rl", ["fit", "--config", str(path)], EXTRA_COMMANDS, trainable=True) == 2
    err = capsys.readouterr().err
    assert "both tasks and t2i_temperature" in err and "Traceback" not in err, err

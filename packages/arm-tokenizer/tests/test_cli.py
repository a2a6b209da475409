"""The shared CLI: registry short names in YAML, and one clear message per bad input."""

from __future__ import annotations

import textwrap

import pytest
from arm_tokenizer.framework.cli_base import describe_component, run_cli
from toy_components import FAST_DEV_TRAINER

EXTRA = "model:toy_module=toy_components:ToyModule,datamodule:toy_data=toy_components:ToyData,encoder:toy_part=toy_components:ToyPart,encoder:broken=no_such_module_q:X"

GOOD = """
model:
  class_path: toy_module
  init_args:
    part:
      class_path: toy_part
      init_args:
        dim: 4
    lr: 0.05
data:
  class_path: toy_data
""" + FAST_DEV_TRAINER


@pytest.fixture
def toy_env(toy_cli_env):
    return toy_cli_env(EXTRA)


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_short_names_train_from_yaml(toy_env):
    assert run_cli("arm-test", ["fit", "--config", write(toy_env, GOOD)]) == 0


def test_class_names_and_dotted_paths_work_too(toy_env):
    text = GOOD.replace("class_path: toy_part", "class_path: ToyPart").replace(
        "class_path: toy_data", "class_path: toy_components.ToyData")
    assert run_cli("arm-test", ["fit", "--config", write(toy_env, text)]) == 0


def test_short_name_on_the_command_line(toy_env):
    text = GOOD.replace("class_path: toy_part", "class_path: toy_components.OtherPart")
    args = ["fit", "--config", write(toy_env, text), "--model.init_args.part.class_path", "toy_part"]
    assert run_cli("arm-test", args) == 0


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("class_path: toy_part", "class_path: toy_prat",
         ["cfg.yaml:6:", "model.init_args.part.class_path", "unknown component 'toy_prat'", "Did you mean: toy_part"]),
        ("dim: 4", "dimm: 4", ["cfg.yaml:8:", "ToyPart takes no argument 'dimm'", "It takes: dim, levels"]),
        ("dim: 4", "dim: four", ["cfg.yaml:8:", "model.init_args.part.init_args.dim", "expected int, got 'four'"]),
        ("class_path: toy_part", "class_path: broken", ["cfg.yaml:6:", "no_such_module_q", "failed to import"]),
        ("class_path: toy_part", "class_path: toy_data", ["cfg.yaml:6:", "is a ToyData, but this key takes a ToyPart"]),
    ],
)
def test_bad_config_gives_one_clear_message(toy_env, capsys, old, new, expected):
    path = write(toy_env, GOOD.replace(old, new, 1))
    assert run_cli("arm-test", ["fit", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") <= 2, err
    for piece in expected:
        assert piece in err, (piece, err)


def test_bad_command_line_value_and_unknown_trainer_flag(toy_env, capsys):
    path = write(toy_env, GOOD)
    assert run_cli("arm-test", ["fit", "--config", path, "--model.init_args.lr", "fast"]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "float" in err and "Traceback" not in err
    assert run_cli("arm-test", ["fit", "--config", path, "--trainer.max_epochz", "3"]) == 2
    assert "max_epochz" in capsys.readouterr().err


def test_missing_config_file_and_unknown_command(toy_env, capsys):
    assert run_cli("arm-test", ["fit", "--config", "nope.yaml"]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert run_cli("arm-test", ["fitt"]) == 2
    assert "unknown command 'fitt'" in capsys.readouterr().err


def test_debug_flag_shows_the_traceback(toy_env):
    path = write(toy_env, GOOD.replace("class_path: toy_part", "class_path: toy_prat"))
    with pytest.raises(ValueError, match="toy_prat"):
        run_cli("arm-test", ["fit", "--config", path, "--debug"])


def test_list_and_describe(toy_env, capsys):
    assert run_cli("arm-test", ["list", "encoder"]) == 0
    out, err = capsys.readouterr()
    assert "toy_part" in out and "toy_components.ToyPart" in out and "<env>" in out
    assert "broken" in out and "import failed" in out and "no_such_module_q" in err
    text = describe_component("toy_part")
    assert "dim: int = 4" in text and "levels:" in text and "feature width" in text
    assert run_cli("arm-test", ["describe", "toy_prat"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_resume_runs_the_configs_model_arguments_not_the_checkpoints(toy_env, monkeypatch):
    from arm_tokenizer.framework.lightning_cli import run_lightning

    monkeypatch.setenv("ARM_EXTRA_COMPONENTS", EXTRA + ",model:toy_saved=toy_components:ToySavedModule")
    text = GOOD.replace("class_path: toy_module", "class_path: toy_saved").replace(
        "fast_dev_run: true", "max_steps: 2").replace("enable_checkpointing: false", """enable_checkpointing: true
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {dirpath: ckpt, save_last: true}""")
    path = write(toy_env, text)
    first = run_lightning(["fit", "--config", path])
    assert first.model.lr == 0.05 and (toy_env / "ckpt" / "last.ckpt").exists()
    # Lightning alone puts lr back to the checkpoint's 0.05 here (checked: the assert below fails)
    with pytest.warns(UserWarning, match=r"init_args\.lr: 0\.05 \(checkpoint\) -> 0\.01 \(config\)"):
        resumed = run_lightning(["fit", "--config", path, "--model.init_args.lr", "0.01",
                                 "--trainer.max_steps", "4", "--ckpt_path", "ckpt/last.ckpt"])
    assert resumed.model.lr == 0.01 and resumed.trainer.global_step == 4

"""A flag that addresses one item of a list (``--model.init_args.losses.2.init_args.weight``)
is one clear line: list items cannot be set by flags; edit the YAML or pass the whole list."""

from __future__ import annotations

import textwrap

import pytest
from arm_tokenizer.framework.cli_base import run_cli
from arm_tokenizer.framework.config_check import list_item_flag_error
from lightning import LightningModule
from torch import nn
from toy_components import FAST_DEV_TRAINER, ToyPart

EXTRA = ("model:toy_list_module=test_cli_list_flags:ToyListModule,datamodule:toy_data=toy_components:ToyData,"
         "encoder:toy_part=toy_components:ToyPart")


class ToyListModule(LightningModule):
    """A LightningModule with a list of injected parts (as TokenizerTrainer's ``losses``).

    Args:
        parts: the parts.
        lr: learning rate.
    """

    def __init__(self, parts: list[ToyPart], lr: float = 0.1) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.lr = lr
        self.head = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.head(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        import torch

        return torch.optim.SGD(self.parameters(), lr=self.lr)


CONFIG = """
model:
  class_path: toy_list_module
  init_args:
    parts:
      - class_path: toy_part
        init_args: {dim: 4}
      - class_path: toy_part
        init_args: {dim: 4, levels: [3, 3]}
data:
  class_path: toy_data
""" + FAST_DEV_TRAINER


@pytest.fixture
def cfg(toy_cli_env):
    path = toy_cli_env(EXTRA) / "cfg.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    return str(path)


def test_the_config_itself_trains(cfg):
    assert run_cli("arm-test", ["fit", "--config", cfg]) == 0


@pytest.mark.parametrize("flag", [
    "--model.init_args.parts.1.init_args.dim",  # an item of a list of components
    "--model.init_args.parts.0.init_args.levels.1",  # an item of a list inside one
])
def test_list_item_flag_is_one_clear_line(cfg, capsys, flag):
    assert run_cli("arm-test", ["fit", "--config", cfg, flag, "8"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{flag}: list items cannot be addressed by flags" in err
    assert "cfg.yaml" in err and "--model.init_args.parts '[{class_path:" in err
    assert "Problem with given class_path" not in err


def test_passing_the_whole_list_works(cfg):
    whole = "[{class_path: toy_part, init_args: {dim: 4}}, {class_path: toy_components.ToyPart}]"  # short names too
    assert run_cli("arm-test", ["fit", "--config", cfg, "--model.init_args.parts", whole]) == 0


def test_other_flags_are_not_blamed():
    assert list_item_flag_error(["fit", "--config", "a.yaml", "--model.init_args.lr", "3"], ["a.yaml"]) is None
    assert list_item_flag_error(["--trainer.max_epochs=3"], []) is None
    msg = list_item_flag_error(["--model.init_args.losses.2.init_args.weight=3"], [])
    assert msg.startswith("--model.init_args.losses.2.init_args.weight: list items cannot be addressed by flags "
                          "(item 2 of model.init_args.losses)")

"""`arm-rl fit` failures end as one line on stderr with exit status 2, like every other RL
error: a non-finite loss (RLNumericsError) and a data module that yields no batches (which
must not export the unchanged policy either)."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from arm_rl.cli import main
from arm_rl.lightning_module import GRPOTrainer, NoTrainingBatchesError

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "rl"
T2I = CONFIGS / "shapes-t2i-grpo.yaml"


def _cli(config: Path, lm: Path, *extra: str) -> int:
    """`arm-rl fit` through the console entry point; returns its exit status."""
    argv = ["fit", "--config", str(config), "--trainer.max_steps=1", "--trainer.logger=false",
            "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
            f"--model.init_args.policy_checkpoint={lm}", "--model.init_args.group_size=2",
            "--data.init_args.prompts_per_step=1", *extra]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


@pytest.fixture
def nan_reference(tiny_lm, tmp_path):
    """A reference export whose weights are NaN (a corrupted checkpoint): its log-probs,
    hence the KL term and the loss, are NaN at the first step."""
    from arm_core.checkpoint import load_lm, save_lm

    ck = load_lm(tiny_lm / "lm")
    with torch.no_grad():
        for p in ck.model.parameters():
            p.fill_(float("nan"))
    return save_lm(tmp_path / "nan-ref", ck.model, ck.config, layout=ck.layout,
                   text_tokenizer=ck.text_tokenizer_path, visual_tokenizer_dir=ck.visual_tokenizer_dir)


def test_numerics_error_is_one_line_and_exit_2(tiny_lm, nan_reference, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ARM_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    rc = _cli(T2I, tiny_lm / "lm", f"--model.init_args.reference_checkpoint={nan_reference}",
              f"--model.init_args.export_dir={tmp_path / 'out'}")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("arm-rl: error:")]
    assert len(lines) == 1, err
    line = lines[0]
    assert "non-finite loss at batch 0" in line and "reference log-probs" in line, line
    assert "task 't2i'" in line and "NOT stepped" in line, line
    assert not (tmp_path / "out").exists()          # the failed run exports nothing

    # --debug keeps the full traceback (the exception itself)
    from arm_rl.lightning_module import RLNumericsError

    with pytest.raises(RLNumericsError, match="reference log-probs"):
        main(["fit", "--config", str(T2I), "--trainer.max_steps=1", "--trainer.logger=false",
              "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
              f"--model.init_args.policy_checkpoint={tiny_lm / 'lm'}",
              f"--model.init_args.reference_checkpoint={nan_reference}",
              "--model.init_args.group_size=2", "--model.init_args.export_dir=",
              "--data.init_args.prompts_per_step=1", "--debug"])


def test_diverging_policy_is_one_line_and_exit_2(tiny_lm, tmp_path, monkeypatch, capsys):
    """An absurd learning rate: the first optimizer step blows the weights up, the second
    ppo epoch's log-probs are NaN. (The self-judge's scores vary within a group, so the
    first step has a gradient; the rule reward of a random LM is flat.)"""
    monkeypatch.delenv("ARM_DEBUG", raising=False)
    cfg = yaml.safe_load(T2I.read_text())
    cfg["model"]["init_args"]["tasks"]["t2i"].update(reward={"class_path": "judge"}, top_k=None, temperature=1.0)
    config = tmp_path / "judge.yaml"
    config.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    rc = _cli(config, tiny_lm / "lm", "--model.init_args.lr=1e30", "--model.init_args.ppo_epochs=2",
              "--model.init_args.group_size=4", "--model.init_args.beta=0.0", "--trainer.max_steps=2", f"--model.init_args.export_dir={tmp_path / 'out'}")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("arm-rl: error:")]
    assert len(lines) == 1, err
    assert "non-finite" in lines[0] and "ppo epoch 1" in lines[0], lines[0]
    assert "policy log-probs (a diverged policy)" in lines[0], lines[0]
    assert "1 earlier step(s)" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


EMPTY_MODULE = '''
import lightning.pytorch as pl
from torch.utils.data import DataLoader, IterableDataset


class EmptyPrompts(pl.LightningDataModule):
    """A user prompt data module whose filter dropped every prompt."""

    def __init__(self, prompts_per_step: int = 1) -> None:
        super().__init__()
        self.prompts_per_step = prompts_per_step

    def train_dataloader(self):
        return DataLoader([], batch_size=self.prompts_per_step, collate_fn=list)


class _Nothing(IterableDataset):
    def __iter__(self):
        return iter(())


class EmptyStream(EmptyPrompts):
    """The same as a stream (no length)."""

    def train_dataloader(self):
        return DataLoader(_Nothing(), batch_size=self.prompts_per_step, collate_fn=list)
'''


@pytest.fixture
def empty_data(tmp_path, monkeypatch):
    (tmp_path / "my_empty_prompts.py").write_text(EMPTY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_empty_prompts", None)


@pytest.mark.parametrize("cls", ["EmptyPrompts", "EmptyStream"])
def test_a_data_module_without_batches_is_an_error_and_exports_nothing(
        tiny_lm, tmp_path, monkeypatch, capsys, empty_data, cls):
    monkeypatch.delenv("ARM_DEBUG", raising=False)
    cfg = yaml.safe_load(T2I.read_text())
    cfg["data"] = {"class_path": f"my_empty_prompts.{cls}", "init_args": {"prompts_per_step": 1}}
    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "policy-out"
    argv = ["fit", "--config", str(path), "--trainer.logger=false", "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false", "--trainer.max_steps=3",
            f"--model.init_args.policy_checkpoint={tiny_lm / 'lm'}", "--model.init_args.group_size=2",
            f"--model.init_args.export_dir={out}"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("arm-rl: error:")]
    assert len(lines) == 1, err
    assert f"data module my_empty_prompts.{cls} produced no training batches" in lines[0], lines[0]
    assert "no policy was exported" in lines[0], lines[0]
    assert not out.exists()


def test_an_empty_stream_stops_instead_of_looping_over_empty_epochs(tiny_lm, tmp_path, empty_data):
    import my_empty_prompts

    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), group_size=2, export_dir=str(tmp_path / "p"))
    # max_steps with unlimited epochs: an iterable that yields nothing used to spin forever
    trainer = pl.Trainer(max_steps=2, max_epochs=50, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(NoTrainingBatchesError, match="yielded no batch in 2 consecutive epochs"):
        trainer.fit(module, datamodule=my_empty_prompts.EmptyStream())
    assert trainer.current_epoch < 5 and trainer.global_step == 0
    assert not (tmp_path / "p").exists()


def test_a_resume_with_nothing_left_to_do_still_exports(tiny_lm, tmp_path):
    """Zero batches because max_steps is already reached is not the data's fault."""
    from arm_core.checkpoint import load_lm
    from arm_rl.prompts import ShapesPromptDataModule

    module = GRPOTrainer(policy_checkpoint=str(tiny_lm / "lm"), group_size=2, export_dir=str(tmp_path / "p"))
    trainer = pl.Trainer(max_steps=0, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=ShapesPromptDataModule({"t2i": 1.0}, prompts_per_step=1, num_prompts=4))
    assert load_lm(tmp_path / "p").metadata["global_step"] == 0

"""The LM is chosen through the registry (kind ``lm``): LMTrainer builds the registered class,
exports and Lightning checkpoints record its name, load_lm rebuilds that class, old exports
(without the field) load as ``gpt``, unknown names are clear errors, and HF import keeps
producing ``gpt`` while other LMs are registered."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
import yaml
from arm_core.checkpoint import CheckpointError, load_lm, save_lm
from arm_core.config import Config
from arm_core.lightning_module import LMTrainer, lm_loss
from arm_core.model import GPT
from arm_data.vocab import VocabLayout
from arm_tokenizer.framework import registry

LAYOUT = VocabLayout(text_vocab_size=20, codebook_size=16, max_grid_h=4, max_grid_w=4)

PLUGIN = '''
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from arm_core.model import GPT
from arm_data.vocab import VocabLayout

CALLS = []
LAYOUT = VocabLayout(text_vocab_size=20, codebook_size=16, max_grid_h=4, max_grid_w=4)


class ScaledGPT(GPT):
    """GPT with a learned logit scale (a weight plain GPT does not have)."""

    def __init__(self, config):
        super().__init__(config)
        self.logit_scale = nn.Parameter(torch.ones(()))

    def forward(self, input_ids, position_ids=None, doc_ids=None):
        CALLS.append(tuple(input_ids.shape))
        return super().forward(input_ids, position_ids, doc_ids) * self.logit_scale


class WrappedLM(nn.Module):
    """Not a GPT: a wrapper with a non-persistent buffer of its own."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.inner = GPT(config)
        self.register_buffer("bias_logit", torch.full((config.vocab_size,), 0.5), persistent=False)

    def forward(self, input_ids, position_ids=None, doc_ids=None):
        return self.inner(input_ids, position_ids, doc_ids) + self.bias_logit


class Rows(torch.utils.data.Dataset):
    def __init__(self, n=32, T=16):
        g = torch.Generator().manual_seed(0)
        self.rows = []
        for _ in range(n):
            s = int(torch.randint(0, 20, (1,), generator=g))
            ids = torch.tensor([(s + k) % 20 for k in range(T)])
            self.rows.append(dict(input_ids=ids, targets=torch.cat([ids[1:], torch.tensor([-100])])))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class TinyDM(pl.LightningDataModule):
    def __init__(self, batch_size: int = 4):
        super().__init__()
        self.layout = LAYOUT
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(Rows(), batch_size=self.batch_size)
'''


@pytest.fixture
def plugin_lms(arm_register):
    """Two LMs registered ad hoc under kind ``lm`` (as a pip plugin's entry points would)."""
    arm_register("lm:scaled_gpt=my_lms:ScaledGPT,lm:wrapped_lm=my_lms:WrappedLM", my_lms=PLUGIN)
    import my_lms

    my_lms.CALLS.clear()
    return my_lms


def _trainer(root, steps: int, **kw) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, default_root_dir=str(root), **kw)


def _batch():
    import my_lms
    from torch.utils.data import DataLoader

    return next(iter(DataLoader(my_lms.Rows(8), batch_size=8)))


def test_a_plugin_lm_trains_exports_and_reloads(plugin_lms, tmp_path) -> None:
    torch.manual_seed(0)
    module = LMTrainer(preset="tiny", lm="scaled_gpt", lr=1e-2, warmup_steps=1, max_steps=3,
                       export_dir=str(tmp_path / "lm"))
    trainer = _trainer(tmp_path / "run", 3)
    trainer.fit(module, datamodule=plugin_lms.TinyDM())
    trainer.save_checkpoint(tmp_path / "run" / "last.ckpt")
    assert type(module.model) is plugin_lms.ScaledGPT
    assert len(plugin_lms.CALLS) >= 3                       # its forward is what trained
    trained = module.model.logit_scale.detach().clone()
    assert trained != 1.0                                     # its own weight learned

    cfg = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert cfg["lm"] == "scaled_gpt"
    back = load_lm(tmp_path / "lm")
    assert type(back.model) is plugin_lms.ScaledGPT and back.lm_name == "scaled_gpt"
    assert back.metadata["hparams"]["lm"] == "scaled_gpt"
    b = _batch()
    with torch.no_grad():
        torch.testing.assert_close(back.model(b["input_ids"]), module.model.eval()(b["input_ids"]))
    assert back.model.logit_scale == trained

    # continue training from the export: the same LM name is required, and re-recorded
    again = LMTrainer(preset="tiny", lm="scaled_gpt", init_from=str(tmp_path / "lm"), lr=1e-2,
                      warmup_steps=1, max_steps=2, export_dir=str(tmp_path / "lm2"))
    _trainer(tmp_path / "run2", 2).fit(again, datamodule=plugin_lms.TinyDM())
    assert load_lm(tmp_path / "lm2").lm_name == "scaled_gpt"
    with pytest.raises(ValueError, match=r"holds a 'scaled_gpt' LM but lm is 'gpt'.*lm: scaled_gpt"):
        LMTrainer(preset="tiny", init_from=str(tmp_path / "lm")).configure_model()

    # the Lightning checkpoint rebuilds the plugin class too (no data module: its vocabulary)
    ck = LMTrainer.load_from_checkpoint(tmp_path / "run" / "last.ckpt")
    assert type(ck.model) is plugin_lms.ScaledGPT and ck.lm_name == "scaled_gpt"
    assert ck.model.logit_scale == trained
    # a Lightning checkpoint of another LM is refused when resuming
    with pytest.raises(ValueError, match=r"holds a 'gpt' LM but the module builds 'scaled_gpt'"):
        module.on_load_checkpoint({"arm_lm": "gpt"})


def test_plugin_lm_from_yaml_through_the_cli(plugin_lms, tmp_path, monkeypatch) -> None:
    """`lm: scaled_gpt` in a config (and --model.init_args.lm on the command line, which the
    CLI translates to the class's dotted path) trains and exports that LM."""
    from arm_core.cli import EXTRA_COMMANDS
    from arm_tokenizer.framework.cli_base import run_cli

    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "logger": False,
                    "enable_checkpointing": False, "enable_progress_bar": False},
        "model": {"class_path": "lm_trainer",
                  "init_args": {"preset": "tiny", "lm": "scaled_gpt", "warmup_steps": 1,
                                "export_dir": str(tmp_path / "yaml-lm")}},
        "data": {"class_path": "my_lms.TinyDM", "init_args": {"batch_size": 2}},
    }
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert run_cli("arm-lm", ["fit", "--config", str(path)], EXTRA_COMMANDS) == 0
    assert load_lm(tmp_path / "yaml-lm").lm_name == "scaled_gpt"
    assert run_cli("arm-lm", ["fit", "--config", str(path), "--model.init_args.lm=wrapped_lm",
                              f"--model.init_args.export_dir={tmp_path / 'cli-lm'}"],
                   EXTRA_COMMANDS) == 0
    back = load_lm(tmp_path / "cli-lm")
    assert back.lm_name == "wrapped_lm" and type(back.model) is plugin_lms.WrappedLM


def test_unknown_lm_name_is_a_clear_error(plugin_lms, tmp_path, capsys) -> None:
    with pytest.raises(registry.UnknownComponentError) as e:
        LMTrainer(preset="tiny", lm="scaled_gtp")
    msg = str(e.value)
    assert "no lm named 'scaled_gtp'" in msg and "Did you mean: scaled_gpt" in msg, msg
    assert "gpt" in msg and "wrapped_lm" in msg, msg            # the registered LMs

    # through the CLI: one line, exit 2, naming the kind and the name
    from arm_core.cli import EXTRA_COMMANDS
    from arm_tokenizer.framework.cli_base import run_cli

    config = {"trainer": {"accelerator": "cpu", "max_steps": 1, "logger": False},
              "model": {"class_path": "lm_trainer", "init_args": {"preset": "tiny", "lm": "nope"}},
              "data": {"class_path": "my_lms.TinyDM"}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    assert run_cli("arm-lm", ["fit", "--config", str(tmp_path / "bad.yaml")], EXTRA_COMMANDS) == 2
    err = capsys.readouterr().err
    assert "no lm named 'nope'" in err and "Traceback" not in err, err

    # an export naming an LM this installation does not have
    cfg = Config.from_name("tiny")
    save_lm(tmp_path / "x", GPT(cfg), cfg)
    meta = json.loads((tmp_path / "x" / "config.json").read_text())
    meta["lm"] = "missing_lm"
    (tmp_path / "x" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"exported as lm 'missing_lm'.*no lm named 'missing_lm'"
                                              r".*Install the package"):
        load_lm(tmp_path / "x")
    with pytest.raises(CheckpointError, match=r"lm='nope'.*no lm named 'nope'"):
        save_lm(tmp_path / "y", GPT(cfg), cfg, lm="nope")
    with pytest.raises(CheckpointError, match=r"lm='scaled_gpt' is my_lms.ScaledGPT but the model is"):
        save_lm(tmp_path / "y", GPT(cfg), cfg, lm="scaled_gpt")


def test_old_exports_without_the_field_load_as_gpt(plugin_lms, tmp_path) -> None:
    cfg = Config.from_name("tiny")
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    save_lm(tmp_path / "old", model, cfg)
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    assert meta["lm"] == "gpt"
    del meta["lm"]                                            # as written before the field
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    back = load_lm(tmp_path / "old")
    assert type(back.model) is GPT and back.lm_name == "gpt"
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids), model(ids))


def test_a_non_gpt_plugin_lm_round_trips(plugin_lms, tmp_path) -> None:
    """A wrapper (not a GPT subclass) with its own non-persistent buffer: its name is found
    from its class, and loading builds it with the buffer computed."""
    cfg = Config.from_name("tiny")
    torch.manual_seed(0)
    model = plugin_lms.WrappedLM(cfg).eval()
    save_lm(tmp_path / "w", model, cfg)
    back = load_lm(tmp_path / "w")
    assert type(back.model) is plugin_lms.WrappedLM and back.lm_name == "wrapped_lm"
    assert not any(t.is_meta for t in back.model.buffers())
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids), model(ids))


def test_hf_import_stays_gpt_with_other_lms_registered(plugin_lms, tmp_path) -> None:
    from arm_core.hf import load_hf, save_hf

    cfg = Config.from_name("tiny").with_vocab(LAYOUT.total_size, LAYOUT.image_offset,
                                              LAYOUT.codebook_size,
                                              text_vocab_size=LAYOUT.text_vocab_size)
    torch.manual_seed(0)
    ours = GPT(cfg).eval()
    save_hf(ours, tmp_path / "hf")
    back = load_hf(tmp_path / "hf", max_seq_len=cfg.max_seq_len).eval()
    assert type(back) is GPT
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(back(ids), ours(ids))
    save_lm(tmp_path / "from-hf", back, back.config)
    assert load_lm(tmp_path / "from-hf").lm_name == "gpt"
    with pytest.raises(ValueError, match=r"hf_dir imports .* into the built-in 'gpt' LM.*lm='scaled_gpt'"):
        LMTrainer(preset="tiny", hf_dir=str(tmp_path / "hf"), lm="scaled_gpt")
    # the default still trains from it
    m = LMTrainer(preset="tiny", hf_dir=str(tmp_path / "hf"), export_dir="")
    m.configure_model()
    assert type(m.model) is GPT
    with torch.no_grad():
        assert torch.isfinite(lm_loss(m.model(ids), ids)[0])

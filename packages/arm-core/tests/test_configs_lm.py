"""configs/lm/*.yaml run through `arm-lm fit` (fast_dev_run, tiny pre-tokenized ShapesWorld)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from arm_core.checkpoint import load_lm
from arm_core.cli import EXTRA_COMMANDS
from arm_tokenizer.cli_base import run_cli

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "lm"


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory) -> Path:
    from arm_data.pretokenize import PatchColorTokenizer, make_source, pretokenize
    from arm_data.shards import iter_records
    from arm_data.text_tokenizer import TextTokenizer

    d = tmp_path_factory.mktemp("lm-configs") / "tokens"
    pretokenize(PatchColorTokenizer(32, 8, 2), make_source("shapes:train", ["pair", "vqa", "edit"], 16),
                d, shard_size=16, num_workers=0, progress=False)
    TextTokenizer.train([v for r in iter_records(d) for v in r.texts.values()], vocab_size=300,
                        save_to=d)
    return d


def _fit(argv: list[str]) -> int:
    return run_cli("arm-lm", ["fit", *argv], EXTRA_COMMANDS, trainable=True)


def test_yaml_files_parse_and_name_registered_components() -> None:
    from arm_tokenizer import registry

    for name in ("shapes-quickstart.yaml", "arm-7b.yaml"):
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        assert registry.resolve(cfg["model"]["class_path"]) is not None, name
        assert registry.resolve(cfg["data"]["class_path"]) is not None, name
    arm = yaml.safe_load((CONFIGS / "arm-7b.yaml").read_text())
    m = arm["model"]["init_args"]
    # the paper's SFT hyper-parameters (DESIGN.md)
    assert (m["lr"], m["betas"], m["weight_decay"]) == (2.0e-4, [0.9, 0.95], 0.0)
    assert arm["trainer"]["gradient_clip_val"] == 1.0 and arm["trainer"]["precision"] == "bf16-mixed"
    assert arm["trainer"]["strategy"]["class_path"].endswith("BlockFSDPStrategy")


def test_shapes_quickstart_fast_dev_run(token_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc = _fit(["--config", str(CONFIGS / "shapes-quickstart.yaml"),
               "--trainer.fast_dev_run=true",
               f"--data.init_args.data_dir={token_dir}", "--data.init_args.batch_size=2"])
    assert rc == 0
    ck = load_lm(tmp_path / "runs" / "lm")          # the export pipelines load
    assert ck.config.n_layer == 6 and ck.config.n_embd == 256
    assert 3e6 < sum(p.numel() for p in ck.model.parameters()) < 9e6
    assert ck.layout.codebook_size == 8 and ck.text_tokenizer_path.is_file()


def test_arm_7b_scaled_down_fast_dev_run(token_dir, tmp_path, monkeypatch) -> None:
    """The 7B recipe with its hardware-specific parts overridden: tiny, CPU, no FSDP, no HF."""
    monkeypatch.chdir(tmp_path)
    rc = _fit(["--config", str(CONFIGS / "arm-7b.yaml"),
               "--trainer.fast_dev_run=true",
               "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
               "--trainer.precision=32-true",
               "--model.init_args.preset=tiny", "--model.init_args.model_overrides={max_seq_len: 128}",
               f"--data.init_args.data_dir={token_dir}", "--data.init_args.seq_len=128",
               "--data.init_args.batch_size=2", "--data.init_args.num_workers=0"])
    assert rc == 0
    ck = load_lm(tmp_path / "runs" / "arm-7b")
    assert ck.config.n_layer == 2 and ck.config.separate_visual_head
    assert ck.config.vocab_size == ck.layout.total_size


def test_bad_override_is_a_clear_error(token_dir, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    rc = _fit(["--config", str(CONFIGS / "shapes-quickstart.yaml"), "--trainer.fast_dev_run=true",
               f"--data.init_args.data_dir={token_dir}", "--model.init_args.preset=tiyn"])
    assert rc == 2
    assert "unknown model preset 'tiyn'" in capsys.readouterr().err

"""configs/lm/*.yaml run through `arm-lm fit` (fast_dev_run, tiny pre-tokenized ShapesWorld)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from arm_core.checkpoint import load_lm
from arm_core.cli import EXTRA_COMMANDS
from arm_tokenizer.framework.cli_base import run_cli

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
    from arm_tokenizer.framework import registry

    for name in ("shapes-quickstart.yaml", "demo.yaml", "arm-7b.yaml"):
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


def test_predict_scores_the_validation_documents(token_dir, tmp_path, monkeypatch, capsys) -> None:
    import json

    monkeypatch.chdir(tmp_path)
    common = ["--config", str(CONFIGS / "shapes-quickstart.yaml"), "--trainer.fast_dev_run=true",
              f"--data.init_args.data_dir={token_dir}", "--data.init_args.batch_size=2",
              f"--trainer.default_root_dir={tmp_path}"]
    rc = run_cli("arm-lm", ["predict", *common, "--data.init_args.val_fraction=0.25"], EXTRA_COMMANDS,
                 trainable=True)
    assert rc == 0
    summary = json.loads((tmp_path / "predict_summary.json").read_text())
    assert summary["documents"] > 0 and 0 < summary["mean_nll"] < 20
    rc = run_cli("arm-lm", ["predict", *common, "--data.init_args.val_fraction=0"], EXTRA_COMMANDS,
                 trainable=True)
    assert rc == 2 and "set val_fraction > 0 or val_dir" in capsys.readouterr().err


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


def test_arm_7b_from_a_hf_model_reads_text_with_its_own_tokenizer(token_dir, tmp_path, monkeypatch, capsys) -> None:
    """The recipe's start from a HF text LM (Qwen2.5-7B there; a tiny random Qwen2 with its own
    byte-level BPE here): the data must be tokenized with the model's tokenizer.json, the
    padded HF vocabulary is cut back to it, and the export carries that tokenizer."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tk = tokenizers.Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(["a red circle left of a blue square", "what shape is it?"] * 10,
                           trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    n_text = tk.get_vocab_size(with_added_tokens=True)
    hf_dir = tmp_path / "qwen-tiny"
    cfg = transformers.Qwen2Config(vocab_size=n_text + 20, hidden_size=32, intermediate_size=48,  # padded
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=256)
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(hf_dir)
    tk.save(str(hf_dir / "tokenizer.json"))
    monkeypatch.chdir(tmp_path)
    argv = ["--config", str(CONFIGS / "arm-7b.yaml"), "--trainer.fast_dev_run=true",
            "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
            "--trainer.precision=32-true", f"--model.init_args.hf_dir={hf_dir}",
            "--model.init_args.model_overrides={max_seq_len: 128}",
            f"--data.init_args.data_dir={token_dir}", "--data.init_args.seq_len=128",
            "--data.init_args.batch_size=2", "--data.init_args.num_workers=0"]
    assert _fit(argv) == 2                      # the data's sentencepiece ids are not Qwen's
    assert "set data.init_args.text_tokenizer=" in capsys.readouterr().err
    assert _fit([*argv, f"--data.init_args.text_tokenizer={hf_dir / 'tokenizer.json'}"]) == 0
    ck = load_lm(tmp_path / "runs" / "arm-7b")
    assert ck.layout.text_vocab_size == n_text and ck.config.vocab_size == ck.layout.total_size
    text = ck.load_text_tokenizer()
    assert ck.text_tokenizer_path.name == "text_tokenizer.json"
    assert text.encode("a red circle") == tk.encode("a red circle", add_special_tokens=False).ids


def test_bad_override_is_a_clear_error(token_dir, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    rc = _fit(["--config", str(CONFIGS / "shapes-quickstart.yaml"), "--trainer.fast_dev_run=true",
               f"--data.init_args.data_dir={token_dir}", "--model.init_args.preset=tiyn"])
    assert rc == 2
    assert "unknown model preset 'tiyn'" in capsys.readouterr().err

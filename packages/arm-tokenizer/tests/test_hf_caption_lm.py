"""``hf_causal_lm``: a transformers causal LM as L_cap's caption LM, and prefix pooling.

Every test loads a tiny random Qwen2 written by transformers' own ``save_pretrained``
(:mod:`arm_tokenizer.testing.hf_tiny_lm`), so the loading code is the one real
Qwen2.5-0.5B weights go through.
"""

from __future__ import annotations

import math
import shutil
import sys
import time

import pytest
import torch

pytest.importorskip("transformers")

from arm_tokenizer.framework import registry  # noqa: E402
from arm_tokenizer.framework.configurable import instantiate  # noqa: E402
from arm_tokenizer.losses.caption import CaptionLoss  # noqa: E402
from arm_tokenizer.losses.prefix_pooling import PrefixPooling, pooled_length  # noqa: E402
from arm_tokenizer.teachers import hf_causal_lm as hf_mod  # noqa: E402
from arm_tokenizer.testing.contracts import make_loss_inputs  # noqa: E402
from arm_tokenizer.testing.hf_tiny_lm import tiny_qwen2_dir  # noqa: E402

CAPTIONS = ["a red circle on the left", "two green triangles at the top"]


@pytest.fixture(scope="module")
def lm_dir() -> str:
    return tiny_qwen2_dir()


@pytest.fixture(scope="module")
def lm(lm_dir):
    return registry.create("caption_lm", "hf_causal_lm", name_or_path=lm_dir)


def _one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def test_registered_and_loaded_frozen(lm, lm_dir):
    assert registry.get("caption_lm", "hf_causal_lm") is hf_mod.HFCausalLM
    assert lm.hidden_size == 32 and lm.model.config.model_type == "qwen2"
    assert lm.frozen and not any(p.requires_grad for p in lm.parameters())
    lm.train()
    assert not lm.model.training  # a frozen LM never leaves eval mode
    assert lm.max_prefix == 2048 - 64  # max_position_embeddings - the caption budget


def test_loss_is_hf_loss_over_caption_tokens_only(lm):
    """Same value as transformers' own ``labels`` loss with prefix and padding masked."""
    torch.manual_seed(0)
    prefix = torch.randn(2, 5, lm.hidden_size)
    ours = lm.caption_loss(prefix, CAPTIONS)
    ids, mask = lm.caption_ids(CAPTIONS)
    assert (ids[mask.bool()] == lm.tokenizer.eos_token_id).sum() == 2  # one EOS per caption
    assert mask[0].sum() < mask[1].sum()  # right padding of the shorter caption
    embeds = torch.cat([prefix, lm.model.get_input_embeddings()(ids)], dim=1)
    labels = torch.cat([torch.full((2, 5), -100), ids.masked_fill(mask == 0, -100)], dim=1)
    attn = torch.cat([torch.ones(2, 5, dtype=torch.long), mask], dim=1)
    theirs = lm.model(inputs_embeds=embeds, attention_mask=attn, labels=labels).loss
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # a different caption changes the loss: the captions, not just the prefix, are scored
    assert abs(float(lm.caption_loss(prefix, ["a blue square", CAPTIONS[1]])) - float(ours)) > 1e-4


def test_prefix_projection_trains_through_the_frozen_lm(lm):
    loss = CaptionLoss(lm, in_dim=16)
    inputs = make_loss_inputs(width=16, grid=(4, 4), batch=2)
    inputs.captions = list(CAPTIONS)
    opt = torch.optim.Adam(loss.adapter.parameters(), lr=3e-2)
    values = []
    for _ in range(12):
        opt.zero_grad()
        inputs.features = inputs.pre_quant.tanh() * 1.5  # a fresh graph from the tokenizer's leaf each step
        out = loss(inputs)
        out.loss.backward()
        opt.step()
        values.append(float(out.loss.detach()))
    assert all(math.isfinite(v) for v in values)
    assert values[-1] < values[0] - 0.5, values
    assert inputs.pre_quant.grad is not None and inputs.pre_quant.grad.abs().sum() > 0  # reaches the tokenizer
    assert all(p.grad is None for p in lm.parameters())  # never the frozen LM
    assert all(p.grad is not None for p in loss.adapter.parameters())


def test_unfrozen_lm_trains_with_the_loss(lm_dir):
    lm = registry.create("caption_lm", "hf_causal_lm", name_or_path=lm_dir, frozen=False)
    loss = CaptionLoss(lm, in_dim=8)
    loss.train()
    assert lm.model.training
    inputs = make_loss_inputs(width=8)
    loss(inputs).loss.backward()
    assert lm.model.get_input_embeddings().weight.grad is not None


@pytest.mark.parametrize(
    ("pooling", "kwargs", "grid", "length"),
    [
        ("none", {}, (32, 32), 1024),
        ("avg", {"prefix_pool": 2}, (32, 32), 256),
        ("avg", {"prefix_pool": 4}, (32, 32), 64),
        ("avg", {"prefix_pool": 2}, (32, 48), 16 * 24),  # non-square grid
        ("avg", {"prefix_pool": 3}, (32, 32), 11 * 11),  # partial border windows
        ("resampler", {"prefix_queries": 48, "prefix_heads": 4}, (32, 32), 48),
    ],
)
def test_paper_1024_token_prefix(lm, pooling, kwargs, grid, length):
    torch.manual_seed(0)
    loss = CaptionLoss(lm, in_dim=16, prefix_pooling=pooling, **kwargs)
    feats = torch.randn(2, grid[0] * grid[1], 16, requires_grad=True)
    prefix = loss.prefix(feats, grid)
    assert prefix.shape == (2, length, lm.hidden_size)
    assert length == pooled_length(pooling, grid[0] * grid[1], grid, kwargs.get("prefix_pool", 2),
                                   kwargs.get("prefix_queries", 64))
    value = lm.caption_loss(prefix, CAPTIONS)
    assert torch.isfinite(value)
    value.backward()
    assert feats.grad.abs().sum(-1).gt(0).all()  # every grid token gets a gradient


def test_avg_pooling_averages_grid_windows_row_major():
    pool = PrefixPooling(dim=3, mode="avg", pool=2)
    x = torch.randn(1, 4 * 6, 3)
    grid = x.reshape(1, 4, 6, 3)
    out = pool(x, (4, 6))
    assert out.shape == (1, 2 * 3, 3)
    torch.testing.assert_close(out[0, 0], grid[0, :2, :2].reshape(-1, 3).mean(0))
    torch.testing.assert_close(out[0, 4], grid[0, 2:, 2:4].reshape(-1, 3).mean(0))  # row 1, col 1
    with pytest.raises(ValueError, match="do not fill the token grid 5x5"):
        pool(x, (5, 5))


def test_resampler_sees_where_tokens_are():
    """The keys carry a 2-D position code: the same tokens in another order give another prefix."""
    torch.manual_seed(0)
    pool = PrefixPooling(dim=8, mode="resampler", queries=4, heads=2)
    x = torch.randn(1, 16, 8)
    assert not torch.allclose(pool(x, (4, 4)), pool(x.flip(1), (4, 4)))
    with pytest.raises(ValueError, match="prefix_heads=3 must divide"):
        PrefixPooling(dim=8, mode="resampler", heads=3)


def test_toy_teacher_takes_a_1024_prefix_only_pooled():
    from arm_tokenizer.teachers.frozen import TeacherCaptionLM

    teacher = TeacherCaptionLM(**TeacherCaptionLM.example_args())
    assert teacher.max_prefix == 256
    feats = torch.randn(2, 1024, 8)
    with pytest.raises(ValueError, match=r"1024 tokens .* max_prefix 256; set prefix_pooling: avg with "
                                         r"prefix_pool: 2"):
        CaptionLoss(teacher, in_dim=8).prefix(feats, (32, 32))
    for kwargs in ({"prefix_pooling": "avg", "prefix_pool": 2}, {"prefix_pooling": "resampler"}):
        loss = CaptionLoss(teacher, in_dim=8, prefix_heads=4, **kwargs)
        inputs = make_loss_inputs(width=8, grid=(32, 32), patch_size=1)
        out = loss(inputs)
        assert torch.isfinite(out.loss)


def test_config_round_trip_rebuilds_the_same_loss(lm):
    clone = instantiate(lm.get_config())
    prefix = torch.randn(2, 3, lm.hidden_size)
    torch.testing.assert_close(clone.caption_loss(prefix, CAPTIONS), lm.caption_loss(prefix, CAPTIONS))


def test_saved_activation_arithmetic_matches_autograd():
    """The memory figures of the docstring come from this arithmetic: check it against what
    autograd really keeps for a frozen bf16 Qwen2 (two layers minus one = one layer)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    def measured(layers: int, seq: int) -> int:
        cfg = Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=160, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).requires_grad_(False).eval()
        own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = t.untyped_storage().data_ptr()
            if key not in own:
                seen[key] = t.untyped_storage().nbytes()
            return t

        x = torch.randn(1, seq, 64, dtype=torch.bfloat16, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.model(inputs_embeds=x, use_cache=False)
        return sum(seen.values())

    seq = 40
    per_layer = measured(2, seq) - measured(1, seq)
    cfg = Qwen2Config(hidden_size=64, intermediate_size=160, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2)
    assert per_layer == hf_mod.saved_activation_bytes(cfg, seq)
    paper = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                        num_key_value_heads=2)
    assert hf_mod.saved_activation_bytes(paper, 1056) == 1_026_736_128  # the docstring's 1.03 GB


# ---------------------------------------------------------------------- errors
def test_directory_without_tokenizer(tmp_path):
    d = tiny_qwen2_dir(with_tokenizer=False)
    with pytest.raises(FileNotFoundError) as e:
        registry.create("caption_lm", "hf_causal_lm", name_or_path=d)
    assert "has no tokenizer" in _one_line_error(e) and "tokenizer.save_pretrained" in str(e.value)
    # ... which a separate tokenizer location fixes
    lm = registry.create("caption_lm", "hf_causal_lm", name_or_path=d, tokenizer=tiny_qwen2_dir())
    assert lm.hidden_size == 32


def test_not_a_causal_lm(tmp_path, lm_dir):
    from transformers import ViTConfig

    ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(tmp_path)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{lm_dir}/{f}", tmp_path / f)
    with pytest.raises(ValueError) as e:
        registry.create("caption_lm", "hf_causal_lm", name_or_path=str(tmp_path))
    msg = _one_line_error(e)
    assert "'vit' model" in msg and "not a causal LM" in msg and "qwen2" in msg and "llama" in msg


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        registry.create("caption_lm", "hf_causal_lm", name_or_path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        registry.create("caption_lm", "hf_causal_lm", name_or_path=str(tmp_path / "missing"))


def test_bad_options_are_named(lm_dir):
    with pytest.raises(ValueError, match="device 'gpu0' is not a torch device"):
        registry.create("caption_lm", "hf_causal_lm", name_or_path=lm_dir, device="gpu0")
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16"):
        registry.create("caption_lm", "hf_causal_lm", name_or_path=lm_dir, dtype="fp8")


def test_bf16_prompt_and_generate(lm_dir):
    lm = registry.create("caption_lm", "hf_causal_lm", name_or_path=lm_dir, dtype="bfloat16", device="cpu",
                         prompt="describe:")
    assert lm.model.dtype == torch.bfloat16 and lm.prompt_ids
    prefix = torch.randn(2, 4, lm.hidden_size, requires_grad=True)
    value = lm.caption_loss(prefix, CAPTIONS)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert prefix.grad is not None and prefix.grad.dtype == torch.float32
    captions = lm.generate(prefix.detach(), max_new_tokens=3)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_offline_without_weights_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError) as e:
        registry.create("caption_lm", "hf_causal_lm", name_or_path="arm-tests/no-such-caption-lm")
    assert time.monotonic() - t0 < 5
    msg = _one_line_error(e)
    assert "HF_HUB_OFFLINE" in msg and "pass a local directory" in msg


def test_unreachable_hub_fails_fast_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_mod, "hub_unreachable_reason", lambda timeout=3.0: "cannot reach the hub (test)")
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError, match="hub is unreachable"):
        registry.create("caption_lm", "hf_causal_lm", name_or_path="arm-tests/no-such-caption-lm")
    assert time.monotonic() - t0 < 5


def test_without_transformers_names_the_extra(monkeypatch, lm_dir):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'arm-tokenizer\[hf\]'") as e:
        hf_mod.HFCausalLM(name_or_path=lm_dir)
    assert isinstance(e.value, ValueError)  # the CLIs turn it into one line and exit 2


# ---------------------------------------------------------------------- YAML, as users write it
def _readme_yaml() -> dict:
    """The ``caption_loss`` block of the README section on caption LMs."""
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Caption LMs for L_cap"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block)[0]


def _tiny_trainer_config(tmp_path, cap_loss: dict) -> str:
    """A tiny TokenizerTrainer YAML around ``cap_loss``, on a captioned 32 px image folder."""
    import yaml
    from arm_tokenizer.teachers.toy import write_toy_folder

    images = tmp_path / "images"
    images.mkdir()
    write_toy_folder(images, 4)
    cfg = {
        "trainer": {"accelerator": "cpu", "devices": 1, "default_root_dir": str(tmp_path / "logs"),
                    "enable_progress_bar": False, "enable_model_summary": False, "logger": False},
        "model": {"class_path": "tokenizer_trainer", "init_args": {
            "image_size": 32, "export_dir": str(tmp_path / "export"), "ema_decay": None,
            "encoder": {"class_path": "cnn", "init_args": {"patch_size": 4, "width": 8, "max_width": 16,
                                                           "num_res_blocks": 0, "out_dim": 16}},
            "proj_in": {"class_path": "linear", "init_args": {"in_dim": 16, "out_dim": 3}},
            "quantizer": {"class_path": "fsq", "init_args": {"levels": [5, 5, 5]}},
            "proj_out": {"class_path": "linear", "init_args": {"in_dim": 3, "out_dim": 16}},
            "decoder": {"class_path": "conv_decoder", "init_args": {"in_dim": 16, "patch_size": 4, "channels": 16}},
            "losses": [cap_loss, {"class_path": "pixel_loss", "init_args": {"lpips_weight": 0.0}}],
        }},
        "data": {"class_path": "image_folder",
                 "init_args": {"root": str(images), "image_size": 32, "batch_size": 2, "val_fraction": 0.5}},
    }
    path = tmp_path / "hf-cap.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_readme_yaml_trains_a_tokenizer_through_lightning_cli(tmp_path, lm_dir):
    """The README's loss block (name_or_path, dtype and widths scaled down) in a tiny
    TokenizerTrainer run by LightningCLI for one step on a captioned image folder."""
    from arm_tokenizer.framework.lightning_cli import run_lightning

    cap_loss = _readme_yaml()
    assert cap_loss["init_args"]["caption_lm"]["class_path"] == "hf_causal_lm"
    assert cap_loss["init_args"]["prefix_pooling"] == "avg"
    cap_loss["init_args"]["in_dim"] = 16
    cap_loss["init_args"]["caption_lm"]["init_args"].update(name_or_path=lm_dir, dtype="float32")
    cli = run_lightning(["fit", "--config", _tiny_trainer_config(tmp_path, cap_loss), "--trainer.fast_dev_run=1"])
    metrics = cli.trainer.logged_metrics
    assert torch.isfinite(metrics["train/loss_cap"])
    cap = next(loss for loss in cli.model.losses if loss.name == "cap")
    assert type(cap.caption_lm) is hf_mod.HFCausalLM and cap.pooling.mode == "avg"
    assert not any(p.requires_grad for p in cap.caption_lm.parameters())


def test_cli_offline_without_weights_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    from arm_tokenizer.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cap_loss = {"class_path": "caption_loss", "init_args": {
        "in_dim": 16, "caption_lm": {"class_path": "hf_causal_lm",
                                     "init_args": {"name_or_path": "arm-tests/no-such-caption-lm"}}}}
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", _tiny_trainer_config(tmp_path, cap_loss), "--trainer.fast_dev_run=1"])
    assert e.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "HF_HUB_OFFLINE" in err[0] and "Traceback" not in err[0], err

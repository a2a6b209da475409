"""HF import/export: logits parity with transformers both ways, config translation, errors."""

from __future__ import annotations

import json

import pytest
import torch
from arm_core.config import Config
from arm_core.hf import UnsupportedCheckpointError, config_from_hf, config_to_hf, load_hf, save_hf
from arm_core.model import GPT

ATOL = 1e-4


def _tiny_hf(kind: str, **kw):
    transformers = pytest.importorskip("transformers")
    common = dict(vocab_size=80, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6)
    common.update(kw)
    torch.manual_seed(0)
    if kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
        # HF inits q/k/v biases to zero; make them non-trivial so the map is really checked
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.1)
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    return model.float().eval()


def _hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


CASES = [
    ("qwen2", dict(rope_theta=10000.0)),
    ("qwen2", dict(rope_theta=1e6, tie_word_embeddings=True)),
    ("llama", dict(rope_theta=500000.0, tie_word_embeddings=True,
                   rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                     high_freq_factor=4.0, original_max_position_embeddings=16))),
    ("llama", dict(rope_theta=10000.0, head_dim=16)),
]


@pytest.mark.hf
@pytest.mark.parametrize("kind,kw", CASES, ids=["qwen2", "qwen2-tied", "llama3-rope", "llama-hd16"])
def test_import_logits_parity(tmp_path, kind, kw):
    hf = _tiny_hf(kind, **kw)
    hf.save_pretrained(tmp_path, max_shard_size="20KB")       # sharded + index
    assert (tmp_path / "model.safetensors.index.json").exists()
    ours = load_hf(tmp_path).eval()
    ids = torch.randint(0, 80, (2, 40))
    with torch.no_grad():
        diff = (ours(ids) - _hf_logits(hf, ids)).abs().max().item()
    assert diff <= ATOL, diff


@pytest.mark.hf
@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_export_loads_in_transformers(tmp_path, kind):
    transformers = pytest.importorskip("transformers")
    cfg = Config(vocab_size=72, n_layer=2, n_head=4, n_query_groups=1, n_embd=32,
                 intermediate_size=40, qkv_bias=kind == "qwen2", rope_theta=20000.0, max_seq_len=64)
    torch.manual_seed(1)
    ours = GPT(cfg).eval()
    save_hf(ours, tmp_path, max_shard_bytes=30_000)
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert not list(tmp_path.glob("*.tmp"))
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == kind
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.randint(0, 72, (3, 33))
    with torch.no_grad():
        assert (ours(ids) - _hf_logits(hf, ids)).abs().max().item() <= ATOL
    # and back again through our importer
    again = load_hf(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(again(ids), ours(ids))


@pytest.mark.hf
def test_multimodal_export_folds_visual_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = Config.from_name("tiny")                       # separate visual head, untied
    torch.manual_seed(2)
    ours = GPT(cfg).eval()
    save_hf(ours, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 20))
    with torch.no_grad():
        assert (ours(ids) - _hf_logits(hf, ids)).abs().max().item() <= ATOL
    back = load_hf(tmp_path, max_seq_len=cfg.max_seq_len)
    assert back.config.separate_visual_head and back.config.image_offset == cfg.image_offset
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_config_round_trip_and_preset_translation():
    for name in ("llama-1b", "qwen2.5-0.5b", "qwen2.5-7b"):
        cfg = Config.from_name(name)
        back = config_from_hf(config_to_hf(cfg), name=name)
        assert back == cfg, name


def test_unsupported_features_are_refused(tmp_path):
    base = config_to_hf(Config.from_name("qwen2.5-0.5b"))
    with pytest.raises(UnsupportedCheckpointError, match="sliding-window"):
        config_from_hf({**base, "use_sliding_window": True})
    with pytest.raises(UnsupportedCheckpointError, match="yarn"):
        config_from_hf({**base, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6,
                                                   "factor": 4.0}})
    with pytest.raises(UnsupportedCheckpointError, match="qwen2_moe"):
        config_from_hf({**base, "model_type": "qwen2_moe"})
    with pytest.raises(UnsupportedCheckpointError, match="gelu"):
        config_from_hf({**base, "hidden_act": "gelu"})
    llama = config_to_hf(Config.from_name("llama-1b"))
    with pytest.raises(UnsupportedCheckpointError, match="attention_bias"):
        config_from_hf({**llama, "attention_bias": True})
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf(tmp_path)
    with pytest.raises(UnsupportedCheckpointError, match="image_position_slots=64"):
        save_hf(GPT(Config.from_name("tiny", image_position_slots=64)), tmp_path / "pos")


def test_unknown_weight_is_refused(tmp_path):
    from safetensors.torch import save_file
    cfg = Config(vocab_size=16, n_layer=1, n_head=2, n_query_groups=2, n_embd=8,
                 intermediate_size=8, max_seq_len=16)
    save_hf(GPT(cfg), tmp_path)
    sd = {}
    from safetensors import safe_open
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as fh:
        sd = {k: fh.get_tensor(k) for k in fh.keys()}
    sd["model.layers.0.mlp.experts.0.weight"] = torch.zeros(2)
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(UnsupportedCheckpointError, match="experts"):
        load_hf(tmp_path)


def test_config_json_that_disagrees_with_the_weights_says_what_to_fix(tmp_path):
    cfg = Config(vocab_size=16, n_layer=1, n_head=2, n_query_groups=2, n_embd=8,
                 intermediate_size=8, max_seq_len=16)
    save_hf(GPT(cfg), tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    hf["vocab_size"] = 24
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match=r"embed_tokens.weight \(16, 8\) \(config.json implies \(24, 8\)\).*vocab_size"):
        load_hf(tmp_path)

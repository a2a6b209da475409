"""The LM: presets, config validation, heads, packing, causality, cache parity, vocab extension."""

from __future__ import annotations

import pytest
import torch
from arm_core.config import Config, list_presets
from arm_core.model import GPT, doc_positions, extend_vocab


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(Config.from_name("tiny", **kw)).eval()


# ---- presets on the meta device ----------------------------------------------------------
@pytest.mark.parametrize("name,count", [
    ("qwen2.5-7b", 7_615_616_512),      # Qwen2.5-7B's published size (7.62B)
    ("llama-1b", 1_235_814_400),        # Llama-3.2-1B (tied)
    ("qwen2.5-0.5b", 494_032_768),      # Qwen2.5-0.5B (tied)
])
def test_preset_parameter_counts(name, count):
    with torch.device("meta"):
        model = GPT(Config.from_name(name))
    assert model.num_parameters() == count


def test_arm_7b_shapes_on_meta():
    cfg = Config.from_name("arm-7b")
    with torch.device("meta"):
        model = GPT(cfg)
    sd = model.state_dict()
    assert sd["embed_tokens.weight"].shape == (152064 + 65536, 3584)
    assert sd["lm_head.weight"].shape == (152064, 3584)
    assert sd["visual_head.weight"].shape == (65536, 3584)
    assert sd["layers.27.self_attn.q_proj.weight"].shape == (3584, 3584)
    assert sd["layers.27.self_attn.k_proj.weight"].shape == (512, 3584)
    assert sd["layers.27.self_attn.k_proj.bias"].shape == (512,)
    assert sd["layers.0.mlp.gate_proj.weight"].shape == (18944, 3584)
    assert "layers.28.mlp.up_proj.weight" not in sd
    # Qwen2.5-7B plus the 65,536 new embedding rows and the visual head
    assert model.num_parameters() == 7_615_616_512 + 2 * 65536 * 3584
    out = model(torch.zeros(1, 4, dtype=torch.long, device="meta"))
    assert out.shape == (1, 4, cfg.vocab_size)


def test_shapes_small_size_and_presets_listed():
    assert {"tiny", "shapes-small", "llama-1b", "qwen2.5-0.5b", "qwen2.5-7b", "arm-7b"} <= set(list_presets())
    n = GPT(Config.from_name("shapes-small")).num_parameters()
    assert 4e6 <= n <= 8e6


# ---- config validation ----------------------------------------------------------------------
def test_config_errors_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="close matches.*qwen2.5-7b"):
        Config.from_name("qwen2.5-7")
    with pytest.raises(ValueError, match="n_query_groups"):
        Config(n_head=4, n_query_groups=3)
    with pytest.raises(ValueError, match="exceed"):
        Config(vocab_size=10, image_offset=8, image_codebook_size=4)
    with pytest.raises(ValueError, match="n_layr.*n_layer"):
        Config.from_dict({"n_layr": 2})
    with pytest.raises(ValueError, match="rope_scaling type 'yarn'"):
        Config(rope_scaling={"rope_type": "yarn", "factor": 4})
    cfg = Config.from_name("llama-1b")
    cfg.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == cfg


# ---- forward ------------------------------------------------------------------------------
def test_visual_head_fills_image_id_range():
    model = tiny()
    c = model.config
    ids = torch.randint(0, c.vocab_size, (2, 7))
    with torch.no_grad():
        hidden = model.forward_hidden(ids)
        logits = model.head(hidden)
        text = hidden @ model.lm_head.weight.T
        vis = hidden @ model.visual_head.weight.T
    assert logits.shape == (2, 7, c.vocab_size)
    assert torch.allclose(logits[..., c.image_offset:c.image_end], vis)
    assert torch.allclose(logits[..., :c.image_offset], text[..., :c.image_offset])
    assert torch.allclose(logits[..., c.image_end:], text[..., c.image_offset:])
    assert torch.allclose(model.head_weight_full() @ hidden[0, 0], logits[0, 0], atol=1e-6)


def test_tied_separate_head_uses_embedding_rows():
    model = tiny(tie_embeddings=True)
    assert model.lm_head is None
    c = model.config
    w = model.text_head_weight()
    assert w.shape == (c.n_text_logits, c.n_embd)
    assert torch.equal(w[: c.image_offset], model.embed_tokens.weight[: c.image_offset])


def test_causal_no_future_leak():
    model = tiny()
    a = torch.randint(0, 96, (1, 12))
    b = a.clone()
    b[0, 8:] = (b[0, 8:] + 5) % 96
    with torch.no_grad():
        la, lb = model(a), model(b)
    assert torch.allclose(la[:, :8], lb[:, :8], atol=1e-6)
    assert not torch.allclose(la[:, 8:], lb[:, 8:])


def test_packed_documents_equal_separate_runs():
    model = tiny()
    d1, d2, d3 = (torch.randint(0, 96, (1, n)) for n in (5, 7, 4))
    packed = torch.cat([d1, d2, d3], 1)
    doc = torch.tensor([[0] * 5 + [1] * 7 + [2] * 4])
    assert doc_positions(doc).tolist() == [list(range(5)) + list(range(7)) + list(range(4))]
    with torch.no_grad():
        out = model(packed, doc_ids=doc)
        sep = torch.cat([model(d1), model(d2), model(d3)], 1)
    assert torch.allclose(out, sep, atol=1e-5)


def test_mha_and_mqa_variants_run_and_backprop():
    for groups in (4, 1):
        model = GPT(Config.from_name("tiny", n_query_groups=groups))
        ids = torch.randint(0, 96, (2, 9))
        model(ids).logsumexp(-1).mean().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_activation_checkpointing_same_gradients():
    ids = torch.randint(0, 96, (2, 10))
    grads = []
    for ckpt in (False, True):
        model = tiny().train()
        model.set_activation_checkpointing(ckpt)
        model(ids).log_softmax(-1)[..., 3].sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g0, g1 in zip(*grads, strict=True):
        assert torch.allclose(g0, g1, atol=1e-6)


def test_too_long_sequence_is_a_clear_error():
    model = tiny()
    with pytest.raises(ValueError, match="max_seq_len=128"):
        model(torch.zeros(1, 129, dtype=torch.long))


# ---- KV cache -----------------------------------------------------------------------------
def test_prefill_and_decode_match_full_forward_with_left_padding():
    model = tiny()
    seqs = [torch.randint(0, 96, (n,)) for n in (9, 5, 7)]
    P, steps = 9, 4
    cont = torch.randint(0, 96, (3, steps))
    ids = torch.zeros(3, P, dtype=torch.long)
    valid = torch.zeros(3, P, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, P - len(s):] = s
        valid[i, P - len(s):] = True
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        model.setup_kv_cache(3, P + steps)
        got = [model.prefill(ids, pos, valid)]
        next_pos = pos[:, -1:] + 1
        for t in range(steps - 1):
            got.append(model.decode_step(cont[:, t:t + 1], next_pos + t, torch.tensor([P + t])))
        for i, s in enumerate(seqs):
            full = model(torch.cat([s, cont[i, :steps - 1]])[None])[0, len(s) - 1:]
            step_logits = torch.stack([g[i] for g in got])
            assert torch.allclose(step_logits, full, atol=1e-5), i


# ---- vocabulary extension -------------------------------------------------------------------
def test_extend_vocab_keeps_text_logits():
    torch.manual_seed(0)
    text_cfg = Config(vocab_size=40, n_layer=2, n_head=4, n_query_groups=2, n_embd=32,
                      intermediate_size=48, max_seq_len=64)
    text = GPT(text_cfg).eval()
    mm_cfg = text_cfg.with_vocab(vocab_size=40 + 8 + 16, image_offset=48, image_codebook_size=16,
                                 separate_visual_head=True)
    mm = extend_vocab(text, mm_cfg, noise_std=0.01, generator=torch.Generator().manual_seed(0)).eval()
    ids = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        old, new = text(ids), mm(ids)
    assert new.shape[-1] == 64
    assert torch.allclose(new[..., :40], old, atol=1e-6)
    # new rows start near the mean of the old rows, not as zeros or copies
    mean = text.embed_tokens.weight.mean(0)
    assert (mm.embed_tokens.weight[40:] - mean).abs().max() < 0.06
    assert (mm.visual_head.weight - text.lm_head.weight.mean(0)).abs().max() < 0.06
    assert not torch.equal(mm.visual_head.weight[0], mm.visual_head.weight[1])
    with pytest.raises(ValueError, match="only the vocabulary"):
        extend_vocab(text, Config.from_dict({**mm_cfg.to_dict(), "n_layer": 3}))


def test_low_precision_cast_keeps_rope_frequencies_fp32():
    model = tiny().to(torch.bfloat16)
    assert model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.inv_freq.dtype == torch.float32
    out = model(torch.randint(0, 96, (1, 5)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_registered_under_arm_lms():
    from arm_tokenizer.framework import registry
    assert registry.get("lm", "gpt") is GPT
    model = registry.create("lm", "gpt", config=Config.from_name("tiny"))
    assert isinstance(model, GPT) and model.config.name == "tiny"


@pytest.mark.parametrize("variant", ["separate", "shared", "tied"])
def test_image_head_is_the_code_slice_of_the_full_head(variant):
    torch.manual_seed(0)
    kw = dict(separate_visual_head=variant == "separate")
    cfg = Config.from_name("tiny", **kw, **({"tie_embeddings": True} if variant == "tied" else {}))
    model = GPT(cfg)
    h = torch.randn(3, 5, cfg.n_embd)
    off, K = cfg.image_offset, cfg.image_codebook_size
    assert torch.allclose(model.image_head(h), model.head(h)[..., off:off + K], atol=1e-6)
    with pytest.raises(ValueError, match="text-only"):
        GPT(Config.from_name("tiny", image_codebook_size=0, separate_visual_head=False,
                             image_offset=0)).image_head(h)

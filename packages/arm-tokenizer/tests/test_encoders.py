"""TimmEncoder (any timm ViT/ConvNet, local checkpoints, frozen, feature layer) and CNNEncoder."""

from __future__ import annotations

import pytest
import timm
import torch
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.encoders.timm_encoder import TimmEncoder
from safetensors.torch import save_file

VIT_KW = {"depth": 3, "patch_size": 8, "embed_dim": 32, "num_heads": 2, "dynamic_img_size": False}


def tiny_vit(**kw) -> TimmEncoder:
    args = {"model_name": "test_vit", "img_size": 32, "model_kwargs": VIT_KW, **kw}
    return TimmEncoder(**args)


def test_vit_patch_tokens_drop_prefix_and_match_timm_block_output():
    torch.manual_seed(0)
    enc = tiny_vit(feature_layer=1, final_norm=False, frozen=True)
    assert enc.out_dim == 32 and enc.patch_size == 8 and enc.grid_shape(32, 32) == (4, 4)
    assert len(enc.model.blocks) == 2  # blocks after the feature layer are pruned
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    tokens = enc(x)
    assert tokens.shape == (2, 16, 32)  # 16 patches; the class token is dropped
    # Reference: run timm by hand on the same (pruned) model, SigLIP-style mean/std 0.5.
    m = enc.model
    h = m.patch_embed((x + 1) / 2 / 0.5 - 1)
    h = m._pos_embed(h)
    h = m.norm_pre(h)
    for blk in m.blocks:
        h = blk(h)
    torch.testing.assert_close(tokens, h[:, m.num_prefix_tokens:], atol=1e-5, rtol=1e-5)


def test_imagenet_normalization_from_pretrained_cfg():
    enc = TimmEncoder(model_name="test_resnet", frozen=True, feature_layer=-1)
    cfg = timm.data.resolve_model_data_config(enc.model)
    x = torch.zeros(1, 3, 1, 1)  # pixel value 0.5 in [0, 1]
    normalized = x * enc.in_scale + enc.in_shift
    expected = (0.5 - torch.tensor(cfg["mean"])) / torch.tensor(cfg["std"])
    torch.testing.assert_close(normalized.flatten(), expected.float())


def test_convnet_feature_map_flattened():
    enc = TimmEncoder(model_name="test_resnet", frozen=False, feature_layer=-2)
    info = timm.create_model("test_resnet", num_classes=0).feature_info[-2]
    assert enc.out_dim == info["num_chs"] and enc.patch_size == info["reduction"]
    out = enc(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert out.shape == (2, (64 // enc.patch_size) ** 2, enc.out_dim)


def test_checkpoint_path_safetensors_and_pth(tmp_path):
    torch.manual_seed(1)
    src = timm.create_model("test_vit", num_classes=0, img_size=32, **VIT_KW)
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, tmp_path / "tower.safetensors")
    torch.save({"state_dict": {f"visual.{k}": v for k, v in sd.items()}}, tmp_path / "tower.pth")
    a = tiny_vit(checkpoint_path=str(tmp_path / "tower.safetensors"))
    b = tiny_vit(checkpoint_path=str(tmp_path / "tower.pth"), checkpoint_prefix="visual.")
    torch.testing.assert_close(a.model.pos_embed, src.pos_embed)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(a(x), b(x))
    assert a.frozen and not a.training and not any(p.requires_grad for p in a.parameters())


def test_checkpoint_mismatch_lists_keys(tmp_path):
    src = timm.create_model("test_vit", num_classes=0, img_size=32, **{**VIT_KW, "depth": 1})
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, tmp_path / "small.safetensors")
    with pytest.raises(KeyError, match=r"missing keys \[blocks\.1\."):
        tiny_vit(checkpoint_path=str(tmp_path / "small.safetensors"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiny_vit(checkpoint_path=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ValueError, match="checkpoint_prefix"):
        tiny_vit(checkpoint_path=str(tmp_path / "small.safetensors"), checkpoint_prefix="visual.")


def test_frozen_vs_trainable():
    frozen = tiny_vit(frozen=True)
    frozen.train()
    assert not frozen.training
    trainable = tiny_vit(frozen=False)
    out = trainable(torch.rand(1, 3, 32, 32) * 2 - 1)
    out.mean().backward()
    assert trainable.model.patch_embed.proj.weight.grad is not None


def test_bad_inputs_name_expected_shape():
    enc = tiny_vit()
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        enc(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        enc(torch.zeros(1, 1, 32, 32))
    with pytest.raises(TypeError, match="float"):
        enc(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="out of range"):
        tiny_vit(feature_layer=5)
    with pytest.raises(ValueError, match="unknown timm model"):
        TimmEncoder(model_name="no_such_model_xyz")


def test_dynamic_img_size_accepts_other_sizes():
    enc = tiny_vit(model_kwargs={**VIT_KW, "dynamic_img_size": True})
    assert enc(torch.zeros(1, 3, 48, 32)).shape == (1, 6 * 4, 32)


def test_siglip2_base_architecture_builds_without_download():
    # The paper-scale backbone: built from its timm name only (no weights here); check
    # structure on the meta device so it costs no memory or time.
    with torch.device("meta"):
        enc = TimmEncoder(model_name="vit_base_patch16_siglip_224.v2_webli", pretrained=False, frozen=True)
    assert (enc.out_dim, enc.patch_size, enc.default_image_size) == (768, 16, (224, 224))
    assert not hasattr(enc.model, "attn_pool") or enc.model.attn_pool is None  # head pruned


def test_cnn_encoder_shapes_and_errors():
    enc = CNNEncoder(patch_size=4, width=8, out_dim=16)
    out = enc(torch.rand(2, 3, 16, 24) * 2 - 1)
    assert out.shape == (2, 4 * 6, 16)
    with pytest.raises(ValueError, match="power of two"):
        CNNEncoder(patch_size=6)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        enc(torch.zeros(1, 3, 18, 16))
    assert CNNEncoder(frozen=True).frozen


def test_extra_layers_fold_finer_and_repeat_coarser_maps_onto_the_token_grid():
    torch.manual_seed(0)
    kw = {"model_name": "resnet10t", "model_kwargs": {"output_stride": 8, "channels": [32, 64, 64, 64]}}
    plain, detailed = TimmEncoder(**kw), TimmEncoder(**kw, extra_layers=[0, 1])
    detailed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    tokens = detailed(x)
    # last stage 64 ch + stem (stride 2, 64 ch) folded 4x4 + stride-4 stage (32 ch) folded 2x2
    assert detailed.out_dim == 64 + 64 * 16 + 32 * 4 == tokens.shape[-1]
    assert tokens.shape[:2] == (2, 16) and detailed.grid_shape(32, 32) == (4, 4)
    assert torch.allclose(tokens[..., :64], plain(x))  # the semantic channels come first, unchanged
    # a stem pixel's activation sits in the token over it: perturb one corner, only token 0 changes
    y = x.clone()
    y[:, :, 0, 0] += 0.5
    changed = (detailed(y)[..., 64:] - tokens[..., 64:]).abs().amax(-1)[0] > 1e-6
    assert changed[0] and not changed[5:].any()
    vit = tiny_vit(extra_layers=[0])
    assert vit.out_dim == 64 and vit(x).shape == (2, 16, 64)
    with pytest.raises(ValueError, match="extra_layers: 1 must name a layer of the 3, other than feature_layer"):
        tiny_vit(feature_layer=1, extra_layers=[1])
    # stride-4 tokens: the stride-2 stem folded 2x2, the stride-8 last stage repeated 2x2
    fine = TimmEncoder(**kw, feature_layer=1, extra_layers=[0, -1])
    fine.load_state_dict(plain.state_dict())
    assert fine.patch_size == 4 and fine.out_dim == 32 + 64 * 4 + 64
    out = fine(x)
    assert out.shape == (2, 64, fine.out_dim)
    last = out[..., -64:].reshape(2, 8, 8, 64)
    coarse = plain(x).reshape(2, 4, 4, 64)
    assert torch.allclose(last[:, ::2, ::2], coarse) and torch.allclose(last[:, 1::2, 1::2], coarse)

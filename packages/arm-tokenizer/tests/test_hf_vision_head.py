"""``hf_vision(keep_head=True)``: the tower's own image embedding (SigLIP / SigLIP2 pooling
head, CLIP visual projection) equals transformers' ``get_image_features``, normalised;
without it the head is neither stored nor usable, and ``forward`` never runs it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from arm_tokenizer.framework import registry  # noqa: E402
from arm_tokenizer.testing.hf_tiny import tiny_hf_dir  # noqa: E402

SIZES = {"siglip": [16, 24], "siglip2": [16, 24], "clip": [32, 40]}


def _reference(family: str, enc, x: torch.Tensor) -> torch.Tensor:
    """transformers' own dual model on the same pixels, as its image processor would give them."""
    import transformers as tf

    full = tf.AutoModel.from_pretrained(tiny_hf_dir(family)).eval()
    mean = torch.tensor(enc.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(enc.image_std).view(1, 3, 1, 1)
    pix = ((x + 1) / 2 - mean) / std
    with torch.no_grad():
        if family == "siglip2":
            p = enc.patch_size
            b, c, height, width = pix.shape
            h, w = height // p, width // p
            patches = pix.reshape(b, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, p * p * c)
            out = full.get_image_features(pixel_values=patches, pixel_attention_mask=torch.ones(b, h * w, dtype=torch.long),
                                          spatial_shapes=torch.tensor([[h, w]] * b))
        else:
            out = full.get_image_features(pixel_values=pix, interpolate_pos_encoding=True)
    return F.normalize(getattr(out, "pooler_output", out).float(), dim=-1)


@pytest.mark.parametrize("family", ["siglip", "siglip2", "clip"])
def test_embed_images_matches_get_image_features(family):
    enc = registry.create("encoder", "hf_vision", name_or_path=tiny_hf_dir(family), image_size=SIZES[family],
                          keep_head=True)
    torch.manual_seed(0)
    x = torch.rand(3, 3, *SIZES[family]) * 2 - 1
    emb = enc.embed_images(x)
    ref = _reference(family, enc, x)
    assert emb.shape == ref.shape and emb.dtype == torch.float32
    assert torch.allclose(emb, ref, atol=1e-5), (emb - ref).abs().max()
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(emb[0], emb[1])  # really image-dependent

    # forward gives the same patch tokens as without the head, and never runs the head.
    plain = registry.create("encoder", "hf_vision", name_or_path=tiny_hf_dir(family), image_size=SIZES[family])
    head = enc.model.visual_projection if family == "clip" else enc._tower.head
    calls = []
    handle = head.register_forward_hook(lambda *a: calls.append(1))
    try:
        tokens = enc(x)
    finally:
        handle.remove()
    assert not calls
    assert torch.allclose(tokens, plain(x), atol=1e-6)


@pytest.mark.parametrize("family", ["siglip2", "clip"])
def test_head_is_dropped_by_default_and_kept_in_portable_exports(family):
    plain = registry.create("encoder", "hf_vision", name_or_path=tiny_hf_dir(family))
    assert not plain.has_image_head
    assert not [k for k in plain.state_dict() if ".head." in k or "visual_projection" in k]
    with pytest.raises(RuntimeError, match="keep_head=True"):
        plain.embed_images(torch.zeros(1, 3, *plain.image_size))

    enc = registry.create("encoder", "hf_vision", name_or_path=tiny_hf_dir(family), keep_head=True)
    assert [k for k in enc.state_dict() if ".head." in k or "visual_projection" in k]
    cfg = enc.get_config(portable=True)
    assert cfg["init_args"]["keep_head"] is True and cfg["init_args"].get("name_or_path") is None
    rebuilt = registry.create("encoder", "hf_vision", **cfg["init_args"])
    rebuilt.load_state_dict(enc.state_dict())
    x = torch.rand(2, 3, *enc.image_size) * 2 - 1
    assert torch.allclose(rebuilt.embed_images(x), enc.embed_images(x), atol=1e-6)


def test_keep_head_on_a_tower_without_head_is_refused(tmp_path):
    import transformers as tf

    cfg = tf.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                patch_size=8, image_size=16, vision_use_head=False)
    tf.SiglipVisionModel(cfg).save_pretrained(str(tmp_path))
    assert registry.create("encoder", "hf_vision", name_or_path=str(tmp_path)).out_dim == 32
    with pytest.raises(ValueError, match="has no attention-pooling head"):
        registry.create("encoder", "hf_vision", name_or_path=str(tmp_path), keep_head=True)

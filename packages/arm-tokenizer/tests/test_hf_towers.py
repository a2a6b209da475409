"""hf_vision / hf_text: real SigLIP, SigLIP2 and CLIP towers from tiny random transformers
checkpoints (built with transformers' own config classes and save_pretrained), offline
errors, and the registry naming the package a missing component comes from."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from arm_tokenizer.framework import registry  # noqa: E402
from arm_tokenizer.framework.configurable import instantiate  # noqa: E402
from arm_tokenizer.framework.hub import HubUnavailableError  # noqa: E402
from arm_tokenizer.testing.hf_tiny import TINY_FAMILIES, tiny_hf_dir  # noqa: E402
from toy_components import FAST_DEV_TRAINER  # noqa: E402

FAMILIES = list(TINY_FAMILIES)


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


# ------------------------------------------------------------------ hf_vision
@pytest.mark.parametrize("family", FAMILIES)
def test_vision_tower_from_registry_square_and_non_square(family):
    enc = registry.create("encoder", "hf_vision", name_or_path=tiny_hf_dir(family))
    assert enc.family == family and enc.patch_size == 8 and enc.out_dim == 32
    assert enc.image_size == (32, 32)  # the tiny tower's native size
    for h, w in [(32, 32), (16, 24), (40, 16)]:
        out = enc(_images(2, h, w))
        assert out.shape == (2, (h // 8) * (w // 8), 32) and enc.grid_shape(h, w) == (h // 8, w // 8)
        assert torch.isfinite(out).all()
    # Different images give different tokens (the tower really runs).
    a, b = enc(_images(1, 16, 24, seed=1)), enc(_images(1, 16, 24, seed=2))
    assert not torch.allclose(a, b)


def test_siglip2_naflex_input_matches_transformers_own_patchify():
    from transformers.models.siglip2.image_processing_siglip2 import convert_image_to_patches

    d = tiny_hf_dir("siglip2")
    enc = registry.create("encoder", "hf_vision", name_or_path=d, image_size=[16, 40])
    ref = transformers.Siglip2VisionModel.from_pretrained(d).eval()
    images = _images(2, 16, 40)
    x = (images + 1) / 2  # the processor's rescale, then (x - 0.5) / 0.5 normalisation
    x = (x - 0.5) / 0.5
    patches = torch.stack([convert_image_to_patches(im, 8) for im in x])
    with torch.no_grad():
        want = ref(pixel_values=patches, pixel_attention_mask=torch.ones(2, 10, dtype=torch.long),
                   spatial_shapes=torch.tensor([[2, 5], [2, 5]])).last_hidden_state
        got = enc(images)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_clip_normalises_with_its_own_mean_std_and_drops_the_class_token():
    d = tiny_hf_dir("clip")
    enc = registry.create("encoder", "hf_vision", name_or_path=d)
    assert enc.image_mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    ref = transformers.CLIPVisionModel.from_pretrained(d).eval()
    images = _images(2, 32, 32)
    mean = torch.tensor(enc.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(enc.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden = ref(pixel_values=((images + 1) / 2 - mean) / std).last_hidden_state
        want = ref.post_layernorm(hidden[:, 1:]) if hasattr(ref, "post_layernorm") else \
            ref.vision_model.post_layernorm(hidden[:, 1:])
        torch.testing.assert_close(enc(images), want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("family", "size", "match"), [
    ("siglip2", 20, "not a multiple of the patch size 8"),
    ("siglip", [32, 30], "not a multiple of the patch size 8"),
    ("clip", 4, "smaller than one 8x8 patch"),
    ("siglip2", [80, 80], "100 patches of 8x8, more than this NaFlex model's max_num_patches 64"),
])
def test_a_size_the_tower_cannot_take_fails_at_construction(family, size, match):
    with pytest.raises(ValueError, match=match) as err:
        registry.create("encoder", "hf_vision", name_or_path=tiny_hf_dir(family), image_size=size)
    assert "\n" not in str(err.value) and family in str(err.value)


def test_a_bad_size_at_forward_is_refused_too_and_max_num_patches_is_configurable():
    enc = registry.create("encoder", "hf_vision", name_or_path=tiny_hf_dir("siglip2"), max_num_patches=100)
    assert enc(_images(1, 80, 80)).shape == (1, 100, 32)
    with pytest.raises(ValueError, match="more than this NaFlex model's max_num_patches 100"):
        enc(_images(1, 88, 88))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        enc(_images(1, 30, 32))


def test_vision_tower_is_frozen_by_default_and_trains_when_asked():
    d = tiny_hf_dir("siglip")
    frozen = registry.create("encoder", "hf_vision", name_or_path=d)
    frozen.train()
    assert frozen.frozen and not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen(_images(1, 16, 16)).requires_grad

    enc = registry.create("encoder", "hf_vision", name_or_path=d, frozen=False)
    enc.train()
    assert enc.training and all(p.requires_grad for p in enc.parameters())
    assert not hasattr(getattr(enc.model, "vision_model", enc.model), "head")  # pooling head removed
    images = _images(2, 16, 24)
    before = enc(images).detach()
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    enc(images).square().mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not missing
    opt.step()
    assert not torch.allclose(enc(images).detach(), before)


def test_dtype_option_and_portable_config_rebuild_without_the_checkpoint():
    d = tiny_hf_dir("siglip2")
    enc = registry.create("encoder", "hf_vision", name_or_path=d, image_size=[16, 24])
    cfg = json.loads(json.dumps(enc.get_config(portable=True)))
    args = cfg["init_args"]
    assert args["name_or_path"] is None and args["hf_config"]["model_type"] == "siglip2_vision_model"
    assert cfg["weight_sources"] == {"name_or_path": d}
    clone = instantiate(cfg)  # random weights from the architecture alone ...
    clone.load_state_dict(enc.state_dict())  # ... then the saved ones, strictly
    images = _images(2, 16, 24)
    torch.testing.assert_close(clone(images), enc(images))

    half = registry.create("encoder", "hf_vision", name_or_path=d, dtype="bfloat16")
    assert next(half.parameters()).dtype == torch.bfloat16
    out = half(images)
    assert out.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(out, enc(images), dim=-1).mean() > 0.95


def test_saved_tokenizer_with_hf_vision_loads_without_the_checkpoint(tmp_path):
    import shutil

    from arm_tokenizer.testing.hf_tiny import build_tiny_dual_encoder
    from arm_tokenizer.tokenizer import VisualTokenizer

    towers = build_tiny_dual_encoder(tmp_path / "towers", "siglip")
    tok = VisualTokenizer(
        encoder=registry.create("encoder", "hf_vision", name_or_path=str(towers), image_size=[16, 24]),
        quantizer=registry.create("quantizer", "fsq", levels=[2, 2, 2, 2]),
        decoder=registry.create("decoder", "conv_decoder", in_dim=32, patch_size=8, channels=8, min_channels=8),
        proj_in=registry.create("projection", "linear", in_dim=32, out_dim=4),
        proj_out=registry.create("projection", "linear", in_dim=4, out_dim=32), image_size=(16, 24))
    tok.save_pretrained(tmp_path / "export")
    images = _images(2, 16, 24)
    ids = tok.encode(images)
    shutil.rmtree(towers)  # the export alone must be enough
    again = VisualTokenizer.from_pretrained(tmp_path / "export")
    assert torch.equal(again.encode(images), ids) and again.encoder.name_or_path is None


# ------------------------------------------------------------------ hf_text
@pytest.mark.parametrize("family", FAMILIES)
def test_text_tower_normalised_embeddings_and_checkpoint_scale_bias(family):
    text = registry.create("text_encoder", "hf_text", name_or_path=tiny_hf_dir(family))
    assert text.embed_dim == 24 and text.frozen
    assert not any(p.requires_grad for p in text.parameters())
    assert float(text.log_temperature) == pytest.approx(2.5)  # written by the tiny builder
    assert float(text.bias) == pytest.approx(0.0 if family == "clip" else -3.0)
    emb = text.encode_text(["a red circle", "a photo of a dog", "a red circle"])
    assert emb.shape == (3, 24) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(emb[0], emb[2])
    assert (emb[0] - emb[1]).abs().max() > 1e-3
    with pytest.raises(TypeError, match="list of texts"):
        text.encode_text("a red circle")


def test_text_tower_matches_transformers_and_overrides_scale_bias():
    d = tiny_hf_dir("siglip")
    text = registry.create("text_encoder", "hf_text", name_or_path=d, log_temperature=math.log(10), bias=-10.0,
                           cache_size=0)
    assert float(text.logit_scale) == pytest.approx(10.0) and float(text.bias) == -10.0
    tok = transformers.AutoTokenizer.from_pretrained(d)
    ref = transformers.SiglipTextModel.from_pretrained(d).eval()
    ids = tok(["a blue square"], padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref(input_ids=ids).pooler_output, dim=-1)
    torch.testing.assert_close(text.encode_text(["a blue square"]), want)


def test_siglip_loss_runs_with_hf_text_and_backpropagates_into_the_image_side():
    from arm_tokenizer.losses.base import LossInputs

    d = tiny_hf_dir("siglip2")
    enc = registry.create("encoder", "hf_vision", name_or_path=d, image_size=[16, 24], frozen=False)
    text = registry.create("text_encoder", "hf_text", name_or_path=d)
    loss_fn = registry.create("tokenizer_loss", "siglip_loss", text_encoder=text, in_dim=enc.out_dim)
    images = _images(4, 16, 24)
    feats = enc(images)
    captions = ["a red circle on the left", "a green square on the right", "a photo of a cat", "a photo of a dog"]
    inputs = LossInputs(images=images, grid=(2, 3), encoder_features=feats, pre_quant=feats, quantized=feats,
                        features=feats, indices=torch.zeros(4, 6, dtype=torch.long), decoder=torch.nn.Identity(),
                        captions=captions)
    out = loss_fn(inputs)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert loss_fn.log_temperature.grad is not None and loss_fn.bias.grad is not None
    assert all(p.grad is None for p in text.parameters())


# ------------------------------------------------------------------ bad checkpoints, offline, no extra
def test_unsupported_architecture_names_the_supported_families(tmp_path):
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64).save_pretrained(tmp_path)
    for kind, name in [("encoder", "hf_vision"), ("text_encoder", "hf_text")]:
        with pytest.raises(ValueError) as err:
            registry.create(kind, name, name_or_path=str(tmp_path))
        msg = str(err.value)
        assert "'bert'" in msg and "SigLIP (" in msg and "SigLIP2 (" in msg and "CLIP (" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        registry.create("encoder", "hf_vision", name_or_path=str(tmp_path / ".."))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        registry.create("encoder", "hf_vision", name_or_path=str(tmp_path / "nothing" / "here"))


def test_tower_only_checkpoints_are_checked_for_their_side(tmp_path):
    text_only = transformers.SiglipTextModel(transformers.SiglipTextConfig(
        vocab_size=22, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16))
    text_only.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds only the text tower of SigLIP"):
        registry.create("encoder", "hf_vision", name_or_path=str(tmp_path))


def test_offline_hub_id_fails_in_one_line_within_seconds(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for kind, name in [("encoder", "hf_vision"), ("text_encoder", "hf_text")]:
        start = time.monotonic()
        with pytest.raises(HubUnavailableError) as err:
            registry.create(kind, name, name_or_path="arm-tests/no-such-siglip2")
        assert time.monotonic() - start < 5
        msg = str(err.value)
        assert "\n" not in msg and "HF_HUB_OFFLINE=1" in msg and "name_or_path=/path/to/a/local/copy" in msg
        assert "'arm-tests/no-such-siglip2'" in msg and "config.json" in msg


def test_timm_pretrained_offline_fails_in_one_line_within_seconds(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # surely not cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(HubUnavailableError) as err:
        registry.create("encoder", "timm", model_name="vit_base_patch16_siglip_224.v2_webli", pretrained=True)
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE=1" in msg and "checkpoint_path=" in msg


def test_without_transformers_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    for kind, name in [("encoder", "hf_vision"), ("text_encoder", "hf_text")]:
        with pytest.raises(ImportError, match=r"pip install 'arm-tokenizer\[hf\]'"):
            registry.create(kind, name, name_or_path=tiny_hf_dir("siglip"))


# ------------------------------------------------------------------ registry: the package to install
def test_a_component_of_a_package_not_installed_names_the_package(fresh_registry, monkeypatch):
    from arm_tokenizer.framework.config_check import ConfigError, resolve_class

    real = [d for d in registry._distributions() if (d.metadata["Name"] or "") == "arm-tokenizer"]
    monkeypatch.setattr(registry, "_distributions", lambda: list(real))  # arm-tokenizer alone
    with pytest.raises(registry.UnknownComponentError) as err:
        registry.find("datamodule", "shapes_world")
    assert "'shapes_world' is a datamodule of the arm-data package, which is not installed: pip install arm-data" \
        in str(err.value)
    with pytest.raises(ConfigError, match="pip install arm-rl"):
        resolve_class("grpo")
    with pytest.raises(registry.UnknownComponentError) as err:  # a typo still gets close matches
        registry.find("datamodule", "image_foldr")
    assert "Did you mean: image_folder" in str(err.value) and "pip install" not in str(err.value)


def test_sibling_table_matches_the_sibling_packages_entry_points():
    tomllib = pytest.importorskip("tomllib")
    packages = Path(__file__).resolve().parents[2]
    group_to_kind = {k.group: k.name for k in registry.KINDS.values()}
    for dist, kinds in registry.SIBLING_COMPONENTS.items():
        pyproject = packages / dist / "pyproject.toml"
        if not pyproject.is_file():
            pytest.skip(f"{dist} sources are not beside arm-tokenizer (installed alone)")
        eps = tomllib.loads(pyproject.read_text())["project"].get("entry-points", {})
        declared = {group_to_kind[g]: tuple(sorted(names)) for g, names in eps.items() if g in group_to_kind}
        assert {k: tuple(sorted(v)) for k, v in kinds.items()} == declared, (
            f"registry.SIBLING_COMPONENTS[{dist!r}] is out of date with {pyproject}: copy its arm.* entry points")


# ------------------------------------------------------------------ YAML, as the README shows it
HF_YAML = """
model:
  class_path: tokenizer_trainer
  init_args:
    image_size: [16, 24]
    encoder:
      class_path: hf_vision
      init_args: {{name_or_path: {towers}, image_size: [16, 24]}}
    proj_in: {{class_path: linear, init_args: {{in_dim: 32, out_dim: 4}}}}
    quantizer: {{class_path: fsq, init_args: {{levels: [2, 2, 2, 2]}}}}
    proj_out: {{class_path: linear, init_args: {{in_dim: 4, out_dim: 32}}}}
    decoder: {{class_path: conv_decoder, init_args: {{in_dim: 32, patch_size: 8, channels: 8, min_channels: 8}}}}
    losses:
      - class_path: pixel_loss
      - class_path: siglip_loss
        init_args:
          in_dim: 32
          text_encoder:
            class_path: hf_text
            init_args: {{name_or_path: {towers}}}
data:
  class_path: image_folder
  init_args: {{root: {images}, image_size: [16, 24], batch_size: 2, val_fraction: 0.34, captions: require}}
""" + FAST_DEV_TRAINER


def test_yaml_fit_with_hf_towers_non_square(tmp_path, monkeypatch):
    from arm_tokenizer.framework.cli_base import run_cli
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i, caption in enumerate(["a red circle", "a blue square", "a photo of a cat"]):
        Image.fromarray((torch.rand(30, 40, 3) * 255).to(torch.uint8).numpy()).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text(caption)
    cfg = tmp_path / "hf.yaml"
    cfg.write_text(HF_YAML.format(towers=tiny_hf_dir("siglip2"), images=images))
    monkeypatch.chdir(tmp_path)
    assert run_cli("arm-tokenizer", ["fit", "--config", str(cfg)]) == 0

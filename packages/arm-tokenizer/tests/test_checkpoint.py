"""Init-args capture and self-contained checkpoints (save_pretrained / from_pretrained)."""

from __future__ import annotations

import inspect
import json
import os

import pytest
import timm
import torch
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.encoders.timm_encoder import TimmEncoder
from arm_tokenizer.framework.checkpoint import FORMAT_VERSION, CheckpointError, read_config
from arm_tokenizer.framework.configurable import (
    ConfigError,
    Configurable,
    import_class,
    instantiate,
)
from arm_tokenizer.projections import LinearProjection, TransformerProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.quantizers.vq import VQQuantizer
from arm_tokenizer.testing.toys import ToyDecoder
from arm_tokenizer.tokenizer import VisualTokenizer
from safetensors.torch import load_file, save_file
from torch import nn


# ---------------------------------------------------------------------- configurable
class Inner(Configurable, nn.Module):
    def __init__(self, width: int = 3, tags: tuple[str, ...] = ("a",)) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)


class Outer(Configurable, nn.Module):
    """Doc kept."""

    def __init__(self, inner: Inner, scale: float = 1.0, **extra: int) -> None:
        super().__init__()
        self.inner = inner


class Derived(Inner):
    def __init__(self, depth: int = 2) -> None:
        super().__init__(width=depth * 2)  # derived values passed up are not recorded


def test_init_args_recorded_recursively_and_rebuilt():
    o = Outer(Inner(width=5), scale=2.5, bonus=7)
    cfg = o.get_config()
    assert cfg == {
        "class_path": f"{__name__}.Outer",
        "init_args": {"inner": {"class_path": f"{__name__}.Inner", "init_args": {"width": 5, "tags": ["a"]}},
                      "scale": 2.5, "bonus": 7},
    }
    rebuilt = instantiate(json.loads(json.dumps(cfg)))
    assert isinstance(rebuilt.inner, Inner) and rebuilt.inner.lin.in_features == 5
    assert rebuilt.get_config() == cfg


def test_outermost_init_wins_and_signature_survives():
    d = Derived(depth=4)
    assert d.init_args == {"depth": 4}
    assert d.lin.in_features == 8
    assert list(inspect.signature(Outer).parameters) == ["inner", "scale", "extra"]
    assert Outer.__doc__ == "Doc kept."


def test_unsaveable_args_and_bad_class_paths():
    class Holder(Configurable):
        def __init__(self, fn=print) -> None:
            pass

    with pytest.raises(ConfigError, match=r"Holder\.fn: cannot save a builtin_function_or_method"):
        Holder().get_config()
    with pytest.raises(ConfigError, match="no attribute"):
        import_class("arm_tokenizer.projections.NoSuchProjection")
    with pytest.raises(ConfigError, match="do not match its constructor"):
        instantiate({"class_path": "arm_tokenizer.projections.LinearProjection", "init_args": {"widthh": 3}})


def test_deepcopy_keeps_config():
    import copy

    q = VQQuantizer(dim=4, codebook_size=8)
    assert copy.deepcopy(q).get_config() == q.get_config()


# ---------------------------------------------------------------------- tokenizer checkpoints
def make_tok(encoder=None, image_size=16) -> VisualTokenizer:
    torch.manual_seed(0)
    encoder = encoder or CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=12)
    q = FSQQuantizer(levels=[4, 4, 3])
    return VisualTokenizer(
        encoder, q, ToyDecoder(in_dim=10, patch_size=encoder.patch_size),
        proj_in=TransformerProjection(in_dim=encoder.out_dim, out_dim=3, width=16, depth=1, heads=2),
        proj_out=LinearProjection(in_dim=3, out_dim=10), image_size=image_size,
    ).eval()


def test_save_and_from_pretrained_round_trip(tmp_path):
    tok = make_tok()
    tok.save_pretrained(tmp_path / "tok")
    assert sorted(os.listdir(tmp_path / "tok")) == ["config.json", "model.safetensors"]  # no temp files left
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert cfg["format"] == "arm-tokenizer" and cfg["format_version"] == FORMAT_VERSION
    assert cfg["tokens_per_image"] == 16 and cfg["codebook_size"] == 48 and cfg["image_size"] == [16, 16]
    assert set(cfg["versions"]) >= {"arm-tokenizer", "arm-data", "arm-core", "arm-rl", "torch"}
    assert cfg["versions"]["torch"] and cfg["versions"]["arm-tokenizer"]
    assert cfg["model"]["init_args"]["encoder"]["class_path"] == "arm_tokenizer.encoders.cnn.CNNEncoder"

    back = VisualTokenizer.from_pretrained(tmp_path / "tok")
    assert not back.training
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    ids = tok.encode(x)
    torch.testing.assert_close(back.encode(x), ids)
    torch.testing.assert_close(back.decode(ids), tok.decode(ids))
    # Overwriting an existing checkpoint works (atomic replace).
    tok.save_pretrained(tmp_path / "tok")


def test_frozen_timm_encoder_from_checkpoint_path_is_self_contained(tmp_path):
    kw = {"depth": 1, "patch_size": 8, "embed_dim": 16, "num_heads": 2, "dynamic_img_size": False}
    torch.manual_seed(3)
    tower = timm.create_model("test_vit", num_classes=0, img_size=16, **kw)
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()}, tmp_path / "teacher.safetensors")
    enc = TimmEncoder("test_vit", checkpoint_path=str(tmp_path / "teacher.safetensors"), frozen=True,
                      img_size=16, model_kwargs=kw)
    tok = make_tok(enc)
    tok.save_pretrained(tmp_path / "tok")
    os.remove(tmp_path / "teacher.safetensors")  # the teacher file is gone: the dir must suffice
    cfg = read_config(tmp_path / "tok")
    enc_cfg = cfg["model"]["init_args"]["encoder"]
    assert enc_cfg["init_args"]["checkpoint_path"] is None and enc_cfg["init_args"]["pretrained"] is False
    assert enc_cfg["weight_sources"]["checkpoint_path"].endswith("teacher.safetensors")
    assert any(k.startswith("encoder.model.") for k in load_file(tmp_path / "tok" / "model.safetensors"))
    back = VisualTokenizer.from_pretrained(tmp_path / "tok")
    torch.testing.assert_close(back.encoder.model.pos_embed, tower.pos_embed)
    assert back.encoder.frozen
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(back.encode(x), tok.encode(x))


def test_vq_ema_buffers_are_saved(tmp_path):
    enc = CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=12)
    tok = VisualTokenizer(enc, VQQuantizer(dim=12, codebook_size=8, threshold_ema_dead_code=0),
                          ToyDecoder(in_dim=12, patch_size=4), image_size=8)
    tok.train()(torch.rand(4, 3, 8, 8) * 2 - 1)  # EMA update changes the codebook buffer
    tok.save_pretrained(tmp_path / "vq")
    back = VisualTokenizer.from_pretrained(tmp_path / "vq")
    torch.testing.assert_close(back.quantizer.codebook, tok.quantizer.codebook)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    make_tok().save_pretrained(tmp_path / "tok")
    path = tmp_path / "tok" / "model.safetensors"
    sd = load_file(path)
    sd.pop("proj_out.linear.bias")
    sd["extra.weight"] = torch.zeros(1)
    save_file(sd, path)
    with pytest.raises(CheckpointError, match=r"missing keys \['proj_out\.linear\.bias'\].*unexpected keys \['extra\.weight'\]"):
        VisualTokenizer.from_pretrained(tmp_path / "tok")
    assert VisualTokenizer.from_pretrained(tmp_path / "tok", strict=False) is not None


def test_version_and_format_errors(tmp_path):
    make_tok().save_pretrained(tmp_path / "tok")
    cfg_path = tmp_path / "tok" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format_version"] = FORMAT_VERSION + 1
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=rf"format_version {FORMAT_VERSION + 1}.*upgrade arm-tokenizer"):
        VisualTokenizer.from_pretrained(tmp_path / "tok")
    cfg["format"] = "something-else"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="is not 'arm-tokenizer'"):
        VisualTokenizer.from_pretrained(tmp_path / "tok")
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        VisualTokenizer.from_pretrained(tmp_path / "nowhere")


def test_from_config_builds_fresh_model():
    tok = make_tok()
    fresh = VisualTokenizer.from_config(tok.get_config())
    assert fresh.get_config() == tok.get_config()
    assert fresh.tokens_per_image == tok.tokens_per_image

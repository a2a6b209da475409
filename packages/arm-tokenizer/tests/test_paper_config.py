"""ARM's tokenizer recipe on real backbones (configs/tokenizer/arm-siglip2-fsq.yaml) and the
pixel-only folder config (configs/tokenizer/folder-pixel-only.yaml), as users run them.

- The header's documented edit (one line per checkpoint) moves every tower reading it.
- Scaled down (tiny random SigLIP / SigLIP2 and Qwen2 checkpoints, written by transformers'
  ``save_pretrained``; small projections and DiT), the paper config trains on real
  photographs (scikit-image's; non-square, grayscale and RGBA among them) through
  ``arm-tokenizer fit``: ``fast_dev_run`` and 20 real steps, losses finite, and the export
  reloads and encodes the photos through ``arm-tokenizer encode``.
- At full size, from the real SigLIP2-SO400M-512 / Qwen2.5-0.5B configs, it builds on the
  meta device with the parameter counts the package README lists.
- L_sig starts from the text tower's own logit scale and bias.
"""

from __future__ import annotations

import copy
import csv
import math
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "tokenizer"
PAPER = CONFIGS / "arm-siglip2-fsq.yaml"
PIXEL_ONLY = CONFIGS / "folder-pixel-only.yaml"
SIGLIP2_ID, QWEN_ID = "google/siglip2-so400m-patch16-512", "Qwen/Qwen2.5-0.5B"

pytestmark = pytest.mark.skipif(not CONFIGS.is_dir(), reason="configs/ ships with the repository, not the wheel")

# The photographs and their captions (file name -> caption); chelsea and rocket are wider
# than tall, camera is grayscale, the last is RGBA (made here from coffee with an alpha ramp).
CAPTIONS = {
    "astronaut.png": "an astronaut in a white suit in front of a flag",
    "coffee.jpg": "a cup of coffee on a saucer",
    "chelsea.jpg": "a photo of a cat",
    "camera.png": "a man with a camera on a tripod",
    "rocket.jpg": "a rocket on the launch pad",
    "coffee_rgba.png": "a cup of coffee fading into transparency",
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    skdata = pytest.importorskip("skimage.data")
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    arrays = {"astronaut.png": skdata.astronaut(), "coffee.jpg": skdata.coffee(), "chelsea.jpg": skdata.chelsea(),
              "camera.png": skdata.camera(), "rocket.jpg": skdata.rocket()}
    for name, arr in arrays.items():
        Image.fromarray(arr).save(root / name)
    rgb = skdata.coffee()[100:340, 150:470]  # 240 x 320
    alpha = np.linspace(255, 40, rgb.shape[1], dtype=np.uint8)[None, :].repeat(rgb.shape[0], 0)
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(root / "coffee_rgba.png")
    for name, caption in CAPTIONS.items():
        (root / name).with_suffix(".txt").write_text(caption)
    modes = set()
    for name in CAPTIONS:
        with Image.open(root / name) as im:
            modes.add(im.mode)
    assert {"RGB", "L", "RGBA"} <= modes
    return root


@pytest.fixture(scope="module")
def towers(tmp_path_factory) -> dict[str, Path]:
    """Tiny random checkpoints: SigLIP (the architecture of the paper's SigLIP2-SO400M-512,
    model_type siglip), SigLIP2 NaFlex, and Qwen2 with its tokenizer."""
    from arm_tokenizer.testing.hf_tiny import build_tiny_dual_encoder
    from arm_tokenizer.testing.hf_tiny_lm import build_tiny_qwen2

    root = tmp_path_factory.mktemp("towers")
    return {"siglip": build_tiny_dual_encoder(root / "siglip", "siglip", image_size=32, patch_size=8),
            "siglip2": build_tiny_dual_encoder(root / "siglip2", "siglip2", patch_size=8, max_num_patches=64),
            "qwen": build_tiny_qwen2(root / "qwen2")}


def _with_weights(siglip_dir: Path, qwen_dir: Path) -> str:
    """The paper YAML after the documented edit: the two weight lines point at directories."""
    text = PAPER.read_text()
    for old, new in ((f"name_or_path: &siglip2 {SIGLIP2_ID}", f"name_or_path: &siglip2 {siglip_dir}"),
                     (f"name_or_path: &qwen {QWEN_ID}", f"name_or_path: &qwen {qwen_dir}")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def _scaled_down(text: str, tmp: Path, photos: Path) -> dict:
    """Same components and recipe; tiny widths (the tiny towers are 32 wide, 8-px patches) at
    64 px (an 8x8 grid). FSQ keeps its 16 binary dims (65,536 codes)."""
    cfg = yaml.safe_load(text)
    m = cfg["model"]["init_args"]
    width = 32
    m.update(image_size=64, export_dir=str(tmp / "export"), val_decode_steps=2)
    m["encoder"]["init_args"]["image_size"] = 64
    m["proj_in"]["init_args"].update(in_dim=width, width=16, depth=1, heads=2)
    m["proj_out"]["init_args"].update(out_dim=width, width=16, depth=1, heads=2)
    m["decoder"]["init_args"].update(in_dim=width, patch_size=8, hidden_dim=16, depth=1, num_heads=2,
                                     sample_steps=2)
    for loss in m["losses"]:
        if "in_dim" in loss["init_args"]:
            loss["init_args"]["in_dim"] = width
    cfg["trainer"].update(accelerator="cpu", devices=1, default_root_dir=str(tmp / "logs"),
                          enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                          logger={"class_path": "lightning.pytorch.loggers.CSVLogger",
                                  "init_args": {"save_dir": str(tmp / "logs"), "name": "csv"}})
    cfg["data"]["init_args"].update(root=str(photos), image_size=64, batch_size=2, num_workers=0,
                                    val_fraction=0.2)
    return cfg


# ----------------------------------------------------------------------------- the YAML
def test_paper_config_has_the_papers_recipe_and_one_line_per_checkpoint(tmp_path):
    cfg = yaml.safe_load(PAPER.read_text())
    m = cfg["model"]["init_args"]
    enc = m["encoder"]
    assert enc["class_path"] == "hf_vision" and enc["init_args"]["name_or_path"] == SIGLIP2_ID
    assert enc["init_args"]["frozen"] is True and m["image_size"] == enc["init_args"]["image_size"] == 512
    assert m["quantizer"]["init_args"]["levels"] == [2] * 16
    assert m["proj_in"]["init_args"]["depth"] == m["proj_out"]["init_args"]["depth"] == 6
    assert m["proj_in"]["init_args"]["out_dim"] == 16 and m["proj_out"]["init_args"]["out_dim"] == 1152
    assert m["decoder"]["class_path"] == "pixel_dit" and m["decoder"]["init_args"]["depth"] == 24
    losses = {loss["class_path"]: loss["init_args"] for loss in m["losses"]}
    assert {k: v["weight"] for k, v in losses.items()} == {"caption_loss": 1.0, "flow_matching": 5.0,
                                                           "siglip_loss": 5.0, "feature_loss": 1.0}
    assert losses["siglip_loss"]["text_encoder"] == {"class_path": "hf_text",
                                                     "init_args": {"name_or_path": SIGLIP2_ID, "dtype": "bfloat16"}}
    lm = losses["caption_loss"]["caption_lm"]
    assert lm["class_path"] == "hf_causal_lm" and lm["init_args"]["name_or_path"] == QWEN_ID
    assert losses["caption_loss"]["prefix_pooling"] == "avg" and losses["caption_loss"]["prefix_pool"] == 2
    assert m["lr"] == 3e-4 and m["betas"] == [0.9, 0.95]
    assert cfg["data"]["class_path"] == "image_folder" and cfg["data"]["init_args"]["image_size"] == 512

    # The header's sed command, run as written with the paths changed, rewrites both lines.
    header = PAPER.read_text().split("\nseed_everything")[0]
    sed = re.search(r"#   (sed .*?> my-arm\.yaml)", header, re.S).group(1)
    sed = re.sub(r"\n#\s*", " ", sed).replace("\\ ", " ")
    sed = sed.replace("/data/", "/elsewhere/").replace("configs/tokenizer/arm-siglip2-fsq.yaml", str(PAPER))
    out = subprocess.run(["bash", "-c", sed], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    edited = yaml.safe_load((tmp_path / "my-arm.yaml").read_text())["model"]["init_args"]
    text_tower = {loss["class_path"]: loss["init_args"] for loss in edited["losses"]}["siglip_loss"]["text_encoder"]
    assert edited["encoder"]["init_args"]["name_or_path"] == "/elsewhere/siglip2-so400m-patch16-512"
    assert text_tower["init_args"]["name_or_path"] == "/elsewhere/siglip2-so400m-patch16-512"
    lm = {loss["class_path"]: loss["init_args"] for loss in edited["losses"]}["caption_loss"]["caption_lm"]
    assert lm["init_args"]["name_or_path"] == "/elsewhere/qwen2.5-0.5b"


def test_paper_config_offline_without_the_weights_is_one_line(monkeypatch, tmp_path, capsys):
    """As shipped (hub ids), offline and with an empty cache: exit 2, one line naming the
    checkpoint and how to give a local copy, no traceback and no retries."""
    import time

    from arm_tokenizer.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.monotonic()
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(PAPER), "--trainer.logger", "false"])
    assert done.value.code == 2 and time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(ln for ln in err.splitlines() if ln.startswith("arm-tokenizer: error:"))
    assert SIGLIP2_ID in line and "HF_HUB_OFFLINE" in line and "local" in line


# ----------------------------------------------------------------------------- training on photos
@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_paper_config_fast_dev_run_on_photos(family, towers, photos, tmp_path):
    from arm_tokenizer.framework.lightning_cli import run_lightning

    cfg = _scaled_down(_with_weights(towers[family], towers["qwen"]), tmp_path, photos)
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(cfg))
    cli = run_lightning(["fit", "--config", str(tmp_path / "paper.yaml"), "--trainer.fast_dev_run=1"])
    model = cli.model
    assert {loss.name for loss in model.losses} == {"cap", "pix", "sig", "feat"}
    assert model.tokenizer.grid == (8, 8) and model.tokenizer.codebook_size == 65536
    assert model.tokenizer.encoder.family == family
    sig = next(loss for loss in model.losses if loss.name == "sig")
    # started from the tiny checkpoint's logit_scale 2.5 / logit_bias -3.0, not log 10 / -10
    assert sig.scale_bias_from_text_encoder
    assert float(sig.log_temperature.detach()) == pytest.approx(2.5, abs=0.01)
    assert float(sig.bias.detach()) == pytest.approx(-3.0, abs=0.01)
    logged = cli.trainer.logged_metrics
    for key in ("train/loss_total", "train/loss_cap", "train/loss_pix", "train/loss_sig", "train/loss_feat"):
        assert torch.isfinite(logged[key]), key
    assert "val/psnr" in logged


def test_paper_config_trains_20_steps_and_the_export_encodes(towers, photos, tmp_path):
    from arm_tokenizer.cli import main
    from safetensors import safe_open

    cfg = _scaled_down(_with_weights(towers["siglip"], towers["qwen"]), tmp_path, photos)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as done:  # the console script, as `arm-tokenizer fit` runs it
        main(["fit", "--config", str(path), "--trainer.max_steps=20", "--trainer.log_every_n_steps=1",
              "--trainer.num_sanity_val_steps=0", "--model.init_args.warmup_steps=2",
              "--data.init_args.root", str(photos)])
    assert done.value.code == 0
    with (tmp_path / "logs" / "csv" / "version_0" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    totals = [float(r["train/loss_total"]) for r in rows if r.get("train/loss_total")]
    assert len(totals) == 20 and all(math.isfinite(t) for t in totals)
    for key in ("train/loss_cap", "train/loss_pix", "train/loss_sig", "train/loss_feat"):
        assert all(math.isfinite(float(r[key])) for r in rows if r.get(key)), key

    export = tmp_path / "export"
    assert (export / "config.json").is_file()
    towers["siglip"].rename(towers["siglip"].with_name("moved"))  # the export carries the encoder's weights
    try:
        with pytest.raises(SystemExit) as enc:
            main(["encode", "--checkpoint", str(export), "--images", str(photos), "--out",
                  str(tmp_path / "tokens.safetensors")])
    finally:
        towers["siglip"].with_name("moved").rename(towers["siglip"])
    assert enc.value.code == 0
    with safe_open(str(tmp_path / "tokens.safetensors"), framework="pt") as f:
        tokens = f.get_tensor("tokens")
    assert tokens.shape == (len(CAPTIONS), 64)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 65536
    assert len(set(tokens.flatten().tolist())) > 1  # not one code for every photo


# ----------------------------------------------------------------------------- full size
def test_full_size_paper_config_builds_on_meta_with_its_parameter_counts(tmp_path):
    from arm_tokenizer.framework.lightning_cli import ARMLightningCLI, translate_argv
    from arm_tokenizer.testing.full_size import without_weights, write_full_size_dirs
    from lightning.pytorch import LightningDataModule, LightningModule

    siglip, qwen = write_full_size_dirs(tmp_path)
    (tmp_path / "paper.yaml").write_text(_with_weights(siglip, qwen))
    argv, _ = translate_argv(["--config", str(tmp_path / "paper.yaml"), "--trainer.accelerator", "cpu",
                              "--trainer.logger", "false"])
    with without_weights("meta"):
        cli = ARMLightningCLI(LightningModule, LightningDataModule, subclass_mode_model=True,
                              subclass_mode_data=True, args=argv, run=False)
    model = cli.model
    tok = model.tokenizer

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert tok.grid == (32, 32) and tok.tokens_per_image == 1024 and tok.codebook_size == 65536
    losses = {loss.name: loss for loss in model.losses}
    assert {
        "encoder": count(tok.encoder), "proj_in": count(tok.proj_in), "quantizer": count(tok.quantizer),
        "proj_out": count(tok.proj_out), "decoder": count(tok.decoder),
        "text_tower": count(losses["sig"].text_encoder), "sig_head": count(losses["sig"].head),
        "caption_lm": count(losses["cap"].caption_lm), "cap_adapter": count(losses["cap"].adapter),
    } == {
        "encoder": 413_534_448,      # SigLIP2-SO400M-512 vision tower, pooling head dropped
        "proj_in": 96_990_352, "quantizer": 0, "proj_out": 96_991_488,
        "decoder": 582_436_992,      # 24-layer Pixel DiT, width 1152
        "text_tower": 707_782_896,   # SigLIP2 text tower (256k-token embeddings: 295M)
        "sig_head": 1_330_560,
        "caption_lm": 494_032_768,   # Qwen2.5-0.5B
        "cap_adapter": 1_035_392,
    }
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 778_784_786 and count(model) == 2_394_134_898
    frozen = {n.split(".")[0] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"tokenizer", "losses"}  # the three towers, nothing trainable among them
    assert not any(p.requires_grad for p in tok.encoder.parameters())
    assert not any(p.requires_grad for p in losses["sig"].text_encoder.parameters())
    assert not any(p.requires_grad for p in losses["cap"].caption_lm.parameters())
    # the caption prefix fits: 32x32 -> 16x16 = 256 tokens by prefix_pooling avg, k = 2
    assert losses["cap"].pooling.output_length(1024, (32, 32)) == 256


# ----------------------------------------------------------------------------- L_sig's start
def test_siglip_loss_starts_from_the_text_towers_scale_and_bias(towers):
    from arm_tokenizer.framework import registry
    from arm_tokenizer.losses.siglip import SigLIPLoss

    text = registry.create("text_encoder", "hf_text", name_or_path=str(towers["siglip"]))
    for head in ("linear", "mlp"):
        loss = SigLIPLoss(text, in_dim=8, head=head)
        assert loss.scale_bias_from_text_encoder and not loss.initialized_from_teacher
        assert float(loss.log_temperature.detach()) == pytest.approx(float(text.log_temperature)) == pytest.approx(2.5)
        assert float(loss.bias.detach()) == pytest.approx(float(text.bias)) == pytest.approx(-3.0)
    given = SigLIPLoss(text, in_dim=8, init_bias=-10.0)  # an explicit value wins
    assert float(given.bias.detach()) == -10.0 and float(given.log_temperature.detach()) == pytest.approx(2.5)
    off = SigLIPLoss(text, in_dim=8, init_from_teacher=False)
    assert not off.scale_bias_from_text_encoder
    assert float(off.log_temperature.detach()) == pytest.approx(math.log(10)) and float(off.bias.detach()) == -10.0
    # they are trained from there: gradients reach both
    from arm_tokenizer.losses.base import LossInputs

    feats = torch.randn(2, 4, 8)
    inputs = LossInputs(images=torch.zeros(2, 3, 16, 16), grid=(2, 2), encoder_features=feats, pre_quant=feats,
                        quantized=feats, features=feats, indices=torch.zeros(2, 4, dtype=torch.long),
                        decoder=torch.nn.Identity(), captions=["a photo of a cat", "a photo of a dog"])
    loss(inputs).loss.backward()
    assert loss.log_temperature.grad is not None and loss.bias.grad is not None


def test_siglip_loss_keeps_a_teachers_scale_with_its_head_only():
    """teacher_text's scale and bias belong to its image head: taken with it or not at all."""
    from arm_tokenizer.losses.siglip import SigLIPLoss
    from arm_tokenizer.teachers.frozen import TeacherTextEncoder

    text = TeacherTextEncoder(**TeacherTextEncoder.example_args())
    other = SigLIPLoss(text, in_dim=text.image_head[0].normalized_shape[0] + 1)  # head does not fit
    assert not other.initialized_from_teacher and not other.scale_bias_from_text_encoder
    assert float(other.log_temperature.detach()) == pytest.approx(math.log(10)) and float(other.bias.detach()) == -10.0


# ----------------------------------------------------------------------------- pixel-only
def test_pixel_only_folder_config_needs_nothing_beyond_arm_tokenizer(photos, tmp_path):
    from arm_tokenizer.framework.config_check import check_config_file
    from arm_tokenizer.framework.lightning_cli import run_lightning

    checked = check_config_file(PIXEL_ONLY)

    def class_paths(node):
        if isinstance(node, dict):
            if "class_path" in node:
                yield node["class_path"]
            for v in node.values():
                yield from class_paths(v)
        elif isinstance(node, list):
            for v in node:
                yield from class_paths(v)

    paths = list(class_paths({"model": checked["model"], "data": checked["data"]}))
    assert paths and all(p.startswith("arm_tokenizer.") for p in paths), paths
    assert not any(".hf_" in p for p in paths)
    assert checked["data"]["class_path"] == "arm_tokenizer.data.ImageFolderDataModule"

    cfg = copy.deepcopy(yaml.safe_load(PIXEL_ONLY.read_text()))
    m = cfg["model"]["init_args"]
    m.update(image_size=64, export_dir=str(tmp_path / "export"))
    m["encoder"]["init_args"].update(width=8, max_width=16, out_dim=16)
    m["proj_in"]["init_args"]["in_dim"] = m["proj_out"]["init_args"]["out_dim"] = 16
    m["decoder"]["init_args"].update(in_dim=16, channels=16, min_channels=8)
    cfg["trainer"].update(accelerator="cpu", devices=1, default_root_dir=str(tmp_path / "logs"),
                          enable_progress_bar=False, enable_model_summary=False)
    cfg["data"]["init_args"].update(image_size=64, batch_size=2, num_workers=0, val_fraction=0.2)
    (tmp_path / "pixel.yaml").write_text(yaml.safe_dump(cfg))
    cli = run_lightning(["fit", "--config", str(tmp_path / "pixel.yaml"), "--trainer.fast_dev_run=1",
                         "--data.init_args.root", str(photos)])
    assert [loss.name for loss in cli.model.losses] == ["pix"]
    assert cli.model.tokenizer.grid == (8, 8) and cli.model.tokenizer.codebook_size == 64000
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss_total"])
    assert "val/psnr" in cli.trainer.logged_metrics

"""The tokenizer YAMLs: each parses as shipped, runs one step under fast_dev_run when scaled
down (tiny toy teacher, 32 px), and the full-scale recipe carries the paper's values."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "tokenizer"
# (the paper config, arm-siglip2-fsq.yaml, needs transformers towers: test_paper_config.py)
NAMES = ["shapes-recon-only.yaml", "shapes-quickstart.yaml", "shapes-local.yaml", "demo-tokenizer.yaml"]
# decoders retrained on an export's fixed tokens: the quickstart's with the conv decoder + GAN
# and with a Pixel DiT, the local tokenizer's with encoder_perceptual (fine-tune -> base config)
DECODER_FINETUNES = {"shapes-decoder-finetune.yaml": "shapes-quickstart.yaml",
                     "shapes-pixel-dit-decoder.yaml": "shapes-quickstart.yaml",
                     "shapes-local-decoder-finetune.yaml": "shapes-local.yaml"}

pytestmark = pytest.mark.skipif(not CONFIGS.is_dir(), reason="configs/ ships with the repository, not the wheel")


def _run(argv: list[str]):
    from arm_tokenizer.framework.lightning_cli import run_lightning

    return run_lightning(argv)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from arm_tokenizer.teachers.toy import build_toy_teacher

    return build_toy_teacher(tmp_path_factory.mktemp("teacher") / "t", steps=1)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """A folder of toy images with caption sidecars (the image_folder datamodule's input)."""
    from arm_tokenizer.teachers.toy import write_toy_folder

    return write_toy_folder(tmp_path_factory.mktemp("images"), 6)


def _folder_data(images: Path) -> dict:
    """The data section that trains on the toy image folder at 32 px."""
    return {"class_path": "image_folder",
            "init_args": {"root": str(images), "image_size": 32, "batch_size": 2, "val_fraction": 0.34}}


def _scale_down(cfg: dict, teacher: Path, images: Path, tmp: Path) -> dict:
    """Same components, tiny sizes: the toy teacher's tower (32 px), one block everywhere."""
    cfg = copy.deepcopy(cfg)
    tower = json.loads((teacher / "image_tower.json").read_text())
    width, patch = int(tower["feature_dim"]), int(tower["patch_size"])
    m = cfg["model"]["init_args"]
    m.update(image_size=32, export_dir=str(tmp / "export"), val_decode_steps=2, ema_decay=None)
    enc = m["encoder"]["init_args"]
    enc.update(model_name=tower["model_name"], model_kwargs=tower["model_kwargs"], pretrained=False,
               checkpoint_path=str(teacher / "image_tower.safetensors"), img_size=None)
    # the toy tower has one block: the layers a config takes (test_encoders covers extra_layers)
    enc.pop("feature_layer", None)
    enc.pop("extra_layers", None)
    for key, io in (("proj_in", {"in_dim": width}), ("proj_out", {"out_dim": width})):
        kind = m[key]["class_path"]
        small = {"width": 16, "heads": 2, "depth": 1} if kind == "transformer" else (
            {"hidden_dim": 16, "depth": 1} if kind == "mlp" else {})
        m[key]["init_args"].update(**io, **small)
    dec = m["decoder"]["init_args"]
    dec.update(in_dim=width, patch_size=patch)
    if m["decoder"]["class_path"] == "pixel_dit":
        dec.update(hidden_dim=16, depth=1, num_heads=2, sample_steps=2)
    else:
        dec.update(channels=16)
    for loss in m["losses"]:
        args = loss.setdefault("init_args", {})
        if "in_dim" in args:
            args["in_dim"] = width
        for key in ("caption_lm", "text_encoder"):
            if key in args:
                args[key]["init_args"]["checkpoint"] = str(teacher)
    cfg["trainer"] = {"accelerator": "cpu", "devices": 1, "default_root_dir": str(tmp / "logs"),
                      "enable_progress_bar": False, "enable_model_summary": False}
    cfg["data"] = _folder_data(images)
    return cfg


def test_configs_check_as_shipped():
    """Every component name resolves and every argument matches its constructor's type (the
    CLI's pre-parse check); the scaled-down runs below then go through LightningCLI itself."""
    from arm_tokenizer.framework.config_check import check_config_file

    pytest.importorskip("arm_data", reason="the shipped configs train on arm-data's ShapesWorld")
    for name in NAMES + [*DECODER_FINETUNES, "shapes-hifi.yaml"]:
        cfg = check_config_file(CONFIGS / name)
        assert cfg["model"]["class_path"] == "arm_tokenizer.lightning_module.TokenizerTrainer", name


@pytest.mark.parametrize("name", NAMES)
def test_config_fast_dev_run_scaled_down(name, teacher_dir, image_dir, tmp_path):
    cfg = _scale_down(yaml.safe_load((CONFIGS / name).read_text()), teacher_dir, image_dir, tmp_path)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    cli = _run(["fit", "--config", str(path), "--trainer.fast_dev_run=1"])
    metrics = cli.trainer.logged_metrics
    assert "train/loss_total" in metrics and "val/psnr" in metrics
    semantic = "quickstart" in name or "local" in name or "arm-" in name
    expected = {"pix"} | ({"cap", "sig", "feat"} if semantic else set())
    assert {loss.name for loss in cli.model.losses} >= expected
    assert not (tmp_path / "export").exists()  # fast_dev_run writes no export


def test_hifi_config_runs_without_a_teacher(image_dir, tmp_path):
    """The reconstruction-grade YAML trains from scratch (no teacher paths) as shipped, only the
    data swapped for a folder of 32-px images; its 2-px patches give a 16x16 grid there."""
    cfg = yaml.safe_load((CONFIGS / "shapes-hifi.yaml").read_text())
    cfg["model"]["init_args"].update(image_size=32, export_dir=str(tmp_path / "export"))
    cfg["trainer"].update(default_root_dir=str(tmp_path / "logs"), enable_progress_bar=False)
    cfg["data"] = _folder_data(image_dir)
    (tmp_path / "hifi.yaml").write_text(yaml.safe_dump(cfg))
    cli = _run(["fit", "--config", str(tmp_path / "hifi.yaml"), "--trainer.fast_dev_run=1"])
    assert "val/psnr" in cli.trainer.logged_metrics
    assert [loss.name for loss in cli.model.losses] == ["pix"]
    tok = cli.model.tokenizer
    assert tok.tokens_per_image == 16 * 16 and tok.codebook_size == 1000


def test_local_is_the_quickstart_with_a_per_token_projection_into_12_binary_dims():
    quick = yaml.safe_load((CONFIGS / "shapes-quickstart.yaml").read_text())["model"]["init_args"]
    local = yaml.safe_load((CONFIGS / "shapes-local.yaml").read_text())["model"]["init_args"]
    changed = {k for k in quick if quick[k] != local[k]}
    assert changed == {"proj_in", "quantizer", "proj_out", "export_dir"}
    assert local["proj_in"]["class_path"] == "mlp"
    assert local["quantizer"]["init_args"]["levels"] == [2] * 12
    assert local["proj_in"]["init_args"]["out_dim"] == local["proj_out"]["init_args"]["in_dim"] == 12


def test_recon_only_is_the_quickstart_without_semantic_losses():
    quick = yaml.safe_load((CONFIGS / "shapes-quickstart.yaml").read_text())["model"]["init_args"]
    recon = yaml.safe_load((CONFIGS / "shapes-recon-only.yaml").read_text())["model"]["init_args"]
    for key in ("encoder", "proj_in", "quantizer", "proj_out", "decoder", "image_size", "lr", "betas"):
        assert quick[key] == recon[key], key
    assert [loss["class_path"] for loss in recon["losses"]] == ["pixel_loss"]


@pytest.mark.parametrize("name", DECODER_FINETUNES)
def test_decoder_finetune_keeps_the_base_tokens(name, teacher_dir, image_dir, tmp_path):
    """A decoder fine-tune YAML names its base config's encoder side; run scaled down from
    an export of that base, it loads the export and leaves every token id as it was."""
    import torch
    from arm_tokenizer.tokenizer import VisualTokenizer

    base = yaml.safe_load((CONFIGS / DECODER_FINETUNES[name]).read_text())
    ft = yaml.safe_load((CONFIGS / name).read_text())
    same_decoder = ft["model"]["init_args"]["decoder"]["class_path"] == base["model"]["init_args"]["decoder"]["class_path"]
    for key in ("encoder", "proj_in", "quantizer", "proj_out", "image_size") + (("decoder",) if same_decoder else ()):
        assert ft["model"]["init_args"][key] == base["model"]["init_args"][key], key
    assert ft["model"]["init_args"]["init_from"] == base["model"]["init_args"]["export_dir"]
    assert set(ft["model"]["init_args"]["freeze"]) == {"encoder", "proj_in", "quantizer"}

    small = _scale_down(base, teacher_dir, image_dir, tmp_path / "q")
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(small))
    _run(["fit", "--config", str(tmp_path / "q.yaml"), "--trainer.max_steps=1",
          "--trainer.limit_val_batches=0", "--trainer.logger=false"])
    export = tmp_path / "q" / "export"
    cfg = _scale_down(ft, teacher_dir, image_dir, tmp_path / "ft")
    cfg["model"]["init_args"]["init_from"] = str(export)
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    cli = _run(["fit", "--config", str(tmp_path / "ft.yaml"), "--trainer.fast_dev_run=2"])
    logged = cli.trainer.logged_metrics
    assert all(f"train/loss_{loss.name}" in logged for loss in cli.model.losses), sorted(logged)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(cli.model.tokenizer.eval().encode(x), VisualTokenizer.from_pretrained(export).encode(x))



"""The ShapesWorld teachers: training, export, frozen loading, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from arm_tokenizer.framework import registry
from arm_tokenizer.teachers.frozen import (
    TEACHER_FILES,
    TeacherCaptionLM,
    TeacherTextEncoder,
    load_image_tower,
    read_teacher_config,
)
from arm_tokenizer.teachers.lightning_module import TeacherTrainer
from arm_tokenizer.teachers.modules import build_image_tower
from arm_tokenizer.teachers.spm import BOS_ID, EOS_ID, PAD_ID, SpmText, train_spm
from arm_tokenizer.teachers.toy import (
    TINY_TOWER_KWARGS,
    build_toy_teacher,
    toy_batch,
    write_toy_folder,
)
from safetensors.torch import load_file
from torch.utils.data import DataLoader


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return build_toy_teacher(tmp_path_factory.mktemp("teacher") / "t", steps=4)


def _tiny_trainer(cls: type[TeacherTrainer] = TeacherTrainer, seed: int = 0, **kw) -> TeacherTrainer:
    torch.manual_seed(seed)
    return cls(image_tower_kwargs=dict(TINY_TOWER_KWARGS), embed_dim=32, vocab_size=64, text_dim=32,
                          text_depth=1, text_heads=2, max_text_len=16, caption_dim=32, caption_depth=1,
                          caption_heads=2, **kw)


def test_spm_is_deterministic_and_order_free():
    caps = toy_batch(48)["captions"]
    a, b = train_spm(caps, 64), train_spm(list(reversed(caps)) + caps[:5], 64)
    assert a == b
    sp = SpmText(a)
    ids = sp.batch(["a red circle", "a blue square on the left"], max_len=40, bos=True, eos=True)
    assert ids[0, 0] == BOS_ID and ids[1, 0] == BOS_ID
    assert (ids == EOS_ID).sum() == 2 and ids[0, -1] == PAD_ID  # shorter row is padded
    assert sp.decode(sp.encode(["a red circle"])[0]) == "a red circle"
    with pytest.raises(ValueError, match="at least 2 distinct"):
        train_spm(["same", "same"], 64)


def test_teacher_learns_on_toy_world(arm_test_seed):
    model = _tiny_trainer(lr=3e-3, seed=arm_test_seed)
    model.fit_spm(toy_batch(64)["captions"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    fixed = toy_batch(32, start=10_000)
    with torch.no_grad():
        before = model.losses(fixed)
    for step in range(20):
        out = model.losses(toy_batch(24, start=step * 24))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = model.losses(fixed)
    # measured (seeds 0-5): loss_sig 21-41 -> 9.3-9.8, loss_cap drops by 2.9-3.3
    assert after["loss_sig"] < before["loss_sig"], (before, after)
    assert after["loss_cap"] < before["loss_cap"] - 0.5, (before, after)


def test_pixel_term_trains_the_tower_and_is_not_exported(tmp_path, arm_test_seed):
    model = _tiny_trainer(pixel_weight=2.0, pixel_head_channels=16, seed=arm_test_seed)
    model.fit_spm(toy_batch(64)["captions"])
    batch = toy_batch(8)
    out = model.losses(batch)
    assert set(out) >= {"loss", "loss_sig", "loss_cap", "loss_pix"}
    assert torch.allclose(out["loss"], out["loss_sig"] + out["loss_cap"] + 2.0 * out["loss_pix"])
    out["loss_pix"].backward()  # the pixel term alone reaches the tower
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.image_tower.parameters())
    # it learns: a few steps on one batch lower the reconstruction error
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):
        loss = model.losses(batch)["loss_pix"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    # measured (seeds 0-5): 0.76-0.89 -> 0.17-0.23
    assert model.losses(batch)["loss_pix"] < out["loss_pix"] - 0.05
    written = {p.name for p in Path(model.export(str(tmp_path / "t"))).iterdir()}
    assert written == set(TEACHER_FILES)
    assert _tiny_trainer().pixel_head is None
    with pytest.raises(ValueError, match="pixel_weight"):
        _tiny_trainer(pixel_weight=-1.0)


def test_export_files_and_round_trip(teacher_dir):
    for name in TEACHER_FILES:
        assert (teacher_dir / name).is_file(), name
    assert not list(teacher_dir.glob(".*tmp"))  # atomic writes leave no temp files
    cfg = read_teacher_config(teacher_dir)
    assert cfg["format"] == "arm-teacher" and cfg["embed_dim"] == 32
    tower_cfg = json.loads((teacher_dir / "image_tower.json").read_text())
    # image_tower.safetensors is a plain timm state dict
    plain = build_image_tower(tower_cfg["model_name"], tower_cfg["model_kwargs"])
    plain.load_state_dict(load_file(str(teacher_dir / "image_tower.safetensors")))
    assert tower_cfg["feature_dim"] == 32 and tower_cfg["num_tokens"] == 16 and tower_cfg["patch_size"] == 8


def test_reload_gives_identical_embeddings(tmp_path):
    model = _tiny_trainer()
    batch = toy_batch(6)
    model.fit_spm(toy_batch(64)["captions"])
    model.eval()
    d = model.export(tmp_path / "teacher")
    text = TeacherTextEncoder(d)
    lm = TeacherCaptionLM(d)
    tower = load_image_tower(d)
    with torch.no_grad():
        torch.testing.assert_close(text.encode_text(batch["captions"]), model.embed_texts(batch["captions"]),
                                   rtol=0, atol=1e-6)
        tokens = model.image_tokens(batch["images"])
        torch.testing.assert_close(tower(batch["images"]), tokens, rtol=0, atol=1e-6)
        torch.testing.assert_close(text.embed_image_tokens(tokens), model.embed_images(batch["images"]),
                                   rtol=0, atol=1e-6)
        ids = model.spm.batch(batch["captions"], model.hparams.max_text_len)
        expect = model.caption_decoder.nll(model.prefix_adapter(tokens), ids)
        torch.testing.assert_close(lm.caption_loss(lm.prefix_adapter(tokens), batch["captions"]), expect)
        assert float(text.log_temperature) == pytest.approx(float(model.log_temperature.detach()))
        captions = lm.generate(lm.prefix_adapter(tokens[:2]), max_new_tokens=4)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_frozen_loaders_stay_frozen(teacher_dir):
    for mod in (TeacherTextEncoder(str(teacher_dir)), TeacherCaptionLM(str(teacher_dir))):
        assert not any(p.requires_grad for p in mod.parameters())
        mod.train()
        assert not mod.training and not any(m.training for m in mod.modules())


def test_registry_names(teacher_dir):
    text = registry.create("text_encoder", "teacher_text", checkpoint=str(teacher_dir))
    lm = registry.create("caption_lm", "teacher_caption_lm", checkpoint=str(teacher_dir))
    assert text.encode_text(["a red circle"]).shape == (1, 32)
    assert lm.hidden_size == 32
    assert registry.get("model", "teacher_trainer") is TeacherTrainer


def test_bad_teacher_dirs_name_the_problem(tmp_path, teacher_dir):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        TeacherTextEncoder(str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in TEACHER_FILES:
        if name != "caption_lm.safetensors":
            (broken / name).write_bytes((teacher_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="caption_lm.safetensors"):
        TeacherCaptionLM(str(broken))
    cfg = json.loads((teacher_dir / "teacher.json").read_text())
    cfg["format_version"] = 99
    (broken / "caption_lm.safetensors").write_bytes((teacher_dir / "caption_lm.safetensors").read_bytes())
    (broken / "teacher.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="newer"):
        TeacherTextEncoder(str(broken))


def test_lightning_fit_and_checkpoint_keeps_vocabulary(tmp_path):
    import lightning.pytorch as pl

    class Toy(pl.LightningDataModule):
        def train_dataloader(self):
            return DataLoader([toy_batch(8, start=8 * i) for i in range(3)], batch_size=None)

        def val_dataloader(self):
            return DataLoader([toy_batch(8, start=1000)], batch_size=None)

    model = _tiny_trainer(output_dir=str(tmp_path / "teacher"), spm_corpus_batches=3)
    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(model, datamodule=Toy())
    assert model.spm is not None  # trained in setup() from the datamodule's captions
    assert (tmp_path / "teacher" / "teacher.json").is_file()  # exported at the end of fit
    assert "val/loss_sig" in json.loads((tmp_path / "teacher" / "teacher.json").read_text())["metrics"]
    ckpt = {}
    model.on_save_checkpoint(ckpt)
    fresh = _tiny_trainer()
    fresh.on_load_checkpoint(ckpt)
    assert fresh.spm.proto == model.spm.proto


def test_teacher_without_vocabulary_says_how_to_get_one():
    model = _tiny_trainer()
    with pytest.raises(RuntimeError, match="sentencepiece"):
        model.losses(toy_batch(2))


def test_image_tower_loads_as_the_tokenizers_frozen_timm_encoder(teacher_dir):
    from arm_tokenizer.encoders.timm_encoder import TimmEncoder

    tower_cfg = json.loads((teacher_dir / "image_tower.json").read_text())
    enc = TimmEncoder(model_name=tower_cfg["model_name"], model_kwargs=tower_cfg["model_kwargs"],
                      checkpoint_path=str(teacher_dir / "image_tower.safetensors"), frozen=True)
    images = toy_batch(3)["images"]
    with torch.no_grad():
        torch.testing.assert_close(enc(images), load_image_tower(teacher_dir)(images), rtol=1e-5, atol=1e-5)
    assert enc.out_dim == tower_cfg["feature_dim"] and enc.patch_size == tower_cfg["patch_size"]


_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "tokenizer"


@pytest.mark.skipif(not (_CONFIGS / "shapes-teacher.yaml").is_file(), reason="configs/ ships with the repository")
def test_shapes_teacher_yaml_runs_scaled_down(tmp_path):
    """shapes-teacher.yaml through the real CLI: same model, tiny sizes, a folder of toy images."""
    import yaml
    from arm_tokenizer.framework.lightning_cli import run_lightning

    cfg = yaml.safe_load((_CONFIGS / "shapes-teacher.yaml").read_text())
    assert cfg["model"]["class_path"] == "teacher_trainer"
    assert cfg["data"]["class_path"] == "shapes_world"
    root = tmp_path / "images"
    root.mkdir()
    write_toy_folder(root, 6)
    m = cfg["model"]["init_args"]
    # the shipped ConvNet tower at a quarter of its widths
    tiny_tower = {**m["image_tower_kwargs"], "channels": [8, 16, 16, 16]}
    m.update(output_dir=str(tmp_path / "teacher"), image_tower_kwargs=tiny_tower, embed_dim=16,
             vocab_size=64, text_dim=16, text_heads=2, caption_dim=16, caption_heads=2, spm_corpus_batches=3)
    cfg["trainer"] = {"accelerator": "cpu", "default_root_dir": str(tmp_path / "logs"),
                      "enable_progress_bar": False, "enable_model_summary": False}
    cfg["data"] = {"class_path": "image_folder",
                   "init_args": {"root": str(root), "image_size": 32, "batch_size": 2, "val_fraction": 0.34}}
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cli = run_lightning(["fit", "--config", str(path), "--trainer.fast_dev_run=1"])
    assert "train/loss_sig" in cli.trainer.logged_metrics and "train/loss_cap" in cli.trainer.logged_metrics
    assert not (tmp_path / "teacher").exists()  # fast_dev_run exports nothing


@pytest.mark.skipif(not (_CONFIGS / "shapes-quickstart.yaml").is_file(), reason="configs/ ships with the repository")
def test_quickstart_encoder_is_the_teacher_tower():
    """shapes-quickstart.yaml must build exactly the tower shapes-teacher.yaml trains and exports."""
    import yaml

    teacher = yaml.safe_load((_CONFIGS / "shapes-teacher.yaml").read_text())["model"]["init_args"]
    quick = yaml.safe_load((_CONFIGS / "shapes-quickstart.yaml").read_text())["model"]["init_args"]
    enc = quick["encoder"]["init_args"]
    assert enc["checkpoint_path"] == f"{teacher['output_dir']}/image_tower.safetensors"
    assert enc["model_name"] == teacher["image_tower"]
    built = dict(enc["model_kwargs"], **({"img_size": enc["img_size"]} if enc.get("img_size") else {}))
    assert built == teacher["image_tower_kwargs"]
    from arm_tokenizer.teachers.modules import build_image_tower

    width = build_image_tower(teacher["image_tower"], teacher["image_tower_kwargs"]).num_features
    for loss in quick["losses"]:
        if loss["class_path"] in ("siglip_loss", "caption_loss"):
            assert loss["init_args"]["in_dim"] == width
            key = "text_encoder" if loss["class_path"] == "siglip_loss" else "caption_lm"
            assert loss["init_args"][key]["init_args"]["checkpoint"] == teacher["output_dir"]


def test_colour_free_views_grey_the_image_and_drop_colour_words(tmp_path):
    import lightning.pytorch as pl

    with pytest.raises(ValueError, match="gray_drop_words"):
        _tiny_trainer(gray_prob=0.5)
    with pytest.raises(ValueError, match="gray_prob"):
        _tiny_trainer(gray_prob=1.5, gray_drop_words=["red"])
    model = _tiny_trainer(gray_prob=0.5, gray_drop_words=["red", "violet", "blue"])
    batch = toy_batch(4)
    caps = ["Red circle, a violet square", "a bored blue-ish star", "a red square", "red"]
    which = torch.tensor([True, True, False, True])
    images, out = model.colour_free(batch["images"], caps, which)
    # whole words in any case go, the rest of the caption stays; unselected rows are untouched
    assert out == ["circle, a square", "a bored -ish star", "a red square", ""]
    assert torch.equal(images[2], batch["images"][2])
    for k in (0, 1, 3):
        assert torch.allclose(images[k][0], images[k][1]) and torch.allclose(images[k][1], images[k][2])
        assert not torch.allclose(images[k], batch["images"][k])   # the toy shapes are coloured
    lum = (batch["images"][0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    torch.testing.assert_close(images[0][0], lum)

    # in training: the losses see the colour-free views (the same ones for the same step)
    seen: list[list[str]] = []

    class Spy(TeacherTrainer):
        def losses(self, batch):
            seen.append(list(batch["captions"]))
            return super().losses(batch)

    class Toy(pl.LightningDataModule):
        def train_dataloader(self):
            return DataLoader([toy_batch(16, start=16 * i) for i in range(2)], batch_size=None)

    colours = ["red", "green", "blue", "yellow"]
    for _ in range(2):
        spy = _tiny_trainer(Spy, output_dir=str(tmp_path / "t"), spm_corpus_batches=2,
                            gray_prob=0.5, gray_drop_words=colours)
        pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
                   limit_val_batches=0).fit(spy, datamodule=Toy())
    first, second = seen[:2], seen[2:]
    assert first == second                                   # the views repeat for a run's seed
    plain = [c for b in first for c in b if any(w in c.split() for w in colours)]
    grey = [c for b in first for c in b if not any(w in c.split() for w in colours)]
    assert plain and grey and all(c.startswith("a ") for c in grey)

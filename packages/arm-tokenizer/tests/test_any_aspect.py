"""Real photographs at any (height, width): resize policies, the decoded-image cache, and a
non-square tokenizer run through ``arm-tokenizer fit`` with its default logger, the
``val_check_interval`` of a long-epoch config on a small folder, and progress lines."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from arm_tokenizer.data import ImageFolderDataModule
from arm_tokenizer.framework.cli_base import run_cli
from arm_tokenizer.image_cache import CacheTooLargeError
from arm_tokenizer.images import (
    ImageTooSmallError,
    ImageTransform,
    canonical_size,
    pil_to_u8,
    transform_for,
    u8_to_tensor,
)
from arm_tokenizer.testing.toys import TINY_TOKENIZER_MODEL_YAML
from PIL import Image

skdata = pytest.importorskip("skimage.data")

H, W = 32, 48


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """scikit-image's photographs with captions: RGB of two aspect ratios, grayscale, RGBA."""
    root = tmp_path_factory.mktemp("photos")
    chelsea = skdata.chelsea()  # 300 x 451 RGB
    alpha = np.full(chelsea.shape[:2] + (1,), 255, np.uint8)
    alpha[:, : chelsea.shape[1] // 2] = 0  # left half transparent: composited on white
    images = {
        "astronaut": Image.fromarray(skdata.astronaut()),  # 512 x 512
        "coffee": Image.fromarray(skdata.coffee()),  # 400 x 600
        "camera": Image.fromarray(skdata.camera()),  # 512 x 512, mode L
        "chelsea_rgba": Image.fromarray(np.concatenate([chelsea, alpha], axis=2)),  # mode RGBA
    }
    assert images["camera"].mode == "L" and images["chelsea_rgba"].mode == "RGBA"
    for name, img in images.items():
        img.save(root / f"{name}.png")
        (root / f"{name}.txt").write_text(f"a photo: {name}")
    return root


def test_sizes_have_one_spelling():
    assert canonical_size(64) == 64 and canonical_size([64, 64]) == 64
    assert canonical_size([32, 48]) == (32, 48) and canonical_size((32, 48)) == (32, 48)
    for bad in (0, [32], [32, 0], "64", True):
        with pytest.raises(ValueError, match="image_size must be a positive int"):
            canonical_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("crop", ["center", "random", "pad", "none"])
def test_two_stages_equal_the_one_call(crop):
    img = Image.fromarray(skdata.coffee()).reduce(4)  # 150 x 100 (w x h)
    t = ImageTransform((H, W), crop=crop)
    whole = t(img, torch.Generator().manual_seed(3))
    staged = t.place(pil_to_u8(t.resize(img)), torch.Generator().manual_seed(3))
    assert whole.size == (W, H) and tuple(staged.shape) == (3, H, W)
    assert torch.equal(pil_to_u8(whole), staged)
    assert torch.equal(u8_to_tensor(staged), t.to_tensor(img, torch.Generator().manual_seed(3)))


def test_pad_keeps_the_whole_image_and_pads_the_rest():
    tall = Image.new("RGB", (20, 40), (200, 10, 10))  # w x h: taller than 32 x 48 allows
    out = np.asarray(transform_for((H, W), "pad", pad_color=(0, 0, 255))(tall))
    # 20x40 fitted into 48x32 -> 16x32, centred: 16 columns of padding either side
    assert out.shape == (H, W, 3)
    assert (out[:, :16] == [0, 0, 255]).all() and (out[:, -16:] == [0, 0, 255]).all()
    assert (out[:, 16:32] == [200, 10, 10]).all()
    stretched = np.asarray(transform_for((H, W), "resize")(tall))
    assert (stretched == [200, 10, 10]).all()  # nothing cut off, nothing padded
    with pytest.raises(ValueError, match="resize must be one of center_crop, pad, resize"):
        transform_for((H, W), "letterbox")  # type: ignore[arg-type]


@pytest.mark.parametrize("resize", ["center_crop", "pad", "resize"])
def test_image_folder_loads_photos_non_square_under_each_policy(photos, resize):
    dm = ImageFolderDataModule(str(photos), image_size=[H, W], resize=resize, crop="center", batch_size=4,
                               val_fraction=0.0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 3, H, W) and batch["images"].dtype == torch.float32
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    assert sorted(batch["captions"]) == sorted(f"a photo: {n}" for n in
                                               ("astronaut", "coffee", "camera", "chelsea_rgba"))
    items = {p.stem: dm.train_set[i]["images"] for i, p in enumerate(dm.train_set.files)}
    gray = items["camera"]  # grayscale comes out as RGB with equal channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    rgba = items["chelsea_rgba"]  # transparent left half composited onto white
    assert torch.allclose(rgba[:, :, :4], torch.ones(3, H, 4))
    if resize == "pad":  # the square astronaut is pillar-boxed in black
        assert (items["astronaut"][:, :, :8] == -1).all() and (items["astronaut"][:, :, -8:] == -1).all()
    else:
        assert (items["astronaut"][:, :, :8] > -1).any()


def test_images_smaller_than_one_patch_are_a_clear_error(photos, tmp_path):
    Image.fromarray(skdata.astronaut()[:6, :10]).save(tmp_path / "tiny.png")
    Image.fromarray(skdata.astronaut()).save(tmp_path / "big.png")
    dm = ImageFolderDataModule(str(tmp_path), image_size=[H, W], min_side=8, val_fraction=0.0)
    dm.setup()
    with pytest.raises(ImageTooSmallError, match=r"tiny\.png: image is 10x6 .*min_side=8"):
        list(dm.train_dataloader())


def test_memory_cache_gives_the_same_pixels_and_keeps_random_crops(photos):
    kw = dict(image_size=(H, W), batch_size=4, val_fraction=0.0)
    plain = ImageFolderDataModule(str(photos), crop="center", **kw)
    cached = ImageFolderDataModule(str(photos), crop="center", cache="memory", **kw)
    plain.setup()
    cached.setup()
    assert len(cached.train_set.cache) == 4  # decoded at setup, before any worker starts
    assert cached.train_set.cache.nbytes == 4 * 3 * H * W  # uint8, already cropped
    for i in range(4):
        assert torch.equal(plain.train_set[i]["images"], cached.train_set[i]["images"])
    rand = ImageFolderDataModule(str(photos), crop="random", cache="memory", **kw)
    rand.setup()  # keeps the covering resize; the crop is drawn per access
    i = [p.stem for p in rand.train_set.files].index("astronaut")
    assert tuple(rand.train_set.cache.get(i)["images"].shape) == (3, W, W)  # 512x512 covering 32x48
    draws = {tuple(rand.train_set[i]["images"][0, 0, :4].tolist()) for _ in range(12)}
    assert len(draws) > 1


def test_memory_cache_over_its_cap_says_what_it_needs(photos):
    kw = dict(image_size=(H, W), cache="memory", cache_max_bytes=10_000, val_fraction=0.0)
    dm = ImageFolderDataModule(str(photos), crop="center", **kw)  # known size: refused before decoding
    with pytest.raises(CacheTooLargeError, match=r"needs 18.4 KB for the 4 decoded images .*"
                                                 r"raise cache_max_bytes to at least 18433.*cache: none"):
        dm.setup()
    dm = ImageFolderDataModule(str(photos), crop="random", **kw)  # covering sizes: refused while filling
    with pytest.raises(CacheTooLargeError, match=r"would need about \d+\.\d KB for the 4 decoded images"):
        dm.setup()


def test_workers_persist_across_epochs(photos):
    dm = ImageFolderDataModule(str(photos), image_size=(H, W), num_workers=1, val_fraction=0.25)
    assert dm.train_dataloader().persistent_workers and dm.val_dataloader().persistent_workers
    assert not ImageFolderDataModule(str(photos)).train_dataloader().persistent_workers


CONFIG = """
seed_everything: 0
trainer:
  accelerator: cpu
  max_steps: 5
  val_check_interval: 4          # longer than the folder's epoch (3 batches)
  limit_val_batches: 1
  num_sanity_val_steps: 0
  enable_checkpointing: false
  enable_model_summary: false
  log_every_n_steps: 1
  default_root_dir: {root}/logs
{model}
    image_size: [32, 48]
    num_grid_images: 2
    export_dir: {root}/export
data:
  class_path: image_folder
  init_args:
    root: {photos}
    image_size: [32, 48]
    resize: pad
    batch_size: 1
    val_fraction: 0.25
    cache: memory
"""


def test_non_square_fit_with_logging_short_epochs_and_progress_lines(photos, tmp_path, capsys):
    from arm_tokenizer.framework.lightning_cli import run_lightning
    from arm_tokenizer.framework.progress import StepProgress
    from arm_tokenizer.tokenizer import VisualTokenizer

    cfg = tmp_path / "fit.yaml"
    cfg.write_text(textwrap.dedent(CONFIG.format(model=TINY_TOKENIZER_MODEL_YAML, root=tmp_path, photos=photos)))
    cli = run_lightning(["fit", "--config", str(cfg)])
    trainer = cli.trainer
    assert trainer.loggers, "the default logger stays on"
    assert [type(c) for c in trainer.callbacks if isinstance(c, StepProgress)] == [StepProgress]
    assert trainer.global_step == 5 and trainer.check_val_every_n_epoch is None
    assert "val/psnr" in trainer.callback_metrics  # validated at step 4, in the second epoch
    out = capsys.readouterr().out
    assert "step 1/5 · epoch 0 · train/loss_total" in out and "step 5/5 · epoch 1" in out
    assert "validation · step 4/5" in out and "/-2" not in out and "it/s" in out
    tok = VisualTokenizer.from_pretrained(tmp_path / "export")
    assert tok.image_size == (H, W)
    photo = Image.open(photos / "coffee.png")
    x = transform_for((H, W), "pad").to_tensor(photo)[None]
    ids = tok.encode(x)
    assert tuple(tok.decode(ids).shape) == (1, 3, H, W)

    # An explicit check_val_every_n_epoch is the user's choice: Lightning's check applies.
    bad = tmp_path / "explicit.yaml"
    bad.write_text(cfg.read_text().replace("  limit_val_batches: 1\n",
                                           "  limit_val_batches: 1\n  check_val_every_n_epoch: 1\n"))
    assert run_cli("arm-tokenizer", ["fit", "--config", str(bad)]) == 2
    assert "`val_check_interval` (4) must be less than or equal" in capsys.readouterr().err


def test_progress_is_overridable_and_off_with_the_bar(photos, tmp_path, capsys):
    from arm_tokenizer.framework.lightning_cli import run_lightning
    from arm_tokenizer.framework.progress import StepProgress

    text = textwrap.dedent(CONFIG.format(model=TINY_TOKENIZER_MODEL_YAML, root=tmp_path, photos=photos)).replace(
        "  max_steps: 5\n", "  max_steps: 2\n  callbacks:\n    - class_path: arm_tokenizer.framework.progress.StepProgress\n"
                            "      init_args: {every_n_steps: 1, mode: lines}\n").replace(
        "    export_dir", "    # export_dir")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(text + "\n")
    cli = run_lightning(["fit", "--config", str(cfg), "--trainer.logger", "false"])
    bars = [c for c in cli.trainer.callbacks if isinstance(c, StepProgress)]
    assert len(bars) == 1 and bars[0].every_n_steps == 1
    out = capsys.readouterr().out
    assert "step 1/2" in out and "step 2/2" in out
    cli = run_lightning(["fit", "--config", str(cfg), "--trainer.callbacks", "[]",
                         "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"])
    assert not [c for c in cli.trainer.callbacks if isinstance(c, StepProgress)]
    assert "step 1/2" not in capsys.readouterr().out
    cfg.write_text(cfg.read_text().replace("mode: lines", "mode: bar"))  # a terminal's bar: steps, not epochs
    cli = run_lightning(["fit", "--config", str(cfg), "--trainer.logger", "false"])
    (bar,) = [c for c in cli.trainer.callbacks if isinstance(c, StepProgress)]
    assert bar.train_progress_bar.total == 2 and bar.train_progress_bar.n == 2
    assert "epoch" in bar.train_progress_bar.desc and "/-" not in bar.train_progress_bar.desc


BUCKETS = [[32, 48], [40, 40], [48, 32]]


def test_bucket_sampler_batches_within_a_bucket_and_reshuffles():
    from arm_tokenizer.buckets import BucketBatchSampler, nearest_bucket

    b = [(32, 48), (40, 40), (48, 32)]
    assert nearest_bucket(600, 400, b) == 0 and nearest_bucket(512, 512, b) == 1 and nearest_bucket(400, 600, b) == 2
    assert nearest_bucket(1000, 100, b) == 0  # far wider than any bucket: the widest
    bucket_of = [0, 1, 2, 0, 0, 1, 2, 2, 2, 0, 1]
    sampler = BucketBatchSampler(bucket_of, batch_size=2, seed=1)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 2 + 2 + 2
        assert sorted(i for batch in batches for i in batch) == list(range(len(bucket_of)))
        assert all(len({bucket_of[i] for i in batch}) == 1 for batch in batches)
        epochs.append(batches)
    assert epochs[0] != epochs[1] and list(sampler) == epochs[2]  # a seeded, per-epoch order
    assert len(BucketBatchSampler(bucket_of, 2, drop_last=True)) == 2 + 1 + 2


def test_image_folder_buckets_by_aspect_ratio_and_trains(photos, tmp_path):
    import lightning as L
    from arm_tokenizer.decoders.conv import ConvDecoder
    from arm_tokenizer.encoders.cnn import CNNEncoder
    from arm_tokenizer.lightning_module import TokenizerTrainer
    from arm_tokenizer.projections import LinearProjection
    from arm_tokenizer.quantizers.fsq import FSQQuantizer

    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("astronaut", "coffee", "camera", "chelsea_rgba"):
        (folder / f"{name}.png").write_bytes((photos / f"{name}.png").read_bytes())
    coffee = Image.open(photos / "coffee.png")
    exif = coffee.getexif()
    exif[0x0112] = 6  # stored 600 wide x 400 high, shown rotated: 400 wide x 600 high
    coffee.save(folder / "coffee_portrait.jpg", exif=exif)
    dm = ImageFolderDataModule(str(folder), image_size=[32, 48], buckets=BUCKETS, resize="center_crop",
                               batch_size=2, val_fraction=0.0, cache="memory")
    dm.setup()
    names = [p.stem for p in dm.train_set.files]
    shapes = {n: tuple(dm.train_set[i]["images"].shape[1:]) for i, n in enumerate(names)}
    assert shapes == {"astronaut": (40, 40), "camera": (40, 40), "coffee": (32, 48),
                      "chelsea_rgba": (32, 48), "coffee_portrait": (48, 32)}
    batches = list(dm.train_dataloader())
    assert sorted(b["images"].shape[0] for b in batches) == [1, 2, 2]  # one grid per batch
    with pytest.raises(ValueError, match=r"buckets\[1\] must be a positive int"):
        ImageFolderDataModule(str(folder), buckets=[[32, 48], [0, 4]])

    torch.manual_seed(0)
    enc = CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=12)
    model = TokenizerTrainer(enc, FSQQuantizer(levels=[5, 5, 5]),
                             ConvDecoder(in_dim=12, patch_size=8, channels=16, min_channels=8),
                             proj_in=LinearProjection(12, 3), proj_out=LinearProjection(3, 12),
                             image_size=(32, 48), buckets=BUCKETS, num_grid_images=0)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    with pytest.raises(ValueError, match="TokenizerTrainer.buckets: 36x36 is not a multiple of the encoder's patch"):
        TokenizerTrainer(enc, FSQQuantizer(levels=[5, 5, 5]),
                         ConvDecoder(in_dim=12, patch_size=8, channels=16, min_channels=8),
                         proj_in=LinearProjection(12, 3), proj_out=LinearProjection(3, 12),
                         image_size=(32, 48), buckets=[[32, 48], [36, 36]])

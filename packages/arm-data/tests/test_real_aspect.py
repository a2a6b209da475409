"""Readers and ``image_text`` at any (height, width): resize policies, the memory cache,
persistent workers, and a non-square tokenizer fit with logging on (the hyper-parameter
merge of model and data module)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from arm_data.datamodules.image_text import ImageTextDataModule
from arm_data.datasets.tasks import EditDataset, PairDataset, encode_record
from arm_data.datasets.writers import write_folder
from arm_data.records import EditRecord, PairRecord
from arm_tokenizer.framework.cli_base import run_cli
from arm_tokenizer.image_cache import CacheTooLargeError
from arm_tokenizer.testing.toys import TINY_TOKENIZER_MODEL_YAML
from PIL import Image

skdata = pytest.importorskip("skimage.data")

H, W = 32, 48


@pytest.fixture(scope="module")
def photo_dirs(tmp_path_factory, write_formats):
    chelsea = skdata.chelsea()
    rgba = np.concatenate([chelsea, np.full(chelsea.shape[:2] + (1,), 128, np.uint8)], axis=2)
    images = [skdata.astronaut(), skdata.coffee(), skdata.camera(), rgba, skdata.rocket()]
    recs = [PairRecord(Image.fromarray(a), f"photo {i}", key=f"p{i}") for i, a in enumerate(images)]
    return write_formats(recs, tmp_path_factory.mktemp("photos"), samples_per_shard=2)


@pytest.mark.parametrize("resize", ["center_crop", "pad", "resize"])
@pytest.mark.parametrize("fmt", ["folder", "jsonl", "wds"])
def test_every_format_takes_height_width_and_a_policy(photo_dirs, fmt, resize):
    dm = ImageTextDataModule(str(photo_dirs / fmt), image_size=[H, W], resize=resize, train_crop="center",
                             batch_size=5, shuffle=False, drop_last=False)
    (batch,) = list(dm.train_dataloader())
    assert batch["images"].shape == (5, 3, H, W) and batch["keys"] == [f"p{i}" for i in range(5)]
    gray = batch["images"][2]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    astronaut = batch["images"][0]  # square photo in a 3:2 frame
    assert ((astronaut[:, :, :8] == -1).all()) == (resize == "pad")
    assert dm.hparams["image_size"] == (H, W) and dm.hparams["width"] is None
    assert ImageTextDataModule(str(photo_dirs / fmt), image_size=[64, 64]).hparams["image_size"] == 64


def test_old_width_height_spelling_is_the_same_size(photo_dirs):
    dm = ImageTextDataModule(str(photo_dirs / "folder"), width=W, height=H)
    assert dm.size == (H, W) and dm.hparams["image_size"] == (H, W)


def test_memory_cache_same_items_random_crops_vary_and_cap(photo_dirs):
    kw = dict(path=str(photo_dirs / "jsonl"), size=(H, W), crop="center")
    plain, cached = PairDataset(**kw), PairDataset(**kw, cache="memory")
    cached.fill_cache()
    assert len(cached.cache) == 5 and cached.cache.nbytes == 5 * 3 * H * W
    assert all(torch.equal(plain[i]["image"], cached[i]["image"]) for i in range(5))
    rand = PairDataset(str(photo_dirs / "folder"), size=(H, W), crop="random", cache="memory")
    rand.fill_cache(num_workers=2)  # decoded by worker processes, kept here
    assert len(rand.cache) == 5
    assert len({tuple(rand[0]["image"][0, 0].tolist()) for _ in range(12)}) > 1
    with pytest.raises(CacheTooLargeError, match="cache_max_bytes=1000 .* cache: none"):
        PairDataset(**kw, cache="memory", cache_max_bytes=1000).fill_cache()
    with pytest.raises(ValueError, match="needs folder or JSONL data"):
        ImageTextDataModule(str(photo_dirs / "wds"), cache="memory").setup("fit")


def test_edit_crops_stay_aligned_through_the_cache(tmp_path):
    img = Image.fromarray(skdata.coffee()).reduce(4)
    write_folder([EditRecord(img, img, "same", key="e0")], tmp_path)
    ds = EditDataset(str(tmp_path), size=(H, 32), crop="random", cache="memory")
    ds.fill_cache()
    for _ in range(4):
        item = ds[0]
        assert torch.equal(item["source"], item["target"])
    fresh = encode_record(ds.records[0], ds.transform)  # the uncached path agrees
    assert torch.equal(fresh["source"], fresh["target"]) and fresh["source"].shape == (3, H, 32)


def test_workers_persist_for_map_style_data_only(photo_dirs):
    for fmt, persistent in (("folder", True), ("jsonl", True), ("wds", False)):
        dm = ImageTextDataModule(str(photo_dirs / fmt), image_size=8, num_workers=1, batch_size=2)
        assert dm.train_dataloader().persistent_workers is persistent, fmt


CONFIG = """
seed_everything: 0
trainer:
  accelerator: cpu
  max_steps: 2
  limit_val_batches: 1
  num_sanity_val_steps: 0
  enable_checkpointing: false
  enable_model_summary: false
  default_root_dir: {root}/logs
{model}
    image_size: [32, 48]
    num_grid_images: 2
data:
  class_path: image_text
  init_args:
    train_path: {data}
    height: 32
    width: 48
    batch_size: 2
    cache: memory
"""


def test_non_square_tokenizer_fit_logs_hyperparameters(photo_dirs, tmp_path, capsys):
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(textwrap.dedent(CONFIG.format(model=TINY_TOKENIZER_MODEL_YAML, root=tmp_path, data=photo_dirs / "folder")))
    assert run_cli("arm-tokenizer", ["fit", "--config", str(cfg)]) == 0
    (hparams,) = list((tmp_path / "logs").rglob("hparams.yaml"))  # written by the default logger
    text = hparams.read_text()
    assert "image_size:" in text and "- 32\n- 48" in text
    assert "step 2/2" in capsys.readouterr().out

    # sizes that really differ: one line naming both, exit 2, no traceback
    cfg.write_text(cfg.read_text().replace("    height: 32\n    width: 48\n", "    image_size: 64\n"))
    assert run_cli("arm-tokenizer", ["fit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "model.init_args.image_size = (32, 48) but data.init_args.image_size = 64" in err
    assert "Traceback" not in err

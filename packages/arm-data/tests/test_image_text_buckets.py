"""ImageTextDataModule at several aspect ratios (buckets, folder and JSONL; shards refused
with a reason), and source images smaller than one encoder patch as counted bad samples
naming the file (``image_too_small``), the minimum taken from the attached model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from arm_data.datamodules.image_text import ImageTextDataModule
from arm_data.datasets.tasks import PairDataset
from arm_data.datasets.writers import write_folder
from arm_data.errors import REASONS, BadSampleError
from arm_data.records import PairRecord
from PIL import Image

BUCKETS = [[16, 32], [16, 16], [32, 16]]
#: (width, height) of each image -> the bucket (height, width) nearest its aspect ratio
SHAPES = {"w0": ((60, 30), (16, 32)), "w1": ((50, 20), (16, 32)), "w2": ((90, 40), (16, 32)),
          "s0": ((30, 30), (16, 16)), "s1": ((40, 36), (16, 16)),
          "t0": ((20, 44), (32, 16)), "t1": ((25, 50), (32, 16))}


def _records(extra=()):
    recs = [PairRecord(Image.new("RGB", size, (10 * i, 20, 30)), f"caption {k}", key=k)
            for i, (k, (size, _)) in enumerate(SHAPES.items())]
    return recs + [PairRecord(Image.new("RGB", size, "red"), f"caption {k}", key=k) for k, size in extra]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, write_formats):
    root = write_formats(_records(), tmp_path_factory.mktemp("buckets"), samples_per_shard=4)
    tiny = _records(extra=[("z_tiny", (6, 5))])
    write_folder(tiny, root / "tiny")
    return root


@pytest.mark.parametrize("fmt", ["folder", "jsonl"])
def test_batches_hold_one_bucket_and_cover_every_image(dirs, fmt):
    dm = ImageTextDataModule(str(dirs / fmt), image_size=[16, 32], buckets=BUCKETS, batch_size=2, drop_last=False)
    dm.setup()
    ds = dm.train_set
    assert [BUCKETS[b] for b in ds.bucket_of] == [list(SHAPES[k][1]) for k in ds.records.keys()]
    seen = {}
    for epoch in range(2):
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == 2 + 1 + 1  # 3 wide, 2 square, 2 tall, batches of 2
        for b in batches:
            assert b["images"].dtype == torch.float32 and b["images"].shape[0] == len(b["keys"])
            for k in b["keys"]:
                seen[k] = tuple(b["images"].shape[-2:])
        if epoch == 0:
            first = [b["keys"] for b in batches]
    assert seen == {k: v[1] for k, v in SHAPES.items()}
    assert [b["keys"] for b in batches] != first or len(first) == 1  # reshuffled per epoch
    assert dm.hparams["buckets"] == [(16, 32), (16, 16), (32, 16)]


def test_val_split_and_memory_cache_keep_buckets(dirs):
    dm = ImageTextDataModule(str(dirs / "folder"), image_size=16, buckets=BUCKETS, batch_size=3, val_fraction=0.3,
                             cache="memory", drop_last=False)
    batches = list(dm.train_dataloader()) + list(dm.val_dataloader())
    keys = [k for b in batches for k in b["keys"]]
    assert sorted(keys) == sorted(SHAPES)
    for b in batches:
        assert {SHAPES[k][1] for k in b["keys"]} == {tuple(b["images"].shape[-2:])}


def test_shards_cannot_be_bucketed(dirs):
    dm = ImageTextDataModule(str(dirs / "wds"), image_size=16, buckets=BUCKETS)
    with pytest.raises(ValueError, match="buckets needs folder or JSONL data; .* holds tar shards"):
        dm.setup()


def test_buckets_refuse_several_processes(dirs):
    dm = ImageTextDataModule(str(dirs / "folder"), image_size=16, buckets=BUCKETS)
    dm.trainer = SimpleNamespace(world_size=2, lightning_module=None)
    with pytest.raises(ValueError, match="single-process training only, but the trainer runs 2 processes"):
        dm.setup()


def test_too_small_images_are_bad_samples_naming_the_file(dirs):
    assert "image_too_small" in REASONS
    strict = PairDataset(str(dirs / "tiny"), size=16, min_side=8, on_error="raise")
    j = strict.records.keys().index("z_tiny")
    with pytest.raises(BadSampleError) as e:
        strict[j]
    assert e.value.reason == "image_too_small" and e.value.source.endswith("z_tiny.png")
    assert "6x5" in str(e.value) and "min_side=8" in str(e.value)

    lenient = PairDataset(str(dirs / "tiny"), size=16, min_side=8)
    with pytest.warns(UserWarning, match="z_tiny.png"):
        item = lenient[j]
    assert item["key"] != "z_tiny" and lenient.policy.counts["image_too_small"] == 1


def test_min_side_comes_from_the_model(dirs):
    dm = ImageTextDataModule(str(dirs / "tiny"), image_size=16, batch_size=8, drop_last=False, shuffle=False,
                             on_error="raise")
    dm.trainer = SimpleNamespace(world_size=1, lightning_module=SimpleNamespace(min_image_side=8))
    with pytest.raises(BadSampleError, match=r"z_tiny\.png \[image_too_small\]"):
        list(dm.train_dataloader())
    alone = ImageTextDataModule(str(dirs / "tiny"), image_size=16, batch_size=8, drop_last=False, on_error="raise")
    assert sum(len(b["keys"]) for b in alone.train_dataloader()) == len(SHAPES) + 1  # no model: any size

"""ImageTextDataModule: the same batches from every format, registry entry, a short Lightning fit."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from arm_data.datamodules.image_text import ImageTextDataModule
from arm_data.records import PairRecord
from PIL import Image

N = 10


def _records():
    rng = np.random.default_rng(0)
    # non-square originals of varying size: the transform must bring them to one shape
    return [PairRecord(Image.fromarray(rng.integers(0, 256, (12 + i, 20 - i, 3), dtype=np.uint8)),
                       f"caption {i}", key=f"k{i:02d}") for i in range(N)]


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory, write_formats):
    return write_formats(_records(), tmp_path_factory.mktemp("it"), samples_per_shard=3)


@pytest.mark.parametrize("fmt", ["folder", "jsonl", "wds"])
def test_batches_identical_across_formats(data_dirs, fmt):
    dm = ImageTextDataModule(str(data_dirs / fmt), width=8, height=6, batch_size=4, shuffle=False,
                             train_crop="center", drop_last=False)
    batches = list(dm.train_dataloader())
    assert [len(b["captions"]) for b in batches] == [4, 4, 2]
    b = batches[0]
    assert set(b) == {"images", "captions", "keys"}
    assert b["images"].shape == (4, 3, 6, 8) and b["images"].dtype == torch.float32
    assert b["images"].min() >= -1 and b["images"].max() <= 1
    assert b["captions"] == [f"caption {i}" for i in range(4)] and b["keys"] == ["k00", "k01", "k02", "k03"]
    ref = list(ImageTextDataModule(str(data_dirs / "folder"), width=8, height=6, batch_size=4, shuffle=False,
                                   train_crop="center", drop_last=False).train_dataloader())
    assert all(torch.equal(x["images"], y["images"]) for x, y in zip(batches, ref, strict=True))
    assert dm.image_shape == (3, 6, 8)


def test_explicit_format_and_val_fraction(data_dirs):
    dm = ImageTextDataModule(str(data_dirs / "jsonl"), format="jsonl", image_size=8, batch_size=2,
                             val_fraction=0.3, seed=1)
    dm.setup("fit")
    assert len(dm.train_set) == 7 and len(dm.val_set) == 3
    val_keys = {k for b in dm.val_dataloader() for k in b["keys"]}
    train_keys = {k for b in dm.train_dataloader() for k in b["keys"]}
    assert not val_keys & train_keys and len(val_keys) == 3
    with pytest.raises(ValueError, match="val_fraction needs a folder or JSONL"):
        ImageTextDataModule(str(data_dirs / "wds"), val_fraction=0.2).setup("fit")
    with pytest.raises(ValueError, match="format must be one of"):
        ImageTextDataModule(str(data_dirs / "wds"), format="parquet")  # type: ignore[arg-type]


def test_wds_epochs_reshuffle_shards(data_dirs):
    dm = ImageTextDataModule(str(data_dirs / "wds"), image_size=4, batch_size=N, shuffle=True,
                             shuffle_buffer=0, drop_last=False, seed=3)
    loader = dm.train_dataloader()
    epochs = [[k for b in loader for k in b["keys"]] for _ in range(4)]
    assert all(sorted(e) == [f"k{i:02d}" for i in range(N)] for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1


def test_registered_and_fits_with_lightning(data_dirs, tmp_path):
    from arm_tokenizer.framework import registry

    assert registry.get("datamodule", "image_text") is ImageTextDataModule
    for name in ("pair_records", "vqa_records", "edit_records", "wds_records"):
        assert registry.get("dataset", name).__module__ == "arm_data.datasets.tasks"

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3 * 8 * 8, 1)
            self.seen: list[str] = []

        def training_step(self, batch, _):
            self.seen += batch["captions"]
            return self.lin(batch["images"].flatten(1)).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val", self.lin(batch["images"].flatten(1)).mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    model = Tiny()
    dm = ImageTextDataModule(str(data_dirs / "wds"), val_path=str(data_dirs / "folder"), image_size=8, batch_size=5)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert sorted(model.seen) == sorted([f"caption {i}" for i in range(N)] * 2)

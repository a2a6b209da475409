"""Images smaller than one encoder patch: the TokenizerTrainer checks the data's sizes at
setup, ``image_folder`` takes the model's minimum source side (``min_image_side``) and
names a smaller file; the CLI says it in one line with exit code 2. Buckets refuse DDP."""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

import pytest
from arm_tokenizer.data import ImageFolderDataModule, min_side_for
from arm_tokenizer.framework.cli_base import run_cli
from arm_tokenizer.images import ImageTooSmallError
from arm_tokenizer.testing.toys import TINY_TOKENIZER_MODEL_YAML
from PIL import Image


def _model(buckets=None):
    from arm_tokenizer.decoders.conv import ConvDecoder
    from arm_tokenizer.encoders.cnn import CNNEncoder
    from arm_tokenizer.lightning_module import TokenizerTrainer
    from arm_tokenizer.projections import LinearProjection
    from arm_tokenizer.quantizers.fsq import FSQQuantizer

    return TokenizerTrainer(CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=12), FSQQuantizer(levels=[5, 5, 5]),
                            ConvDecoder(in_dim=12, patch_size=8, channels=16, min_channels=8),
                            proj_in=LinearProjection(12, 3), proj_out=LinearProjection(3, 12), image_size=16,
                            buckets=buckets, num_grid_images=0)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for name, size in (("big", (40, 30)), ("wide", (60, 20)), ("tiny", (6, 5))):
        Image.new("RGB", size, "red").save(root / f"{name}.png")
    return root


@pytest.mark.parametrize("data_args, message", [
    ({"image_size": 4}, "ImageFolderDataModule.image_size is 4x4, smaller than one 8x8 patch of the encoder (CNNEncoder)"),
    ({"image_size": [16, 20]}, "ImageFolderDataModule.image_size is 16x20, not a multiple of the encoder's patch size 8"),
    ({"image_size": 16, "buckets": [[16, 16], [4, 16]]}, "ImageFolderDataModule.buckets[1] is 4x16, smaller than one"),
])
def test_trainer_setup_checks_the_data_sizes(folder, data_args, message):
    model = _model()
    model._trainer = SimpleNamespace(datamodule=ImageFolderDataModule(str(folder), **data_args))
    with pytest.raises(ValueError) as e:
        model.setup("fit")
    assert message in str(e.value)
    model._trainer = SimpleNamespace(datamodule=ImageFolderDataModule(str(folder), image_size=[16, 24]))
    model.setup("fit")  # a multiple of the patch: fine
    assert model.min_image_side == 8


def test_image_folder_refuses_images_below_the_models_patch(folder):
    dm = ImageFolderDataModule(str(folder), image_size=16, val_fraction=0.0, cache="memory")
    dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(min_image_side=8), world_size=1)
    assert min_side_for(dm, None) == 8 and min_side_for(dm, 3) == 3
    with pytest.raises(ImageTooSmallError, match=r"tiny\.png: image is 6x5 .*min_side=8"):
        dm.setup()
    alone = ImageFolderDataModule(str(folder), image_size=16, val_fraction=0.0, cache="memory")
    alone.setup()  # outside a Trainer nothing states a minimum: any size
    assert len(alone.train_set) == 3
    with pytest.raises(ValueError, match="min_side must be a positive int"):
        min_side_for(alone, 0)


def test_buckets_refuse_several_processes(folder):
    dm = ImageFolderDataModule(str(folder), image_size=16, buckets=[[16, 16], [16, 32]], val_fraction=0.0)
    dm.trainer = SimpleNamespace(lightning_module=None, world_size=2)
    with pytest.raises(ValueError, match="buckets support single-process training only, but the trainer runs 2"):
        dm.setup()


CONFIG = """
trainer:
  accelerator: cpu
  max_steps: 1
  logger: false
  enable_checkpointing: false
  enable_model_summary: false
  enable_progress_bar: false
  limit_val_batches: 0
{model}
    image_size: 16
    num_grid_images: 0
data:
  class_path: image_folder
  init_args: {{root: {root}, image_size: {size}, batch_size: 3, val_fraction: 0.0}}
"""


@pytest.mark.parametrize("size, message", [
    (16, "tiny.png: image is 6x5 (width x height), smaller than min_side=8"),
    (12, "ImageFolderDataModule.image_size is 12x12, not a multiple of the encoder's patch size 8"),
])
def test_cli_says_it_in_one_line_exit_2(folder, tmp_path, capsys, monkeypatch, size, message):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(textwrap.dedent(CONFIG.format(model=TINY_TOKENIZER_MODEL_YAML, root=folder, size=size)))
    assert run_cli("arm-tokenizer", ["fit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message in err

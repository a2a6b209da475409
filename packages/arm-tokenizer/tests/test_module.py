"""TokenizerTrainer: losses, logging (CSV + images), GAN manual optimization, EMA, export; the
image-folder datamodule and the callbacks."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from arm_tokenizer.callbacks import ExportTokenizer, ReconstructionGrid, make_grid
from arm_tokenizer.data import ImageFolderDataModule
from arm_tokenizer.decoders.conv import ConvDecoder
from arm_tokenizer.decoders.pixel_dit import PixelDiTDecoder
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.framework.checkpoint import CheckpointError
from arm_tokenizer.lightning_module import TokenizerTrainer
from arm_tokenizer.losses.flow import FlowMatchingLoss
from arm_tokenizer.losses.pixel import PixelReconstructionLoss
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.schedules import warmup_cosine
from arm_tokenizer.tokenizer import VisualTokenizer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from torch.utils.data import DataLoader

SIZE = 16


def _data(n: int = 8, captions: bool = True) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        item = {"images": torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1}
        if captions:
            item["captions"] = f"image {i}"
        items.append(item)
    return items


def _loader(**kw) -> DataLoader:
    return DataLoader(_data(**kw), batch_size=4)


def _module(decoder: str = "conv", **kw) -> TokenizerTrainer:
    torch.manual_seed(0)
    enc = CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=12)
    dec = (ConvDecoder(in_dim=12, patch_size=4, channels=16, min_channels=8) if decoder == "conv" else
           PixelDiTDecoder(in_dim=12, patch_size=4, hidden_dim=16, depth=1, num_heads=2))
    args = dict(proj_in=LinearProjection(12, 3), proj_out=LinearProjection(3, 12), image_size=SIZE,
                lr=3e-3, num_grid_images=4, val_decode_steps=2)
    args.update(kw)
    return TokenizerTrainer(enc, FSQQuantizer(levels=[5, 5, 5]), dec, **args)


def _trainer(tmp_path: Path, steps: int = 4, **kw) -> L.Trainer:
    args = dict(max_steps=steps, logger=CSVLogger(str(tmp_path), name="logs"), enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                limit_val_batches=1, default_root_dir=str(tmp_path))
    args.update(kw)
    return L.Trainer(**args)


def _metrics(tmp_path: Path) -> list[dict]:
    (path,) = list(tmp_path.glob("logs/version_*/metrics.csv"))
    with open(path) as f:
        return list(csv.DictReader(f))


def test_fit_logs_each_loss_usage_from_step_0_metrics_grids_and_exports(tmp_path):
    module = _module(export_dir=str(tmp_path / "export"))
    trainer = _trainer(tmp_path, val_check_interval=2)
    trainer.fit(module, _loader(), _loader())
    rows = _metrics(tmp_path)
    first = next(r for r in rows if r.get("train/loss_pix"))
    assert first["step"] == "0" and first["train/codebook_usage"] != ""  # usage from step 0
    keys = {k for r in rows for k, v in r.items() if v != ""}
    assert {"train/loss_total", "train/loss_pix", "train/loss_quant_aux", "train/pix_psnr", "val/psnr",
            "val/ssim", "val/codebook_usage", "val/loss_pix", "train/quant_usage"} <= keys
    pngs = list(tmp_path.glob("logs/version_*/images/val_reconstructions_step*.png"))
    assert pngs and Image.open(pngs[0]).size[0] > SIZE
    # Export -> VisualTokenizer.from_pretrained reproduces the trained tokenizer.
    tok = VisualTokenizer.from_pretrained(tmp_path / "export")
    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    module.tokenizer.eval()
    assert torch.equal(tok.encode(x), module.tokenizer.encode(x))
    assert torch.allclose(tok.decode(tok.encode(x)), module.tokenizer.decode(tok.encode(x)), atol=1e-5)


def test_default_loss_follows_the_decoder():
    assert isinstance(_module("conv").losses[0], PixelReconstructionLoss)
    assert isinstance(_module("dit").losses[0], FlowMatchingLoss)


def test_pixel_dit_module_trains_and_validates(tmp_path):
    module = _module("dit")
    trainer = _trainer(tmp_path, steps=2)
    trainer.fit(module, _loader(), _loader())
    assert "val/psnr" in trainer.logged_metrics
    assert torch.isfinite(trainer.logged_metrics["train/loss_total"])


def test_gan_switches_to_manual_optimization_and_trains_both(tmp_path):
    loss = PixelReconstructionLoss(gan_weight=0.1, gan_start_step=1, disc_channels=8, disc_layers=1)
    module = _module(losses=[loss])
    assert not module.automatic_optimization
    disc0 = [p.detach().clone() for p in loss.discriminator.parameters()]
    dec0 = module.tokenizer.decoder.conv_out.weight.detach().clone()
    trainer = _trainer(tmp_path, steps=5, limit_val_batches=0)
    trainer.fit(module, _loader(), _loader())
    assert module._gen_steps == 3  # Lightning counts each optimizer's step: 3 gen + 2 disc = 5
    assert not torch.equal(dec0, module.tokenizer.decoder.conv_out.weight)
    assert any(not torch.equal(a, b) for a, b in zip(disc0, loss.discriminator.parameters(), strict=True))
    keys = {k for r in _metrics(tmp_path) for k, v in r.items() if v != ""}
    assert {"train/loss_pix_disc", "train/pix_gan_g", "train/pix_gan_weight"} <= keys


def test_ema_weights_are_used_for_export(tmp_path):
    module = _module(ema_decay=0.5)
    trainer = _trainer(tmp_path, steps=3, limit_val_batches=0)
    trainer.fit(module, _loader(), _loader())
    live = module.tokenizer.decoder.conv_out.weight.detach().clone()
    shadow = module.ema.shadow["decoder.conv_out.weight"]
    assert not torch.allclose(live, shadow)
    module.export(str(tmp_path / "ema"))
    assert torch.equal(module.tokenizer.decoder.conv_out.weight, live)  # restored after export
    exported = VisualTokenizer.from_pretrained(tmp_path / "ema")
    assert torch.allclose(exported.decoder.conv_out.weight, shadow)


def test_decoder_finetune_keeps_token_ids(tmp_path):
    """init_from + freeze the encoder side: the decoder trains, every token id stays."""
    first = _module(export_dir=str(tmp_path / "tok"))
    _trainer(tmp_path / "a", steps=3, limit_val_batches=0).fit(first, _loader(), _loader())
    x = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    ids0 = VisualTokenizer.from_pretrained(tmp_path / "tok").encode(x)

    module = _module(init_from=str(tmp_path / "tok"), freeze=["encoder", "proj_in", "quantizer"],
                     export_dir=str(tmp_path / "tok2"), lr=1e-2)
    # the weights are the export's, not this seed's random initialisation
    assert torch.equal(module.tokenizer.eval().encode(x), ids0)
    proj_in0 = module.tokenizer.proj_in.linear.weight.detach().clone()
    dec0 = module.tokenizer.decoder.conv_out.weight.detach().clone()
    module.train()
    assert not module.tokenizer.encoder.training and not module.tokenizer.quantizer.training
    assert module.tokenizer.decoder.training
    _trainer(tmp_path / "b", steps=4, limit_val_batches=0).fit(module, _loader(), _loader())
    assert torch.equal(module.tokenizer.proj_in.linear.weight, proj_in0)
    assert not torch.equal(module.tokenizer.decoder.conv_out.weight, dec0)
    tuned = VisualTokenizer.from_pretrained(tmp_path / "tok2")
    assert torch.equal(tuned.encode(x), ids0)

    with pytest.raises(ValueError, match="freeze: unknown part.*'projin'"):
        _module(freeze=["projin"])
    with pytest.raises(FileNotFoundError, match="init_from"):
        _module(init_from=str(tmp_path / "missing"))

    def wider(**kw) -> TokenizerTrainer:
        return TokenizerTrainer(CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=12),
                                FSQQuantizer(levels=[5, 5, 5]),
                                ConvDecoder(in_dim=12, patch_size=4, channels=32, min_channels=8),
                                proj_in=LinearProjection(12, 3), proj_out=LinearProjection(3, 12),
                                image_size=SIZE, init_from=str(tmp_path / "tok"), **kw)

    with pytest.raises(CheckpointError, match="does not match|do not fit"):
        wider()
    # a wider decoder trained anew on the same tokens: load every part but the decoder
    fresh = wider(init_parts=["encoder", "proj_in", "quantizer", "proj_out"])
    assert torch.equal(fresh.tokenizer.eval().encode(x), ids0)
    with pytest.raises(ValueError, match="init_parts: unknown part"):
        wider(init_parts=["decoders"])
    frozen_all = _module(freeze=["encoder", "proj_in", "quantizer", "proj_out", "decoder"])
    with pytest.raises(ValueError, match="nothing to train"):
        frozen_all.configure_optimizers()


def test_bad_batches_are_clear_errors():
    module = _module(losses=[PixelReconstructionLoss()])
    with pytest.raises(ValueError, match="image_size"):
        module._images({"images": torch.zeros(2, 3, 8, 8)})
    with pytest.raises(TypeError, match=r"float in \[-1, 1\]"):
        module._images({"images": torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8)})

    class NeedsText(PixelReconstructionLoss):
        needs_captions = True

    module = _module(losses=[NeedsText()])
    with pytest.raises(ValueError, match="captions"):
        module._captions({"images": torch.zeros(1, 3, SIZE, SIZE)})
    with pytest.raises(ValueError, match="unique"):
        _module(losses=[PixelReconstructionLoss(), PixelReconstructionLoss()])


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 4, 100, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(4, 4, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(100, 4, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(50, 0, None, 0.1) == 1.0


def test_callbacks_export_and_fixed_grid(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = _module()
    loggers = [CSVLogger(str(tmp_path), name="logs"), TensorBoardLogger(str(tmp_path), name="tb")]
    trainer = _trainer(tmp_path, steps=2, logger=loggers,
                       callbacks=[ExportTokenizer(str(tmp_path / "cb"), every_n_val=1), ReconstructionGrid(num_images=2)])
    trainer.fit(module, _loader(), _loader())
    assert (tmp_path / "cb" / "model.safetensors").is_file()
    assert list(tmp_path.glob("logs/version_*/images/val_fixed_reconstructions_step*.png"))
    events = EventAccumulator(str(next(tmp_path.glob("tb/version_*"))))
    events.Reload()
    assert {"val/reconstructions", "val/fixed_reconstructions"} <= set(events.Tags()["images"])
    grid = make_grid(torch.zeros(3, 3, 4, 4), ncol=2, pad=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 3) and grid.dtype.name == "uint8"


def _write_images(root: Path, n: int, captions: bool) -> None:
    root.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (20 + i, 24), (10 * i, 100, 200)).save(root / f"img{i}.png")
        if captions:
            (root / f"img{i}.txt").write_text(f"caption {i}\n")


def test_image_folder_datamodule(tmp_path):
    _write_images(tmp_path / "imgs", 5, captions=True)
    dm = ImageFolderDataModule(str(tmp_path / "imgs"), image_size=SIZE, batch_size=2, val_fraction=0.2)
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.val_set) == 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (2, 3, SIZE, SIZE) and batch["images"].min() >= -1
    assert all(c.startswith("caption ") for c in batch["captions"])
    (tmp_path / "imgs" / "img0.txt").unlink()
    dm = ImageFolderDataModule(str(tmp_path / "imgs"), image_size=SIZE, captions="auto")
    dm.setup()
    assert "captions" not in dm.train_set[0]
    with pytest.raises(FileNotFoundError, match="img0.png"):
        ImageFolderDataModule(str(tmp_path / "imgs"), captions="require").setup()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataModule(str(tmp_path / "missing")).setup()


def test_image_folder_trains_the_tokenizer(tmp_path):
    _write_images(tmp_path / "imgs", 6, captions=False)
    dm = ImageFolderDataModule(str(tmp_path / "imgs"), image_size=SIZE, batch_size=3, val_fraction=0.3)
    trainer = _trainer(tmp_path, steps=2)
    trainer.fit(_module(), datamodule=dm)
    assert "val/psnr" in trainer.logged_metrics

"""``VAETrainer``: trains a :class:`~arm_tokenizer.decoders.vae.VAE` (L1 + KL) for the Latent DiT.

ARM's renderer is a Latent DiT over a pretrained VAE's latents. Where no pretrained VAE
exists (here: nothing can be downloaded) a :class:`SmallVAE` is trained first with this
module, exported with ``save_pretrained(export_dir)``, and then loaded frozen by
``latent_dit`` (``vae_path: <export_dir>``). The loss is ``L1(x, D(z)) + kl_weight *
KL(q(z|x) || N(0, I))`` with ``z`` sampled by the reparameterization trick. At the end of
fit the latent scale is set to ``1 / std`` of the posterior means over a few training
batches, so the latents the DiT sees have about unit variance.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics.image import PeakSignalNoiseRatio

from arm_tokenizer.callbacks import log_image_grid, make_grid
from arm_tokenizer.decoders.vae import VAE, kl_divergence, reparameterize

__all__ = ["VAETrainer"]


class VAETrainer(LightningModule):
    """Train a VAE with L1 reconstruction + KL; export it for latent decoders."""

    def __init__(
        self,
        vae: VAE,
        kl_weight: float = 1e-4,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        export_dir: str | None = None,
        scale_batches: int = 8,
        num_grid_images: int = 8,
    ) -> None:
        """
        Args:
            vae: the VAE to train (must implement ``posterior`` and ``decode_unscaled``).
            kl_weight: weight of the KL term (small: we want sharp reconstructions and
                latents that are only loosely Gaussian; our choice).
            lr: AdamW learning rate.
            betas: AdamW betas.
            weight_decay: AdamW weight decay.
            export_dir: ``vae.save_pretrained`` here at the end of fit (None = off).
            scale_batches: training batches used to measure the latent std at fit end.
            num_grid_images: images per validation reconstruction grid (0 = none).
        """
        super().__init__()
        self.save_hyperparameters(ignore=["vae"])
        if kl_weight < 0:
            raise ValueError(f"VAETrainer.kl_weight must be >= 0, got {kl_weight}")
        self.vae = vae
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    @staticmethod
    def _images(batch: Any) -> torch.Tensor:
        images = batch["images"] if isinstance(batch, dict) else batch
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError("VAETrainer: batch['images'] must be a (B, 3, H, W) float tensor in [-1, 1]")
        return images

    def _step(self, images: torch.Tensor, sample: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        mean, logvar = self.vae.posterior(images)
        z = reparameterize(mean, logvar) if sample else mean
        recon = self.vae.decode_unscaled(z)
        l1 = F.l1_loss(recon, images)
        kl = kl_divergence(mean, logvar)
        loss = l1 + self.hparams.kl_weight * kl
        return loss, {"l1": l1.detach(), "kl": kl.detach(), "loss": loss.detach()}, recon

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = self._images(batch)
        loss, logs, _ = self._step(images, sample=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=True, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images = self._images(batch)
        _, logs, recon = self._step(images, sample=False)
        self.log_dict({f"val/{k}": v for k, v in logs.items()}, batch_size=images.shape[0], sync_dist=True)
        self.val_psnr.update((recon.clamp(-1, 1) + 1) / 2, (images + 1) / 2)
        n = self.hparams.num_grid_images
        if n and batch_idx == 0 and not self.trainer.sanity_checking:
            grid = make_grid(torch.cat([images[:n], recon[:n].clamp(-1, 1)]), ncol=min(n, images.shape[0]))
            log_image_grid(self.trainer, "val/vae_reconstructions", grid, self.global_step)

    def on_validation_epoch_end(self) -> None:
        self.log("val/psnr", self.val_psnr.compute(), prog_bar=True)
        self.val_psnr.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.AdamW(self.vae.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)

    @torch.no_grad()
    def calibrate_latent_scale(self, batches: list[torch.Tensor]) -> float:
        """Set ``vae.latent_scale = 1 / std(posterior means)`` over ``batches``; returns it."""
        if not hasattr(self.vae, "latent_scale"):
            raise TypeError(f"{type(self.vae).__name__} has no latent_scale buffer to calibrate")
        means = torch.cat([self.vae.posterior(b.to(self.device))[0].flatten() for b in batches])
        scale = float(1.0 / means.std().clamp_min(1e-6))
        self.vae.latent_scale.fill_(scale)
        return scale

    def on_fit_end(self) -> None:
        trainer = self.trainer
        if trainer.fast_dev_run:
            return
        loader = trainer.train_dataloader
        batches = []
        if loader is not None and self.hparams.scale_batches > 0:
            for i, batch in enumerate(loader):
                if i >= self.hparams.scale_batches:
                    break
                batches.append(self._images(batch))
        if batches:
            was_training = self.vae.training
            self.vae.eval()
            self.calibrate_latent_scale(batches)
            self.vae.train(was_training)
        if self.hparams.export_dir and trainer.is_global_zero:
            self.vae.save_pretrained(self.hparams.export_dir)

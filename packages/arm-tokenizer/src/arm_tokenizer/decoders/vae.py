"""The VAE interface used by latent decoders, and a small VAE trainable on a CPU.

ARM renders tokens to pixels with a Latent DiT that produces a VAE's latents, and the
VAE's decoder turns those into pixels (``reference/generation.png``). Any autoencoder can
serve if it implements :class:`VAE`:

- ``encode(images) -> latents`` ``(B, latent_channels, H / downsample, W / downsample)``,
  already multiplied by ``latent_scale`` so that latents have roughly unit variance (what
  the flow's Gaussian noise assumes; Stable Diffusion's VAE uses 0.18215 for the same);
- ``decode(latents) -> images`` in [-1, 1] (dividing by ``latent_scale`` first);
- ``latent_channels`` and ``downsample``.

:class:`SmallVAE` is a convolutional KL-VAE (``posterior`` gives the Gaussian's mean and
log-variance for the KL term) that :class:`arm_tokenizer.decoders.lightning_module.VAETrainer` trains with
L1 + KL; ``save_pretrained`` / ``from_pretrained`` store it as ``model.safetensors`` +
``config.json`` (a directory a :class:`~arm_tokenizer.decoders.latent_dit.LatentDiTDecoder`
loads frozen by path).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from arm_tokenizer import __version__
from arm_tokenizer.decoders.conv import ResBlock, _groups
from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from arm_tokenizer.framework.configurable import ConfigError, Configurable, instantiate

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class VAE(Configurable, nn.Module):
    """Base class of ``arm.vaes``. Subclasses set ``latent_channels`` and ``downsample`` and
    implement :meth:`encode` and :meth:`decode`; trainable ones also :meth:`posterior`."""

    latent_channels: int
    downsample: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] -> scaled latents ``(B, C, H/ds, W/ds)``."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images ``(B, 3, H, W)`` (about [-1, 1]; callers clamp)."""
        raise NotImplementedError

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled Gaussian posterior ``(mean, logvar)`` for KL training."""
        raise NotImplementedError(f"{type(self).__name__} cannot be trained (no posterior)")

    def decode_unscaled(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latents as produced by :meth:`posterior` (before ``latent_scale``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (atomically) into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write_bytes(out / WEIGHTS_NAME, save(state))
        cfg = {**self.get_config(portable=True), "arm_tokenizer_version": __version__, "kind": "vae"}
        atomic_write_bytes(out / CONFIG_NAME, json.dumps(cfg, indent=2).encode())
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str = "cpu") -> VAE:
        """Rebuild a VAE saved by :meth:`save_pretrained` (any VAE subclass)."""
        d = Path(directory)
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (d / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"VAE.from_pretrained({str(d)!r}): missing {missing}; expected a directory written by "
                "VAE.save_pretrained (e.g. by the vae_trainer model's export_dir)"
            )
        cfg = json.loads((d / CONFIG_NAME).read_text())
        model = instantiate({k: cfg[k] for k in ("class_path", "init_args") if k in cfg})
        if not isinstance(model, VAE):
            raise ConfigError(f"{d / CONFIG_NAME}: {cfg.get('class_path')} is not a VAE")
        state = load_file(str(d / WEIGHTS_NAME), device=map_location)
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(
                f"VAE weights in {d / WEIGHTS_NAME} do not match {cfg.get('class_path')}: "
                f"missing keys {result.missing_keys}, unexpected keys {result.unexpected_keys}"
            )
        return model


class SmallVAE(VAE):
    """Convolutional KL-VAE: ``log2(downsample)`` stride-2 stages down, mirrored up."""

    def __init__(
        self,
        latent_channels: int = 4,
        downsample: int = 4,
        channels: int = 64,
        max_channels: int = 256,
        num_res_blocks: int = 1,
    ) -> None:
        """
        Args:
            latent_channels: channels C of the latent field.
            downsample: spatial reduction factor (a power of two, >= 1).
            channels: width at full resolution; doubles per downsampling stage.
            max_channels: the width never exceeds this.
            num_res_blocks: residual blocks per resolution.
        """
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"SmallVAE: downsample must be a power of two >= 1, got {downsample}")
        if latent_channels < 1 or channels < 1:
            raise ValueError(f"SmallVAE: latent_channels and channels must be >= 1, got "
                             f"{latent_channels}, {channels}")
        self.latent_channels = latent_channels
        self.downsample = downsample
        n = int(math.log2(downsample))
        widths = [min(max_channels, channels * 2 ** i) for i in range(n + 1)]
        enc: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        for i in range(n):
            enc += [ResBlock(widths[i]) for _ in range(num_res_blocks)]
            enc.append(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1))
        enc += [ResBlock(widths[-1]) for _ in range(num_res_blocks)]
        enc += [nn.GroupNorm(_groups(widths[-1]), widths[-1]), nn.SiLU(),
                nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 3, padding=1)]
        dec += [ResBlock(widths[-1]) for _ in range(num_res_blocks)]
        for i in range(n, 0, -1):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(widths[i], widths[i - 1], 3, padding=1)]
            dec += [ResBlock(widths[i - 1]) for _ in range(num_res_blocks)]
        dec += [nn.GroupNorm(_groups(widths[0]), widths[0]), nn.SiLU(), nn.Conv2d(widths[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        # Set by VAETrainer after training (1 / std of the latents); saved with the weights.
        self.register_buffer("latent_scale", torch.ones(()))

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        """Tiny sizes for tests."""
        return {"latent_channels": 2, "downsample": 4, "channels": 8, "max_channels": 16}

    def _check(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"SmallVAE expects float images (B, 3, H, W) in [-1, 1], got "
                             f"{tuple(images.shape)} {images.dtype}")
        if images.shape[-2] % self.downsample or images.shape[-1] % self.downsample:
            raise ValueError(f"SmallVAE: image size {tuple(images.shape[-2:])} is not a multiple of "
                             f"downsample {self.downsample}")

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images)
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        mean, _ = self.posterior(images)
        return mean * self.latent_scale

    def decode_unscaled(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"SmallVAE.decode expects latents (B, {self.latent_channels}, h, w), "
                             f"got {tuple(z.shape)}")
        return self.decoder(z)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decode_unscaled(latents / self.latent_scale)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean per-element KL(N(mean, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mean + torch.randn_like(mean) * (0.5 * logvar).exp()


__all__ = ["VAE", "SmallVAE", "kl_divergence", "reparameterize"]

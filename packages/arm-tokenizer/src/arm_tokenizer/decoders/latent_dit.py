"""The Latent DiT decoder: rectified flow over a frozen VAE's latents, conditioned on tokens.

ARM renders its discrete tokens with a Latent DiT (initialised from a text-to-image model,
the tokens replacing the text condition) trained by latent rectified flow, then decodes
the latents with the VAE (``reference/generation.png``; 28 steps, CFG 1.5). Here the DiT
is trained from scratch; any autoencoder implementing :class:`~arm_tokenizer.decoders.vae.VAE`
serves, passed as a module or loaded frozen from a ``save_pretrained`` directory.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from arm_tokenizer.decoders.dit import DiTBackbone, FlowDecoder, check_cfg_args
from arm_tokenizer.decoders.vae import VAE, SmallVAE


class LatentDiTDecoder(FlowDecoder):
    """Diffusion transformer over ``(B, C, H/ds, W/ds)`` VAE latents; the VAE stays frozen."""

    # A portable export stores the VAE's architecture instead of the path (weights travel in
    # the tokenizer's safetensors).
    weight_source_args: ClassVar[dict[str, Any]] = {"vae_path": None}

    def __init__(
        self,
        in_dim: int = 256,
        patch_size: int = 8,
        vae: VAE | None = None,
        vae_path: str | None = None,
        dit_patch_size: int | None = None,
        hidden_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        cond_dropout: float = 0.1,
        sample_steps: int = 28,
        cfg_scale: float = 1.5,
    ) -> None:
        """
        Args:
            in_dim: width C of the de-quantized tokens that condition the DiT.
            patch_size: pixels per *token* side (the encoder's patch size): fixes the output
                image size for a token grid.
            vae: the autoencoder (frozen here). Give this or ``vae_path``.
            vae_path: a directory written by ``VAE.save_pretrained`` (e.g. by the
                ``vae_trainer`` model) to load the VAE from.
            dit_patch_size: latent pixels per DiT patch side; ``None`` = ``patch_size /
                vae.downsample`` (one DiT patch under each token), at least 1.
            hidden_dim: transformer width.
            depth: number of DiT blocks.
            num_heads: attention heads.
            mlp_ratio: MLP hidden width / ``hidden_dim``.
            cond_dropout: probability of dropping a sample's tokens to the null token in
                training (classifier-free guidance; our choice 0.1).
            sample_steps: default Euler steps of :meth:`decode` (ARM: 28).
            cfg_scale: default guidance scale of :meth:`decode` (ARM: 1.5).
        """
        super().__init__()
        if (vae is None) == (vae_path is None):
            raise ValueError("LatentDiTDecoder: give exactly one of `vae` (a VAE module) or `vae_path` "
                             "(a VAE.save_pretrained directory)")
        if vae_path is not None:
            vae = VAE.from_pretrained(vae_path)
        if not isinstance(vae, VAE):
            raise TypeError(f"LatentDiTDecoder: vae must implement arm_tokenizer.decoders.vae.VAE, "
                            f"got {type(vae).__name__}")
        check_cfg_args("LatentDiTDecoder", cond_dropout, cfg_scale)
        self.vae = vae
        self.vae.requires_grad_(False)
        self.vae.eval()
        self.in_dim = in_dim
        self.patch_size = patch_size
        if patch_size % vae.downsample and dit_patch_size is None:
            raise ValueError(f"LatentDiTDecoder: patch_size {patch_size} is not a multiple of the VAE's "
                             f"downsample {vae.downsample}; set dit_patch_size explicitly")
        self.dit_patch_size = dit_patch_size or max(1, patch_size // vae.downsample)
        self.cond_dropout = float(cond_dropout)
        self.sample_steps = int(sample_steps)
        self.cfg_scale = float(cfg_scale)
        self.backbone = DiTBackbone(vae.latent_channels, in_dim, self.dit_patch_size, hidden_dim,
                                    depth, num_heads, mlp_ratio)
        self.null_cond = nn.Parameter(torch.zeros(in_dim)) if cond_dropout > 0 else None

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        """Tiny sizes for contract tests (with a tiny untrained SmallVAE)."""
        return {"in_dim": 8, "patch_size": 8, "vae": SmallVAE(**SmallVAE.example_args()), "hidden_dim": 16,
                "depth": 1, "num_heads": 2, "cond_dropout": 0.0, "cfg_scale": 1.0, "sample_steps": 2}

    def train(self, mode: bool = True) -> LatentDiTDecoder:
        super().train(mode)
        self.vae.eval()  # frozen: never in training mode
        return self

    def get_config(self, portable: bool = False) -> dict[str, Any]:
        cfg = super().get_config(portable=portable)
        if portable and cfg["init_args"].get("vae") is None:
            cfg["init_args"]["vae"] = self.vae.get_config(portable=True)
        return cfg

    def field_shape(self, grid: tuple[int, int]) -> tuple[int, int, int]:
        H, W = self.output_size(grid)
        ds = self.vae.downsample
        if H % ds or W % ds or (H // ds) % self.dit_patch_size or (W // ds) % self.dit_patch_size:
            raise ValueError(
                f"LatentDiTDecoder: output {H}x{W} must be a multiple of the VAE downsample {ds} "
                f"times dit_patch_size {self.dit_patch_size}"
            )
        return self.vae.latent_channels, H // ds, W // ds

    @torch.no_grad()
    def flow_target(self, images: torch.Tensor) -> torch.Tensor:
        """The VAE latents of the images (``x1`` of the latent flow)."""
        return self.vae.encode(images)

    def from_field(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(x)

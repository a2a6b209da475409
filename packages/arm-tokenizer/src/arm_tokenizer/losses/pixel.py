"""L_pix for direct decoders: L1/L2 + LPIPS + an optional PatchGAN adversarial term.

The reconstruction loss of VQGAN-family tokenizers (Esser et al., https://arxiv.org/abs/2012.09841):
a pixel distance, a perceptual distance (LPIPS, Zhang et al., https://arxiv.org/abs/1801.03924)
and a patch-level adversarial loss whose weight is balanced adaptively against the
reconstruction gradient and switched on after a warm-up. For generative (DiT) decoders
ARM's L_pix is the flow-matching loss instead: :mod:`arm_tokenizer.losses.flow`.

LPIPS needs torchvision's ImageNet weights for its backbone (VGG/AlexNet/SqueezeNet) in the
torch hub cache; nothing is downloaded here. :func:`build_lpips` checks the file exists and
raises a clear error naming it otherwise (``lpips_weight: 0.0`` disables the term).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss, direct_reconstruction
from arm_tokenizer.losses.gan import (
    GAN_LOSSES,
    PatchGANDiscriminator,
    adaptive_weight,
    discriminator_loss,
    generator_loss,
)

__all__ = ["PixelReconstructionLoss", "build_lpips", "lpips_backbone_path", "LPIPS_NETS"]

# torchvision checkpoint files the lpips package's backbones load (torch hub cache names).
LPIPS_NETS = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def lpips_backbone_path(net: str) -> str:
    """Where torchvision looks for the ImageNet weights of LPIPS backbone ``net``."""
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; choose one of {sorted(LPIPS_NETS)}")
    return os.path.join(torch.hub.get_dir(), "checkpoints", LPIPS_NETS[net])


def build_lpips(net: str = "vgg", random_backbone: bool = False) -> nn.Module:
    """A frozen ``lpips.LPIPS`` module (inputs in [-1, 1]).

    Args:
        net: backbone, ``vgg``, ``alex`` or ``squeeze``.
        random_backbone: use a randomly initialised backbone (``pnet_rand=True``) with the
            calibrated linear heads; only meaningful to exercise the code path without the
            ImageNet weights (the distance is then not perceptual).

    Raises:
        FileNotFoundError: the backbone weights are not in the torch hub cache.
    """
    path = lpips_backbone_path(net)
    if not random_backbone and not os.path.isfile(path):
        raise FileNotFoundError(
            f"LPIPS ({net}) needs torchvision's ImageNet weights at {path}, and they cannot be "
            f"downloaded here. Copy {LPIPS_NETS[net]} into {os.path.dirname(path)} (or set "
            "TORCH_HOME), or disable the perceptual term with lpips_weight: 0.0"
        )
    # deferred: lpips imports torchvision (slow), needed only when the perceptual term is on
    import lpips

    with warnings.catch_warnings():  # torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=random_backbone, verbose=False)
    model.eval().requires_grad_(False)
    return model


class PixelReconstructionLoss(TokenizerLoss):
    """L_pix for direct decoders (conv): distance + LPIPS + optional adversarial loss.

    Logs ``l1``/``l2`` (the distance), ``lpips``, ``psnr`` and, once the GAN is on,
    ``gan_g`` and ``gan_weight``. The total is
    ``dist + lpips_weight * lpips + gan_weight * lambda * gan_g`` where ``lambda`` is VQGAN's
    adaptive weight (or 1 without ``adaptive_gan_weight``).
    """

    default_name = "pix"

    def __init__(
        self,
        weight: float = 1.0,
        distance: Literal["l1", "l2"] = "l1",
        lpips_weight: float = 0.0,
        lpips_net: Literal["vgg", "alex", "squeeze"] = "vgg",
        lpips_random_backbone: bool = False,
        gan_weight: float = 0.0,
        gan_start_step: int = 0,
        gan_loss: Literal["hinge", "non_saturating"] = "hinge",
        adaptive_gan_weight: bool = True,
        disc_channels: int = 64,
        disc_layers: int = 3,
        name: str | None = None,
    ) -> None:
        """
        Args:
            weight: multiplier in the total loss (ARM: 5 for L_pix).
            distance: ``"l1"`` or ``"l2"`` (mean squared error) between image and reconstruction.
            lpips_weight: weight of the LPIPS perceptual term (0 disables it; needs the
                backbone's ImageNet weights locally, see :func:`build_lpips`).
            lpips_net: LPIPS backbone.
            lpips_random_backbone: random LPIPS backbone (tests only; not perceptual).
            gan_weight: weight of the PatchGAN generator term (0 = no discriminator).
            gan_start_step: global step from which the adversarial terms are trained (warm-up).
            gan_loss: ``"hinge"`` (VQGAN) or ``"non_saturating"``.
            adaptive_gan_weight: scale the GAN term by VQGAN's gradient-norm ratio at the
                decoder's last layer.
            disc_channels: PatchGAN first-layer width.
            disc_layers: PatchGAN depth (stride-2 layers after the first).
            name: log key (default ``pix``).
        """
        super().__init__(weight=weight, name=name)
        if distance not in ("l1", "l2"):
            raise ValueError(f"PixelReconstructionLoss.distance must be 'l1' or 'l2', got {distance!r}")
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"PixelReconstructionLoss.gan_loss must be one of {GAN_LOSSES}, got {gan_loss!r}")
        if lpips_weight < 0 or gan_weight < 0 or gan_start_step < 0:
            raise ValueError("PixelReconstructionLoss: lpips_weight, gan_weight and gan_start_step must be >= 0")
        self.distance = distance
        self.lpips_weight = float(lpips_weight)
        self.gan_weight = float(gan_weight)
        self.gan_start_step = int(gan_start_step)
        self.gan_loss = gan_loss
        self.adaptive_gan_weight = adaptive_gan_weight
        self.lpips = build_lpips(lpips_net, lpips_random_backbone) if lpips_weight > 0 else None
        self.discriminator = (PatchGANDiscriminator(3, disc_channels, disc_layers)
                              if gan_weight > 0 else None)

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        """Tiny sizes for contract tests (GAN on, to exercise the adversary)."""
        return {"gan_weight": 0.1, "disc_channels": 8, "disc_layers": 1}

    def adversary(self) -> nn.Module | None:
        return self.discriminator

    def _reconstruction(self, inputs: LossInputs) -> torch.Tensor:
        return direct_reconstruction(inputs, "PixelReconstructionLoss")

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.gan_start_step

    def forward(self, inputs: LossInputs) -> LossOutput:
        recon = self._reconstruction(inputs)
        target = inputs.images
        if recon.shape != target.shape:
            raise ValueError(f"PixelReconstructionLoss: reconstruction {tuple(recon.shape)} and images "
                             f"{tuple(target.shape)} differ in shape")
        dist = F.l1_loss(recon, target) if self.distance == "l1" else F.mse_loss(recon, target)
        logs: dict[str, torch.Tensor] = {self.distance: dist.detach()}
        with torch.no_grad():
            mse = F.mse_loss(recon.clamp(-1, 1), target)
            logs["psnr"] = 10 * torch.log10(4.0 / mse.clamp_min(1e-10))  # peak-to-peak 2 in [-1, 1]
        rec = dist
        if self.lpips is not None:
            p = self.lpips(recon, target).mean()
            logs["lpips"] = p.detach()
            rec = rec + self.lpips_weight * p
        total = rec
        if self.gan_active(inputs.step) and torch.is_grad_enabled():
            assert self.discriminator is not None
            g = generator_loss(self.discriminator(recon), self.gan_loss)
            last = inputs.decoder.last_layer() if hasattr(inputs.decoder, "last_layer") else None
            if self.adaptive_gan_weight and last is not None and last.requires_grad:
                lam = adaptive_weight(rec, g, last)
            else:
                lam = torch.ones((), device=g.device)
            total = rec + self.gan_weight * lam * g
            logs["gan_g"] = g.detach()
            logs["gan_weight"] = lam
        return LossOutput(loss=total, logs=logs)

    def discriminator_loss(self, inputs: LossInputs) -> LossOutput | None:
        if not self.gan_active(inputs.step):
            return None
        assert self.discriminator is not None
        fake = self._reconstruction(inputs).detach()
        logits_real = self.discriminator(inputs.images)
        logits_fake = self.discriminator(fake)
        loss = discriminator_loss(logits_real, logits_fake, self.gan_loss)
        return LossOutput(loss=loss, logs={"logits_real": logits_real.detach().mean(),
                                           "logits_fake": logits_fake.detach().mean()})

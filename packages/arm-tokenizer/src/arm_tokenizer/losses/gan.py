"""PatchGAN discriminator and the adversarial-loss pieces of VQGAN-style tokenizer training.

- :class:`PatchGANDiscriminator`: the pix2pix "NLayer" discriminator (Isola et al.,
  "Image-to-Image Translation with Conditional Adversarial Networks",
  https://arxiv.org/abs/1611.07004): strided 4x4 convolutions ending in a map of
  per-patch real/fake logits.
- :func:`hinge_d_loss`, :func:`non_saturating_d_loss` and :func:`generator_loss`.
- :func:`adaptive_weight`: VQGAN's balance (Esser et al., "Taming Transformers for
  High-Resolution Image Synthesis", https://arxiv.org/abs/2012.09841, eq. 7):
  ``lambda = ||grad_L L_rec|| / (||grad_L L_gan|| + 1e-4)`` at the decoder's last layer L,
  so the adversarial gradient never swamps the reconstruction gradient.

The adversarial term is switched on after a warm-up (``start_step``): a discriminator
trained against a decoder that cannot yet reconstruct only adds noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PatchGANDiscriminator",
    "hinge_d_loss",
    "non_saturating_d_loss",
    "generator_loss",
    "adaptive_weight",
    "GAN_LOSSES",
]

GAN_LOSSES = ("hinge", "non_saturating")


class PatchGANDiscriminator(nn.Module):
    """``(B, 3, H, W)`` images in [-1, 1] -> ``(B, 1, H', W')`` patch logits.

    Args:
        in_channels: image channels.
        channels: width of the first layer (doubles per layer, capped at 8x).
        num_layers: number of stride-2 layers after the first (receptive field grows with it;
            pix2pix uses 3 for 70x70 patches).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        if channels < 1 or num_layers < 0:
            raise ValueError(f"PatchGANDiscriminator: channels >= 1 and num_layers >= 0 required, "
                             f"got {channels}, {num_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        ch = channels
        for i in range(1, num_layers + 1):
            nxt = channels * min(2 ** i, 8)
            stride = 2 if i < num_layers else 1
            # GroupNorm rather than pix2pix's BatchNorm: no cross-replica statistics under DDP,
            # and real/fake batches are normalized independently anyway.
            layers += [nn.Conv2d(ch, nxt, 4, stride=stride, padding=1, bias=False),
                       nn.GroupNorm(min(32, nxt // 2) if nxt >= 2 else 1, nxt),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss ``0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def non_saturating_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Standard GAN discriminator loss ``0.5 * (softplus(-D(x)) + softplus(D(G(z))))``."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def generator_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Generator side: ``-E[D(G(z))]`` (hinge) or ``E[softplus(-D(G(z)))]`` (non-saturating)."""
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    if kind == "hinge":
        return hinge_d_loss(logits_real, logits_fake)
    if kind == "non_saturating":
        return non_saturating_d_loss(logits_real, logits_fake)
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """VQGAN's ``||grad rec|| / (||grad gan|| + 1e-4)`` at ``last_layer``, detached and clamped.

    Both losses must still have their graphs (this call keeps them: ``retain_graph=True``).
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()

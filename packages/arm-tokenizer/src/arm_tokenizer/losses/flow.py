"""L_pix for generative decoders: the rectified-flow (flow-matching) loss.

ARM trains its Pixel DiT by rectified flow (Liu et al., "Flow Straight and Fast",
https://arxiv.org/abs/2209.03003; Lipman et al., "Flow Matching for Generative Modeling",
https://arxiv.org/abs/2210.02747): with data ``x1`` (pixels, or a VAE's latents for the
Latent DiT: ``decoder.flow_target(images)``), noise ``x0 ~ N(0, I)`` and ``t ~ U[0, 1]``,
the decoder conditioned on the tokens predicts ``v = x1 - x0`` at
``x_t = t * x1 + (1 - t) * x0``; the loss is ``E ||v_pred - (x1 - x0)||^2``. The gradient
flows through the conditioning into the projections and the quantizer, which is how L_pix
shapes the tokens.

``t_sampling="logit_normal"`` (Esser et al., SD3, https://arxiv.org/abs/2403.03206) is an
option of ours; ARM samples ``t`` uniformly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss

__all__ = ["FlowMatchingLoss", "sample_t"]


def sample_t(n: int, device: torch.device, kind: str = "uniform", generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` flow times in [0, 1]: ``uniform`` or ``logit_normal`` (sigmoid of N(0, 1))."""
    if kind == "uniform":
        return torch.rand(n, device=device, generator=generator)
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(n, device=device, generator=generator))
    raise ValueError(f"unknown t sampling {kind!r}; choose 'uniform' or 'logit_normal'")


class FlowMatchingLoss(TokenizerLoss):
    """Rectified-flow loss of a generative decoder (``decoder.generative`` must be True).

    Logs ``mse`` (the loss) and ``x1_std`` (the scale of the target field; a latent VAE
    should give about 1).
    """

    default_name = "pix"
    #: contract tests pair this loss with a generative (flow) decoder.
    needs_generative_decoder = True

    def __init__(
        self,
        weight: float = 1.0,
        t_sampling: Literal["uniform", "logit_normal"] = "uniform",
        name: str | None = None,
    ) -> None:
        """
        Args:
            weight: multiplier in the total loss (ARM: 5 for L_pix).
            t_sampling: distribution of the flow time ``t``: ``"uniform"`` (ARM) or
                ``"logit_normal"``.
            name: log key (default ``pix``).
        """
        super().__init__(weight=weight, name=name)
        if t_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"FlowMatchingLoss.t_sampling must be 'uniform' or 'logit_normal', got {t_sampling!r}")
        self.t_sampling = t_sampling

    def forward(self, inputs: LossInputs) -> LossOutput:
        decoder = inputs.decoder
        if not getattr(decoder, "generative", False):
            raise TypeError(
                f"FlowMatchingLoss needs a generative decoder (pixel_dit, latent_dit), got "
                f"{type(decoder).__name__}; use the `pixel_loss` for direct decoders"
            )
        with torch.no_grad():
            x1 = decoder.flow_target(inputs.images)
        x0 = torch.randn_like(x1)
        t = sample_t(x1.shape[0], x1.device, self.t_sampling).to(x1.dtype)
        tb = t.view(-1, *([1] * (x1.ndim - 1)))
        x_t = tb * x1 + (1 - tb) * x0
        v = decoder(x_t, t, inputs.features, inputs.grid)
        loss = F.mse_loss(v, x1 - x0)
        return LossOutput(loss=loss, logs={"mse": loss.detach(), "x1_std": x1.detach().std()})

"""Weight-only quantized decode through torchao (the optional ``arm-core[quant]`` extra).

Decoding one token reads every weight once, so at small batches its time is the bytes of the
weights over the memory bandwidth; storing the linear layers' weights in 8 bits (int8,
per-output-channel scales) or 4 bits (int4, one scale per ``group_size`` inputs) cuts those
bytes 2-4x against bf16 (Lumina-mGPT 2.0 decodes in 34 GB instead of 80 GB with int8).
The kernels are torchao's (``quantize_`` with ``Int8WeightOnlyConfig`` /
``Int4WeightOnlyConfig``), not ours.

What is quantized: every ``nn.Linear`` of the model: attention and MLP projections, the text
head and the separate visual head (the codes-only head that image spans decode through), so
an image step reads int8 weights end to end. Embeddings and norms stay as they are (a step
reads one embedding row). Checkpoints stay bf16/fp32: quantize at load
(``TextToImage.from_pretrained(..., quantize="int8")``, ``arm-lm generate --quantize int8``,
``Engine``'s caller), never save a quantized model.

- ``int8``: runs on CPU and CUDA with the pinned torch (torchao 0.18).
- ``int4``: CUDA only; torchao's grouped int4 path needs a CUDA build and its extra kernel
  package, which CPU runs lack, so CPU gets one clear error instead of an import failure
  from deep inside torchao. Weights are cast to bf16 first (the int4 kernels take bf16
  activations).

Quantized weights are inference-only: no gradients, and RL's policy must stay unquantized.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["QUANT_MODES", "QuantizationError", "quantize", "quantized_mode"]

#: Accepted ``quantize`` values (``None`` / ``"none"``: leave the model as it is).
QUANT_MODES = ("none", "int8", "int4")
_INSTALL = "pip install 'arm-core[quant]'"


class QuantizationError(ValueError):
    """A quantization request this environment cannot serve; the message says what to do."""


def _torchao():
    try:  # deferred: torchao is the optional arm-core[quant] extra
        import torchao.quantization as tq
    except ImportError as e:
        raise QuantizationError(f"weight-only quantization needs torchao, which is not "
                                f"installed ({e}); {_INSTALL}") from None
    return tq


def quantized_mode(model: nn.Module) -> str:
    """``"none"`` or the mode :func:`quantize` applied to ``model``."""
    return getattr(model, "_arm_quantized", "none")


def quantize(model: nn.Module, mode: str | None = "int8", *, group_size: int = 128) -> nn.Module:
    """Quantize ``model``'s linear weights in place for decoding and return it (in eval mode).

    Args:
        model: An ``arm_core.model.GPT`` (any ``nn.Module``), already on its device.
        mode: ``"int8"`` (CPU and CUDA), ``"int4"`` (CUDA only, grouped), or
            ``None`` / ``"none"`` (return the model unchanged).
        group_size: Inputs per int4 scale (torchao's default 128).
    """
    mode = "none" if mode is None else str(mode).lower()
    if mode not in QUANT_MODES:
        raise QuantizationError(f"quantize: unknown mode {mode!r}; choose one of {QUANT_MODES}")
    if mode == "none":
        return model
    done = quantized_mode(model)
    if done != "none":
        if done == mode:
            return model
        raise QuantizationError(f"quantize: the model is already quantized to {done}; load the "
                                f"bf16/fp32 checkpoint again to quantize it to {mode}")
    params = list(model.parameters())
    device = params[0].device if params else None
    if mode == "int4" and (device is None or device.type != "cuda"):
        raise QuantizationError(
            f"quantize: int4 weight-only quantization runs on CUDA only (torchao's grouped int4 "
            f"kernels need a CUDA GPU and their kernel package); this model is on "
            f"{device.type if device is not None else 'no device'}: use int8 on CPU")
    tq = _torchao()
    model.eval()
    if mode == "int8":
        tq.quantize_(model, tq.Int8WeightOnlyConfig())
    else:
        model.to(torch.bfloat16)
        try:
            tq.quantize_(model, tq.Int4WeightOnlyConfig(group_size=group_size))
        except ImportError as e:        # the kernel package torchao's int4 path imports
            raise QuantizationError(f"quantize: torchao's int4 path could not load its kernels "
                                    f"({e}); install the kernel package it names, or use int8"
                                    ) from None
    for p in model.parameters():
        p.requires_grad_(False)
    object.__setattr__(model, "_arm_quantized", mode)
    return model

"""The ARM visual tokenizer as a plain ``nn.Module``: images <-> discrete token ids.

ARM (see DESIGN.md, ``reference/tokenizer.png``) tokenizes an image with a frozen SigLIP2
vision encoder, a trainable projection, an FSQ quantizer and a trainable projection back
to the encoder width; a decoder (conv, Pixel DiT, Latent DiT) turns the de-quantized
features into pixels::

    images (B,3,H,W) in [-1,1]
      -> encoder            (B, N, C)   encoder_features (the L_feat target)
      -> proj_in            (B, N, D)   pre_quant
      -> quantizer          (B, N, D)   quant.quantized, quant.indices (B, N)
      -> proj_out           (B, N, C')  features (what the decoder and semantic losses see)
      -> decoder.decode     (B, 3, H, W)

No Lightning is needed to use it; the training module (``arm_tokenizer.lightning_module``) wraps it.
``encode``/``decode`` are split into input checking (Python, outside any graph) and a pure
tensor path, so ``torch.compile(tok.encode)`` traces the network only.

Checkpoints: ``save_pretrained(dir)`` writes ``model.safetensors`` + ``config.json`` (see
:mod:`arm_tokenizer.framework.checkpoint`); ``VisualTokenizer.from_pretrained(dir)`` rebuilds it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from arm_tokenizer.decoders.base import Decoder
from arm_tokenizer.encoders.base import Encoder
from arm_tokenizer.framework.checkpoint import load_pretrained, save_pretrained
from arm_tokenizer.framework.configurable import Configurable, instantiate
from arm_tokenizer.images import ImageTransform, pil_to_tensor, to_rgb
from arm_tokenizer.images import tensor_to_pil as one_to_pil
from arm_tokenizer.projections import Projection
from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput

__all__ = ["TokenizerForward", "VisualTokenizer", "images_to_tensor"]

# Float images may overshoot [-1, 1] slightly after resampling; more than this is an error.
_RANGE_TOLERANCE = 1e-2


@dataclass
class TokenizerForward:
    """Everything one tokenizer forward pass produces (what the losses consume).

    encoder_features: ``(B, N, C)`` encoder output (frozen in ARM: the L_feat target).
    pre_quant: ``(B, N, D)`` ``proj_in`` output, the quantizer input.
    quant: the quantizer's :class:`QuantizerOutput` (quantized ``(B, N, D)``, indices, aux loss, stats).
    features: ``(B, N, C')`` ``proj_out(quant.quantized)``: what the decoder and L_sig/L_cap see.
    grid: the token grid ``(h, w)``, ``N = h * w``.
    """

    encoder_features: torch.Tensor
    pre_quant: torch.Tensor
    quant: QuantizerOutput
    features: torch.Tensor
    grid: tuple[int, int]


class VisualTokenizer(Configurable, nn.Module):
    """Encoder -> projection -> quantizer -> projection -> decoder.

    Args:
        encoder: patch-token encoder (``arm.encoders``), e.g. a frozen timm SigLIP tower.
        quantizer: ``arm.quantizers`` component whose ``dim`` equals ``proj_in``'s output
            width (or the encoder width when ``proj_in`` is None).
        decoder: ``arm.decoders`` component taking ``proj_out``'s output width (or the code
            width when ``proj_out`` is None).
        proj_in: projection encoder width -> code width; None = identity (widths must match).
        proj_out: projection code width -> decoder width; None = identity.
        image_size: the input resolution, ``int`` (square) or ``(height, width)``. Tensors
            must have exactly this size; PIL images are resized (shorter side) and
            center-cropped to it.
    """

    def __init__(
        self,
        encoder: Encoder,
        quantizer: Quantizer,
        decoder: Decoder,
        proj_in: Projection | None = None,
        proj_out: Projection | None = None,
        image_size: int | tuple[int, int] = 64,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.proj_in = proj_in if proj_in is not None else nn.Identity()
        self.proj_out = proj_out if proj_out is not None else nn.Identity()
        self.image_size: tuple[int, int] = _pair(image_size, "image_size")
        h, w = self.image_size
        if h % encoder.patch_size or w % encoder.patch_size:
            raise ValueError(
                f"image_size {h}x{w} is not a multiple of the encoder's patch size {encoder.patch_size}"
            )
        self._grid: tuple[int, int] = tuple(encoder.grid_shape(h, w))  # type: ignore[assignment]
        self._check_widths()

    # ------------------------------------------------------------------ properties
    @property
    def grid(self) -> tuple[int, int]:
        """Token grid ``(h, w)`` at ``image_size``."""
        return self._grid

    @property
    def tokens_per_image(self) -> int:
        """``N = h * w`` token positions per image (times ``num_codebooks`` ids each)."""
        return self._grid[0] * self._grid[1]

    @property
    def codebook_size(self) -> int:
        """Number of distinct ids per token (per codebook for residual quantizers)."""
        return int(self.quantizer.codebook_size)

    @property
    def num_codebooks(self) -> int:
        """Ids per token position: 1, or Q for residual quantizers (indices ``(B, N, Q)``)."""
        return int(self.quantizer.num_codebooks)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ the network
    def forward(self, images: torch.Tensor) -> TokenizerForward:
        """Full pass for training: ``(B, 3, H, W)`` float images in [-1, 1]."""
        grid = tuple(self.encoder.grid_shape(images.shape[-2], images.shape[-1]))
        encoder_features = self.encoder(images)
        pre_quant = self.proj_in(encoder_features)
        quant = self.quantizer(pre_quant)
        features = self.proj_out(quant.quantized)
        return TokenizerForward(encoder_features, pre_quant, quant, features, grid)  # type: ignore[arg-type]

    @torch.no_grad()
    def encode(self, images: Any, check: bool = True) -> torch.Tensor:
        """Images -> token ids ``LongTensor (B, N)`` (``(B, N, Q)`` for residual quantizers).

        Accepts float tensors in [-1, 1], uint8 tensors in [0, 255] (``(B, 3, H, W)`` or
        ``(3, H, W)``), a PIL image or a list of PIL images. Tensors must be ``image_size``.
        Runs in eval mode (restoring the previous mode): no EMA codebook updates.
        ``check=False`` skips the value-range check (a host sync); it is skipped anyway while
        ``torch.compile`` traces.
        """
        x = images_to_tensor(images, self.image_size, device=self.device, check=check)
        with _eval_mode(self):
            return self.encode_tensor(x)

    def encode_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """The pure tensor path of :meth:`encode` (no checks; compile target)."""
        return self.quantizer(self.proj_in(self.encoder(images))).indices.long()

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, grid: tuple[int, int] | None = None,
               **decoder_kwargs: Any) -> torch.Tensor:
        """Token ids -> images ``(B, 3, H, W)`` in [-1, 1].

        Args:
            indices: ``(B, N)`` (or ``(B, N, Q)``) ids in ``[0, codebook_size)``; a 1-D
                ``(N,)`` tensor is taken as one image.
            grid: the token grid; defaults to :attr:`grid` (must satisfy ``h * w == N``).
            decoder_kwargs: passed to ``decoder.decode`` (e.g. ``steps=`` for DiT decoders).
        """
        indices = self.check_indices(indices)
        grid = self._resolve_grid(indices.shape[1], grid)
        with _eval_mode(self):
            return self.decode_indices(indices, grid, **decoder_kwargs)

    def decode_indices(self, indices: torch.Tensor, grid: tuple[int, int], **decoder_kwargs: Any) -> torch.Tensor:
        """The pure tensor path of :meth:`decode` (no checks; compile target)."""
        codes = self.quantizer.indices_to_codes(indices)
        features = self.proj_out(codes)
        return self.decoder.decode(features, grid, **decoder_kwargs).clamp(-1.0, 1.0)

    def decode_to_pil(self, indices: torch.Tensor, grid: tuple[int, int] | None = None,
                      **decoder_kwargs: Any) -> list[Image.Image]:
        """:meth:`decode` then convert each image to an RGB ``PIL.Image``."""
        return tensor_to_pil(self.decode(indices, grid, **decoder_kwargs))

    # ------------------------------------------------------------------ checks
    def check_indices(self, indices: Any) -> torch.Tensor:
        """Validate token ids (dtype, shape, range) and move them to the model's device."""
        if not isinstance(indices, torch.Tensor):
            raise TypeError(f"token indices must be a torch.Tensor, got {type(indices).__name__}")
        multi = self.num_codebooks > 1
        if indices.ndim == (2 if multi else 1):
            indices = indices.unsqueeze(0)
        expected = "(B, N, Q)" if multi else "(B, N)"
        if indices.ndim != (3 if multi else 2) or (multi and indices.shape[-1] != self.num_codebooks):
            raise ValueError(
                f"token indices must have shape {expected} with N = {self.tokens_per_image}"
                + (f", Q = {self.num_codebooks}" if multi else "") + f"; got {tuple(indices.shape)}"
            )
        self.quantizer.check_indices(indices)
        return indices.to(self.device, torch.long)

    def _resolve_grid(self, n: int, grid: Sequence[int] | None) -> tuple[int, int]:
        if grid is None:
            if n != self.tokens_per_image:
                raise ValueError(
                    f"got {n} tokens per image but this tokenizer's grid {self.grid} has "
                    f"{self.tokens_per_image}; pass grid=(h, w) for another resolution"
                )
            return self.grid
        g = _pair(tuple(grid), "grid")  # type: ignore[arg-type]
        if g[0] * g[1] != n:
            raise ValueError(f"grid {g} has {g[0] * g[1]} positions but the indices have {n} tokens")
        return g

    def _check_widths(self) -> None:
        enc_dim = self.encoder.out_dim
        code_in = _out_dim(self.proj_in, enc_dim)
        if code_in != self.quantizer.dim:
            raise ValueError(
                f"width mismatch: {'proj_in' if isinstance(self.proj_in, Projection) else 'encoder'} "
                f"outputs {code_in} features but the quantizer takes dim={self.quantizer.dim}"
            )
        if isinstance(self.proj_out, Projection) and self.proj_out.in_dim != self.quantizer.dim:
            raise ValueError(
                f"width mismatch: proj_out takes {self.proj_out.in_dim} but the quantizer outputs {self.quantizer.dim}"
            )
        if isinstance(self.proj_in, Projection) and self.proj_in.in_dim != enc_dim:
            raise ValueError(f"width mismatch: proj_in takes {self.proj_in.in_dim} but the encoder outputs {enc_dim}")
        dec_in = _out_dim(self.proj_out, self.quantizer.dim)
        if getattr(self.decoder, "in_dim", dec_in) != dec_in:
            raise ValueError(f"width mismatch: the decoder takes in_dim={self.decoder.in_dim} but gets {dec_in} features")
        out_size = tuple(self.decoder.output_size(self._grid))
        if out_size != self.image_size:
            raise ValueError(
                f"the decoder makes {out_size[0]}x{out_size[1]} images from the {self._grid} token grid, "
                f"but image_size is {self.image_size[0]}x{self.image_size[1]} (check its patch_size)"
            )

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` (atomic writes).

        Encoder weights loaded from a ``checkpoint_path`` (or the hub) are saved too, so the
        directory is self-contained: :meth:`from_pretrained` never needs the original file.
        """
        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu",
                        strict: bool = True) -> VisualTokenizer:
        """Rebuild a tokenizer saved by :meth:`save_pretrained` (no YAML needed)."""
        model = load_pretrained(directory, map_location=map_location, strict=strict)
        if not isinstance(model, cls):
            raise TypeError(f"{directory} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VisualTokenizer:
        """Build (randomly initialized) from ``{"class_path", "init_args"}`` as in config.json."""
        model = instantiate(config)
        if not isinstance(model, cls):
            raise TypeError(f"config builds a {type(model).__name__}, not a {cls.__name__}")
        return model


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    """Run in eval mode and restore the previous mode: ``encode``/``decode`` are inference, and
    a training-mode quantizer would update EMA codebooks or add noise (FSQ noise dropout)."""
    was_training = module.training
    if was_training:
        module.eval()
    try:
        yield
    finally:
        if was_training:
            module.train()


# ---------------------------------------------------------------------- image conversion
def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a (height, width) pair of ints, got {value!r}")
    if min(pair) <= 0:
        raise ValueError(f"{name} must be positive, got {pair}")
    return pair


def _out_dim(module: nn.Module, default: int) -> int:
    return int(module.out_dim) if isinstance(module, Projection) else default


def _is_pil(obj: Any) -> bool:
    return isinstance(obj, Image.Image)


def _pil_to_tensor(img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """Any-mode PIL image -> RGB (alpha composited, see :mod:`arm_tokenizer.images`), resized
    to cover ``size`` (aspect kept) and center-cropped -> float ``(3, H, W)`` in [-1, 1]."""
    return pil_to_tensor(ImageTransform(size, crop="center")(to_rgb(img)))


def images_to_tensor(images: Any, image_size: tuple[int, int], device: torch.device | str = "cpu",
                     check: bool = True) -> torch.Tensor:
    """Convert what :meth:`VisualTokenizer.encode` accepts to float ``(B, 3, H, W)`` in [-1, 1].

    Raises clear errors naming the expected shape for wrong types, dtypes, channel counts,
    sizes and value ranges.
    """
    h, w = image_size
    expected = f"(B, 3, {h}, {w})"
    if _is_pil(images):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("encode() got an empty list of images")
        if all(_is_pil(im) for im in images):
            return torch.stack([_pil_to_tensor(im, image_size) for im in images]).to(device)
        if all(isinstance(im, torch.Tensor) for im in images):
            images = torch.stack(list(images))
        else:
            kinds = sorted({type(im).__name__ for im in images})
            raise TypeError(f"encode() takes PIL images or tensors; got a list of {kinds}")
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"encode() takes a float tensor {expected} in [-1, 1], a uint8 tensor, a PIL image or a "
            f"list of PIL images; got {type(images).__name__}"
        )
    x = images
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        hint = " (channels-last? use x.permute(0, 3, 1, 2))" if x.ndim == 4 and x.shape[-1] == 3 else ""
        raise ValueError(f"images must have shape {expected} (RGB, channels first); got {tuple(images.shape)}{hint}")
    if tuple(x.shape[-2:]) != (h, w):
        raise ValueError(
            f"images must have shape {expected} for this tokenizer (image_size={h}x{w}); got "
            f"{tuple(images.shape)}. Resize first, or pass PIL images (resized automatically)"
        )
    if x.dtype == torch.uint8:
        x = x.to(device).float().div(127.5).sub(1.0)
    elif x.is_floating_point():
        x = x.to(device)
        if check and not torch.compiler.is_compiling():
            lo, hi = float(x.min()), float(x.max())
            if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
                hint = " (looks like [0, 255]: pass uint8 or divide by 127.5 and subtract 1)" if hi > 2 else ""
                raise ValueError(f"float images must be in [-1, 1]; got values in [{lo:.3g}, {hi:.3g}]{hint}")
    else:
        raise TypeError(f"images must be float in [-1, 1] or uint8 in [0, 255]; got dtype {x.dtype}")
    return x


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``(B, 3, H, W)`` (or ``(3, H, W)``) in [-1, 1] -> list of RGB PIL images."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    return [one_to_pil(im) for im in images]

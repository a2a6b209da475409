"""Contract checks: does a component honour its base class? (timm-style, for every component)

Each ``check_*`` function takes an *instance* and raises :class:`ContractError` (an
``AssertionError``, so pytest shows it as a test failure) naming the component and the
broken promise. What is checked, per kind:

- outputs: type, shape, dtype, value range, finiteness;
- gradients: every trainable parameter receives a gradient, and gradients reach the
  component's differentiable inputs (tokens must be trainable through a decoder, features
  through a quantizer's straight-through estimator);
- round trips: quantizer ``indices_to_codes(forward(x).indices) == forward(x).quantized``;
  ``state_dict`` save/load (through safetensors) reproduces the outputs;
- init-args capture: ``get_config()`` is JSON, :func:`instantiate` rebuilds the same class
  with the same config (the basis of ``save_pretrained``/``from_pretrained``);
- bad input gets an exception, not a silent wrong answer.

Convention: every registered component is constructible for tests with
``cls(**cls.example_args())`` (a classmethod returning tiny sizes) or, when it has none,
``cls()``. Losses may set ``needs_generative_decoder = True`` (flow-matching style) and
``needs_captions = True``; their feature width is their ``in_dim`` attribute if any.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from arm_tokenizer.decoders.base import Decoder
from arm_tokenizer.encoders.base import Encoder
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.framework.checkpoint import state_dict_from_bytes, state_dict_to_bytes
from arm_tokenizer.framework.configurable import Configurable, instantiate
from arm_tokenizer.losses.base import LossInputs, LossOutput, TokenizerLoss
from arm_tokenizer.projections import Projection
from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput
from arm_tokenizer.testing.toys import ToyDecoder, ToyFlowDecoder

__all__ = [
    "ContractError",
    "example_instance",
    "check_config_roundtrip",
    "check_state_dict_roundtrip",
    "check_encoder",
    "check_projection",
    "check_quantizer",
    "check_decoder",
    "check_tokenizer_loss",
    "check_component",
    "make_loss_inputs",
]


class ContractError(AssertionError):
    """A component breaks its base-class contract."""


def _fail(obj: Any, msg: str) -> None:
    raise ContractError(f"{type(obj).__name__}: {msg}")


def _expect(cond: bool, obj: Any, msg: str) -> None:
    if not cond:
        _fail(obj, msg)


def example_instance(cls: type) -> Any:
    """``cls(**cls.example_args())`` if the class defines it, else ``cls()``."""
    factory = getattr(cls, "example_args", None)
    kwargs = factory() if callable(factory) else {}
    if not isinstance(kwargs, dict):
        raise ContractError(f"{cls.__name__}.example_args() must return a dict, got {type(kwargs).__name__}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        if factory is None and "required" in str(e):
            raise ContractError(
                f"{cls.__name__} cannot be built with no arguments ({e}); give it a classmethod "
                "example_args() -> dict returning tiny constructor arguments for tests"
            ) from None
        raise


# ---------------------------------------------------------------------- generic checks
def check_config_roundtrip(obj: Configurable) -> Any:
    """``get_config()`` is JSON-serializable and rebuilds an equal-config object (returned)."""
    _expect(isinstance(obj, Configurable), obj, "does not inherit arm_tokenizer.framework.configurable.Configurable")
    cfg = obj.get_config()
    try:
        text = json.dumps(cfg)
    except TypeError as e:
        _fail(obj, f"get_config() is not JSON-serializable: {e}")
    clone = instantiate(json.loads(text))
    _expect(type(clone) is type(obj), obj, f"config rebuilt a {type(clone).__name__}")
    cfg2 = json.loads(json.dumps(clone.get_config()))
    _expect(cfg2 == json.loads(text), obj, f"config changed in a round trip:\n{text}\n!=\n{json.dumps(cfg2)}")
    return clone


def check_state_dict_roundtrip(obj: nn.Module, clone: nn.Module) -> None:
    """Save ``obj``'s state dict with safetensors and load it strictly into ``clone``."""
    data = state_dict_to_bytes(obj)
    missing, unexpected = clone.load_state_dict(state_dict_from_bytes(data, clone), strict=False)
    _expect(not missing and not unexpected, obj,
            f"state_dict round trip: missing {list(missing)}, unexpected {list(unexpected)}")


def _check_grads(module: nn.Module, skip: set[int] | None = None) -> None:
    skip = skip or set()
    missing = [n for n, p in module.named_parameters()
               if p.requires_grad and id(p) not in skip and p.grad is None]
    _expect(not missing, module, f"no gradient reached trainable parameters {missing[:10]}")
    bad = [n for n, p in module.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    _expect(not bad, module, f"non-finite gradients in {bad[:10]}")


def _same(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4)


def _zero_grads(module: nn.Module) -> None:
    for p in module.parameters():
        p.grad = None


# ---------------------------------------------------------------------- encoders
def check_encoder(obj: nn.Module, image_size: int | tuple[int, int] | None = None, batch: int = 2) -> None:
    """Encoder contract: ``(B, 3, H, W)`` in [-1, 1] -> ``(B, h*w, out_dim)``; frozen means frozen."""
    _expect(isinstance(obj, Encoder), obj, "is not an arm_tokenizer Encoder")
    _expect(isinstance(obj.out_dim, int) and obj.out_dim > 0, obj, f"out_dim must be a positive int, got {obj.out_dim!r}")
    _expect(isinstance(obj.patch_size, int) and obj.patch_size > 0, obj, f"bad patch_size {obj.patch_size!r}")
    size = image_size or getattr(obj, "default_image_size", None) or 4 * obj.patch_size
    h, w = (size, size) if isinstance(size, int) else size
    gh, gw = obj.grid_shape(h, w)
    torch.manual_seed(0)
    images = torch.rand(batch, 3, h, w) * 2 - 1
    obj.train()
    if obj.frozen:
        _expect(not obj.training, obj, "a frozen encoder must stay in eval mode after .train()")
        trainable = [n for n, p in obj.named_parameters() if p.requires_grad]
        _expect(not trainable, obj, f"frozen but parameters require grad: {trainable[:5]}")
    _zero_grads(obj)
    out = obj(images)
    _expect(isinstance(out, torch.Tensor), obj, f"forward must return a tensor, got {type(out).__name__}")
    _expect(tuple(out.shape) == (batch, gh * gw, obj.out_dim), obj,
            f"forward({tuple(images.shape)}) returned {tuple(out.shape)}, expected {(batch, gh * gw, obj.out_dim)}")
    _expect(bool(torch.isfinite(out).all()), obj, "non-finite features")
    if any(p.requires_grad for p in obj.parameters()):
        out.float().square().mean().backward()
        _check_grads(obj)
        _zero_grads(obj)
    for bad in (images[:, :1], images.mul(127.5).add(127.5).to(torch.uint8)):
        try:
            obj(bad)
        except (TypeError, ValueError):
            continue
        _fail(obj, f"accepted bad input of shape {tuple(bad.shape)} dtype {bad.dtype} without a clear error")
    clone = check_config_roundtrip(obj)
    check_state_dict_roundtrip(obj, clone)
    obj.eval(), clone.eval()
    with torch.no_grad():
        _expect(_same(obj(images), clone(images)), obj, "rebuilt encoder gives different features")


# ---------------------------------------------------------------------- projections
def check_projection(obj: nn.Module, batch: int = 2, tokens: int = 5) -> None:
    """Projection contract: ``(B, N, in_dim) -> (B, N, out_dim)``, differentiable."""
    _expect(isinstance(obj, Projection), obj, "is not an arm_tokenizer Projection")
    torch.manual_seed(0)
    x = torch.randn(batch, tokens, obj.in_dim, requires_grad=True)
    obj.train()
    _zero_grads(obj)
    out = obj(x)
    _expect(tuple(out.shape) == (batch, tokens, obj.out_dim), obj,
            f"returned {tuple(out.shape)}, expected {(batch, tokens, obj.out_dim)}")
    out.square().mean().backward()
    _check_grads(obj)
    _expect(x.grad is not None and bool(x.grad.abs().sum() > 0), obj, "no gradient reached the input")
    _zero_grads(obj)
    clone = check_config_roundtrip(obj)
    check_state_dict_roundtrip(obj, clone)
    obj.eval(), clone.eval()
    with torch.no_grad():
        _expect(_same(obj(x), clone(x)), obj, "rebuilt projection gives different outputs")


# ---------------------------------------------------------------------- quantizers
def check_quantizer(obj: nn.Module, batch: int = 2, tokens: int = 6) -> None:
    """Quantizer contract: :class:`QuantizerOutput`, straight-through gradients, index round trip."""
    _expect(isinstance(obj, Quantizer), obj, "is not an arm_tokenizer Quantizer")
    for attr in ("dim", "codebook_size", "num_codebooks"):
        v = getattr(obj, attr, None)
        _expect(isinstance(v, int) and v > 0, obj, f"{attr} must be a positive int, got {v!r}")
    q = obj.num_codebooks
    idx_shape = (batch, tokens) if q == 1 else (batch, tokens, q)
    torch.manual_seed(0)
    x = torch.randn(batch, tokens, obj.dim, requires_grad=True)
    obj.train()
    _zero_grads(obj)
    out = obj(x)
    _expect(isinstance(out, QuantizerOutput), obj, f"forward must return QuantizerOutput, got {type(out).__name__}")
    _expect(tuple(out.quantized.shape) == tuple(x.shape), obj,
            f"quantized has shape {tuple(out.quantized.shape)}, expected {tuple(x.shape)}")
    _expect(out.indices.dtype == torch.long, obj, f"indices must be int64, got {out.indices.dtype}")
    _expect(tuple(out.indices.shape) == idx_shape, obj, f"indices shape {tuple(out.indices.shape)}, expected {idx_shape}")
    _expect(int(out.indices.min()) >= 0 and int(out.indices.max()) < obj.codebook_size, obj,
            f"indices outside [0, {obj.codebook_size})")
    _expect(isinstance(out.aux_loss, torch.Tensor) and out.aux_loss.ndim == 0, obj,
            f"aux_loss must be a scalar tensor, got {getattr(out.aux_loss, 'shape', out.aux_loss)!r}")
    _expect("perplexity" in out.stats, obj, f"stats must include 'perplexity', got {sorted(out.stats)}")
    for k, v in out.stats.items():
        _expect(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad, obj,
                f"stats[{k!r}] must be a detached scalar tensor")
    _expect(out.quantized.requires_grad, obj,
            "quantized does not depend on the input (straight-through estimator missing)")
    (out.quantized.square().sum() + out.aux_loss).backward()
    _expect(x.grad is not None and bool(x.grad.abs().sum() > 0), obj,
            "no gradient reached the input (straight-through estimator missing)")
    _check_grads(obj)
    _zero_grads(obj)
    obj.eval()
    with torch.no_grad():
        out = obj(x)
        codes = obj.indices_to_codes(out.indices)
    _expect(_same(codes, out.quantized, atol=1e-4), obj,
            f"indices_to_codes(indices) != quantized (max diff {(codes - out.quantized).abs().max():.3g})")
    try:
        obj.check_indices(torch.full(idx_shape, obj.codebook_size, dtype=torch.long))
    except ValueError:
        pass
    else:
        _fail(obj, "check_indices accepted an out-of-range index")
    clone = check_config_roundtrip(obj)
    check_state_dict_roundtrip(obj, clone)
    clone.eval()
    with torch.no_grad():
        out2 = clone(x)
    _expect(torch.equal(out2.indices, out.indices), obj, "rebuilt quantizer gives different indices")


# ---------------------------------------------------------------------- decoders
def check_decoder(obj: nn.Module, grid: tuple[int, int] = (2, 3), batch: int = 2) -> None:
    """Decoder contract: tokens -> images in [-1, 1]; gradients reach every parameter and the tokens."""
    _expect(isinstance(obj, Decoder), obj, "is not an arm_tokenizer Decoder")
    n = grid[0] * grid[1]
    h, w = obj.output_size(grid)
    torch.manual_seed(0)
    features = torch.randn(batch, n, obj.in_dim, requires_grad=True)
    obj.train()
    _zero_grads(obj)
    if obj.generative:
        x1 = obj.flow_target(torch.rand(batch, 3, h, w) * 2 - 1).detach()
        t = torch.rand(batch)
        x_t = t.view(-1, *[1] * (x1.ndim - 1)) * x1 + (1 - t.view(-1, *[1] * (x1.ndim - 1))) * torch.randn_like(x1)
        pred = obj(x_t, t, features, grid)
        _expect(tuple(pred.shape) == tuple(x1.shape), obj,
                f"velocity has shape {tuple(pred.shape)}, expected {tuple(x1.shape)} (the flow target's)")
    else:
        pred = obj(features, grid)
        _expect(tuple(pred.shape) == (batch, 3, h, w), obj,
                f"forward returned {tuple(pred.shape)}, expected {(batch, 3, h, w)}")
    pred.float().square().mean().backward()
    _check_grads(obj)
    _expect(features.grad is not None and bool(features.grad.abs().sum() > 0), obj,
            "no gradient reached the token features")
    _zero_grads(obj)
    obj.eval()
    kwargs = {"steps": 2} if obj.generative else {}
    with torch.no_grad():
        torch.manual_seed(1)
        img = obj.decode(features.detach(), grid, **kwargs)
    _expect(tuple(img.shape) == (batch, 3, h, w), obj, f"decode returned {tuple(img.shape)}, expected {(batch, 3, h, w)}")
    _expect(bool(torch.isfinite(img).all()) and float(img.min()) >= -1 - 1e-5 and float(img.max()) <= 1 + 1e-5,
            obj, "decode must return finite images in [-1, 1]")
    try:
        with torch.no_grad():
            obj.decode(torch.randn(batch, n + 1, obj.in_dim), grid, **kwargs)
    except (TypeError, ValueError, RuntimeError):
        pass
    else:
        _fail(obj, f"decode accepted {n + 1} tokens for grid {grid} without an error")
    clone = check_config_roundtrip(obj)
    check_state_dict_roundtrip(obj, clone)
    clone.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        img2 = clone.decode(features.detach(), grid, **kwargs)
    _expect(_same(img, img2, atol=1e-4), obj, "rebuilt decoder decodes differently")


# ---------------------------------------------------------------------- losses
def make_loss_inputs(width: int = 8, generative: bool = False, captions: bool = True, batch: int = 2,
                     grid: tuple[int, int] = (2, 2), patch_size: int = 4) -> Any:
    """A small :class:`LossInputs` with trainable leaves, a toy decoder and a frozen toy encoder
    (whose features of the images are ``encoder_features``)."""
    torch.manual_seed(0)
    n = grid[0] * grid[1]
    decoder = (ToyFlowDecoder if generative else ToyDecoder)(in_dim=width, patch_size=patch_size)
    encoder = CNNEncoder(patch_size=patch_size, width=4, max_width=8, num_res_blocks=0, out_dim=width,
                         frozen=True)
    pre_quant = torch.randn(batch, n, width, requires_grad=True)
    quantized = pre_quant.tanh()
    features = quantized * 1.5
    images = torch.rand(batch, 3, grid[0] * patch_size, grid[1] * patch_size) * 2 - 1
    texts = ["a red circle", "a blue square", "two green triangles", "a yellow star"]
    return LossInputs(
        images=images, grid=grid, encoder_features=encoder(images), encoder=encoder, pre_quant=pre_quant,
        quantized=quantized, features=features, indices=torch.randint(0, 16, (batch, n)), decoder=decoder,
        captions=[texts[i % len(texts)] for i in range(batch)] if captions else None,
        reconstruction=None if generative else decoder(features, grid), step=0,
    )


def check_tokenizer_loss(obj: nn.Module, inputs: Any = None) -> None:
    """Loss contract: scalar finite loss; gradients reach the loss's own trainable parameters and
    the tokenizer's tensors; the adversary (if any) trains through ``discriminator_loss``."""
    _expect(isinstance(obj, TokenizerLoss), obj, "is not an arm_tokenizer TokenizerLoss")
    _expect(isinstance(obj.name, str) and obj.name, obj, "needs a non-empty name (the log key)")
    if inputs is None:
        inputs = make_loss_inputs(width=int(getattr(obj, "in_dim", 8)),
                                  generative=bool(getattr(obj, "needs_generative_decoder", False)))
    obj.train()
    _zero_grads(obj)
    out = obj(inputs)
    _expect(isinstance(out, LossOutput), obj, f"forward must return LossOutput, got {type(out).__name__}")
    _expect(isinstance(out.loss, torch.Tensor) and out.loss.ndim == 0 and bool(torch.isfinite(out.loss)), obj,
            f"loss must be a finite scalar tensor, got {out.loss!r}")
    for k, v in out.logs.items():
        _expect(isinstance(v, torch.Tensor) and not v.requires_grad, obj, f"logs[{k!r}] must be a detached tensor")
    _expect(out.loss.requires_grad, obj, "loss does not depend on any trainable tensor")
    out.loss.backward()
    adversary = obj.adversary()
    skip = {id(p) for p in adversary.parameters()} if adversary is not None else set()
    _check_grads(obj, skip)
    leaves = [t for t in (inputs.pre_quant,) if t.grad is not None and bool(t.grad.abs().sum() > 0)]
    decoder_grads = any(p.grad is not None for p in inputs.decoder.parameters())
    _expect(bool(leaves) or decoder_grads, obj, "no gradient reached the tokenizer (features/quantized/decoder)")
    _zero_grads(obj)
    if adversary is not None:
        d = obj.discriminator_loss(inputs)
        if d is not None:
            d.loss.backward()
            missing = [n for n, p in adversary.named_parameters() if p.requires_grad and p.grad is None]
            _expect(not missing, obj, f"discriminator_loss gives no gradient to {missing[:5]}")
            _zero_grads(obj)
    clone = check_config_roundtrip(obj)
    check_state_dict_roundtrip(obj, clone)
    obj.eval(), clone.eval()
    with torch.no_grad():
        torch.manual_seed(2)
        a = obj(inputs).loss
        torch.manual_seed(2)
        b = clone(inputs).loss
    _expect(_same(a, b, atol=1e-4), obj, f"rebuilt loss gives {float(b):.6g} instead of {float(a):.6g}")


_CHECKS = {
    "encoder": check_encoder,
    "projection": check_projection,
    "quantizer": check_quantizer,
    "decoder": check_decoder,
    "tokenizer_loss": check_tokenizer_loss,
}


def check_component(kind: str, obj: Any) -> None:
    """Dispatch to the check of ``kind`` (encoder, projection, quantizer, decoder, tokenizer_loss)."""
    if kind not in _CHECKS:
        raise ValueError(f"no contract check for kind {kind!r}; choices: {sorted(_CHECKS)}")
    _CHECKS[kind](obj)

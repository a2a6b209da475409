"""VisualTokenizer: the user's API (encode/decode of tensors and PIL images, errors, compile)."""

from __future__ import annotations

import pytest
import torch
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.projections import LinearProjection, MLPProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.quantizers.residual_fsq import ResidualFSQQuantizer
from arm_tokenizer.testing.toys import ToyDecoder
from arm_tokenizer.tokenizer import TokenizerForward, VisualTokenizer
from PIL import Image


def make_tokenizer(quantizer=None, image_size=16) -> VisualTokenizer:
    torch.manual_seed(0)
    quantizer = quantizer or FSQQuantizer(levels=[4, 4, 3])
    return VisualTokenizer(
        encoder=CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=12),
        quantizer=quantizer,
        decoder=ToyDecoder(in_dim=10, patch_size=4),
        proj_in=MLPProjection(in_dim=12, out_dim=quantizer.dim),
        proj_out=LinearProjection(in_dim=quantizer.dim, out_dim=10),
        image_size=image_size,
    ).eval()


@pytest.fixture(scope="module")
def tok() -> VisualTokenizer:
    return make_tokenizer()


def test_properties(tok):
    assert tok.grid == (4, 4) and tok.tokens_per_image == 16
    assert tok.codebook_size == 48 and tok.num_codebooks == 1


def test_forward_returns_all_stages(tok):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = tok(x)
    assert isinstance(out, TokenizerForward)
    assert out.encoder_features.shape == (2, 16, 12)
    assert out.pre_quant.shape == (2, 16, 3) and out.quant.quantized.shape == (2, 16, 3)
    assert out.features.shape == (2, 16, 10) and out.grid == (4, 4)


def test_encode_accepts_float_uint8_pil_and_lists(tok):
    u8 = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    f = u8.float() / 127.5 - 1
    ids = tok.encode(f)
    assert ids.dtype == torch.long and ids.shape == (2, 16)
    torch.testing.assert_close(tok.encode(u8), ids)
    torch.testing.assert_close(tok.encode(f[0]), ids[:1])  # (3, H, W) is one image
    pils = [Image.fromarray(im.permute(1, 2, 0).numpy(), "RGB") for im in u8]
    torch.testing.assert_close(tok.encode(pils), ids)
    torch.testing.assert_close(tok.encode(pils[1]), ids[1:])
    # A larger PIL image (any mode) is resized + center-cropped to image_size.
    big = Image.new("L", (40, 32), color=128)
    assert tok.encode(big).shape == (1, 16)


def test_encode_errors_name_the_expected_shape(tok):
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        tok.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"channels-last"):
        tok.encode(torch.zeros(1, 16, 16, 3))
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        tok.encode(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"\[-1, 1\].*\[0, 255\]"):
        tok.encode(torch.full((1, 3, 16, 16), 200.0))
    with pytest.raises(TypeError, match="dtype torch.int32"):
        tok.encode(torch.zeros(1, 3, 16, 16, dtype=torch.int32))
    with pytest.raises(TypeError, match="got str"):
        tok.encode("image.png")
    with pytest.raises(ValueError, match="empty"):
        tok.encode([])


def test_decode_and_errors(tok):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ids = tok.encode(x)
    img = tok.decode(ids)
    assert img.shape == (2, 3, 16, 16) and img.min() >= -1 and img.max() <= 1
    torch.testing.assert_close(tok.decode(ids[0]), img[:1])
    # Another grid (an 8x8-token image) decodes with grid=.
    assert tok.decode(torch.zeros(1, 32, dtype=torch.long), grid=(4, 8)).shape == (1, 3, 16, 32)
    with pytest.raises(ValueError, match=r"\[0, 48\)"):
        tok.decode(torch.full((1, 16), 48))
    with pytest.raises(ValueError, match="grid"):
        tok.decode(torch.zeros(1, 15, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        tok.decode(torch.zeros(1, 2, 16, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        tok.decode(torch.zeros(1, 16))
    pil = tok.decode_to_pil(ids)
    assert len(pil) == 2 and pil[0].size == (16, 16) and pil[0].mode == "RGB"


def test_residual_quantizer_indices(tok):
    rt = make_tokenizer(ResidualFSQQuantizer(levels=[4, 4], num_quantizers=2, dim=2))
    ids = rt.encode(torch.rand(1, 3, 16, 16) * 2 - 1)
    assert ids.shape == (1, 16, 2) and rt.num_codebooks == 2
    assert rt.decode(ids).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, N, Q\)"):
        rt.decode(torch.zeros(1, 16, 3, dtype=torch.long))


def test_width_and_size_mismatch_errors():
    enc = CNNEncoder(patch_size=4, width=8, out_dim=12)
    with pytest.raises(ValueError, match="quantizer takes dim=3"):
        VisualTokenizer(enc, FSQQuantizer(levels=[4, 4, 3]), ToyDecoder(in_dim=3, patch_size=4), image_size=16)
    with pytest.raises(ValueError, match="decoder takes in_dim=5"):
        VisualTokenizer(enc, FSQQuantizer(levels=[4, 4, 3]), ToyDecoder(in_dim=5, patch_size=4),
                        proj_in=LinearProjection(12, 3), image_size=16)
    with pytest.raises(ValueError, match="multiple of the encoder's patch size"):
        VisualTokenizer(enc, FSQQuantizer(levels=[4, 4, 3]), ToyDecoder(in_dim=3, patch_size=4),
                        proj_in=LinearProjection(12, 3), image_size=18)
    with pytest.raises(TypeError, match="image_size"):
        VisualTokenizer(enc, FSQQuantizer(levels=[4, 4, 3]), ToyDecoder(in_dim=3, patch_size=4),
                        proj_in=LinearProjection(12, 3), image_size="16")


def test_gradients_reach_trainable_parts():
    tok = make_tokenizer().train()
    out = tok(torch.rand(2, 3, 16, 16) * 2 - 1)
    tok.decoder(out.features, out.grid).square().mean().backward()
    for name in ("encoder", "proj_in", "proj_out", "decoder"):
        params = list(getattr(tok, name).parameters())
        assert all(p.grad is not None for p in params), name


def test_torch_compile_encode_and_decode_cpu(tok):
    """encode/decode trace as single graphs (fullgraph=True: zero graph breaks). The "eager"
    backend runs dynamo's full tracing without a C++ build, which keeps this cheap on CPU."""
    torch._dynamo.reset()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    eager = tok.encode(x)
    enc = torch.compile(tok.encode_tensor, backend="eager", fullgraph=True)
    torch.testing.assert_close(enc(x), eager)
    dec = torch.compile(tok.decode_indices, backend="eager", fullgraph=True)
    torch.testing.assert_close(dec(eager, tok.grid), tok.decode(eager))


def test_encode_in_training_mode_does_not_touch_ema_codebook():
    from arm_tokenizer.quantizers.vq import VQQuantizer

    tok = make_tokenizer(VQQuantizer(dim=3, codebook_size=8, threshold_ema_dead_code=0)).train()
    before = tok.quantizer.codebook.clone()
    tok.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert tok.training and torch.equal(tok.quantizer.codebook, before)

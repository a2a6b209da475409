"""Projections between encoder width and code width: linear, MLP, ARM's transformer stack."""

from __future__ import annotations

import pytest
import torch
from arm_tokenizer.framework import registry
from arm_tokenizer.projections import (
    LinearProjection,
    MLPProjection,
    Projection,
    TransformerProjection,
)


@pytest.mark.parametrize("cls", [LinearProjection, MLPProjection, TransformerProjection], ids=lambda c: c.__name__)
def test_widths_are_independent(cls):
    p = cls(in_dim=24, out_dim=5)
    assert isinstance(p, Projection)
    assert p(torch.randn(2, 7, 24)).shape == (2, 7, 5)


def test_transformer_mixes_tokens_and_mlp_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8)
    y = x.clone()
    y[0, 3] += 1.0  # change only the last token
    t = TransformerProjection(in_dim=8, out_dim=4, width=16, depth=2, heads=2).eval()
    m = MLPProjection(in_dim=8, out_dim=4).eval()
    with torch.no_grad():
        assert not torch.allclose(t(x)[0, 0], t(y)[0, 0])  # attention: token 0 sees token 3
        torch.testing.assert_close(m(x)[0, :3], m(y)[0, :3])  # per-token map


def test_transformer_depth_and_position_embeddings():
    p = TransformerProjection(in_dim=8, out_dim=4, width=16, depth=6, heads=4, max_tokens=4)
    assert len(p.blocks) == 6  # ARM's reported depth
    with pytest.raises(ValueError, match="max_tokens=4"):
        p(torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="divisible"):
        TransformerProjection(width=10, heads=4)
    with pytest.raises(ValueError, match="depth"):
        MLPProjection(depth=0)


def test_registered_names():
    assert registry.get("projection", "transformer") is TransformerProjection
    assert registry.get("projection", "mlp") is MLPProjection
    assert registry.get("projection", "linear") is LinearProjection

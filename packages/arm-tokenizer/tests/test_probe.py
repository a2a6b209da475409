"""Linear probe and zero-shot retrieval: they measure what they claim, on known answers."""

from __future__ import annotations

import pytest
import torch
from arm_tokenizer.probe import (
    fit_linear_probe,
    labels_to_ids,
    linear_probe_accuracy,
    pooled_token_embeddings,
    retrieval_at_1,
    ridge_retrieval_at_1,
)


def _clusters(n: int, k: int, dim: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(k, (n,), generator=g)
    return centers[y] + noise * torch.randn(n, dim, generator=g), y


def test_probe_separates_linear_classes_and_not_random_labels():
    xtr, ytr = _clusters(300, 4, 16, 1.0, 0)
    xte, yte = _clusters(200, 4, 16, 1.0, 1)
    names = ["red", "green", "blue", "gray"]
    acc = linear_probe_accuracy(xtr, [names[i] for i in ytr], xte, [names[i] for i in yte])
    assert acc > 0.95
    # labels unrelated to the features: held-out accuracy stays near chance (0.25)
    g = torch.Generator().manual_seed(5)
    rnd_tr = [names[i] for i in torch.randint(4, (300,), generator=g)]
    rnd_te = [names[i] for i in torch.randint(4, (200,), generator=g)]
    assert linear_probe_accuracy(xtr, rnd_tr, xte, rnd_te) < 0.45


def test_probe_is_deterministic_and_checks_shapes():
    x, y = _clusters(50, 3, 8, 2.0, 3)
    a = fit_linear_probe(x, y, 3)(x)
    b = fit_linear_probe(x, y, 3)(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"x \(N, C\) and y \(N,\)"):
        fit_linear_probe(x, y[:10])
    ids, classes = labels_to_ids(["b", "a", "b"])
    assert classes == ["a", "b"] and ids.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="not among the classes"):
        labels_to_ids(["c"], ["a", "b"])


def test_retrieval_counts_identical_captions_as_hits():
    emb = torch.eye(4)
    texts = ["a red circle", "a blue square", "a red circle", "a green circle"]
    assert retrieval_at_1(emb, emb, texts) == 1.0
    # image 0 retrieves caption 2: a different index but the same text -> still a hit
    img = torch.stack([emb[2], emb[1], emb[2], emb[0]])
    assert retrieval_at_1(img, emb, texts) == 0.75
    assert retrieval_at_1(-emb + 0.1 * torch.ones(4, 4), emb, ["a", "b", "c", "d"]) == 0.0
    with pytest.raises(ValueError, match="must agree"):
        retrieval_at_1(emb, emb[:3], texts)


def test_ridge_retrieval_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    texts = [f"caption {i % 6}" for i in range(120)]
    text_table = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    t = text_table[[i % 6 for i in range(120)]]
    mix = torch.randn(8, 12, generator=g)
    x = t @ mix + 0.01 * torch.randn(120, 12, generator=g)
    assert ridge_retrieval_at_1(x[:80], t[:80], x[80:], t[80:], texts[80:]) == 1.0
    noise = torch.randn(120, 12, generator=g)
    assert ridge_retrieval_at_1(noise[:80], t[:80], noise[80:], t[80:], texts[80:]) < 0.6


def test_pooled_token_embeddings_from_a_real_tokenizer():
    from arm_tokenizer.decoders.conv import ConvDecoder
    from arm_tokenizer.encoders.cnn import CNNEncoder
    from arm_tokenizer.projections import LinearProjection
    from arm_tokenizer.quantizers.fsq import FSQQuantizer
    from arm_tokenizer.tokenizer import VisualTokenizer

    torch.manual_seed(0)
    tok = VisualTokenizer(CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=16), FSQQuantizer(levels=[5, 5, 4]),
                          ConvDecoder(in_dim=16, patch_size=8, channels=16, min_channels=8),
                          proj_in=LinearProjection(16, 3), proj_out=LinearProjection(3, 16), image_size=32)
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    tok.train()
    feats = pooled_token_embeddings(tok, images, batch_size=2)
    assert tok.training  # mode restored
    assert feats.shape == (5, 16)
    with torch.no_grad():
        idx = tok.encode(images)
        from_indices = tok.proj_out(tok.quantizer.indices_to_codes(idx)).mean(1)
    # the probed embedding is a function of the discrete indices alone
    torch.testing.assert_close(feats, from_indices, rtol=1e-5, atol=1e-5)
    codes = pooled_token_embeddings(tok, images, source="codes")
    assert codes.shape == (5, 3)
    with pytest.raises(ValueError, match="source"):
        pooled_token_embeddings(tok, images, source="pixels")  # type: ignore[arg-type]


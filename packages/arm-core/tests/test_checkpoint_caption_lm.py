"""ArmCaptionLM: an exported LM as arm-tokenizer's frozen L_cap teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from arm_core.caption_lm import ArmCaptionLM
from arm_core.testing import save_tiny_export
from arm_data.formats import ImageTokens, und_sequence
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.framework import registry
from arm_tokenizer.teachers.base import CaptionLM


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("caplm")
    torch.manual_seed(0)
    layout = save_tiny_export(d, ["a red circle", "two blue squares", "describe the image."] * 4)
    return d / "lm", TextTokenizer.load(d / "tt"), layout


def test_registered_and_frozen(lm_dir) -> None:
    assert registry.get("caption_lm", "arm_lm") is ArmCaptionLM
    cap = ArmCaptionLM(str(lm_dir[0]))
    assert isinstance(cap, CaptionLM) and cap.hidden_size == 32
    cap.train()
    assert not cap.training and not any(p.requires_grad for p in cap.parameters())


def test_nll_equals_understanding_sequence(lm_dir) -> None:
    """A prefix of image-code embeddings scores exactly like the tokenized und sequence."""
    path, text, layout = lm_dir
    cap = ArmCaptionLM(str(path))
    codes = [[1, 5, 7, 2], [3, 3, 0, 15]]
    captions = ["a red circle", "two blue squares"]
    img_ids = torch.tensor([layout.image_code_to_id(c) for c in codes])
    prefix = cap.model.embed_tokens(img_ids).detach().requires_grad_(True)
    loss = cap.caption_loss(prefix, captions)
    # reference: the same sequences through the normal token path
    nll, n = 0.0, 0
    for c, t in zip(codes, captions, strict=True):
        seq = und_sequence(layout, ImageTokens(c, 2, 2), text.encode("describe the image."),
                           text.encode(t))
        ids, mask = seq.as_tensors()
        with torch.no_grad():
            logits = cap.model(ids[None])[0]
        tgt = ids[1:][mask[1:]]
        nll += F.cross_entropy(logits[:-1][mask[1:]], tgt, reduction="sum").item()
        n += len(tgt)
    assert loss.item() == pytest.approx(nll / n, rel=1e-5)
    loss.backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    assert all(p.grad is None for p in cap.parameters())


def test_bad_prefix(lm_dir) -> None:
    cap = ArmCaptionLM(str(lm_dir[0]), grid=(2, 2))
    with pytest.raises(ValueError, match=r"prefix \(B, N, 32\)"):
        cap.caption_loss(torch.zeros(1, 4, 8), ["a"])
    with pytest.raises(ValueError, match="does not fill grid 2x2"):
        cap.caption_loss(torch.zeros(1, 6, 32), ["a"])
    with pytest.raises(ValueError, match="2 captions"):
        cap.caption_loss(torch.zeros(1, 4, 32), ["a", "b"])
    with pytest.raises(ValueError, match="not found"):
        ArmCaptionLM("/nonexistent/lm")


def test_drives_arm_tokenizer_caption_loss(lm_dir) -> None:
    """arm-tokenizer's L_cap with arm-core's LM as the frozen captioner (built by registry name)."""
    from arm_tokenizer.losses.caption import CaptionLoss

    cap_lm = registry.create("caption_lm", "arm_lm", lm_dir=str(lm_dir[0]))
    loss = CaptionLoss(caption_lm=cap_lm, in_dim=8)
    feats = torch.randn(2, 4, 8, requires_grad=True)
    value = cap_lm.caption_loss(loss.prefix(feats), ["a red circle", "two blue squares"])
    value.backward()
    assert torch.isfinite(value) and feats.grad.abs().sum() > 0
    assert all(p.grad is not None for p in loss.adapter.parameters())
    assert all(p.grad is None for p in cap_lm.parameters())

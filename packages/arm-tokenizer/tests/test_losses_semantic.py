"""L_sig, L_cap, L_feat: formulas, gradients (to the learnable parts, never the teachers), errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from arm_tokenizer.framework import registry
from arm_tokenizer.losses.base import LossInputs
from arm_tokenizer.losses.caption import CaptionLoss
from arm_tokenizer.losses.feature import FeatureLoss
from arm_tokenizer.losses.siglip import SigLIPLoss, caption_match_labels, sigmoid_contrastive_loss
from arm_tokenizer.teachers.base import CaptionLM
from arm_tokenizer.teachers.frozen import TeacherCaptionLM, TeacherTextEncoder
from arm_tokenizer.teachers.toy import build_toy_teacher, toy_batch
from torch import nn


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return str(build_toy_teacher(tmp_path_factory.mktemp("teacher") / "t", steps=2))


def _inputs(features: torch.Tensor, captions=None, encoder_features=None) -> LossInputs:
    b, n, c = features.shape
    return LossInputs(
        images=torch.zeros(b, 3, 32, 32), grid=(4, 4),
        encoder_features=encoder_features if encoder_features is not None else torch.randn(b, n, c),
        pre_quant=torch.zeros(b, n, 4), quantized=torch.zeros(b, n, 4), features=features,
        indices=torch.zeros(b, n, dtype=torch.long), decoder=nn.Identity(), captions=captions,
    )


def test_sigmoid_loss_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(5, 7, generator=g), dim=-1)
    y = F.normalize(torch.randn(5, 7, generator=g), dim=-1)
    t_prime, b = torch.tensor(math.log(10.0)), torch.tensor(-10.0)
    # -1/|B| sum_i sum_j log(1 / (1 + exp(z_ij (-t x_i.y_j - b))))  (SigLIP, Algorithm 1)
    direct = 0.0
    for i in range(5):
        for j in range(5):
            z = 1.0 if i == j else -1.0
            logit = math.exp(float(t_prime)) * float(x[i] @ y[j]) + float(b)
            direct += -math.log(1.0 / (1.0 + math.exp(-z * logit)))
    direct /= 5
    got = sigmoid_contrastive_loss(x, y, t_prime, b)
    assert float(got) == pytest.approx(direct, rel=1e-5)
    # identical captions turn off-diagonal pairs into positives
    labels = caption_match_labels(["a", "b", "A ", "c", "d"])
    assert labels[0, 2] == 1 and labels[2, 0] == 1 and labels[0, 1] == 0 and labels.trace() == 5
    assert caption_match_labels(["a", "a"], dedupe=False).equal(torch.eye(2))
    with pytest.raises(ValueError, match="one shape"):
        sigmoid_contrastive_loss(x, y[:3], t_prime, b)


def test_siglip_loss_gradients_reach_head_temperature_bias_not_teacher(teacher_dir):
    text = TeacherTextEncoder(teacher_dir)
    loss = SigLIPLoss(text, in_dim=24, init_from_teacher=False)
    assert loss.needs_captions and loss.weight == 5.0 and loss.name == "sig"
    assert float(loss.log_temperature.detach()) == pytest.approx(math.log(10)) and float(loss.bias.detach()) == -10.0
    feats = torch.randn(4, 16, 24, requires_grad=True)
    out = loss(_inputs(feats, toy_batch(4)["captions"]))
    out.loss.backward()
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    for name in ("log_temperature", "bias"):
        assert getattr(loss, name).grad is not None and getattr(loss, name).grad.abs() > 0
    assert all(p.grad is not None for p in loss.head.parameters())
    assert all(p.grad is None and not p.requires_grad for p in loss.text_encoder.parameters())
    trainable = {n for n, p in loss.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith("text_encoder.") for n in trainable)
    loss.train()
    assert loss.training and not loss.text_encoder.training
    assert set(out.logs) >= {"temperature", "bias", "batch_r1"}


def test_siglip_loss_starts_from_teacher_head(teacher_dir):
    text = TeacherTextEncoder(teacher_dir)
    loss = SigLIPLoss(text, in_dim=32)  # teacher feature width 32: head is copied
    assert loss.initialized_from_teacher
    tokens = torch.randn(3, 16, 32)
    torch.testing.assert_close(loss.embed_tokens(tokens), text.embed_image_tokens(tokens))
    assert float(loss.bias.detach()) == pytest.approx(float(text.bias))
    assert not SigLIPLoss(text, in_dim=24).initialized_from_teacher  # other width: random head


def test_siglip_loss_bad_input(teacher_dir):
    loss = SigLIPLoss(TeacherTextEncoder(teacher_dir), in_dim=24)
    with pytest.raises(ValueError, match="needs captions"):
        loss(_inputs(torch.randn(2, 16, 24)))
    with pytest.raises(ValueError, match=r"\(B, N, 24\)"):
        loss(_inputs(torch.randn(2, 16, 8), ["a", "b"]))
    with pytest.raises(ValueError, match="3 captions for a batch of 2"):
        loss(_inputs(torch.randn(2, 16, 24), ["a", "b", "c"]))
    with pytest.raises(TypeError, match="TextEncoder"):
        SigLIPLoss(nn.Linear(2, 2), in_dim=4)  # type: ignore[arg-type]


def test_caption_loss_gradients_reach_adapter_not_lm(teacher_dir):
    lm = TeacherCaptionLM(teacher_dir)
    loss = CaptionLoss(lm, in_dim=24)
    assert loss.needs_captions and loss.weight == 1.0 and loss.name == "cap"
    feats = torch.randn(3, 16, 24, requires_grad=True)
    out = loss(_inputs(feats, toy_batch(3)["captions"]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.loss > 0
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.adapter.parameters())
    assert all(p.grad is None and not p.requires_grad for p in loss.caption_lm.parameters())
    with pytest.raises(ValueError, match="needs captions"):
        loss(_inputs(feats.detach()))


def test_caption_loss_starts_from_teacher_adapter(teacher_dir):
    lm = TeacherCaptionLM(teacher_dir)
    loss = CaptionLoss(lm, in_dim=32)
    assert loss.initialized_from_teacher
    tokens = torch.randn(2, 16, 32)
    torch.testing.assert_close(loss.prefix(tokens), lm.prefix_adapter(tokens))


def test_caption_loss_takes_any_caption_lm():
    class UnigramLM(CaptionLM):
        hidden_size = 6

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Linear(6, 1)

        def caption_loss(self, prefix, texts):
            return self.w(prefix).pow(2).mean() + 0.0 * len(texts)

    loss = CaptionLoss(UnigramLM(), in_dim=5, init_from_teacher=True)
    assert not loss.initialized_from_teacher
    out = loss(_inputs(torch.randn(2, 4, 5), ["x", "y"]))
    assert out.loss.ndim == 0


def test_feature_loss_cosine_and_l2():
    enc = torch.randn(2, 16, 8)
    assert float(FeatureLoss()(_inputs(enc.clone(), encoder_features=enc)).loss) == pytest.approx(0.0, abs=1e-6)
    assert float(FeatureLoss()(_inputs(-enc, encoder_features=enc)).loss) == pytest.approx(2.0, abs=1e-5)
    assert float(FeatureLoss()(_inputs(3 * enc, encoder_features=enc)).loss) == pytest.approx(0.0, abs=1e-6)
    l2 = FeatureLoss(distance="l2")(_inputs(enc + 0.5, encoder_features=enc)).loss
    assert float(l2) == pytest.approx(0.25, rel=1e-5)
    feats = torch.randn(2, 16, 8, requires_grad=True)
    target = torch.randn(2, 16, 8, requires_grad=True)
    FeatureLoss()(_inputs(feats, encoder_features=target)).loss.backward()
    assert feats.grad is not None and target.grad is None  # the encoder target is detached
    with pytest.raises(ValueError, match="differ in shape"):
        FeatureLoss()(_inputs(torch.randn(2, 16, 4), encoder_features=enc))
    with pytest.raises(ValueError, match="cosine"):
        FeatureLoss(distance="l3")  # type: ignore[arg-type]
    assert not FeatureLoss.needs_captions


def test_feature_loss_channels_compares_only_the_selected_slice():
    torch.manual_seed(0)
    enc = torch.randn(2, 16, 8)
    wrong_tail = torch.cat([enc[..., :6], -enc[..., 6:]], dim=-1)  # semantic part right, appended part flipped
    assert float(FeatureLoss(channels=[0, 6])(_inputs(wrong_tail, encoder_features=enc)).loss) == pytest.approx(0.0, abs=1e-6)
    assert float(FeatureLoss(channels=[-2, None])(_inputs(wrong_tail, encoder_features=enc)).loss) == pytest.approx(2.0, abs=1e-5)
    assert float(FeatureLoss()(_inputs(wrong_tail, encoder_features=enc)).loss) > 0.1
    feats = wrong_tail.clone().requires_grad_(True)
    FeatureLoss(channels=[0, 6])(_inputs(feats, encoder_features=enc)).loss.backward()
    assert feats.grad[..., 6:].abs().sum() == 0  # the appended channels get no L_feat gradient
    with pytest.raises(ValueError, match=r"FeatureLoss.channels must be \[start, stop\]"):
        FeatureLoss(channels=[4])
    with pytest.raises(ValueError, match="selects none of the 8"):
        FeatureLoss(channels=[8, None])(_inputs(enc, encoder_features=enc))
    with pytest.raises(ValueError, match="differ in shape"):
        FeatureLoss(channels=[0, 4])(_inputs(torch.randn(2, 16, 4), encoder_features=enc))


def test_losses_are_registered():
    assert registry.get("tokenizer_loss", "feature_loss") is FeatureLoss
    assert registry.get("tokenizer_loss", "siglip_loss") is SigLIPLoss
    assert registry.get("tokenizer_loss", "caption_loss") is CaptionLoss


@pytest.mark.parametrize("cls", [FeatureLoss, SigLIPLoss, CaptionLoss])
def test_semantic_losses_honour_the_loss_contract(cls):
    from arm_tokenizer.testing.contracts import check_tokenizer_loss, example_instance

    check_tokenizer_loss(example_instance(cls))


# ---------------------------------------------------------------- encoder perceptual loss
def test_encoder_perceptual_loss_is_the_feature_distance_of_the_reencoded_reconstruction():
    from arm_tokenizer.losses.perceptual import EncoderPerceptualLoss
    from arm_tokenizer.testing.contracts import make_loss_inputs

    inputs = make_loss_inputs(width=8)
    loss = EncoderPerceptualLoss(distance="cosine")
    assert registry.get("tokenizer_loss", "encoder_perceptual") is EncoderPerceptualLoss
    out = loss(inputs)
    with torch.no_grad():
        feats = inputs.encoder(inputs.reconstruction)
    expected = (1 - F.cosine_similarity(feats, inputs.encoder_features, dim=-1)).mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)
    l2 = EncoderPerceptualLoss(distance="l2")(inputs).loss
    assert torch.allclose(l2, F.mse_loss(feats, inputs.encoder_features), atol=1e-6)
    # The reconstruction of the image itself costs nothing.
    inputs.reconstruction = inputs.images.clone()
    assert float(EncoderPerceptualLoss()(inputs).loss) < 1e-6


def test_encoder_perceptual_loss_trains_the_decoder_never_the_encoder():
    from arm_tokenizer.losses.perceptual import EncoderPerceptualLoss
    from arm_tokenizer.testing.contracts import make_loss_inputs

    inputs = make_loss_inputs(width=8)
    inputs.encoder.requires_grad_(True)  # even a trainable encoder gets no gradient from it
    EncoderPerceptualLoss()(inputs).loss.backward()
    assert all(p.grad is None for p in inputs.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in inputs.decoder.parameters())


def test_encoder_perceptual_loss_bad_input_is_a_clear_error():
    from arm_tokenizer.losses.perceptual import EncoderPerceptualLoss
    from arm_tokenizer.testing.contracts import make_loss_inputs

    with pytest.raises(ValueError, match="distance must be one of"):
        EncoderPerceptualLoss(distance="l3")
    no_encoder = make_loss_inputs(width=8)
    no_encoder.encoder = None
    with pytest.raises(ValueError, match="LossInputs.encoder"):
        EncoderPerceptualLoss()(no_encoder)
    with pytest.raises(TypeError, match="flow_matching"):
        EncoderPerceptualLoss()(make_loss_inputs(width=8, generative=True))

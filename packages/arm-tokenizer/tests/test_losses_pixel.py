"""L_pix: pixel distance, LPIPS, PatchGAN with warm-up and adaptive weight; flow matching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from arm_tokenizer.losses.base import LossInputs
from arm_tokenizer.losses.flow import FlowMatchingLoss
from arm_tokenizer.losses.gan import PatchGANDiscriminator, adaptive_weight, hinge_d_loss
from arm_tokenizer.losses.pixel import PixelReconstructionLoss, build_lpips
from arm_tokenizer.testing.contracts import check_tokenizer_loss, example_instance, make_loss_inputs
from arm_tokenizer.testing.toys import ToyDecoder, ToyFlowDecoder
from torch import nn


@pytest.mark.parametrize("cls", [PixelReconstructionLoss, FlowMatchingLoss])
def test_loss_contract(cls):
    check_tokenizer_loss(example_instance(cls))


def test_registered_names():
    from arm_tokenizer.framework import registry

    assert registry.get("tokenizer_loss", "pixel_loss") is PixelReconstructionLoss
    assert registry.get("tokenizer_loss", "flow_matching") is FlowMatchingLoss


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_distance_and_psnr(distance):
    inputs = make_loss_inputs()
    out = PixelReconstructionLoss(distance=distance)(inputs)
    ref = (F.l1_loss if distance == "l1" else F.mse_loss)(inputs.reconstruction, inputs.images)
    assert torch.allclose(out.loss, ref)
    mse = F.mse_loss(inputs.reconstruction.clamp(-1, 1), inputs.images)
    assert torch.allclose(out.logs["psnr"], 10 * torch.log10(4 / mse))
    assert "gan_g" not in out.logs and "lpips" not in out.logs


def test_computes_the_reconstruction_when_the_module_did_not():
    inputs = make_loss_inputs()
    expected = PixelReconstructionLoss()(inputs).loss
    inputs.reconstruction = None
    assert torch.allclose(PixelReconstructionLoss()(inputs).loss, expected)


def test_wrong_decoder_kind_is_a_clear_error():
    gen = make_loss_inputs(generative=True)
    with pytest.raises(TypeError, match="flow_matching"):
        PixelReconstructionLoss()(gen)
    direct = make_loss_inputs()
    with pytest.raises(TypeError, match="pixel_loss"):
        FlowMatchingLoss()(direct)
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        PixelReconstructionLoss(distance="l3")


def test_lpips_missing_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"vgg16-397923af\.pth.*lpips_weight: 0\.0"):
        PixelReconstructionLoss(lpips_weight=1.0)
    with pytest.raises(ValueError, match="choose one of"):
        build_lpips("resnet")


def test_lpips_code_path_with_random_backbone():
    inputs = make_loss_inputs(patch_size=32)  # 64x64 images: AlexNet pools 3 times
    loss = PixelReconstructionLoss(lpips_weight=0.5, lpips_net="alex", lpips_random_backbone=True)
    out = loss(inputs)
    assert "lpips" in out.logs
    assert torch.allclose(out.loss, out.logs["l1"] + 0.5 * out.logs["lpips"], atol=1e-6)
    assert not any(p.requires_grad for p in loss.lpips.parameters())
    same = loss.lpips(inputs.images, inputs.images).mean()
    assert float(same) < 1e-6 < float(out.logs["lpips"])


def test_gan_warmup_and_adaptive_weight():
    torch.manual_seed(0)
    inputs = make_loss_inputs()
    loss = PixelReconstructionLoss(gan_weight=0.5, gan_start_step=10, disc_channels=8, disc_layers=1)
    assert loss.adversary() is loss.discriminator
    inputs.step = 9
    out = loss(inputs)
    assert "gan_g" not in out.logs and loss.discriminator_loss(inputs) is None
    inputs.step = 10
    out = loss(inputs)
    assert {"gan_g", "gan_weight"} <= set(out.logs)
    # The adaptive weight is VQGAN's ratio of gradient norms at the decoder's last layer.
    recon = inputs.decoder(inputs.features, inputs.grid)
    rec = F.l1_loss(recon, inputs.images)
    g = -loss.discriminator(recon).mean()
    last = inputs.decoder.last_layer()
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0].norm()
    g_adv = torch.autograd.grad(g, last, retain_graph=True)[0].norm()
    assert torch.allclose(out.logs["gan_weight"], g_rec / (g_adv + 1e-4), rtol=1e-4)
    assert torch.allclose(out.loss, rec + 0.5 * out.logs["gan_weight"] * g, rtol=1e-4)
    d = loss.discriminator_loss(inputs)
    assert d is not None and d.loss.requires_grad
    assert {"logits_real", "logits_fake"} <= set(d.logs)


def test_no_adversarial_term_without_grad():
    inputs = make_loss_inputs()
    loss = PixelReconstructionLoss(gan_weight=0.5, disc_channels=8, disc_layers=1)
    with torch.no_grad():
        out = loss(inputs)  # validation: no adaptive-weight autograd possible, term skipped
    assert "gan_g" not in out.logs


def test_hinge_and_discriminator_shapes():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert torch.allclose(hinge_d_loss(real, fake), torch.tensor(0.5 * (0.25 + 0.75)))
    disc = PatchGANDiscriminator(channels=8, num_layers=3)
    assert disc(torch.randn(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    w = nn.Parameter(torch.ones(3))
    x = torch.tensor([1.0, 2.0, 3.0])
    lam = adaptive_weight((w * x).sum(), (2 * w * x).sum(), w)
    assert torch.allclose(lam, torch.tensor(0.5), atol=1e-4)


class _Oracle(ToyFlowDecoder):
    """Knows x1: returns the exact straight-line velocity (x1 - x_t) / (1 - t) = x1 - x0."""

    x1: torch.Tensor

    def forward(self, x_t, t, features, grid):
        tb = t.view(-1, 1, 1, 1)
        return (self.x1 - x_t) / (1 - tb) + 0 * features.sum()


def test_flow_matching_target_convention():
    """Loss is ~0 for the true velocity of x_t = t*x1 + (1-t)*x0, large for a wrong sign."""
    torch.manual_seed(0)
    inputs = make_loss_inputs(generative=True)
    oracle = _Oracle(in_dim=8, patch_size=4)
    oracle.x1 = inputs.images.double()
    inputs.images = inputs.images.double()
    inputs.features = inputs.features.double()
    inputs.decoder = oracle
    out = FlowMatchingLoss()(inputs)
    assert float(out.loss.detach()) < 1e-6
    assert "mse" in out.logs and "x1_std" in out.logs
    with pytest.raises(ValueError, match="t_sampling"):
        FlowMatchingLoss(t_sampling="beta")


def test_flow_matching_reaches_the_tokens():
    inputs = make_loss_inputs(generative=True)
    FlowMatchingLoss(t_sampling="logit_normal")(inputs).loss.backward()
    assert inputs.pre_quant.grad is not None and inputs.pre_quant.grad.abs().sum() > 0


def test_loss_inputs_defaults():
    dec = ToyDecoder(in_dim=4, patch_size=2)
    x = torch.zeros(1, 1, 4)
    li = LossInputs(images=torch.zeros(1, 3, 2, 2), grid=(1, 1), encoder_features=x, pre_quant=x,
                    quantized=x, features=x, indices=torch.zeros(1, 1), decoder=dec)
    assert li.reconstruction is None and li.step == 0 and li.extra == {}

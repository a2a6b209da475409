"""The plugin's own tests: ARM's contract checks plus behaviour specific to the plugin."""

from __future__ import annotations

import torch

from arm_plugin_template import PreQuantPenalty, SignQuantizer


def test_sign_quantizer_honours_the_quantizer_contract(arm_contract):
    arm_contract.check_quantizer(SignQuantizer(dim=6))


def test_prequant_penalty_honours_the_loss_contract(arm_contract):
    arm_contract.check_tokenizer_loss(PreQuantPenalty(weight=0.5))


def test_indices_round_trip_and_codebook_size():
    q = SignQuantizer(dim=5, scale=0.5)
    x = torch.randn(2, 7, 5)
    out = q(x)
    assert q.codebook_size == 32
    assert out.indices.shape == (2, 7) and int(out.indices.max()) < 32
    torch.testing.assert_close(q.indices_to_codes(out.indices), out.quantized.detach())


def test_penalty_is_zero_below_target_and_grows_above():
    from arm_tokenizer.losses.base import LossInputs

    def inputs(scale: float) -> LossInputs:
        z = torch.full((1, 4, 8), scale)
        return LossInputs(images=torch.zeros(1, 3, 8, 8), grid=(2, 2), encoder_features=z,
                          pre_quant=z, quantized=z, features=z, indices=torch.zeros(1, 4).long(),
                          decoder=torch.nn.Identity())

    loss = PreQuantPenalty(target_rms=1.0)
    assert loss(inputs(0.5)).loss.item() == 0.0
    assert loss(inputs(3.0)).loss.item() > loss(inputs(2.0)).loss.item() > 0

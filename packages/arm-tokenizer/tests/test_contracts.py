"""Contract tests over EVERY registered component (timm-style): a new component is tested
the moment it is registered. Built with ``cls(**cls.example_args())`` (or ``cls()``)."""

from __future__ import annotations

import pytest
import torch
from arm_tokenizer.framework import registry
from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput
from arm_tokenizer.testing import (
    CONTRACT_KINDS,
    ContractError,
    check_component,
    check_quantizer,
    example_instance,
)

pytest_plugins = ["pytester"]


def _registered() -> list:
    params = []
    for kind in CONTRACT_KINDS:
        for comp in registry.list_components(kind):
            params.append(pytest.param(kind, comp, id=f"{kind}:{comp.name}"))
    return params


@pytest.mark.parametrize(("kind", "comp"), _registered())
def test_registered_component_honours_contract(kind, comp):
    torch.manual_seed(0)
    cls = comp.load()
    check_component(kind, example_instance(cls))


def test_every_contract_kind_has_components():
    for kind in ("encoder", "projection", "quantizer", "decoder"):
        assert registry.list_components(kind), kind


class _NoStraightThrough(Quantizer):
    """Broken on purpose: rounds without a straight-through estimator."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.dim, self.codebook_size = dim, 3 ** dim

    def forward(self, x):
        codes = x.detach().clamp(-1, 1).round()
        idx = ((codes + 1) * torch.tensor([3**i for i in range(self.dim)])).sum(-1).long()
        return QuantizerOutput(codes, idx, x.new_zeros(()), {"perplexity": torch.tensor(1.0)})

    def indices_to_codes(self, indices):
        return torch.stack([(indices // 3**i) % 3 - 1 for i in range(self.dim)], -1).float()


def test_contract_catches_a_broken_quantizer():
    with pytest.raises(ContractError, match="straight-through"):
        check_quantizer(_NoStraightThrough(dim=2))


def test_pytest_plugin_fixture_for_plugin_authors(pytester):
    pytester.makepyfile(
        """
        import torch
        from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput

        class MyRounding(Quantizer):
            def __init__(self, dim: int = 2) -> None:
                super().__init__()
                self.dim, self.codebook_size = dim, 3 ** dim

            def forward(self, x):
                b = x.tanh()
                codes = b + (b.round() - b).detach()
                idx = ((codes.round() + 1) * torch.tensor([3 ** i for i in range(self.dim)])).sum(-1).long()
                return QuantizerOutput(codes, idx, x.new_zeros(()), {"perplexity": torch.tensor(1.0)})

            def indices_to_codes(self, indices):
                return torch.stack([(indices // 3 ** i) % 3 - 1 for i in range(self.dim)], -1).float()

        def test_mine(arm_contract):
            arm_contract.check_quantizer(MyRounding(dim=2))

        def test_listing(arm_contract):
            assert any(c.name == "fsq" for c in arm_contract.components("quantizer"))
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)

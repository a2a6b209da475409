"""Contract tests for ARM components, shipped for plugin authors (a pytest plugin).

Use the functions directly, or the ``arm_contract`` fixture that the installed pytest
plugin (:mod:`arm_tokenizer.testing.plugin`) provides in any project::

    def test_my_quantizer(arm_contract):
        arm_contract.check_quantizer(MyVQ(dim=8))

    def test_every_component_of_mine(arm_contract):
        for comp in arm_contract.components("quantizer", dist="my-plugin"):
            arm_contract.check_component("quantizer", arm_contract.example_instance(comp.load()))

The functions import torch lazily: importing this package (which pytest does for every
project once arm-tokenizer is installed) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ContractError",
    "check_component",
    "check_config_roundtrip",
    "check_decoder",
    "check_encoder",
    "check_projection",
    "check_quantizer",
    "check_state_dict_roundtrip",
    "check_tokenizer_loss",
    "example_instance",
    "make_loss_inputs",
    "CONTRACT_KINDS",
]

#: Kinds that have a contract check.
CONTRACT_KINDS = ("encoder", "projection", "quantizer", "decoder", "tokenizer_loss")


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "CONTRACT_KINDS":
        # deferred: the pytest plugin loads this in every pytest run; contracts imports torch
        from arm_tokenizer.testing import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module 'arm_tokenizer.testing' has no attribute {name!r}")

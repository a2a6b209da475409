"""The ``arm_tokenizer`` pytest plugin (entry point ``pytest11``): the ``arm_contract`` fixture.

Registered by arm-tokenizer's ``pyproject.toml``, so any project with arm-tokenizer
installed gets the fixture without a ``conftest.py``::

    def test_mine(arm_contract):
        arm_contract.check_quantizer(MyVQ(dim=8))

Importing this module must stay cheap and side-effect free (pytest imports it in every
project's test session): no torch import here; the checks load on first use.
"""

from __future__ import annotations

from typing import Any

import pytest

from arm_tokenizer.framework import registry


class ContractSuite:
    """What the ``arm_contract`` fixture returns: the contract checks plus registry helpers."""

    def __getattr__(self, name: str) -> Any:
        # deferred: the pytest plugin loads this in every pytest run; contracts imports torch
        from arm_tokenizer.testing import contracts

        try:
            return getattr(contracts, name)
        except AttributeError:
            raise AttributeError(
                f"arm_contract has no {name!r}; available: {sorted(contracts.__all__)}"
            ) from None

    @staticmethod
    def components(kind: str, dist: str | None = None) -> list[Any]:
        """Registered components of ``kind`` (optionally only those of distribution ``dist``)."""
        comps = registry.list_components(kind)
        if dist is not None:
            comps = [c for c in comps if getattr(c, "dist", None) == dist]
        return comps


@pytest.fixture
def arm_contract() -> ContractSuite:
    """ARM component contract checks: ``arm_contract.check_quantizer(obj)`` and friends."""
    return ContractSuite()

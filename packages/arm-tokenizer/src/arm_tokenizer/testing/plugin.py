"""The ``arm_tokenizer`` pytest plugin (entry point ``pytest11``): the ``arm_contract`` and
``arm_register`` fixtures.

Registered by arm-tokenizer's ``pyproject.toml``, so any project with arm-tokenizer
installed gets the fixture without a ``conftest.py``::

    def test_mine(arm_contract):
        arm_contract.check_quantizer(MyVQ(dim=8))

Importing this module must stay cheap and side-effect free (pytest imports it in every
project's test session): no torch import here; the checks load on first use.
"""

from __future__ import annotations

import sys
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


@pytest.fixture
def arm_register(monkeypatch, tmp_path):
    """Register components ad hoc for one test, as a plugin's entry points would.

    ``arm_register("reward:mine=my_rewards:Mine", my_rewards=SOURCE)`` writes each module
    source it is given by name to ``tmp_path`` (importable during the test), sets
    ``ARM_EXTRA_COMPONENTS`` to the spec and refreshes the registry; after the test those
    modules are forgotten and the registry no longer lists the components.
    """
    modules: list[str] = []

    def register(spec: str, **sources: str) -> None:
        for name, source in sources.items():
            (tmp_path / f"{name}.py").write_text(source)
            modules.append(name)
        if sources:
            monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv(registry.ENV_EXTRA, spec)
        registry.refresh()

    yield register
    for name in modules:
        sys.modules.pop(name, None)
    monkeypatch.delenv(registry.ENV_EXTRA, raising=False)
    registry.refresh()

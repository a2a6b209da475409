"""Shared fixtures of arm-tokenizer's tests.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test, and
tests that train something take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest packages/arm-tokenizer/tests`` to check that no test relies on one
lucky draw (tests that pin their own seed for a bit-exact same-process comparison keep it).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # toy_components for registry/CLI tests


# ARM_TEST_SEED: one seed for every suite (arm_tokenizer.testing.seeding)
from arm_tokenizer.testing.seeding import _seed_each_test, arm_test_seed  # noqa: E402, F401


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that forgets its cache before and after the test."""
    from arm_tokenizer.framework import registry

    registry.refresh()
    yield registry
    registry.refresh()


@pytest.fixture
def toy_cli_env(monkeypatch, fresh_registry, tmp_path):
    """``toy_cli_env(spec)`` registers toy components (an ``ARM_EXTRA_COMPONENTS`` spec) and
    moves into ``tmp_path``, where the CLI tests write their configs; returns ``tmp_path``."""

    def use(spec: str):
        monkeypatch.setenv("ARM_EXTRA_COMPONENTS", spec)
        monkeypatch.chdir(tmp_path)
        fresh_registry.refresh()
        return tmp_path

    return use

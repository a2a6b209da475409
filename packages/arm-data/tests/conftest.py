"""Shared fixtures of arm-data's tests.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test;
fixtures that train or draw something take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest packages/arm-data/tests`` to check that no test relies on one lucky
draw (tests that pin their own seed for a bit-exact same-process comparison keep it).
"""

from __future__ import annotations

import os
import random

import pytest
import torch


def _env_seed() -> int:
    raw = os.environ.get("ARM_TEST_SEED", "0")
    try:
        seed = int(raw)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**32:
        raise pytest.UsageError(f"ARM_TEST_SEED must be an integer in [0, 2**32), got {raw!r}")
    return seed


ARM_TEST_SEED = _env_seed()


@pytest.fixture(scope="session")
def arm_test_seed() -> int:
    """The suite's seed (``ARM_TEST_SEED``, default 0)."""
    return ARM_TEST_SEED


@pytest.fixture(autouse=True)
def _seed_each_test(arm_test_seed: int) -> None:
    torch.manual_seed(arm_test_seed)
    random.seed(arm_test_seed)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with the test dependencies
        return
    np.random.seed(arm_test_seed)

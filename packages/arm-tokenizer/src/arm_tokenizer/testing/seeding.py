"""The test suites' seed: ``ARM_TEST_SEED`` (environment, default 0).

Every package's ``conftest.py`` imports the two fixtures below, so one environment variable
reseeds all suites: ``_seed_each_test`` (autouse) calls ``torch.manual_seed``,
``random.seed`` and ``numpy.random.seed`` with it before every test, and fixtures that train
or draw a model take their seed from ``arm_test_seed``. ``ARM_TEST_SEED=1 make test`` checks
that no test relies on one lucky draw (tests that pin their own seed for a bit-exact
same-process comparison keep doing so). A plugin's own suite can import them the same way.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

__all__ = ["ARM_TEST_SEED", "arm_test_seed", "_seed_each_test"]


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
    np.random.seed(arm_test_seed)

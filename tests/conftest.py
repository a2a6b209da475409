"""Shared helpers of the cross-package tests: run the real console scripts.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test;
fixtures that train something in this process take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest tests`` to check that no test relies on one lucky draw.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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


def run_script(name: str, *args: str, env: dict | None = None, cwd: Path | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an installed console script (arm-tokenizer, arm-data, arm-lm, arm-rl)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture
def root() -> Path:
    return ROOT

"""Shared helpers of the cross-package tests: run the real console scripts.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test;
fixtures that train something in this process take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest tests`` to check that no test relies on one lucky draw.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# ARM_TEST_SEED: one seed for every suite (arm_tokenizer.testing.seeding)
from arm_tokenizer.testing.seeding import _seed_each_test, arm_test_seed  # noqa: E402, F401


def run_script(name: str, *args: str, env: dict | None = None, cwd: Path | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an installed console script (arm-tokenizer, arm-data, arm-lm, arm-rl)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, capture_output=True, text=True)


def pip_install(path: Path) -> None:
    """Install the package at ``path`` into this environment (editable, no dependencies)."""
    _pip("install", "--no-deps", "--no-build-isolation", "-e", str(path))


def pip_uninstall(dist: str) -> None:
    """Uninstall the distribution ``dist`` from this environment."""
    _pip("uninstall", "-y", dist)


@contextlib.contextmanager
def installed(path: Path, dist: str) -> Iterator[None]:
    """The package at ``path`` (distribution ``dist``) installed for the block; always
    uninstalled after it (a test that uninstalls it itself reinstalls it before leaving)."""
    pip_install(path)
    try:
        yield
    finally:
        pip_uninstall(dist)


@pytest.fixture
def root() -> Path:
    return ROOT

"""Shared helpers of the cross-package tests: run the real console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_script(name: str, *args: str, env: dict | None = None, cwd: Path | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an installed console script (arm-tokenizer, arm-data, arm-lm, arm-rl)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture
def root() -> Path:
    return ROOT

"""Shared fixtures of arm-core's tests.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test, and
fixtures that train or draw a model take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest packages/arm-core/tests`` to check that no test relies on one lucky
draw: a test must pass for any seed (tests that pin their own seed for a bit-exact
same-process comparison keep doing so).
"""

from __future__ import annotations

# ARM_TEST_SEED: one seed for every suite (arm_tokenizer.testing.seeding)
from arm_tokenizer.testing.seeding import _seed_each_test, arm_test_seed  # noqa: E402, F401

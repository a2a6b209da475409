"""Shared fixtures of arm-data's tests.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test;
fixtures that train or draw something take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest packages/arm-data/tests`` to check that no test relies on one lucky
draw (tests that pin their own seed for a bit-exact same-process comparison keep it).
"""

from __future__ import annotations

# ARM_TEST_SEED: one seed for every suite (arm_tokenizer.testing.seeding)
from arm_tokenizer.testing.seeding import _seed_each_test, arm_test_seed  # noqa: E402, F401

"""Tiny fixtures: a random tiny arm-core LM export + a toy visual tokenizer + a text tokenizer
trained on ShapesWorld train text, so rollouts, rewards and the trainer run for real in seconds.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test, and
``tiny_lm`` and the training tests take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest packages/arm-rl/tests`` to check that no test relies on one lucky draw
(tests that pin their own seed for a bit-exact same-process comparison keep it).
"""

from __future__ import annotations

import pytest
import torch

# ARM_TEST_SEED: one seed for every suite (arm_tokenizer.testing.seeding)
from arm_tokenizer.testing.seeding import _seed_each_test, arm_test_seed  # noqa: E402, F401


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory, arm_test_seed):  # noqa: F811  (the imported fixture)
    from arm_core.testing import save_tiny_export, save_tiny_lm
    from arm_data.shapes import ShapesWorld

    root = tmp_path_factory.mktemp("rl")
    torch.manual_seed(arm_test_seed)
    world = ShapesWorld("train", 0, 64, 64)
    texts = [t for i in range(30) for t in (world[i].caption, world[i].edit.instruction,
                                            *[q.question for q in world[i].qa])]
    texts += ["yes", "no", "Is there a red circle?"] * 3
    layout = save_tiny_export(root, texts)
    save_tiny_lm(root, layout, "other", n_layer=1)  # a reference of another shape, for the mismatch error
    return root

"""Shared fixtures of arm-data's tests.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test;
fixtures that train or draw something take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest packages/arm-data/tests`` to check that no test relies on one lucky
draw (tests that pin their own seed for a bit-exact same-process comparison keep it).
"""

from __future__ import annotations

import pytest
import torch
from arm_data.datasets.writers import write_folder, write_jsonl, write_wds

# ARM_TEST_SEED: one seed for every suite (arm_tokenizer.testing.seeding)
from arm_tokenizer.testing.seeding import _seed_each_test, arm_test_seed  # noqa: E402, F401
from arm_tokenizer.testing.toys import tiny_random_tokenizer


@pytest.fixture(scope="session")
def write_formats():
    """``write_formats(records, root, samples_per_shard)`` writes the records in each format the
    readers take, as ``root / "folder"``, ``root / "jsonl"`` and ``root / "wds"``; returns ``root``."""

    def write(records, root, samples_per_shard):
        write_folder(records, root / "folder")
        write_jsonl(records, root / "jsonl")
        write_wds(records, root / "wds", samples_per_shard=samples_per_shard)
        return root

    return write


@pytest.fixture(scope="session")
def save_tiny_tokenizer(tmp_path_factory):
    """``save_tiny_tokenizer(image_size)``: the directory of a freshly saved untrained tiny visual
    tokenizer (:func:`arm_tokenizer.testing.toys.tiny_random_tokenizer`, seed 0)."""

    def save(image_size: int):
        torch.manual_seed(0)
        d = tmp_path_factory.mktemp("vt")
        tiny_random_tokenizer(image_size=image_size).save_pretrained(d)
        return d

    return save

"""arm-core shares arm-tokenizer's CheckpointError and LR schedule (old names warn)."""

from __future__ import annotations

import arm_core.checkpoint as core_checkpoint
import arm_core.lightning_module as lightning_module
import pytest
from arm_tokenizer.framework.checkpoint import CheckpointError
from arm_tokenizer.schedules import warmup_cosine


def test_one_checkpoint_error(tmp_path):
    assert core_checkpoint.CheckpointError is CheckpointError
    with pytest.raises(CheckpointError):
        core_checkpoint.load_lm(tmp_path)  # an empty directory is no LM checkpoint


def test_warmup_cosine_alias_warns():
    with pytest.warns(DeprecationWarning, match=r"arm_core\.lightning_module\.warmup_cosine moved"):
        assert lightning_module.warmup_cosine is warmup_cosine

"""LM exports (``save_lm``'s renamed temp directory, ``save_hf``'s atomic files) get the permissions
the umask gives any new file or directory, not ``mkdtemp``'s 0700 / ``mkstemp``'s 0600."""

from __future__ import annotations

import os
import stat

import pytest
from arm_core.checkpoint import load_lm, save_lm
from arm_core.config import Config
from arm_core.hf import save_hf
from arm_core.model import GPT

# (umask, file mode, directory mode)
UMASKS = [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]


@pytest.fixture(params=UMASKS, ids=lambda u: f"umask{u[0]:03o}")
def modes(request):
    mask, file_mode, dir_mode = request.param
    old = os.umask(mask)
    try:
        yield file_mode, dir_mode
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_save_lm_directory_and_files(tmp_path, modes):
    file_mode, dir_mode = modes
    cfg = Config.from_name("tiny")
    out = save_lm(tmp_path / "lm", GPT(cfg), cfg)
    assert _mode(out) == dir_mode
    files = sorted(p for p in out.iterdir())
    assert {p.name for p in files} >= {"model.safetensors", "config.json"}
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(file_mode) for p in files}
    save_lm(tmp_path / "lm", GPT(cfg), cfg)  # replacing an export keeps the modes
    assert _mode(out) == dir_mode and _mode(out / "model.safetensors") == file_mode
    load_lm(out)


def test_save_hf_files(tmp_path, modes):
    file_mode, _ = modes
    out = save_hf(GPT(Config.from_name("tiny")), tmp_path / "hf", max_shard_bytes=30_000)
    files = sorted(p for p in out.iterdir())
    names = {p.name for p in files}
    assert "config.json" in names and "model.safetensors.index.json" in names
    assert any(n.startswith("model-00001-of-") for n in names)
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(file_mode) for p in files}
    assert not [n for n in names if n.endswith(".tmp")]

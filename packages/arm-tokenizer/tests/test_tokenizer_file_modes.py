"""Atomic writes give files the permissions the umask gives any new file (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.framework.checkpoint import (
    atomic_write_bytes,
    current_umask,
    make_temp_dir,
    new_dir_mode,
    new_file_mode,
)
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.testing.toys import ToyDecoder
from arm_tokenizer.tokenizer import VisualTokenizer

# (umask, file mode, directory mode)
UMASKS = [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)]


@pytest.fixture(params=UMASKS, ids=lambda u: f"umask{u[0]:03o}")
def umask(request):
    mask, file_mode, dir_mode = request.param
    old = os.umask(mask)
    try:
        yield mask, file_mode, dir_mode
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_read_without_changing_it(umask):
    mask, file_mode, dir_mode = umask
    assert current_umask() == mask
    assert current_umask() == mask  # still set: reading restored it
    assert (new_file_mode(), new_dir_mode()) == (file_mode, dir_mode)


def test_atomic_write_bytes_and_temp_dir_follow_umask(tmp_path, umask):
    _, file_mode, dir_mode = umask
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert _mode(tmp_path / "a.bin") == file_mode
    atomic_write_bytes(tmp_path / "a.bin", b"yy")  # replacing an existing file too
    assert _mode(tmp_path / "a.bin") == file_mode and (tmp_path / "a.bin").read_bytes() == b"yy"
    d = make_temp_dir(tmp_path, prefix=".export.tmp-")
    assert _mode(d) == dir_mode
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_tokenizer_export_follows_umask(tmp_path, umask):
    _, file_mode, dir_mode = umask
    torch.manual_seed(0)
    enc = CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=3)
    tok = VisualTokenizer(enc, FSQQuantizer(levels=[4, 4, 3]), ToyDecoder(in_dim=10, patch_size=4),
                          proj_out=LinearProjection(in_dim=3, out_dim=10), image_size=16)
    out = tmp_path / "exports" / "tok"
    tok.save_pretrained(out)
    assert _mode(out) == dir_mode and _mode(out.parent) == dir_mode
    for name in ("model.safetensors", "config.json"):
        assert _mode(out / name) == file_mode, name
    assert VisualTokenizer.from_pretrained(out).codebook_size == 48

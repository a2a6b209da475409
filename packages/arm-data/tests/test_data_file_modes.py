"""Atomically written files (token shards, manifest, dataset shards, index, vocab layout) get the
permissions the umask gives any new file (``0o666 & ~umask``), not ``mkstemp``'s private 0600."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from arm_data.datasets.writers import write_folder, write_jsonl, write_wds
from arm_data.pretokenize import PatchColorTokenizer, pretokenize
from arm_data.records import PairRecord
from arm_data.vocab import VocabLayout
from PIL import Image
from test_pretokenize import ToySource

# (umask, file mode)
UMASKS = [(0o022, 0o644), (0o077, 0o600)]


@pytest.fixture(params=UMASKS, ids=lambda u: f"umask{u[0]:03o}")
def file_mode(request):
    mask, mode = request.param
    old = os.umask(mask)
    try:
        yield mode
    finally:
        os.umask(old)


def _modes(paths) -> dict[str, int]:
    return {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in paths}


def test_token_shards_and_manifest(tmp_path, file_mode):
    m = pretokenize(PatchColorTokenizer(image_size=16, patch=4, levels=4), ToySource(5), tmp_path,
                    shard_size=3, batch_size=4, num_workers=0, progress=False)
    assert m.complete
    files = sorted(tmp_path.glob("shard-*.safetensors")) + [tmp_path / "manifest.json"]
    assert len(files) == 3
    assert _modes(files) == {p.name: file_mode for p in files}


def _records():
    rng = np.random.default_rng(0)
    return [PairRecord(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), f"c{i}", key=f"k{i}")
            for i in range(3)]


def test_dataset_writers_and_vocab_layout(tmp_path, file_mode):
    write_wds(_records(), tmp_path / "wds", samples_per_shard=2)
    write_jsonl(_records(), tmp_path / "jsonl")
    write_folder(_records(), tmp_path / "folder")
    VocabLayout(text_vocab_size=300, codebook_size=64, max_grid_h=8, max_grid_w=6).save(tmp_path / "vocab.json")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {str(p.relative_to(tmp_path)) for p in files}
    assert {"wds/shard-000000.tar", "wds/shard-000001.tar", "wds/index.json", "jsonl/manifest.jsonl",
            "folder/k0.png", "folder/k0.txt", "vocab.json"} <= names
    wrong = {str(p.relative_to(tmp_path)): oct(m) for p, m in
             ((p, stat.S_IMODE(os.stat(p).st_mode)) for p in files) if m != file_mode}
    assert not wrong, f"expected {oct(file_mode)}"

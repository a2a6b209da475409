"""Exported LM checkpoints: round trip, atomic replace, references, clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from arm_core.checkpoint import CheckpointError, load_lm, read_lm_config, save_lm
from arm_core.config import Config
from arm_core.model import GPT
from arm_data.text_tokenizer import TextTokenizer
from arm_data.vocab import VocabError, VocabLayout

TEXTS = ["a red circle left of a blue square", "what color is the star?", "make it green"] * 5


@pytest.fixture(scope="module")
def text_tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("tt")
    tok = TextTokenizer.train(TEXTS, vocab_size=300)
    return tok, tok.save(d)


def _model(layout: VocabLayout, seed: int = 0) -> GPT:
    cfg = Config.from_name("tiny").with_vocab(layout.total_size, layout.image_offset,
                                              layout.codebook_size,
                                              text_vocab_size=layout.text_vocab_size)
    torch.manual_seed(seed)
    return GPT(cfg)


def test_round_trip_same_logits(tmp_path, text_tok) -> None:
    tok, tok_path = text_tok
    layout = tok.layout(codebook_size=16, max_grid_h=8, max_grid_w=8)
    m = _model(layout)
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "config.json").write_text("{}")
    out = save_lm(tmp_path / "lm", m, m.config, layout=layout, text_tokenizer=tok_path,
                  visual_tokenizer_dir=vis, metadata={"step": 3})
    ck = load_lm(out)
    assert ck.layout == layout and ck.config == m.config and ck.metadata == {"step": 3}
    assert ck.visual_tokenizer_dir == vis.resolve()
    assert ck.load_text_tokenizer().encode("a red circle") == tok.encode("a red circle")
    ids = torch.randint(0, layout.total_size, (2, 10))
    with torch.no_grad():
        assert torch.equal(m.eval()(ids), ck.model(ids))
    assert not ck.model.training
    # dtype and tied embeddings
    cfg_t = Config.from_name("tiny", tie_embeddings=True)
    mt = GPT(cfg_t)
    ck_t = load_lm(save_lm(tmp_path / "tied", mt, cfg_t), dtype=torch.bfloat16)
    assert ck_t.model.embed_tokens.weight.dtype == torch.bfloat16
    assert ck_t.layout is None and ck_t.text_tokenizer_path is None


def test_relative_reference_survives_moving_the_tree(tmp_path, text_tok) -> None:
    _, tok_path = text_tok
    layout = VocabLayout(text_vocab_size=300, codebook_size=16)
    root = tmp_path / "run"
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "config.json").write_text("{}")
    m = _model(layout)
    save_lm(root / "lm", m, m.config, layout=layout, visual_tokenizer_dir=root / "tokenizer")
    shutil.move(str(root), str(tmp_path / "moved"))
    ck = load_lm(tmp_path / "moved" / "lm")
    assert ck.visual_tokenizer_dir == (tmp_path / "moved" / "tokenizer").resolve()


def test_atomic_replace_leaves_no_temp(tmp_path, monkeypatch) -> None:
    layout = VocabLayout(text_vocab_size=40, codebook_size=16)
    a, b = _model(layout, 0), _model(layout, 1)
    save_lm(tmp_path / "lm", a, a.config, layout=layout)
    save_lm(tmp_path / "lm", b, b.config, layout=layout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm"]
    ck = load_lm(tmp_path / "lm")
    assert torch.equal(ck.model.embed_tokens.weight, b.embed_tokens.weight)

    import arm_core.checkpoint as ckpt_mod

    def half_written(tensors, path, metadata=None):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_lm(tmp_path / "lm", a, a.config, layout=layout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm"]  # old export intact
    assert torch.equal(load_lm(tmp_path / "lm").model.embed_tokens.weight, b.embed_tokens.weight)


def test_errors_say_what_to_change(tmp_path) -> None:
    layout = VocabLayout(text_vocab_size=40, codebook_size=16)
    m = _model(layout)
    # config vs layout disagreement at save time
    with pytest.raises(CheckpointError, match="with_vocab"):
        save_lm(tmp_path / "x", m, m.config, layout=VocabLayout(text_vocab_size=41, codebook_size=16))
    save_lm(tmp_path / "lm", m, m.config, layout=layout)
    # weights from another vocabulary size
    other = VocabLayout(text_vocab_size=60, codebook_size=16)
    bigger = _model(other)
    cfg = json.loads((tmp_path / "lm" / "config.json").read_text())
    save_lm(tmp_path / "big", bigger, bigger.config, layout=other)
    shutil.copyfile(tmp_path / "big" / "model.safetensors", tmp_path / "lm" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"vocab_size=.*shape mismatch.*embed_tokens"):
        load_lm(tmp_path / "lm")
    # data built with a different layout
    with pytest.raises(VocabError, match="text_vocab_size"):
        load_lm(tmp_path / "big", expected_layout=layout)
    # not a checkpoint / wrong format / missing dir
    with pytest.raises(CheckpointError, match="not found"):
        load_lm(tmp_path / "nope")
    (tmp_path / "lightning").mkdir()
    (tmp_path / "lightning" / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="Lightning checkpoint"):
        read_lm_config(tmp_path / "lightning")
    cfg["format"] = "arm-tokenizer"
    (tmp_path / "big" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="expected 'arm-lm'"):
        load_lm(tmp_path / "big")
    with pytest.raises(CheckpointError, match="no text tokenizer"):
        load_lm(save_lm(tmp_path / "lm3", m, m.config, layout=layout)).load_text_tokenizer()

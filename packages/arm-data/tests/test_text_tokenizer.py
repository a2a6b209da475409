"""TextTokenizer: deterministic training, round trips, byte fallback, save/load, errors."""

import hashlib

import pytest
from arm_data.text_tokenizer import TextTokenizer

CORPUS = [f"a {size} {color} {shape} {rel} the {c2} {s2}"
          for size in ("small", "large") for color in ("red", "green", "blue", "yellow")
          for shape in ("circle", "square", "star") for rel in ("left of", "above")
          for c2, s2 in (("purple", "cross"), ("orange", "hexagon"))]


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer.train(CORPUS, vocab_size=320)


def test_training_is_deterministic(tok):
    again = TextTokenizer.train(CORPUS, vocab_size=320)
    assert hashlib.sha256(again.model_proto).digest() == hashlib.sha256(tok.model_proto).digest()
    uni1 = TextTokenizer.train(CORPUS, vocab_size=300, model_type="unigram")
    uni2 = TextTokenizer.train(CORPUS, vocab_size=300, model_type="unigram")
    assert uni1.model_proto == uni2.model_proto


def test_round_trip_exact_including_unseen_characters(tok):
    for s in ["a red circle left of the purple cross", "two  spaces", "ünïcødé ✓ 漢字", "<boi> is just text"]:
        ids = tok.encode(s)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == s
    # frequent words compress: one id for a seen word, bytes for unseen characters
    assert len(tok.encode("circle")) < len("circle")
    assert tok.unk_id not in tok.encode("漢字")


def test_save_load(tmp_path, tok):
    path = tok.save(tmp_path / "tok")
    assert path.name == "text_tokenizer.model"
    back = TextTokenizer.load(tmp_path / "tok")
    assert back.encode("a red star") == tok.encode("a red star")
    assert TextTokenizer.load(path).vocab_size == tok.vocab_size == 320


def test_layout_puts_specials_after_text(tok):
    layout = tok.layout(codebook_size=64)
    assert layout.text_vocab_size == tok.vocab_size
    assert layout.bos_id >= tok.vocab_size
    assert max(tok.encode("<bos><boi><eos>")) < layout.special_offset  # specials are never text


def test_train_from_files(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("\n".join(CORPUS), encoding="utf-8")
    t = TextTokenizer.train(files=[f], vocab_size=320)
    assert t.model_proto == TextTokenizer.train(CORPUS, vocab_size=320).model_proto


def test_errors(tmp_path, tok):
    with pytest.raises(ValueError, match="model_type must be one of"):
        TextTokenizer.train(CORPUS, model_type="wordpiece")
    with pytest.raises(ValueError, match="too small"):
        TextTokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match="needs texts"):
        TextTokenizer.train()
    with pytest.raises(FileNotFoundError, match="not found"):
        TextTokenizer.load(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a sentencepiece model"):
        TextTokenizer.load(bad)
    with pytest.raises(ValueError, match="not text ids"):
        tok.decode([tok.vocab_size])
    with pytest.raises(TypeError):
        TextTokenizer.train("one string", vocab_size=300)


def _hf_tokenizer_json(tmp_path):
    """A small byte-level BPE like Qwen's, trained with HF tokenizers, saved as tokenizer.json."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tk = tokenizers.Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = ["a red circle left of a blue square", "what color is the star?", "make the cross green"] * 20
    tk.train_from_iterator(texts, trainer)
    d = tmp_path / "hf-model"
    d.mkdir()
    tk.save(str(d / "tokenizer.json"))
    return d, tk


def test_hf_tokenizer_json_behind_the_same_interface(tmp_path):
    from arm_data.text_tokenizer import HFTextTokenizer, TextTokenizer

    d, raw = _hf_tokenizer_json(tmp_path)
    tok = TextTokenizer.load(d)                           # a HF model directory
    assert isinstance(tok, HFTextTokenizer) and tok.vocab_size == raw.get_vocab_size(with_added_tokens=True)
    s = "a green star right of a red circle? ünïcödé"
    ids = tok.encode(s)
    assert ids == raw.encode(s, add_special_tokens=False).ids and tok.decode(ids) == s
    assert tok.encode_batch([s, "red"]) == [ids, tok.encode("red")]
    layout = tok.layout(codebook_size=16, max_grid_h=4, max_grid_w=4)
    assert layout.text_vocab_size == tok.vocab_size
    with pytest.raises(ValueError, match="not text ids"):
        tok.decode([layout.image_offset])
    saved = tok.save(tmp_path / "export")                 # a directory: text_tokenizer.json
    assert saved.name == "text_tokenizer.json"
    again = TextTokenizer.load(saved)
    assert again.encode(s) == ids and again.same_vocabulary(tok)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a Hugging Face tokenizer.json"):
        TextTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        TextTokenizer.load(tmp_path)

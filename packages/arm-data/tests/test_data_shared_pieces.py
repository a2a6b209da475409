"""arm-data uses arm-tokenizer's one sentencepiece wrapper and one ``pil_to_tensor``."""

from __future__ import annotations

import pytest
import torch
from arm_data.shapes.dataset import ShapesImageDataset
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.images import pil_to_tensor
from arm_tokenizer.spm import SentencePieceModel

TEXTS = [f"{n} {c} shapes, 12 of them <boi>" for n in ("two", "three", "four") for c in ("red", "blue")]


def test_text_tokenizer_is_the_shared_wrapper(tmp_path):
    tok = TextTokenizer.train(TEXTS, vocab_size=300, save_to=tmp_path)
    assert isinstance(tok, SentencePieceModel)
    again = TextTokenizer.load(tmp_path)
    assert again.model_proto == tok.model_proto == TextTokenizer.train(TEXTS, vocab_size=300).model_proto
    s = "Zwölf <boi> shapes\ttwo"
    assert again.decode(again.encode(s)) == s  # byte fallback, no normalisation
    assert again.encode_batch([s, "red"]) == [again.encode(s), again.encode("red")]
    assert again.unk_id == 0 and again.id_to_piece(0) == "<unk>"


def test_shapes_dataset_pixels_and_the_deprecated_alias():
    ds = ShapesImageDataset(split="val", seed=0, width=32, height=32, length=2)
    item = ds[0]
    expected = pil_to_tensor(ds.world[0].image)
    assert item["images"].dtype == torch.float32 and torch.equal(item["images"], expected)
    import arm_data.shapes.dataset as dataset

    with pytest.warns(DeprecationWarning, match="moved to arm_tokenizer.images"):
        assert dataset.pil_to_tensor is pil_to_tensor

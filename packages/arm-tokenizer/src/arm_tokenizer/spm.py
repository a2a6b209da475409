"""The one sentencepiece wrapper of the ARM packages: deterministic in-memory training and a
loaded model.

Both text vocabularies build on it: the teachers' (:mod:`arm_tokenizer.teachers.spm`:
case-folded, pad/bos/eos ids) and the LM's (:class:`arm_data.text_tokenizer.TextTokenizer`:
byte fallback, no normalisation). Each passes its own trainer options; what makes a model
reproducible is here: one trainer thread (its parallel sections reorder ties), no input
sampling or shuffling, the model written to memory, so the same sentences and options give
byte-identical model bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from typing import Any

import sentencepiece as spm

__all__ = ["SentencePieceModel", "train_sentencepiece"]


def train_sentencepiece(sentences: Iterable[str], vocab_size: int, model_type: str = "bpe",
                        **options: Any) -> bytes:
    """Train a sentencepiece model on ``sentences`` in memory; returns the model bytes.

    ``vocab_size`` is an upper bound (``hard_vocab_limit=False``: a small corpus may have
    fewer distinct pieces). ``options`` are further ``SentencePieceTrainer`` arguments (ids of
    the special pieces, normalisation, byte fallback, ...)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type=model_type,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
        **options,
    )
    return buf.getvalue()


class SentencePieceModel:
    """A loaded sentencepiece model.

    Args:
        model_proto: the serialized model (bytes), or a path to a ``.model`` file.
    """

    def __init__(self, model_proto: bytes | str | os.PathLike) -> None:
        if not isinstance(model_proto, (bytes, bytearray)):
            with open(model_proto, "rb") as f:
                model_proto = f.read()
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)

    @property
    def model_proto(self) -> bytes:
        """The serialized model, as written to a ``.model`` file."""
        return self._proto

    @property
    def vocab_size(self) -> int:
        """Number of pieces (ids ``[0, vocab_size)``)."""
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids (no bos/eos added)."""
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, got a single str")
        return [list(ids) for ids in self._sp.encode(list(texts))]

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

"""The teachers' sentencepiece vocabulary: trained deterministically from captions.

Built on the shared wrapper :mod:`arm_tokenizer.spm` (arm-tokenizer cannot import arm-data's
text tokenizer: dependencies point one way; arm-data's builds on the same wrapper).
:func:`train_spm` trains a small BPE model in memory from a list of captions; the result
depends only on the *set* of captions (they are de-duplicated and sorted, and the shared
trainer runs single-threaded without sampling), so the same data always gives the same
model bytes.

Ids: ``0`` pad, ``1`` unk, ``2`` bos, ``3`` eos, then the pieces. Text is case-folded by
sentencepiece's ``nmt_nfkc_cf`` rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from arm_tokenizer.spm import SentencePieceModel, train_sentencepiece

__all__ = ["PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "train_spm", "SpmText"]

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def train_spm(captions: Iterable[str], vocab_size: int = 256, model_type: str = "bpe") -> bytes:
    """Train a sentencepiece model on ``captions``; returns the model bytes.

    BPE by default: on a small caption corpus it keeps frequent words whole (a unigram model
    trained on ~1,500 ShapesWorld captions stopped at 146 pieces and spelled "two" as
    ``t w o``), which keeps captions short for the text tower and the captioner.

    ``vocab_size`` is an upper bound (``hard_vocab_limit=False``): a templated caption
    language may have fewer distinct pieces than asked for.
    """
    sentences = sorted({c.strip() for c in captions if c and c.strip()})
    if len(sentences) < 2:
        raise ValueError(f"train_spm needs at least 2 distinct non-empty captions, got {len(sentences)}")
    if vocab_size < 8:
        raise ValueError(f"train_spm: vocab_size must be >= 8, got {vocab_size}")
    return train_sentencepiece(
        sentences, vocab_size, model_type,
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc_cf",
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=0,
    )


class SpmText(SentencePieceModel):
    """A loaded teacher sentencepiece model with the batching the teachers need.

    Args:
        model: the serialized model (bytes) or a path to a ``.model`` file.
    """

    def __init__(self, model: bytes | str) -> None:
        super().__init__(model)
        sp = self._sp
        if sp.pad_id() != PAD_ID or sp.bos_id() != BOS_ID or sp.eos_id() != EOS_ID:
            raise ValueError(
                "teacher sentencepiece model must use pad=0, unk=1, bos=2, eos=3; got "
                f"pad={sp.pad_id()}, bos={sp.bos_id()}, eos={sp.eos_id()}"
            )

    @property
    def proto(self) -> bytes:
        """The model bytes (what a teacher directory's ``spm.model`` holds)."""
        return self.model_proto

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encode_batch(texts)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) > EOS_ID])

    def batch(self, texts: Sequence[str], max_len: int, bos: bool = False, eos: bool = False) -> torch.Tensor:
        """``(B, L)`` long ids right-padded with ``PAD_ID``; ``L <= max_len`` (longer texts are
        truncated, keeping the EOS when asked for)."""
        rows = []
        for ids in self.encode(texts):
            budget = max_len - int(bos) - int(eos)
            ids = ([BOS_ID] if bos else []) + ids[:budget] + ([EOS_ID] if eos else [])
            rows.append(ids)
        length = max(1, max(len(r) for r in rows)) if rows else 1
        out = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

"""The text tokenizer: a thin, reproducible wrapper around sentencepiece, or around a
Hugging Face ``tokenizer.json`` when the LM starts from a HF text model (Qwen2.5-7B's text
ids are its own byte-level BPE's; see :class:`HFTextTokenizer`).

Trains BPE or unigram models (Kudo & Richardson 2018, https://arxiv.org/abs/1808.06226)
on any text, saves the ``*.model`` file atomically and loads it back. Choices, and why:

* **Byte fallback** is on: any string, in any script, round-trips (unknown characters
  become ``<0xNN>`` byte pieces instead of ``<unk>``).
* **No normalisation and no whitespace collapsing**: ``decode(encode(s)) == s`` exactly,
  so captions and answers compare verbatim.
* **Specials are not text**: the sentencepiece model holds only ``<unk>`` (id 0) plus
  the byte pieces and learned pieces. The LM's special tokens (``<bos>``, ``<boi>``, task
  and role tokens, ``<null>``) get stable ids *after* the text block in
  :class:`arm_data.vocab.VocabLayout`, so no user string can ever encode to one of them
  (a caption containing the characters ``<boi>`` is ordinary text).
* **Deterministic training**: one trainer thread, no input sampling or shuffling (the shared
  :func:`arm_tokenizer.spm.train_sentencepiece`), a fixed seed: the same corpus and options
  give a byte-identical ``.model``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm
from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from arm_tokenizer.spm import SentencePieceModel, train_sentencepiece

from arm_data.shapes.world import ShapesWorld
from arm_data.shards import iter_records
from arm_data.vocab import DEFAULT_SPECIAL_TOKENS, VocabLayout

MODEL_FILENAME = "text_tokenizer.model"
HF_FILENAME = "tokenizer.json"
MODEL_TYPES = ("bpe", "unigram")


def resolve_text_tokenizer(path: str | os.PathLike) -> Path:
    """The tokenizer file ``path`` names: a ``.model`` (sentencepiece) or ``.json`` (HF
    ``tokenizers``) file, or a directory holding ``text_tokenizer.model`` or ``tokenizer.json``
    (a HF model directory)."""
    p = Path(path)
    if p.is_dir():
        for name in (MODEL_FILENAME, HF_FILENAME):
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"no text tokenizer in {p}: expected {MODEL_FILENAME} (train one with "
                                f"`arm-data train-text-tokenizer`) or a HF {HF_FILENAME}")
    if not p.is_file():
        raise FileNotFoundError(f"text tokenizer model not found: {p} (train one with "
                                f"`arm-data train-text-tokenizer`)")
    return p


class TextTokenizer(SentencePieceModel):
    """A sentencepiece model: ``encode(str) -> list[int]``, ``decode(ids) -> str``.

    Build one with :meth:`train` or :meth:`load`; ids are ``[0, vocab_size)``.
    """

    def __init__(self, model_proto: bytes, source: str | None = None) -> None:
        super().__init__(bytes(model_proto))
        self.source = source

    # ------------------------------------------------------------------ construction
    @classmethod
    def train(
        cls,
        texts: Iterable[str] | None = None,
        files: Sequence[str | os.PathLike] | None = None,
        vocab_size: int = 1024,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        max_sentence_length: int = 8192,
        input_sentence_size: int = 0,
        seed: int = 0,
        save_to: str | os.PathLike | None = None,
    ) -> TextTokenizer:
        """Train a model on ``texts`` and/or the lines of ``files``.

        Args:
            texts: strings (one sentence or document each; newlines split them further).
            files: UTF-8 text files, one sentence per line.
            vocab_size: number of ids including ``<unk>`` and the 256 byte pieces; a corpus
                too small to fill it yields fewer (``vocab_size`` is then an upper bound).
            model_type: ``"bpe"`` or ``"unigram"``.
            character_coverage: fraction of characters covered by pieces (rest: bytes).
            max_sentence_length: longer lines are skipped by sentencepiece (bytes).
            input_sentence_size: if > 0, train on at most this many lines (the first ones:
                we never sample, to stay deterministic).
            seed: sentencepiece's random seed (affects unigram's EM initialisation).
            save_to: write the model there (a ``.model`` path or a directory).
        """
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {list(MODEL_TYPES)}, got {model_type!r}")
        if texts is None and not files:
            raise ValueError("TextTokenizer.train needs texts=... or files=[...]")
        min_size = 256 + 2
        if vocab_size < min_size:
            raise ValueError(f"vocab_size={vocab_size} is too small: byte fallback alone needs 257 "
                             f"ids (<unk> + 256 bytes); use at least {min_size}")
        for f in files or ():
            if not Path(f).is_file():
                raise FileNotFoundError(f"text tokenizer training file not found: {f}")

        lines = list(_iter_lines(texts, files, input_sentence_size))
        if not lines:
            raise ValueError("TextTokenizer.train: the corpus is empty")
        spm.set_random_generator_seed(seed)
        proto = train_sentencepiece(
            lines, vocab_size, model_type,
            byte_fallback=True,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            character_coverage=character_coverage,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            split_digits=True,
            max_sentence_length=max_sentence_length,
        )
        tok = cls(proto, source="trained")
        if save_to is not None:
            tok.save(save_to)
        return tok

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextTokenizer:
        """Load a ``.model`` file, a HF ``tokenizer.json`` (an :class:`HFTextTokenizer`), or
        the one inside a directory (see :func:`resolve_text_tokenizer`)."""
        p = resolve_text_tokenizer(path)
        if p.suffix == ".json":
            return HFTextTokenizer(p.read_bytes(), source=str(p))
        data = p.read_bytes()
        try:
            return TextTokenizer(data, source=str(p))
        except RuntimeError as e:
            raise ValueError(f"{p} is not a sentencepiece model ({e})") from e

    #: file suffix and default name of the serialized model
    suffix, filename = ".model", MODEL_FILENAME

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically; ``path`` is a file with this tokenizer's suffix
        (``.model``; ``.json`` for HF) or a directory."""
        p = Path(path)
        if p.suffix != self.suffix:
            p = p / self.filename
        atomic_write_bytes(p, self.model_proto)
        return p

    # ------------------------------------------------------------------ use
    def encode(self, text: str) -> list[int]:
        """Text -> ids (no bos/eos: the task formats add the LM's own specials)."""
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__}.encode expects str, got {type(text).__name__}")
        return self._encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; ids outside ``[0, vocab_size)`` raise (they are not text)."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are not text ids [0, {self.vocab_size}); strip special/"
                             f"image ids first (e.g. formats.TaskFormatter.answer_text)")
        return self._decode(ids)

    # the backend: sentencepiece here, HF tokenizers in HFTextTokenizer
    def _encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def _decode(self, ids: list[int]) -> str:
        return self._sp.decode(ids)

    def layout(self, codebook_size: int, max_grid_h: int = 32, max_grid_w: int = 32,
               special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS) -> VocabLayout:
        """The unified vocabulary for this tokenizer and a visual codebook."""
        return VocabLayout(self.vocab_size, codebook_size, max_grid_h, max_grid_w, tuple(special_tokens))

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, source={self.source!r})"


class HFTextTokenizer(TextTokenizer):
    """A Hugging Face ``tokenizers`` model (``tokenizer.json``) behind the same interface, so
    an LM initialised from a HF text model (``LMTrainer(hf_dir=...)``) reads the text ids it
    was trained on: point the data module's ``text_tokenizer`` at the model's
    ``tokenizer.json``. Text ids are all of its ids, added tokens included (Qwen2.5: 151,665);
    ARM's own specials come after them in :class:`VocabLayout`. ``encode`` adds no special
    tokens (the task formats add the LM's). Needs ``pip install tokenizers``.
    """

    suffix, filename = ".json", "text_tokenizer.json"

    def __init__(self, model_json: bytes, source: str | None = None) -> None:
        try:
            from tokenizers import Tokenizer  # deferred: an optional dependency (arm-data[hf])
        except ImportError as e:
            raise ImportError(f"{source or 'tokenizer.json'} is a Hugging Face tokenizer: "
                              "`pip install tokenizers` (or arm-data[hf]) to use it") from e
        self._proto = bytes(model_json)
        try:
            self._tk = Tokenizer.from_str(self._proto.decode("utf-8"))
        except Exception as e:    # tokenizers raises a bare Exception on bad JSON
            raise ValueError(f"{source}: not a Hugging Face tokenizer.json ({e})") from e
        self.source = source

    @classmethod
    def train(cls, *args: Any, **kwargs: Any) -> TextTokenizer:
        raise NotImplementedError("HFTextTokenizer wraps an existing tokenizer.json; train a "
                                  "sentencepiece model with TextTokenizer.train")

    @property
    def vocab_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

    @property
    def unk_id(self) -> int:
        unk = getattr(self._tk.model, "unk_token", None)
        i = self._tk.token_to_id(unk) if unk else None
        return -1 if i is None else i

    def _encode(self, text: str) -> list[int]:
        return self._tk.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tk.encode_batch(list(texts), add_special_tokens=False)]

    def _decode(self, ids: list[int]) -> str:
        return self._tk.decode(ids, skip_special_tokens=False)

    def id_to_piece(self, i: int) -> str:
        return self._tk.id_to_token(int(i))

    def same_vocabulary(self, other: TextTokenizer) -> bool:
        """Whether ``other`` maps every piece to the same id (e.g. the data's tokenizer and
        the HF model's own ``tokenizer.json``)."""
        return isinstance(other, HFTextTokenizer) and (
            self._tk.get_vocab(with_added_tokens=True) == other._tk.get_vocab(with_added_tokens=True))


def _iter_lines(texts: Iterable[str] | None, files: Sequence[str | os.PathLike] | None,
                limit: int) -> Iterator[str]:
    n = 0
    sources: list[Iterable[str]] = []
    if texts is not None:
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, not one string")
        sources.append(texts)
    for f in files or ():
        sources.append(_file_lines(Path(f)))
    for src in sources:
        for t in src:
            for line in str(t).splitlines():
                if not line.strip():
                    continue
                yield line
                n += 1
                if limit and n >= limit:
                    return


def _file_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            yield from f
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from e


# ---------------------------------------------------------------------- corpora + CLI
def record_texts(texts: dict) -> list[str]:
    """Every string of a shard record's texts (caption, question, answer, instruction, turns)."""
    out: list[str] = []
    for value in texts.values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):  # a conversation
            out.extend(t["text"] for t in value if isinstance(t, dict) and isinstance(t.get("text"), str))
    return out


def shapes_texts(split: str = "train", count: int = 10_000, seed: int = 0,
                 difficulty: Any = "full") -> list[str]:
    """Captions, QA pairs and edit instructions of ``count`` ShapesWorld scenes (no rendering)
    of the world of ``difficulty`` (``full``, ``demo`` or Difficulty fields)."""
    world = ShapesWorld(split=split, seed=seed, length=max(1, count), difficulty=difficulty)
    out: list[str] = []
    for i in range(count):
        s = world[i]
        out.append(s.caption)
        for qa in s.qa:
            out.extend((qa.question, qa.answer))
        out.append(s.edit.instruction)
    return out


def train_text_tokenizer_command(argv: list[str]) -> int:
    """Train the sentencepiece text tokenizer on shard texts, ShapesWorld text or files."""
    p = argparse.ArgumentParser(prog="arm-data train-text-tokenizer", description=train_text_tokenizer_command.__doc__)
    p.add_argument("--shards", help="a pre-tokenized directory: train on its texts (default --out: DIR/text_tokenizer.model)")
    p.add_argument("--source", help="shapes:train|val|heldout: train on ShapesWorld text")
    p.add_argument("--count", type=int, default=10_000, help="ShapesWorld scenes for --source")
    p.add_argument("--seed", type=int, default=0, help="ShapesWorld seed for --source")
    p.add_argument("--difficulty", default="full", help="ShapesWorld content for --source: full or demo")
    p.add_argument("--files", nargs="*", default=[], help="UTF-8 text files, one sentence per line")
    p.add_argument("--out", help="output .model path or directory")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--model-type", choices=list(MODEL_TYPES), default="bpe")
    args = p.parse_args(argv)
    texts: list[str] = []
    if args.shards:
        for r in iter_records(args.shards):
            texts.extend(record_texts(r.texts))
    if args.source:
        if not args.source.startswith("shapes:"):
            p.error(f"--source must be shapes:SPLIT, got {args.source!r} (use --files for text files)")
        texts.extend(shapes_texts(args.source.split(":", 1)[1], args.count, args.seed, args.difficulty))
    if not texts and not args.files:
        p.error("give at least one of --shards, --source, --files")
    out = args.out or (str(Path(args.shards) / MODEL_FILENAME) if args.shards else None)
    if out is None:
        p.error("--out is required without --shards")
    tok = TextTokenizer.train(texts or None, files=args.files or None, vocab_size=args.vocab_size,
                              model_type=args.model_type)
    path = tok.save(out)
    print(f"{path}: {tok.vocab_size} text ids trained on {len(texts)} strings"
          f"{' + ' + str(len(args.files)) + ' files' if args.files else ''}")
    return 0

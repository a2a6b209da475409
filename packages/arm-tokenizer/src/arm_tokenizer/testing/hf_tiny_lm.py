"""A tiny random Qwen2 causal-LM checkpoint, written exactly as real weights are.

Tests of ``hf_causal_lm`` (:mod:`arm_tokenizer.teachers.hf_causal_lm`) must exercise the
loading code that Qwen2.5-0.5B goes through, without the 1 GB of weights no test may
download. So the model is built with transformers' own ``Qwen2Config`` /
``Qwen2ForCausalLM`` and written with ``save_pretrained`` (``config.json`` +
``model.safetensors``), and its tokenizer is a byte-level BPE trained offline with
``tokenizers`` on a few sentences, wrapped in ``PreTrainedTokenizerFast`` with pad and eos
tokens and also written with ``save_pretrained``, so ``AutoTokenizer`` loads it as it
loads Qwen's.

Needs the ``hf`` extra (transformers, which brings tokenizers).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = ["TINY_QWEN2", "build_tiny_qwen2", "tiny_qwen2_dir"]

#: Qwen2 dims of the tiny checkpoint (Qwen2.5-0.5B: hidden 896, 24 layers, 14 heads,
#: 2 KV heads, intermediate 4864): same family and GQA layout, a few thousand parameters.
TINY_QWEN2: dict[str, int | float | bool] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,  # room for a full 32x32 prefix plus a caption
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,  # as Qwen2.5-0.5B
    # random weights with transformers' default std 0.02 give near-uniform outputs whatever
    # the input; 0.2 lets a prefix move the caption loss, as a trained LM's does
    "initializer_range": 0.2,
}

# What the tokenizer learns its merges from: ShapesWorld-like captions.
_CORPUS = (
    "a red circle on the left",
    "a blue square in the middle",
    "two green triangles at the top",
    "a yellow star next to a small purple circle",
    "an orange square below a large red triangle",
    "three shapes: a circle, a square and a triangle",
)
_EOS, _PAD = "<|endoftext|>", "<|pad|>"

_CACHE: dict[tuple[int, bool], str] = {}


def build_tiny_qwen2(directory: str | os.PathLike, *, seed: int = 0, vocab_size: int = 320,
                     with_tokenizer: bool = True) -> Path:
    """Write a tiny random Qwen2 causal LM (and, unless ``with_tokenizer`` is False, its
    tokenizer) to ``directory``; returns the directory.

    ``with_tokenizer=False`` writes the model alone: the "caption LM directory without a
    tokenizer" error case.
    """
    # deferred: transformers is the optional [hf] extra
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[_EOS, _PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=_EOS, pad_token=_PAD)

    config = Qwen2Config(vocab_size=len(tok), bos_token_id=None, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **TINY_QWEN2)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    if with_tokenizer:
        tok.save_pretrained(out)
    return out


def tiny_qwen2_dir(with_tokenizer: bool = True, seed: int = 0) -> str:
    """A tiny Qwen2 checkpoint in a temporary directory, built once per process."""
    key = (seed, with_tokenizer)
    d = _CACHE.get(key)
    if d is None or not (Path(d) / "config.json").is_file():
        name = "tiny-qwen2" if with_tokenizer else "tiny-qwen2-no-tokenizer"
        d = str(build_tiny_qwen2(Path(tempfile.mkdtemp(prefix="arm-hf-lm-")) / name, seed=seed,
                                 with_tokenizer=with_tokenizer))
        _CACHE[key] = d
    return d

"""Tiny random Hugging Face checkpoints of the real tower families, for tests and examples.

The ``hf_vision`` / ``hf_text`` components load SigLIP, SigLIP2 and CLIP checkpoints in
transformers format. No weights can be downloaded in tests, so these builders make the
same kind of directory a real checkpoint is: transformers' own config classes, random
weights written with ``save_pretrained``, an image-processor config with the family's
mean/std, and a working tokenizer saved with ``save_pretrained`` so
``AutoTokenizer.from_pretrained(dir)`` loads it. Tests therefore run the exact loading
code that real weights use.

The tokenizer part is generic (:func:`build_word_tokenizer`): a word-level
``tokenizers`` model trained offline on a few sentences, wrapped in a
``PreTrainedTokenizerFast``; causal-LM builders can reuse it.

Needs ``transformers`` (``pip install 'arm-tokenizer[hf]'``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["TINY_SENTENCES", "TINY_FAMILIES", "build_word_tokenizer", "build_siglip2_char_tokenizer",
           "build_tiny_dual_encoder", "tiny_hf_dir"]

#: Sentences the tiny tokenizers are trained on (every word of the toy world's captions).
TINY_SENTENCES = (
    "a red circle on the left", "a green square on the right", "a blue circle on the right",
    "a yellow square on the left", "a photo of a cat", "a photo of a dog", "two shapes in a picture",
)

#: The families :func:`build_tiny_dual_encoder` can build.
TINY_FAMILIES = ("siglip", "siglip2", "clip")

Family = Literal["siglip", "siglip2", "clip"]


def build_word_tokenizer(
    directory: str | os.PathLike | None,
    texts: Sequence[str] = TINY_SENTENCES,
    *,
    lowercase: bool = True,
    bos_token: str | None = None,
    eos_token: str = "</s>",
    pad_token: str = "<pad>",
    unk_token: str = "<unk>",
    add_eos: bool = True,
    add_bos: bool = False,
    model_max_length: int = 64,
) -> Any:
    """A word-level tokenizer trained offline on ``texts``, saved to ``directory`` if given.

    Special tokens come first in the vocabulary (pad, unk, eos, bos), so ``pad_token_id``
    is 0. With ``add_eos`` (and ``add_bos``) the post-processor adds the tokens around every
    text, as SigLIP's and CLIP's tokenizers do. Returns the ``PreTrainedTokenizerFast``.
    """
    # deferred: transformers is the optional [hf] extra
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [pad_token, unk_token, eos_token] + ([bos_token] if bos_token else [])
    tok = Tokenizer(models.WordLevel(unk_token=unk_token))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=specials))
    template, pairs = "$A", "$A $B"
    if add_bos and bos_token:
        template, pairs = f"{bos_token} {template}", f"{bos_token} {pairs}"
    if add_eos:
        template, pairs = f"{template} {eos_token}", f"{pairs} {eos_token}"
    special_ids = [(t, tok.token_to_id(t)) for t in specials if t in template or t in pairs]
    tok.post_processor = processors.TemplateProcessing(single=template, pair=pairs, special_tokens=special_ids)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=pad_token, unk_token=unk_token, eos_token=eos_token,
        bos_token=bos_token, model_max_length=model_max_length,
    )
    if directory is not None:
        fast.save_pretrained(str(directory))
    return fast


def build_siglip2_char_tokenizer(directory: str | os.PathLike | None, texts: Sequence[str] = TINY_SENTENCES,
                                 model_max_length: int = 64) -> Any:
    """transformers' own ``Siglip2Tokenizer`` (Gemma layout: lowercase, ``▁`` for spaces,
    BPE with byte fallback) over a character vocabulary of ``texts``, saved if asked.

    A SigLIP2 directory's ``AutoTokenizer`` resolves to this class by model type, so the
    tiny SigLIP2 checkpoint uses it rather than :func:`build_word_tokenizer`.
    """
    # deferred: transformers is the optional [hf] extra
    from transformers import Siglip2Tokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for ch in sorted(set("".join(texts).lower().replace(" ", "\u2581"))):
        vocab.setdefault(ch, len(vocab))
    tok = Siglip2Tokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)
    if directory is not None:
        tok.save_pretrained(str(directory))
    return tok


def _tiny_text(tok: Any, max_len: int) -> dict[str, Any]:
    return {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": max_len, "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id if tok.bos_token_id is not None
            else tok.eos_token_id}


def build_tiny_dual_encoder(
    directory: str | os.PathLike,
    family: Family = "siglip2",
    *,
    image_size: int = 32,
    patch_size: int = 8,
    max_num_patches: int = 64,
    seed: int = 0,
) -> Path:
    """Write a tiny random SigLIP / SigLIP2 / CLIP dual encoder (vision + text) to ``directory``.

    ``config.json`` + ``model.safetensors`` (the whole dual model, logit scale and bias
    included), the tokenizer files and ``preprocessor_config.json`` (the family's mean/std;
    SigLIP2 also its NaFlex ``max_num_patches``). Width 32, 2 layers, 2 heads.
    """
    # deferred: transformers is the optional [hf] extra
    import transformers as tf

    if family not in TINY_FAMILIES:
        raise ValueError(f"build_tiny_dual_encoder: family must be one of {TINY_FAMILIES}, got {family!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    max_len = 16
    if family == "siglip2":
        tok = build_siglip2_char_tokenizer(out, model_max_length=max_len)
    else:
        tok = build_word_tokenizer(out, model_max_length=max_len)
    text = _tiny_text(tok, max_len)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "patch_size": patch_size}
    torch.manual_seed(seed)
    if family == "siglip":
        cfg = tf.SiglipConfig(text_config=dict(text, projection_size=24),
                              vision_config=dict(vision, image_size=image_size))
        model = tf.SiglipModel(cfg)
        proc = tf.SiglipImageProcessor(size={"height": image_size, "width": image_size},
                                       image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    elif family == "siglip2":
        # NaFlex: the position grid is num_patches = (image_size / patch)^2 learned positions,
        # resized per image; the processor caps a picture at max_num_patches.
        cfg = tf.Siglip2Config(text_config=dict(text, projection_size=24),
                               vision_config=dict(vision, num_patches=(image_size // patch_size) ** 2))
        model = tf.Siglip2Model(cfg)
        proc = tf.Siglip2ImageProcessor(patch_size=patch_size, max_num_patches=max_num_patches,
                                        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    else:
        cfg = tf.CLIPConfig(text_config=text,
                            vision_config=dict(vision, image_size=image_size), projection_dim=24)
        model = tf.CLIPModel(cfg)
        proc = tf.CLIPImageProcessor(size={"shortest_edge": image_size},
                                     crop_size={"height": image_size, "width": image_size})
    # Random weights, but a recognisable scale and bias: tests check they are read back.
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
        if hasattr(model, "logit_bias"):
            model.logit_bias.fill_(-3.0)
    model.save_pretrained(str(out))
    proc.save_pretrained(str(out))
    return out


_CACHE: dict[str, str] = {}


def tiny_hf_dir(family: Family = "siglip2") -> str:
    """A tiny checkpoint of ``family`` in a temporary directory, built once per process
    (what ``example_args()`` of ``hf_vision`` / ``hf_text`` use)."""
    path = _CACHE.get(family)
    if path is None or not (Path(path) / "config.json").is_file():
        path = str(build_tiny_dual_encoder(Path(tempfile.mkdtemp(prefix=f"arm-tiny-{family}-")), family))
        _CACHE[family] = path
    return path

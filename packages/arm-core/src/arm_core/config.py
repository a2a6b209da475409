"""Model configuration for the ARM language model: one typed dataclass plus presets as data.

In the spirit of litgpt: :class:`Config` holds plain, serializable data only (no classes,
no tensors); values derived from others (``head_size``, the text/visual head split) are
computed in ``__post_init__``. Presets are dicts, one per checkpoint shape, each citing
the Hugging Face ``config.json`` it mirrors.

The unified vocabulary (decided by ``arm_data.vocab.VocabLayout``) is described here only
by numbers::

    id:   0 ............ text_vocab_size ... image_offset ........ image_offset+K ... vocab_size
          | text tokens  | specials, shape   | image codes (K =     | (anything else:
          | of the base  | tokens            | image_codebook_size) |  more specials)
          | text LM      |                   |                      |

With ``separate_visual_head=True`` (ARM adds one to Qwen2.5-7B) the image-code ids are
predicted by their own linear head and every other id by the text head; see
:meth:`arm_core.model.GPT.head`.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["Config", "PRESETS", "list_presets", "SUPPORTED_ROPE_SCALING"]

# rope_scaling "rope_type"s we implement (see model.build_rope_cache); anything else is refused.
SUPPORTED_ROPE_SCALING = ("default", "llama3")


@dataclass
class Config:
    """Shape of a Qwen2/Llama-family decoder over a unified text + image-code vocabulary.

    Args:
        name: Preset or user-chosen name (informational; saved with checkpoints).
        vocab_size: Total number of token ids (embedding rows): text + specials + shape
            tokens + image codes.
        text_vocab_size: Ids ``[0, text_vocab_size)`` belong to the base text tokenizer
            (rows copied when extending a pretrained text LM). ``None``: ``image_offset``
            when there are image codes, else ``vocab_size``.
        image_offset: First image-code id.
        image_codebook_size: Number of image-code ids (``0``: a text-only LM).
        separate_visual_head: Predict image codes with their own linear head (ARM).
        n_layer: Number of transformer blocks.
        n_head: Number of query heads.
        n_query_groups: Number of key/value heads (GQA); ``n_head`` = MHA, ``1`` = MQA.
        n_embd: Hidden width.
        head_size: Per-head width; ``None``: ``n_embd // n_head``.
        intermediate_size: SwiGLU hidden width.
        rope_theta: RoPE base frequency.
        rope_scaling: HF-style ``rope_scaling`` dict; only ``rope_type`` ``"llama3"`` (with
            ``factor``, ``low_freq_factor``, ``high_freq_factor``,
            ``original_max_position_embeddings``) is implemented.
        norm_eps: RMSNorm epsilon.
        qkv_bias: Bias on the q/k/v projections (Qwen2).
        tie_embeddings: Share the token embedding with the text head.
        max_seq_len: Longest sequence (prompt + generated) the model is used with.
        init_std: Std of the normal init of linear/embedding weights.
        image_position_slots: Learned absolute positions for image codes: code ``i`` of an
            image (raster order, counted from the first code after the last non-code
            token) gets row ``i`` of a table added to its embedding, so the model knows
            *where* in the grid it is without inferring it from RoPE distances. ``0``: none
            (ARM and Qwen2 rely on RoPE alone). Must be at least the most codes per image
            (64 for an 8x8 grid). Initialised like the token embedding; zeros when added to
            a trained model (``GPT.add_image_positions``), which leaves its outputs
            unchanged until it trains. No Hugging Face equivalent.
    """

    name: str = "custom"
    vocab_size: int = 256
    text_vocab_size: int | None = None
    image_offset: int = 0
    image_codebook_size: int = 0
    separate_visual_head: bool = False
    n_layer: int = 2
    n_head: int = 4
    n_query_groups: int = 4
    n_embd: int = 64
    head_size: int | None = None
    intermediate_size: int = 128
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    tie_embeddings: bool = False
    max_seq_len: int = 512
    init_std: float = 0.02
    image_position_slots: int = 0

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"Config {self.name!r}: {msg}")

        for k in ("vocab_size", "n_layer", "n_head", "n_query_groups", "n_embd",
                  "intermediate_size", "max_seq_len"):
            if int(getattr(self, k)) <= 0:
                raise bad(f"{k} must be > 0, got {getattr(self, k)}")
        if self.head_size is None:
            if self.n_embd % self.n_head:
                raise bad(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                          "set head_size explicitly")
            self.head_size = self.n_embd // self.n_head
        if self.head_size % 2:
            raise bad(f"head_size={self.head_size} must be even for RoPE")
        if self.n_head % self.n_query_groups:
            raise bad(f"n_head={self.n_head} must be a multiple of "
                      f"n_query_groups={self.n_query_groups}")
        if self.image_codebook_size < 0 or self.image_offset < 0:
            raise bad("image_offset and image_codebook_size must be >= 0")
        if self.image_offset + self.image_codebook_size > self.vocab_size:
            raise bad(f"image ids [{self.image_offset}, "
                      f"{self.image_offset + self.image_codebook_size}) exceed "
                      f"vocab_size={self.vocab_size}")
        if self.image_position_slots < 0:
            raise bad(f"image_position_slots must be >= 0, got {self.image_position_slots}")
        if self.separate_visual_head and self.image_codebook_size == 0:
            raise bad("separate_visual_head=True needs image_codebook_size > 0")
        if self.text_vocab_size is None:
            self.text_vocab_size = self.image_offset if self.image_codebook_size else self.vocab_size
        if not 0 < self.text_vocab_size <= self.vocab_size:
            raise bad(f"text_vocab_size={self.text_vocab_size} must be in (0, {self.vocab_size}]")
        if self.image_codebook_size and self.text_vocab_size > self.image_offset:
            raise bad(f"text ids [0, {self.text_vocab_size}) overlap image ids starting at "
                      f"{self.image_offset}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))
            if kind not in SUPPORTED_ROPE_SCALING:
                raise bad(f"rope_scaling type {kind!r} is not implemented; supported: "
                          f"{list(SUPPORTED_ROPE_SCALING)}")

    # ---- derived -------------------------------------------------------------------------
    @property
    def image_end(self) -> int:
        """One past the last image-code id."""
        return self.image_offset + self.image_codebook_size

    @property
    def n_text_logits(self) -> int:
        """Rows of the text head: every id except image codes when the visual head is separate."""
        return self.vocab_size - (self.image_codebook_size if self.separate_visual_head else 0)

    # ---- construction / serialization ----------------------------------------------------
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> Config:
        """Build a preset by name (see :data:`PRESETS`), with field overrides."""
        if name not in PRESETS:
            close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.3)
            raise ValueError(f"unknown model preset {name!r}; close matches: {close}; "
                             f"all presets: {sorted(PRESETS)}")
        kw = copy.deepcopy(PRESETS[name])
        kw.update(overrides)
        kw.setdefault("name", name)
        return cls.from_dict(kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a dict, refusing unknown keys (typos would otherwise be silent)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
            raise ValueError(f"unknown Config field(s) {unknown} (did you mean {hints}?)")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write as JSON (``arm_config.json`` style)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_vocab(self, vocab_size: int, image_offset: int, image_codebook_size: int,
                   separate_visual_head: bool | None = None,
                   text_vocab_size: int | None = None) -> Config:
        """A copy with another vocabulary layout (used by vocabulary extension)."""
        d = self.to_dict()
        d.update(vocab_size=vocab_size, image_offset=image_offset,
                 image_codebook_size=image_codebook_size,
                 text_vocab_size=text_vocab_size if text_vocab_size is not None
                 else self.text_vocab_size)
        if separate_visual_head is not None:
            d["separate_visual_head"] = separate_visual_head
        return Config.from_dict(d)


# Presets: plain data, one per checkpoint shape. Numbers from the cited config.json files.
PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests: a few thousand parameters, separate visual head on a small unified vocab.
    "tiny": dict(vocab_size=96, text_vocab_size=48, image_offset=64, image_codebook_size=32,
                 separate_visual_head=True, n_layer=2, n_head=4, n_query_groups=2, n_embd=32,
                 intermediate_size=64, rope_theta=10000.0, norm_eps=1e-6, qkv_bias=True,
                 max_seq_len=128),
    # ShapesWorld demo (~5M params at the default vocab): sequences of ~100-300 tokens.
    # The vocabulary numbers are overridden from arm_data's VocabLayout in the YAML.
    "shapes-small": dict(vocab_size=2304, text_vocab_size=1024, image_offset=1280,
                         image_codebook_size=1024, separate_visual_head=True, n_layer=6,
                         n_head=8, n_query_groups=4, n_embd=256, intermediate_size=704,
                         rope_theta=10000.0, norm_eps=1e-6, qkv_bias=False, max_seq_len=512),
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json
    "llama-1b": dict(vocab_size=128256, n_layer=16, n_head=32, n_query_groups=8, n_embd=2048,
                     head_size=64, intermediate_size=8192, rope_theta=500000.0,
                     rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                       high_freq_factor=4.0,
                                       original_max_position_embeddings=8192),
                     norm_eps=1e-5, qkv_bias=False, tie_embeddings=True, max_seq_len=131072),
    # https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json
    "qwen2.5-0.5b": dict(vocab_size=151936, n_layer=24, n_head=14, n_query_groups=2,
                         n_embd=896, intermediate_size=4864, rope_theta=1000000.0,
                         norm_eps=1e-6, qkv_bias=True, tie_embeddings=True, max_seq_len=32768),
    # https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json (text-only, as released)
    "qwen2.5-7b": dict(vocab_size=152064, n_layer=28, n_head=28, n_query_groups=4, n_embd=3584,
                       intermediate_size=18944, rope_theta=1000000.0, norm_eps=1e-6,
                       qkv_bias=True, tie_embeddings=False, max_seq_len=131072),
    # ARM-7B: Qwen2.5-7B plus 2^16 FSQ image codes (16 dims x 2 levels) predicted by a
    # separate visual head. Specials and shape tokens live in Qwen's padded, unused rows
    # 151665..152063, so the text vocab keeps its size and codes start at 152064.
    "arm-7b": dict(vocab_size=152064 + 65536, text_vocab_size=151665, image_offset=152064,
                   image_codebook_size=65536, separate_visual_head=True, n_layer=28, n_head=28,
                   n_query_groups=4, n_embd=3584, intermediate_size=18944,
                   rope_theta=1000000.0, norm_eps=1e-6, qkv_bias=True, tie_embeddings=False,
                   max_seq_len=81920),
}


def list_presets() -> list[str]:
    """Names accepted by :meth:`Config.from_name`."""
    return sorted(PRESETS)

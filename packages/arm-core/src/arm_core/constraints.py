"""Constrained image spans: the grammar of an image inside an ARM token sequence.

A generated image is ``<h=H> <w=W> <boi> c_1 ... c_{H·W} <eoi>`` (arm-data's format): shape
tokens fix the token grid (any height × width, hence any aspect ratio; a height token and a
width token, or one combined shape token), begin-of-image opens the span, exactly ``H·W``
image codes follow, then end-of-image. Outside image spans image codes are
not allowed. :class:`ImageSpanConstraint` holds the ids (from ``arm_data.vocab.VocabLayout``,
passed as plain numbers) and turns them into lookup tensors; :class:`SpanState` is the
per-row state machine, advanced and applied with tensor ops only (no host syncs), so it
runs inside the compiled decode loop.

Rules applied to logits at each step, per row:

- inside a span with codes left: only image codes;
- inside a span with none left: only ``eoi``;
- outside a span: no image codes, no ``eoi``, and ``boi`` only after shape tokens
  (since the last ``eoi``) announced both the height and the width.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["ImageSpanConstraint", "SpanState", "SpanTables"]


@dataclass
class SpanState:
    """Per-row constraint state, all ``(B,)`` tensors.

    ``height`` / ``width``: the grid announced by shape tokens since the last ``eoi``
    (0 = not yet); ``remaining``: codes still to emit in the open span; ``in_image``: a span
    is open.
    """

    height: Tensor
    width: Tensor
    remaining: Tensor
    in_image: Tensor

    @classmethod
    def zeros(cls, batch_size: int, device: torch.device | str | None = None) -> SpanState:
        z = torch.zeros(batch_size, dtype=torch.long, device=device)
        return cls(z, z.clone(), z.clone(),
                   torch.zeros(batch_size, dtype=torch.bool, device=device))

    @property
    def owes_code(self) -> Tensor:
        """``(B,)`` bool: the row is inside a span with codes left, so the next token must be
        an image code (and any code may be)."""
        return self.in_image & (self.remaining > 0)

    def repeat(self, n: int) -> SpanState:
        return SpanState(self.height.repeat(n), self.width.repeat(n), self.remaining.repeat(n),
                         self.in_image.repeat(n))


@dataclass
class SpanTables:
    """Vocab-sized lookup tensors: ``height_of`` / ``width_of`` ``(V,)`` = the height / width
    a token announces (0 for other tokens); ``is_code``, ``is_boi``, ``is_eoi`` ``(V,)`` bool."""

    height_of: Tensor
    width_of: Tensor
    is_code: Tensor
    is_boi: Tensor
    is_eoi: Tensor
    boi_id: int
    eoi_id: int

    def allowed(self, state: SpanState) -> Tensor:
        """``(B, V)`` bool: the ids each row may emit next."""
        rem0 = (state.remaining <= 0)[:, None]
        in_span = torch.where(rem0, self.is_eoi[None], self.is_code[None])
        boi_ok = ((state.height > 0) & (state.width > 0))[:, None]
        text = ~self.is_code[None] & ~self.is_eoi[None] & (~self.is_boi[None] | boi_ok)
        return torch.where(state.in_image[:, None], in_span, text)

    def mask_logits(self, logits: Tensor, state: SpanState) -> Tensor:
        """Set disallowed logits ``(B, V)`` to ``-inf``."""
        return logits.masked_fill(~self.allowed(state), float("-inf"))

    def advance(self, state: SpanState, tokens: Tensor, valid: Tensor | None = None) -> SpanState:
        """The state after each row emitted ``tokens`` ``(B,)`` (rows with ``valid`` False,
        e.g. padding, keep their state)."""
        h, w = self.height_of[tokens], self.width_of[tokens]
        is_b, is_e = tokens == self.boi_id, tokens == self.eoi_id
        is_c = self.is_code[tokens] & state.in_image
        zero = torch.zeros_like(state.remaining)
        height = torch.where(is_e, zero, torch.where(h > 0, h, state.height))
        width = torch.where(is_e, zero, torch.where(w > 0, w, state.width))
        remaining = torch.where(is_b, height * width, state.remaining - is_c.long())
        remaining = torch.where(is_e, zero, remaining)
        in_image = (state.in_image | is_b) & ~is_e
        if valid is not None:
            height = torch.where(valid, height, state.height)
            width = torch.where(valid, width, state.width)
            remaining = torch.where(valid, remaining, state.remaining)
            in_image = torch.where(valid, in_image, state.in_image)
        return SpanState(height, width, remaining, in_image)

    def scan(self, tokens: Tensor, valid: Tensor | None = None,
             state: SpanState | None = None) -> tuple[SpanState, list[SpanState]]:
        """Run the state machine over ``tokens`` ``(B, T)``; returns the final state and
        the state *before* each position (what constrained that position)."""
        B, T = tokens.shape
        state = state or SpanState.zeros(B, tokens.device)
        before = []
        for t in range(T):
            before.append(state)
            state = self.advance(state, tokens[:, t], None if valid is None else valid[:, t])
        return state, before


@dataclass(frozen=True)
class ImageSpanConstraint:
    """The ids that define image spans (plain numbers, e.g. from ``VocabLayout``).

    Args:
        boi_id: Begin-of-image token id.
        eoi_id: End-of-image token id.
        image_offset: First image-code id.
        codebook_size: Number of image codes (ids ``[image_offset, image_offset + codebook_size)``).
        height_tokens: Height token id (``<h=i>``) -> grid height ``i``.
        width_tokens: Width token id (``<w=j>``) -> grid width ``j``.
        shape_tokens: Combined shape token id -> ``(h, w)`` (for layouts with one token per
            grid); give these, or height and width tokens, or both.
    """

    boi_id: int
    eoi_id: int
    image_offset: int
    codebook_size: int
    height_tokens: Mapping[int, int] = field(default_factory=dict)
    width_tokens: Mapping[int, int] = field(default_factory=dict)
    shape_tokens: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        end = self.image_offset + self.codebook_size
        where = "ImageSpanConstraint"
        if self.codebook_size <= 0:
            raise ValueError(f"{where}: codebook_size must be > 0, got {self.codebook_size}")
        if not (self.shape_tokens or (self.height_tokens and self.width_tokens)):
            raise ValueError(f"{where}: give height_tokens and width_tokens (id -> size) or "
                             "shape_tokens (id -> (h, w)); without them no image can open")
        for name in ("boi_id", "eoi_id"):
            i = getattr(self, name)
            if self.image_offset <= i < end:
                raise ValueError(f"{where}: {name}={i} lies inside the image-code range "
                                 f"[{self.image_offset}, {end})")
        sizes = {**{k: (v, v) for k, v in self.height_tokens.items()},
                 **{k: (v, v) for k, v in self.width_tokens.items()}, **self.shape_tokens}
        for tok, hw in sizes.items():
            if len(hw) != 2 or hw[0] <= 0 or hw[1] <= 0:
                raise ValueError(f"{where}: shape token {tok} maps to {hw!r}; expected positive sizes")
            if self.image_offset <= tok < end or tok in (self.boi_id, self.eoi_id):
                raise ValueError(f"{where}: shape token {tok} collides with image codes or boi/eoi")

    @classmethod
    def from_layout(cls, layout: Any) -> ImageSpanConstraint:
        """Build from ``arm_data.vocab.VocabLayout`` (or any object with ``boi_id``,
        ``eoi_id``, ``image_offset``, ``codebook_size``, ``max_grid_h``, ``max_grid_w`` and
        ``shape_token_ids(h, w) -> (h_id, w_id)``)."""
        need = ("boi_id", "eoi_id", "image_offset", "codebook_size", "max_grid_h", "max_grid_w",
                "shape_token_ids")
        missing = [a for a in need if not hasattr(layout, a)]
        if missing:
            raise TypeError(f"{type(layout).__name__} lacks {missing} needed for an "
                            "ImageSpanConstraint")
        heights = {layout.shape_token_ids(h, 1)[0]: h for h in range(1, layout.max_grid_h + 1)}
        widths = {layout.shape_token_ids(1, w)[1]: w for w in range(1, layout.max_grid_w + 1)}
        return cls(int(layout.boi_id), int(layout.eoi_id), int(layout.image_offset),
                   int(layout.codebook_size), heights, widths)

    def tables(self, vocab_size: int, device: torch.device | str | None = None) -> SpanTables:
        """Lookup tensors over a ``vocab_size`` vocabulary."""
        end = self.image_offset + self.codebook_size
        ids = [self.boi_id, self.eoi_id, end - 1, *self.shape_tokens, *self.height_tokens,
               *self.width_tokens]
        if max(ids) >= vocab_size:
            raise ValueError(f"constraint ids reach {max(ids)} but the model's vocab_size is "
                             f"{vocab_size}: the tokenizer layout and the LM checkpoint disagree")
        height_of = torch.zeros(vocab_size, dtype=torch.long)
        width_of = torch.zeros(vocab_size, dtype=torch.long)
        for tok, h in self.height_tokens.items():
            height_of[tok] = h
        for tok, w in self.width_tokens.items():
            width_of[tok] = w
        for tok, (h, w) in self.shape_tokens.items():
            height_of[tok], width_of[tok] = h, w
        is_code = torch.zeros(vocab_size, dtype=torch.bool)
        is_code[self.image_offset:end] = True
        ids_t = torch.arange(vocab_size)
        return SpanTables(height_of.to(device), width_of.to(device), is_code.to(device),
                          (ids_t == self.boi_id).to(device), (ids_t == self.eoi_id).to(device),
                          self.boi_id, self.eoi_id)

"""The unified vocabulary of the ARM language model: the ONE place that defines it.

ARM (arXiv 2606.11188) trains one decoder over text tokens, special tokens, *shape tokens*
(which state an image's token-grid height and width, so any resolution and aspect ratio can
be generated) and the discrete codes of the visual tokenizer. :class:`VocabLayout` assigns
every one of them a stable integer id, in four contiguous blocks::

    0                T              shape_offset          image_offset             total_size
    |  text ids      |  specials    | <h=1>..<h=Hmax> <w=1>..<w=Wmax> | image codes 0..K-1 |
    |  (tokenizer)   |  <pad> <bos> |                                 |  (codebook_size K) |
    |                |  <eos> <boi> |                                 |                    |
    |                |  <eoi> ...   |                                 |                    |

* text ids ``[0, T)`` are the text tokenizer's own ids, unchanged (so a pretrained text LM's
  embedding rows keep their meaning);
* specials follow in the order of ``special_tokens`` (the order IS the id assignment, so it
  is stored in checkpoints and never re-sorted);
* shape tokens: ``<h=i>`` is ``shape_offset + i - 1`` for ``i`` in ``1..max_grid_h``, then
  ``<w=j>`` is ``shape_offset + max_grid_h + j - 1``;
* image code ``c`` is ``image_offset + c``. The image block is last so the LM's separate
  visual head (ARM adds one beside the text head) covers exactly
  ``[image_offset, total_size)`` and the text head covers ``[0, image_offset)``.

The layout is plain data: :meth:`VocabLayout.to_dict` / :meth:`from_dict` and
:meth:`save` / :meth:`load` (JSON) let an LM checkpoint carry it, and :meth:`check_compatible`
gives a clear error when a checkpoint and a tokenizer disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from arm_tokenizer.framework.checkpoint import atomic_write_bytes

#: The specials every ARM sequence format needs, in id order. ``<null>`` stands in for a
#: dropped condition (CFG's unconditional branch); ``<user>``/``<assistant>`` mark turns.
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<bos>",
    "<eos>",
    "<boi>",
    "<eoi>",
    "<t2i>",
    "<und>",
    "<edit>",
    "<text>",
    "<user>",
    "<assistant>",
    "<null>",
)

#: Specials that the task formats in :mod:`arm_data.formats` rely on.
REQUIRED_SPECIAL_TOKENS: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS

LAYOUT_VERSION = 1


class VocabError(ValueError):
    """An invalid vocabulary layout, an unknown token name or an out-of-range id."""


def _canonical(name: str) -> str:
    """``"boi"`` and ``"<boi>"`` name the same special."""
    name = name.strip()
    return name if name.startswith("<") and name.endswith(">") else f"<{name}>"


@dataclass(frozen=True)
class VocabLayout:
    """Id assignment for text, special, shape and image tokens (see the module docstring).

    Args:
        text_vocab_size: ``T``, the text tokenizer's vocabulary size; text ids are ``[0, T)``.
        codebook_size: ``K``, the visual tokenizer's number of codes; image ids are
            ``[image_offset, image_offset + K)``.
        max_grid_h: the largest token-grid height a shape token can state (``<h=1>`` ..
            ``<h=max_grid_h>``).
        max_grid_w: the largest token-grid width (``<w=1>`` .. ``<w=max_grid_w>``).
        special_tokens: names of the special tokens, in id order, each written ``<name>``;
            must include every name in :data:`REQUIRED_SPECIAL_TOKENS`. Extra names may be
            appended (append only: inserting shifts ids and breaks old checkpoints); the
            token data module appends those its plugin tasks use
            (:func:`arm_data.tasks.vocab_specials`).
    """

    text_vocab_size: int
    codebook_size: int
    max_grid_h: int = 32
    max_grid_w: int = 32
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS
    _special_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("text_vocab_size", "codebook_size", "max_grid_h", "max_grid_w"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VocabError(f"VocabLayout.{name} must be a positive int, got {value!r}")
        specials = tuple(self.special_tokens)
        object.__setattr__(self, "special_tokens", specials)
        bad = [s for s in specials if not (isinstance(s, str) and len(s) > 2 and s[0] == "<" and s[-1] == ">")]
        if bad:
            raise VocabError(f"special tokens must be written '<name>', got {bad}")
        dupes = sorted({s for s in specials if specials.count(s) > 1})
        if dupes:
            raise VocabError(f"duplicate special tokens {dupes} in {list(specials)}")
        missing = [s for s in REQUIRED_SPECIAL_TOKENS if s not in specials]
        if missing:
            raise VocabError(
                f"special_tokens lacks {missing}, which the task formats need; "
                f"required: {list(REQUIRED_SPECIAL_TOKENS)}"
            )
        object.__setattr__(self, "_special_index", {s: i for i, s in enumerate(specials)})

    # ------------------------------------------------------------------ block offsets
    @property
    def special_offset(self) -> int:
        """First special id (== ``text_vocab_size``)."""
        return self.text_vocab_size

    @property
    def num_special(self) -> int:
        return len(self.special_tokens)

    @property
    def shape_offset(self) -> int:
        """First shape-token id (``<h=1>``)."""
        return self.special_offset + self.num_special

    @property
    def num_shape_tokens(self) -> int:
        return self.max_grid_h + self.max_grid_w

    @property
    def image_offset(self) -> int:
        """Id of image code 0; also the size of the LM's text head."""
        return self.shape_offset + self.num_shape_tokens

    @property
    def image_id_range(self) -> tuple[int, int]:
        """``(start, stop)``: image ids are ``start <= id < stop``."""
        return self.image_offset, self.image_offset + self.codebook_size

    @property
    def total_size(self) -> int:
        """Size of the whole vocabulary (the LM's embedding table)."""
        return self.image_offset + self.codebook_size

    # ------------------------------------------------------------------ specials
    def special_id(self, name: str) -> int:
        """Id of a special token, by ``"<boi>"`` or ``"boi"``; unknown names list the known ones."""
        key = _canonical(name)
        idx = self._special_index.get(key)
        if idx is None:
            raise VocabError(f"unknown special token {name!r}; known: {list(self.special_tokens)}")
        return self.special_offset + idx

    def special_name(self, token_id: int) -> str:
        """Inverse of :meth:`special_id`."""
        idx = int(token_id) - self.special_offset
        if not 0 <= idx < self.num_special:
            raise VocabError(f"id {token_id} is not a special token (specials are "
                             f"[{self.special_offset}, {self.shape_offset}))")
        return self.special_tokens[idx]

    def special_ids(self) -> dict[str, int]:
        """Every special token name -> id."""
        return {s: self.special_offset + i for i, s in enumerate(self.special_tokens)}

    @property
    def pad_id(self) -> int:
        return self.special_id("<pad>")

    @property
    def bos_id(self) -> int:
        return self.special_id("<bos>")

    @property
    def eos_id(self) -> int:
        return self.special_id("<eos>")

    @property
    def boi_id(self) -> int:
        """Begin of image: after it the model may only emit ``h*w`` image codes then ``<eoi>``."""
        return self.special_id("<boi>")

    @property
    def eoi_id(self) -> int:
        return self.special_id("<eoi>")

    @property
    def null_id(self) -> int:
        """Stands in for a dropped condition (caption, instruction or source image)."""
        return self.special_id("<null>")

    # ------------------------------------------------------------------ shape tokens
    def shape_token_ids(self, h: int, w: int) -> tuple[int, int]:
        """Ids of ``<h=h>`` and ``<w=w>`` for a token grid of ``h`` rows and ``w`` columns."""
        if not (isinstance(h, int) and 1 <= h <= self.max_grid_h):
            raise VocabError(f"grid height {h!r} out of range: shape tokens cover 1..{self.max_grid_h} "
                             f"(raise VocabLayout.max_grid_h)")
        if not (isinstance(w, int) and 1 <= w <= self.max_grid_w):
            raise VocabError(f"grid width {w!r} out of range: shape tokens cover 1..{self.max_grid_w} "
                             f"(raise VocabLayout.max_grid_w)")
        return self.shape_offset + h - 1, self.shape_offset + self.max_grid_h + w - 1

    def height_token_id(self, h: int) -> int:
        return self.shape_token_ids(h, 1)[0]

    def width_token_id(self, w: int) -> int:
        return self.shape_token_ids(1, w)[1]

    def is_height_id(self, token_id: int) -> bool:
        return self.shape_offset <= int(token_id) < self.shape_offset + self.max_grid_h

    def is_width_id(self, token_id: int) -> bool:
        start = self.shape_offset + self.max_grid_h
        return start <= int(token_id) < start + self.max_grid_w

    def height_from_id(self, token_id: int) -> int:
        if not self.is_height_id(token_id):
            raise VocabError(f"id {token_id} is not a height token <h=..> "
                             f"(those are [{self.shape_offset}, {self.shape_offset + self.max_grid_h}))")
        return int(token_id) - self.shape_offset + 1

    def width_from_id(self, token_id: int) -> int:
        if not self.is_width_id(token_id):
            start = self.shape_offset + self.max_grid_h
            raise VocabError(f"id {token_id} is not a width token <w=..> "
                             f"(those are [{start}, {start + self.max_grid_w}))")
        return int(token_id) - self.shape_offset - self.max_grid_h + 1

    def grid_from_shape_ids(self, h_id: int, w_id: int) -> tuple[int, int]:
        """Inverse of :meth:`shape_token_ids`."""
        return self.height_from_id(h_id), self.width_from_id(w_id)

    # ------------------------------------------------------------------ image codes
    def image_code_to_id(self, codes: Any) -> Any:
        """Codebook index (int, list, numpy array or tensor) -> vocabulary id, range-checked."""
        if isinstance(codes, int):
            if not 0 <= codes < self.codebook_size:
                raise VocabError(f"image code {codes} outside the codebook [0, {self.codebook_size})")
            return codes + self.image_offset
        if isinstance(codes, (list, tuple)):
            off = self.image_offset
            out = [int(c) + off for c in codes]
            if out and (min(out) < off or max(out) >= off + self.codebook_size):
                raise VocabError(f"image codes span [{min(out) - off}, {max(out) - off}], "
                                 f"outside the codebook [0, {self.codebook_size})")
            return out
        lo, hi = codes.min(), codes.max()
        if len(codes.reshape(-1)) and (lo < 0 or hi >= self.codebook_size):
            raise VocabError(f"image codes span [{int(lo)}, {int(hi)}], outside the codebook "
                             f"[0, {self.codebook_size})")
        return codes + self.image_offset

    def id_to_image_code(self, ids: Any) -> Any:
        """Vocabulary id(s) -> codebook index, range-checked (inverse of :meth:`image_code_to_id`)."""
        lo_id, hi_id = self.image_id_range
        if isinstance(ids, int):
            if not lo_id <= ids < hi_id:
                raise VocabError(f"id {ids} is not an image id (image ids are [{lo_id}, {hi_id}))")
            return ids - self.image_offset
        if isinstance(ids, (list, tuple)):
            out = [int(i) for i in ids]
            if out and (min(out) < lo_id or max(out) >= hi_id):
                raise VocabError(f"ids span [{min(out)}, {max(out)}], not all image ids [{lo_id}, {hi_id})")
            off = self.image_offset
            return [i - off for i in out]
        if len(ids.reshape(-1)) and (ids.min() < lo_id or ids.max() >= hi_id):
            raise VocabError(f"ids span [{int(ids.min())}, {int(ids.max())}], not all image ids "
                             f"[{lo_id}, {hi_id})")
        return ids - self.image_offset

    def is_image_id(self, ids: Any) -> Any:
        """Bool (for an int) or bool mask (tensor/array) of ids in the image block."""
        lo, hi = self.image_id_range
        if isinstance(ids, int):
            return lo <= ids < hi
        return (ids >= lo) & (ids < hi)

    def is_text_id(self, ids: Any) -> Any:
        """Bool or mask of ids in the text block ``[0, T)``."""
        if isinstance(ids, int):
            return 0 <= ids < self.text_vocab_size
        return (ids >= 0) & (ids < self.text_vocab_size)

    def image_logit_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(total_size,)`` bool mask, True on image ids (for constraining image spans)."""
        mask = torch.zeros(self.total_size, dtype=torch.bool, device=device)
        mask[self.image_offset:] = True
        return mask

    def token_name(self, token_id: int) -> str:
        """A readable name for any id: ``text:17``, ``<boi>``, ``<h=4>``, ``img:123``."""
        token_id = int(token_id)
        if not 0 <= token_id < self.total_size:
            raise VocabError(f"id {token_id} outside the vocabulary [0, {self.total_size})")
        if token_id < self.special_offset:
            return f"text:{token_id}"
        if token_id < self.shape_offset:
            return self.special_name(token_id)
        if self.is_height_id(token_id):
            return f"<h={self.height_from_id(token_id)}>"
        if self.is_width_id(token_id):
            return f"<w={self.width_from_id(token_id)}>"
        return f"img:{token_id - self.image_offset}"

    def check_ids(self, ids: Sequence[int] | torch.Tensor, where: str = "sequence") -> None:
        """Raise if any id falls outside ``[0, total_size)``, naming ``where``."""
        t = torch.as_tensor(ids)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.total_size):
            raise VocabError(f"{where}: ids span [{int(t.min())}, {int(t.max())}], outside the "
                             f"vocabulary [0, {self.total_size})")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LAYOUT_VERSION,
            "text_vocab_size": self.text_vocab_size,
            "codebook_size": self.codebook_size,
            "max_grid_h": self.max_grid_h,
            "max_grid_w": self.max_grid_w,
            "special_tokens": list(self.special_tokens),
            # derived, stored for humans reading the JSON; checked on load
            "image_offset": self.image_offset,
            "total_size": self.total_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VocabLayout:
        if not isinstance(data, dict):
            raise VocabError(f"a VocabLayout dict is expected, got {type(data).__name__}")
        version = data.get("version", LAYOUT_VERSION)
        if version != LAYOUT_VERSION:
            raise VocabError(f"vocab layout version {version} is not supported (this code reads {LAYOUT_VERSION})")
        keys = ("text_vocab_size", "codebook_size", "max_grid_h", "max_grid_w", "special_tokens")
        missing = [k for k in keys if k not in data]
        if missing:
            raise VocabError(f"vocab layout dict lacks {missing}; has {sorted(data)}")
        layout = cls(
            text_vocab_size=data["text_vocab_size"],
            codebook_size=data["codebook_size"],
            max_grid_h=data["max_grid_h"],
            max_grid_w=data["max_grid_w"],
            special_tokens=tuple(data["special_tokens"]),
        )
        for derived in ("image_offset", "total_size"):
            if derived in data and data[derived] != getattr(layout, derived):
                raise VocabError(f"vocab layout {derived}={data[derived]} disagrees with the value "
                                 f"{getattr(layout, derived)} computed from its fields (edited by hand?)")
        return layout

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> VocabLayout:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        """Write the layout as JSON, atomically (temp file in the same dir + rename)."""
        # umask permissions, not 0600
        atomic_write_bytes(path, (self.to_json() + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> VocabLayout:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocab layout file not found: {path}")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise VocabError(f"{path}: not valid JSON ({e})") from e

    def check_compatible(self, other: VocabLayout, what: str = "checkpoint") -> None:
        """Raise a clear error if ``other`` assigns different ids than ``self``."""
        if self == other:
            return
        diffs = [f"{k}: {a!r} != {b!r}" for k, a, b in
                 ((k, getattr(self, k), getattr(other, k)) for k in
                  ("text_vocab_size", "codebook_size", "max_grid_h", "max_grid_w", "special_tokens"))
                 if a != b]
        raise VocabError(f"vocabulary of the {what} differs from this one ({'; '.join(diffs)}); "
                         f"use the text tokenizer and visual tokenizer the {what} was trained with")

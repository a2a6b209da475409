"""arm-core's LM as a frozen captioning teacher for the tokenizer's ``L_cap``.

ARM trains its visual tokenizer with ``L_cap``: a frozen LLM (Qwen2.5-0.5B in the paper)
reads the quantized image tokens, through a learnable adapter, as a prefix and is scored
on the caption's next-token NLL. arm-tokenizer defines the interface
(:class:`arm_tokenizer.teachers.base.CaptionLM`) and never imports arm-core; this adapter
registers an exported ARM LM under ``arm.caption_lms`` as ``arm_lm``, so a tokenizer
config can say::

    caption_lm:
      class_path: arm_lm
      init_args: {lm_dir: runs/lm}

The prefix takes the place of an image's code embeddings in the LM's own understanding
format (:mod:`arm_data.formats`), so an LM trained on ShapesWorld VQA/captions reads it
where it is used to seeing an image::

    <bos> <und> <h> <w> <boi> PREFIX(N) <eoi> <user> question... <assistant> caption... <eos>
                                                                            ^ loss here ^

The LM is frozen (no parameter gradients, always eval); gradients flow into the prefix.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from arm_tokenizer.teachers.base import CaptionLM

from arm_core.checkpoint import load_lm
from arm_core.model import rope_cos_sin

__all__ = ["ArmCaptionLM"]


class ArmCaptionLM(CaptionLM):
    """A frozen exported ARM LM scoring captions given a visual prefix.

    Args:
        lm_dir: directory written by ``arm_core.checkpoint.save_lm`` (the LM's fit-end export);
            it must include the text tokenizer and vocabulary layout.
        question: the user turn before the caption (the understanding prompt); ``""``
            leaves it empty.
        grid: token grid ``(h, w)`` stated by the shape tokens; None: a square grid of
            ``sqrt(N)`` (N = prefix length), else ``(1, N)``.
        max_caption_tokens: captions are truncated to this many text tokens.
    """

    def __init__(self, lm_dir: str = "runs/lm", question: str = "describe the image.",
                 grid: tuple[int, int] | None = None, max_caption_tokens: int = 64) -> None:
        super().__init__()
        ck = load_lm(lm_dir)
        if ck.layout is None:
            raise ValueError(f"ArmCaptionLM: {lm_dir} has no vocabulary layout; export the LM with "
                             "save_lm(..., layout=...) (LMTrainer does at fit end)")
        self.lm_dir = str(Path(lm_dir))
        self.model = ck.model
        self.layout = ck.layout
        self.text = ck.load_text_tokenizer()
        self.question_ids = self.text.encode(question) if question else []
        self.grid = tuple(grid) if grid is not None else None
        self.max_caption_tokens = int(max_caption_tokens)
        self.hidden_size = int(ck.config.n_embd)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ArmCaptionLM:
        return super().train(False)  # frozen teacher: always eval

    def _grid(self, n: int) -> tuple[int, int]:
        if self.grid is not None:
            h, w = self.grid
            if h * w != n:
                raise ValueError(f"ArmCaptionLM: prefix of {n} tokens does not fill grid {h}x{w}")
            return h, w
        r = math.isqrt(n)
        return (r, r) if r * r == n else (1, n)

    def _embed(self, ids: list[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        t = torch.tensor(ids, dtype=torch.long, device=device)
        return self.model.embed_tokens(t).to(dtype)

    def caption_loss(self, prefix: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Mean NLL per caption token (+ ``<eos>``) given the ``(B, N, hidden_size)`` prefix."""
        if prefix.ndim != 3 or prefix.shape[-1] != self.hidden_size:
            raise ValueError(f"ArmCaptionLM expects a prefix (B, N, {self.hidden_size}), got "
                             f"{tuple(prefix.shape)} (the adapter must map to the LM width)")
        B, N, _ = prefix.shape
        if len(texts) != B:
            raise ValueError(f"ArmCaptionLM: {len(texts)} captions for a prefix batch of {B}")
        L = self.layout
        h, w = self._grid(N)
        head = [L.bos_id, L.special_id("<und>"), *L.shape_token_ids(h, w), L.boi_id]
        mid = [L.eoi_id, L.special_id("<user>"), *self.question_ids, L.special_id("<assistant>")]
        caps = [self.text.encode(t)[: self.max_caption_tokens] + [L.eos_id] for t in texts]
        C = max(len(c) for c in caps)
        dev, dt = prefix.device, prefix.dtype
        cap_ids = torch.full((B, C), L.pad_id, dtype=torch.long, device=dev)
        for i, c in enumerate(caps):
            cap_ids[i, : len(c)] = torch.tensor(c, device=dev)
        x = torch.cat([
            self._embed(head, dev, dt).expand(B, -1, -1),
            prefix,
            self._embed(mid, dev, dt).expand(B, -1, -1),
            self.model.embed_tokens(cap_ids).to(dt),
        ], dim=1)
        hidden = self._hidden(x)
        start = len(head) + N + len(mid)           # first caption token's position
        logits = self.model.head(hidden[:, start - 1: start - 1 + C]).float()
        targets = cap_ids.clone()
        lengths = torch.tensor([len(c) for c in caps], device=dev)
        targets[torch.arange(C, device=dev)[None] >= lengths[:, None]] = -100
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=-100)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder over input embeddings ``(B, T, C)`` (causal, one document per row)."""
        m = self.model
        B, T, _ = x.shape
        if T > m.config.max_seq_len:
            raise ValueError(f"ArmCaptionLM: prefix + caption = {T} tokens exceeds the LM's "
                             f"max_seq_len={m.config.max_seq_len}; shorten captions "
                             "(max_caption_tokens) or use fewer image tokens")
        pos = torch.arange(T, device=x.device).expand(B, T)
        cos, sin = rope_cos_sin(m.inv_freq, pos, x.dtype)
        for block in m.layers:
            x = block(x, cos, sin, None)
        return m.norm(x)

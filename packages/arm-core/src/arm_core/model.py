"""The ARM language model: a Qwen2/Llama-family decoder over a unified text + image vocabulary.

One readable file in the spirit of litgpt: RMSNorm, rotary position embeddings (RoPE,
Su et al. 2021, arXiv 2104.09864; optional Llama-3 frequency scaling), a SwiGLU MLP
(Shazeer 2020, arXiv 2002.05202), grouped-query attention (Ainslie et al. 2023,
arXiv 2305.13245) through PyTorch's ``scaled_dot_product_attention``, optional q/k/v
bias (Qwen2), tied or untied embeddings, and ARM's separate visual head.

Shapes: ``B`` batch, ``T`` sequence, ``C = n_embd``, ``H = n_head``, ``G = n_query_groups``,
``hs = head_size``, ``V = vocab_size``, ``S`` KV-cache slots.

Grouped-query attention: ``H`` query heads share ``G`` key/value heads, ``H / G`` each::

    queries  q0 q1 q2 q3 | q4 q5 q6 q7        H = 8
                \\ | | /      \\ | | /
    keys/values   kv0          kv1             G = 2   (G = H: MHA, G = 1: MQA)

Three entry points, one job each (no ``forward`` that switches mode on ``None``s):

- :meth:`GPT.forward` / :meth:`GPT.forward_hidden` + :meth:`GPT.head`: training and
  scoring over full sequences, optionally *packed* (several documents per row).
- :meth:`GPT.prefill`: run a (left-padded) prompt, filling the KV cache.
- :meth:`GPT.decode_step`: one token per row against the cache; static shapes, no host
  syncs, compiles with ``fullgraph=True``. :meth:`GPT.decode_step_image` is the same step
  scoring only the image codes, for steps inside an image span.

Packed sequences: ``doc_ids`` ``(B, T)`` labels each token's document. The attention mask is
block-diagonal causal, ``mask[b, i, j] = (doc[b, i] == doc[b, j]) & (j <= i)``, passed to
SDPA as a boolean ``(B, 1, T, T)`` tensor (True = attend), and positions restart at 0 at each
document start. (A boolean mask rules out the flash kernel; for very long packed
sequences ``torch.nn.attention.flex_attention`` with a block mask built from the same
predicate is the faster route; without ``doc_ids`` we call SDPA with ``is_causal=True``.)

The visual head: with ``separate_visual_head`` the text head scores every id *except*
the image codes and a second linear head scores the ``K`` image codes; the full logits are
assembled in id order::

    logits = cat([text[..., :image_offset], visual, text[..., image_offset:]], -1)   # (B, T, V)

Learned image positions (``config.image_position_slots``, off by default and absent from
ARM): code ``i`` of an image (raster order) gets row ``i`` of a table added to its
embedding (initialised like every embedding; zeros when added to a trained model), so a
small model knows where in the grid it draws without inferring it from RoPE distances to
``boi``. The cached path carries each row's code count in the KV
cache, so decoding one token at a time sees the same index as a full forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from arm_tokenizer.framework import registry
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from arm_core.config import Config
from arm_core.kv_cache import KVCache

__all__ = ["GPT", "Block", "CausalSelfAttention", "SwiGLU", "RMSNorm", "rope_inv_freq",
           "apply_rope", "doc_positions", "doc_causal_mask", "extend_vocab", "DEFAULT_LM",
           "LM_KIND", "resolve_lm", "build_lm", "lm_name_of"]

#: The registry kind of LM architectures (entry-point group ``arm.lms``) and the built-in one.
LM_KIND = "lm"
DEFAULT_LM = "gpt"


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019), computed in fp32 like HF Llama/Qwen2."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_inv_freq(config: Config) -> Tensor:
    """Inverse frequencies ``(hs / 2,)``, with Llama-3 scaling when configured.

    Llama-3 scaling (the ``rope_type: llama3`` of HF configs) keeps high frequencies, divides
    low ones (wavelength above ``orig / low_freq_factor``) by ``factor`` and interpolates
    smoothly in between.
    """
    hs = config.head_size
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    rs = config.rope_scaling
    if rs is not None and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        orig = float(rs["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > orig / lo, inv / factor, inv)
        smooth = (orig / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= orig / hi) & (wavelen <= orig / lo)
        inv = torch.where(medium, smoothed, scaled)
    return inv.float()


def rope_cos_sin(inv_freq: Tensor, position_ids: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``cos, sin`` ``(B, 1, T, hs)`` for positions ``(B, T)`` (computed on the fly: no
    ``max_seq_len``-sized table, positions are plain tensors)."""
    freqs = position_ids[..., None].float() * inv_freq                  # (B, T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]                      # (B, 1, T, hs)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``(B, H, T, hs)`` in the half-split convention of HF Llama/Qwen2
    (pairs ``(i, i + hs/2)``), so HF checkpoints load without a permutation."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def doc_positions(doc_ids: Tensor) -> Tensor:
    """Positions ``(B, T)`` that restart at 0 where ``doc_ids`` ``(B, T)`` changes."""
    T = doc_ids.shape[1]
    idx = torch.arange(T, device=doc_ids.device).expand_as(doc_ids)
    start = torch.ones_like(doc_ids, dtype=torch.bool)
    start[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    first = torch.where(start, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - first


def doc_causal_mask(doc_ids: Tensor) -> Tensor:
    """Block-diagonal causal mask ``(B, 1, T, T)`` (True = attend) for packed documents."""
    T = doc_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return ((doc_ids[:, :, None] == doc_ids[:, None, :]) & causal)[:, None]


class CausalSelfAttention(nn.Module):
    """Grouped-query self-attention with RoPE; q/k/v/o projections named like HF."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        hs, H, G = config.head_size, config.n_head, config.n_query_groups
        self.q_proj = nn.Linear(config.n_embd, H * hs, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.n_embd, G * hs, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.n_embd, G * hs, bias=config.qkv_bias)
        self.o_proj = nn.Linear(H * hs, config.n_embd, bias=False)
        self.n_head, self.n_query_groups, self.head_size = H, G, hs

    def _qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_query_groups, self.head_size).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_query_groups, self.head_size).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        gqa = self.n_query_groups != self.n_head
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x`` ``(B, T, C)`` -> ``(B, T, C)``; ``mask`` ``(B, 1, T, T)`` bool or ``None``
        (plain causal)."""
        B, T, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        y = self._attend(q, k, v, mask)                                   # (B, H, T, hs)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))

    def forward_cached(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor,
                       cache, cache_pos: Tensor) -> Tensor:
        """Write this chunk's k/v ``(B, G, T, hs)`` at slots ``cache_pos`` ``(T,)`` and attend
        over all ``S`` slots with ``mask`` ``(B, 1, T, S)``."""
        B, T, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        k, v = cache.update(cache_pos, k, v)                              # (B, G, S, hs)
        y = self._attend(q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = CausalSelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))

    def forward_cached(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, cache,
                       cache_pos: Tensor) -> Tensor:
        x = x + self.self_attn.forward_cached(self.input_layernorm(x), cos, sin, mask, cache,
                                              cache_pos)
        return x + self.mlp(self.post_attention_layernorm(x))


class GPT(nn.Module):
    """The decoder. Parameter names follow HF (``embed_tokens``, ``layers``, ``norm``,
    ``lm_head``) plus ``visual_head``.

    Args:
        config: The architecture (see :class:`arm_core.config.Config`; presets via
            ``Config.from_name``).
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        # The text head: a Linear, or (tied) the embedding rows of non-image ids.
        self.lm_head = (None if config.tie_embeddings
                        else nn.Linear(config.n_embd, config.n_text_logits, bias=False))
        self.visual_head = (nn.Linear(config.n_embd, config.image_codebook_size, bias=False)
                            if config.separate_visual_head else None)
        # Learned position of each image code within its image (config.image_position_slots).
        # Built uninitialised (no RNG draw), so reset_parameters gives every other weight
        # the same values as a model without it.
        self.image_pos_embed = (nn.Embedding(config.image_position_slots, config.n_embd,
                                             _weight=torch.empty(config.image_position_slots,
                                                                 config.n_embd))
                                if config.image_position_slots else None)
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        # Not a registered submodule: DDP would broadcast its buffers every forward, and
        # state_dict/to() have no business with it. Allocated by setup_kv_cache.
        self._set_kv_cache(None)
        self.activation_checkpointing = False
        self.reset_parameters()

    # ---- init ------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights, zero biases, unit norms; residual output projections
        scaled by ``1/sqrt(2 n_layer)`` (GPT-2) so the residual stream starts O(1)."""
        std = self.config.init_std
        for name, m in self.named_modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                s = std / math.sqrt(2 * self.config.n_layer) if name.endswith(("o_proj", "down_proj")) else std
                if m.weight.device.type != "meta":
                    nn.init.normal_(m.weight, 0.0, s)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)
            elif isinstance(m, RMSNorm) and m.weight.device.type != "meta":
                nn.init.ones_(m.weight)
        if self.inv_freq.device.type != "meta":
            self.inv_freq.copy_(rope_inv_freq(self.config).to(self.inv_freq.device))

    def _apply(self, fn, recurse: bool = True):
        # model.to(bfloat16) would round the RoPE frequencies; keep them fp32 (as computed)
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32:
            self.inv_freq = rope_inv_freq(self.config).to(self.inv_freq.device)
        return self

    def _set_kv_cache(self, cache: KVCache | None) -> None:
        object.__setattr__(self, "kv_cache", cache)

    def release_kv_cache(self) -> None:
        """Free the KV cache's memory."""
        self._set_kv_cache(None)

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in backward (saves memory, ~1/3 more compute)."""
        self.activation_checkpointing = enabled

    def add_image_positions(self, slots: int) -> None:
        """Give a model without them ``slots`` learned image positions (zero-initialised,
        so its outputs are unchanged until they train); used to continue training an
        export or a Hugging Face LM with them."""
        if slots == self.config.image_position_slots:
            return
        if self.image_pos_embed is not None:
            raise ValueError(f"this model already has {self.config.image_position_slots} image "
                             f"position slots; cannot change them to {slots}")
        self.config = Config.from_dict({**self.config.to_dict(), "image_position_slots": slots})
        w = self.embed_tokens.weight
        self.image_pos_embed = nn.Embedding(slots, self.config.n_embd, device=w.device, dtype=w.dtype)
        nn.init.zeros_(self.image_pos_embed.weight)

    def image_positions(self, input_ids: Tensor, run_before: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The raster index of every image code within its image, and each row's run length.

        A code's index counts the codes between it and the last non-code token before it:
        an image's codes are one contiguous run between ``boi`` and ``eoi``, so only the
        code id range is needed, not the special tokens' ids.

        Args:
            input_ids: ``(B, T)``.
            run_before: ``(B,)`` codes that end the tokens before ``input_ids`` (cached
                decoding); ``None``: none.

        Returns:
            ``index`` ``(B, T)`` (``-1`` on non-code tokens) and ``run_after`` ``(B,)``, the
            codes that end the row after ``input_ids``.
        """
        c = self.config
        is_code = (input_ids >= c.image_offset) & (input_ids < c.image_end)
        t = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        start = (torch.full_like(input_ids, -1) if run_before is None
                 else (-1 - run_before)[:, None].expand_as(input_ids))
        last = torch.where(is_code, start, t).cummax(dim=1).values     # last non-code position
        index = torch.where(is_code, t - last - 1, torch.full_like(input_ids, -1))
        return index, index[:, -1] + 1

    def _embed(self, input_ids: Tensor, run_before: Tensor | None = None,
               check: bool = False) -> tuple[Tensor, Tensor | None]:
        """Token embeddings (+ learned image positions); returns the run length after."""
        x = self.embed_tokens(input_ids)
        if self.image_pos_embed is None:
            return x, None
        index, run_after = self.image_positions(input_ids, run_before)
        slots = self.config.image_position_slots
        if check and not torch.compiler.is_compiling() and int(index.max()) >= slots:
            raise ValueError(f"an image has more than image_position_slots={slots} codes; "
                             "raise image_position_slots to the largest grid's height x width")
        pos = self.image_pos_embed(index.clamp(0, slots - 1))
        return x + pos * (index >= 0).unsqueeze(-1).to(x.dtype), run_after

    # ---- heads -----------------------------------------------------------------------------
    def text_head_weight(self) -> Tensor:
        """``(n_text_logits, C)``: the text head's rows in id order (image ids skipped)."""
        if self.lm_head is not None:
            return self.lm_head.weight
        w = self.embed_tokens.weight
        if not self.config.separate_visual_head:
            return w
        c = self.config
        if c.image_end == c.vocab_size:          # the usual layout: codes last, a view
            return w[: c.image_offset]
        return torch.cat([w[: c.image_offset], w[c.image_end:]], dim=0)

    def head_weight_full(self) -> Tensor:
        """``(V, C)``: the text and visual heads as one matrix in unified-id order."""
        w = self.text_head_weight()
        if self.visual_head is None:
            return w
        off = self.config.image_offset
        return torch.cat([w[:off], self.visual_head.weight, w[off:]], dim=0)

    def head(self, hidden: Tensor) -> Tensor:
        """Final-normed hidden ``(..., C)`` -> logits ``(..., V)`` in unified-id order:
        ``[text[:image_offset] | visual | text[image_offset:]]`` with a separate visual head."""
        text = F.linear(hidden, self.text_head_weight())
        if self.visual_head is None:
            return text
        off = self.config.image_offset
        return torch.cat([text[..., :off], self.visual_head(hidden), text[..., off:]], dim=-1)

    def image_head_weight(self) -> Tensor:
        """``(K, C)``: the rows that score the image codes (the visual head, or the image-id
        rows of the shared head)."""
        c = self.config
        if c.image_codebook_size == 0:
            raise ValueError("a text-only model (image_codebook_size=0) has no image head")
        if self.visual_head is not None:
            return self.visual_head.weight
        return self.text_head_weight()[c.image_offset: c.image_end]

    def image_head(self, hidden: Tensor) -> Tensor:
        """Final-normed hidden ``(..., C)`` -> logits of the image codes alone ``(..., K)``
        (column ``k`` = id ``image_offset + k``): equal to ``head(hidden)[..., off:off+K]``
        without computing the text logits. Inside an open image span only codes are
        allowed, so this is all the sampler and the RL scorer need there; with ARM's
        152k-id text head it skips most of the head's weights and logits."""
        return F.linear(hidden, self.image_head_weight())

    # ---- training / scoring ----------------------------------------------------------------
    def forward_hidden(self, input_ids: Tensor, position_ids: Tensor | None = None,
                       doc_ids: Tensor | None = None) -> Tensor:
        """Final-normed hidden states ``(B, T, C)`` (compute the loss in chunks from these
        with :meth:`head` to avoid materializing ``(B, T, V)`` logits at once).

        Args:
            input_ids: ``(B, T)`` token ids in ``[0, vocab_size)``.
            position_ids: ``(B, T)``; default ``arange(T)``, or restarting per document
                when ``doc_ids`` is given.
            doc_ids: ``(B, T)`` document labels of packed sequences (block-diagonal
                causal attention); ``None`` = one document per row.
        """
        B, T = input_ids.shape
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds config.max_seq_len="
                             f"{self.config.max_seq_len}; shorten the input or raise max_seq_len")
        if position_ids is None:
            position_ids = (doc_positions(doc_ids) if doc_ids is not None
                            else torch.arange(T, device=input_ids.device).expand(B, T))
        mask = doc_causal_mask(doc_ids) if doc_ids is not None else None
        x, _ = self._embed(input_ids, check=True)
        cos, sin = rope_cos_sin(self.inv_freq, position_ids, x.dtype)
        for block in self.layers:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, cos, sin, mask, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask)
        return self.norm(x)

    def forward(self, input_ids: Tensor, position_ids: Tensor | None = None,
                doc_ids: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, V)`` for every position (see :meth:`forward_hidden` for args)."""
        return self.head(self.forward_hidden(input_ids, position_ids, doc_ids))

    # ---- cached inference ------------------------------------------------------------------
    def setup_kv_cache(self, batch_size: int, max_seq_len: int | None = None,
                       device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> KVCache:
        """Allocate (once) a cache of ``batch_size x max_seq_len`` slots; reuse it when an
        existing one is the same size."""
        max_seq_len = max_seq_len or self.config.max_seq_len
        if max_seq_len > self.config.max_seq_len:
            raise ValueError(f"KV cache of {max_seq_len} slots exceeds config.max_seq_len="
                             f"{self.config.max_seq_len}")
        p = self.embed_tokens.weight
        device = device if device is not None else p.device
        dtype = dtype or p.dtype
        kv = self.kv_cache
        if (kv is None or kv.batch_size != batch_size or kv.max_seq_len != max_seq_len
                or kv.valid.device != torch.device(device) or kv.layers[0].k.dtype != dtype):
            self._set_kv_cache(None)           # free the old one before allocating
            self._set_kv_cache(KVCache(self.config.n_layer, batch_size,
                                       self.config.n_query_groups, max_seq_len,
                                       self.config.head_size, device, dtype))
        self.kv_cache.reset()
        return self.kv_cache

    def _forward_cached(self, input_ids: Tensor, position_ids: Tensor, cache_pos: Tensor) -> Tensor:
        kv = self.kv_cache
        mask = kv.attention_mask(cache_pos)                                # (B, 1, T, S)
        # continues the image run of the cached tokens (setup_kv_cache resets it to 0)
        x, run_after = self._embed(input_ids, kv.image_run)
        if run_after is not None:
            kv.image_run.copy_(run_after)
        cos, sin = rope_cos_sin(self.inv_freq, position_ids, x.dtype)
        for block, cache in zip(self.layers, kv.layers, strict=True):
            x = block.forward_cached(x, cos, sin, mask, cache, cache_pos)
        return x

    def prefill(self, input_ids: Tensor, position_ids: Tensor, valid: Tensor,
                cache_pos: Tensor | None = None) -> Tensor:
        """Run a prompt chunk through the model, filling the cache.

        Args:
            input_ids: ``(B, T)``, left-padded so every row's last token is at ``T - 1``.
            position_ids: ``(B, T)`` RoPE positions (``0`` at each row's first real token).
            valid: ``(B, T)`` bool, False on padding (never attended to).
            cache_pos: ``(T,)`` slots to write; default ``arange(T)``.

        Returns:
            Logits of the last position ``(B, V)``.
        """
        if self.kv_cache is None:
            raise RuntimeError("call setup_kv_cache(batch_size, max_seq_len) before prefill")
        B, T = input_ids.shape
        if B != self.kv_cache.batch_size:
            raise ValueError(f"batch of {B} rows does not match the KV cache's "
                             f"{self.kv_cache.batch_size}; call setup_kv_cache again")
        if cache_pos is None:
            cache_pos = torch.arange(T, device=input_ids.device)
        if int(cache_pos[-1]) >= self.kv_cache.max_seq_len:
            raise ValueError(f"prompt of {T} tokens does not fit the KV cache of "
                             f"{self.kv_cache.max_seq_len} slots")
        self.kv_cache.mark(cache_pos, valid)
        x = self._forward_cached(input_ids, position_ids, cache_pos)
        return self.head(self.norm(x[:, -1]))

    def decode_step(self, input_ids: Tensor, position_ids: Tensor, cache_pos: Tensor) -> Tensor:
        """One token per row: ``input_ids`` ``(B, 1)``, ``position_ids`` ``(B, 1)``, shared
        slot ``cache_pos`` ``(1,)`` -> logits ``(B, V)``. No host syncs; compile-clean."""
        return self.head(self._decode_hidden(input_ids, position_ids, cache_pos))

    def decode_step_image(self, input_ids: Tensor, position_ids: Tensor,
                          cache_pos: Tensor) -> Tensor:
        """:meth:`decode_step` for rows whose next token must be an image code: logits of the
        codes alone ``(B, K)`` (:meth:`image_head`)."""
        return self.image_head(self._decode_hidden(input_ids, position_ids, cache_pos))

    def _decode_hidden(self, input_ids: Tensor, position_ids: Tensor, cache_pos: Tensor) -> Tensor:
        self.kv_cache.mark(cache_pos, torch.ones_like(input_ids, dtype=torch.bool))
        x = self._forward_cached(input_ids, position_ids, cache_pos)
        return self.norm(x[:, -1])

    # ---- utilities -------------------------------------------------------------------------
    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def extend_vocab(model: GPT, config: Config, noise_std: float = 0.0,
                 generator: torch.Generator | None = None, keep_text: int | None = None) -> GPT:
    """Return a new :class:`GPT` with ``config``'s larger (multimodal) vocabulary, starting
    from the text LM ``model``.

    Kept: every transformer weight, the embedding and text-head rows of the text ids
    ``[0, model.config.text_vocab_size)`` (same ids). New rows (specials, shape tokens,
    image codes; the visual head) = mean of the kept rows (+ ``N(0, noise_std)`` noise):
    new tokens start "average", and the logits of the old text ids for old-id inputs are
    unchanged (the new ids only add entries to the softmax).

    Args:
        model: A text-only model (``image_codebook_size == 0``).
        config: Target config; same architecture, ``vocab_size`` >= the old one, image ids
            not overlapping the kept text ids.
        noise_std: Std of Gaussian noise added to the new rows (breaks their symmetry).
        generator: RNG for the noise.
        keep_text: How many of the old rows are real text tokens (default: all of
            ``model.config.text_vocab_size``). HF checkpoints pad their vocabulary (Qwen2.5-7B:
            151,665 tokens in 152,064 rows); the padding rows are untrained, so they are
            dropped, and neither kept nor averaged into the new rows.

    The returned model shares the transformer-block tensors with ``model`` (no copy).
    """
    old = model.config
    if old.image_codebook_size:
        raise ValueError("extend_vocab starts from a text-only LM; this model already has "
                         f"{old.image_codebook_size} image codes")
    arch = ("n_layer", "n_head", "n_query_groups", "n_embd", "head_size", "intermediate_size",
            "qkv_bias", "tie_embeddings")
    diff = [k for k in arch if getattr(old, k) != getattr(config, k)]
    if diff:
        raise ValueError(f"extend_vocab changes only the vocabulary; these differ: {diff}")
    keep = old.text_vocab_size if keep_text is None else int(keep_text)
    if not 0 < keep <= old.text_vocab_size:
        raise ValueError(f"keep_text={keep} must be in [1, {old.text_vocab_size}] (the old model's "
                         "text rows)")
    if config.vocab_size < keep or (config.image_codebook_size and config.image_offset < keep):
        raise ValueError(f"new layout (vocab_size={config.vocab_size}, image_offset="
                         f"{config.image_offset}) must keep text ids [0, {keep}) of the old model")
    ref = model.embed_tokens.weight
    C = config.n_embd

    def grown(rows: int, kept: Tensor, copy_kept: bool) -> Tensor:
        noise = torch.randn(rows, C, generator=generator, dtype=torch.float32) * noise_std
        out = (kept.float().mean(0, keepdim=True) + noise.to(kept.device)).to(kept.dtype)
        if copy_kept:
            out[: kept.shape[0]] = kept
        return out

    # Build on the meta device and assign: no random init of a second full model, and the
    # transformer blocks are shared with ``model`` rather than copied (7B-friendly).
    with torch.device("meta"):
        new = GPT(config)
    sd = {k: v for k, v in model.state_dict().items()
          if not k.startswith(("embed_tokens", "lm_head"))}
    sd["embed_tokens.weight"] = grown(config.vocab_size, ref[:keep], copy_kept=True)
    old_head = model.text_head_weight()[:keep]
    if new.lm_head is not None:                # rows = non-image ids in id order: kept first
        sd["lm_head.weight"] = grown(config.n_text_logits, old_head, copy_kept=True)
    if new.visual_head is not None:
        sd["visual_head.weight"] = grown(config.image_codebook_size, old_head, copy_kept=False)
    if new.image_pos_embed is not None:
        sd["image_pos_embed.weight"] = torch.zeros(config.image_position_slots, C, dtype=ref.dtype,
                                                   device=ref.device)
    new.load_state_dict(sd, strict=True, assign=True)
    new.inv_freq = rope_inv_freq(config).to(ref.device)
    return new


# ---- the LM registry (kind ``lm``) --------------------------------------------------------
# An LM architecture is a class registered under the entry-point group ``arm.lms`` (the
# built-in ``gpt`` = :class:`GPT`; a plugin adds its own, or ``ARM_EXTRA_COMPONENTS=
# "lm:my_lm=my_module:MyLM"``). Its contract: ``cls(config: Config)`` builds an ``nn.Module``
# with a ``config`` attribute and ``forward(input_ids, position_ids=None, doc_ids=None)``
# returning ``(B, T, V)`` logits (what ``LMTrainer`` trains); generation, pipelines and RL
# also use :class:`GPT`'s cached-inference methods, which a GPT subclass inherits.
def resolve_lm(name: str) -> tuple[str, type[nn.Module]]:
    """``(registered name, class)`` of the LM ``name``: a registry name of kind ``lm``
    (``gpt``), or the class name / dotted path of a registered one (``GPT``,
    ``arm_core.model.GPT``). An unknown name raises the registry's
    ``UnknownComponentError``, which names the kind, the name and the registered LMs."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an LM name must be a registered {LM_KIND!r} name such as "
                         f"{DEFAULT_LM!r}, got {name!r}")
    try:
        comp = registry.find(LM_KIND, name)
    except registry.UnknownComponentError:
        comp = registry.resolve(name, kind=LM_KIND)   # a registered class by name or path
        if comp is None:
            raise
    return comp.name, comp.load()


def build_lm(name: str, config: Config) -> nn.Module:
    """Instantiate the registered LM ``name`` for ``config`` (``cls(config)``)."""
    reg_name, cls = resolve_lm(name)
    model = cls(config)
    if not isinstance(model, nn.Module) or getattr(model, "config", None) is None:
        raise TypeError(f"{LM_KIND} {reg_name!r} ({cls.__module__}.{cls.__qualname__}) must build an "
                        "nn.Module with a `config` attribute from cls(config)")
    return model


def lm_name_of(model: nn.Module) -> str:
    """The registered name of ``model``'s class (unwrapping ``torch.compile``).

    :class:`GPT` is ``gpt``; another class is looked up among the registered LMs. An
    unregistered GPT subclass is recorded as ``gpt`` (it loads back as a plain GPT, as
    before LMs were registered); any other unregistered class is an error."""
    cls = type(getattr(model, "_orig_mod", model))
    if cls is GPT:
        return DEFAULT_LM
    for comp in registry.list_components(LM_KIND):
        try:
            if comp.load() is cls:
                return comp.name
        except registry.PluginLoadError:
            continue
    if issubclass(cls, GPT):
        return DEFAULT_LM
    raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not a registered {LM_KIND!r}: register it "
                     f"(entry point group 'arm.lms', or ARM_EXTRA_COMPONENTS=\"{LM_KIND}:NAME="
                     f"{cls.__module__}:{cls.__qualname__}\") or pass its registered name explicitly")

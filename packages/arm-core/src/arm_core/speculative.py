"""Speculative Jacobi decoding of image spans.

Teng et al. 2024, "Accelerating Auto-regressive Text-to-Image Generation with Training-free
Speculative Jacobi Decoding" (arXiv 2410.01699; Lumina-mGPT 2.0 uses it). Inside an image
span every row owes a known number of codes, so instead of one forward per code, each
forward *verifies* a window of ``L`` draft codes per row and keeps a prefix of them:

1. Input per row: its last accepted code plus ``L`` drafts ``d_1..d_L``, each drawn from a
   known draft distribution ``q_j``; one cached forward over the ``L + 1`` tokens gives the
   target distributions ``p_0..p_L`` (``p_j`` is the next-code distribution after
   ``d_1..d_j``).
2. Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): accept ``d_j`` with
   probability ``min(1, p_{j-1}(d_j) / q_j(d_j))``, left to right; at the first rejection
   draw the replacement from ``normalize(max(0, p - q))``; when all are accepted draw a
   bonus code from ``p_L``. Every kept code then follows exactly the distribution plain
   sampling draws it from, and each forward yields at least one code.
3. Jacobi update: the next window's drafts are drawn from this forward's ``p`` at the
   positions beyond the kept prefix (their context contained rejected drafts, which only
   makes them drafts, not samples), and positions past the window start from
   ``speculative_init``: ``"random"`` (uniform codes, the paper's initialisation) or
   ``"repeat"`` (the last code repeated, a point mass: flat image regions repeat codes).

How it composes with :class:`arm_core.generation.Engine`:

- *Target p*: the guided (2- or 3-branch CFG, all branches fed the same drafts),
  temperature-scaled, top-k/top-p-truncated distribution over the ``K`` codes
  (:meth:`GPT.image_head`, the codes-only head: inside a span the constraint allows exactly
  the codes). Jacobi drafts come from the same filtered ``p``, so ``q`` is filtered alike.
- *Greedy* (temperature 0): accept ``d_j`` iff it is ``argmax p_{j-1}``; the output equals
  plain greedy decoding (Jacobi decoding, Song et al. 2021).
- *Per-row acceptance*: rows keep different numbers of codes. Every generated code ``i``
  of a row lives at cache slot ``P + i`` as in plain decoding, but rows write their windows
  at their own slots (``cache_pos`` ``(B, T)``, see :mod:`arm_core.kv_cache`) and
  :meth:`KVCache.rollback` forgets each row's rejected slots. We chose per-row positions
  over the batch minimum: at batch 16 the minimum is usually 0 or 1 accepted drafts,
  which would throw away most of the gain. A row that has all its codes waits (re-writing
  its last code's slot, which the next step rewrites anyway) until the others finish, so
  at the end all rows are aligned again and plain decoding continues (``eoi``).
- *Log-probs* (RL): the log-prob reported for each kept code is under ``p``, the
  distribution it actually follows (a resampled code's marginal is ``p`` too); unguided
  ones from the conditional branch of the same forward, as in plain decoding.
- *Costs*: each forward processes ``L + 1`` tokens per row and branch, and ``q`` is held as
  ``(B, L, K)`` probabilities. Where a decode step is memory-bound (batch 1 on a GPU)
  verifying ``L`` drafts costs about one step; where it is compute-bound (a CPU, large
  batches) it costs up to ``L + 1`` steps, so the gain depends on the acceptance rate
  (``make bench`` measures both). The loop runs eagerly (the window's per-row lengths and
  the stopping test are host-side; one sync per forward); the compiled plain decode step is
  left as it was and used outside image spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from arm_tokenizer.framework.deprecation import renamed_argument
from torch import Tensor

from arm_core.sampling import SamplingParams, combine_guidance, sampling_logprobs

__all__ = ["SPECULATIVE_INITS", "SpanResult", "decode_image_span"]

#: How drafts beyond the previous window start: uniform random codes (the paper) or the
#: last accepted code repeated.
SPECULATIVE_INITS = ("random", "repeat")


@dataclass
class SpanResult:
    """Codes of one image span per row.

    Attributes:
        tokens: ``(B, n)`` code indices (``0..K-1``, not ids).
        logprobs: ``(B, n)`` log-prob of each code under the target (sampling) distribution.
        unguided: ``(B, n)`` conditional-branch log-probs (zeros unless asked for).
        forwards: verify forwards run (the prefill that gave code 0 not counted).
        accepted: ``(B,)`` drafts kept per row (codes beyond one per forward).
    """

    tokens: Tensor
    logprobs: Tensor
    unguided: Tensor
    forwards: int
    accepted: Tensor


def _multinomial(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``probs`` ``(R, K)`` (unnormalised, non-negative)."""
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator
                                 ).squeeze(-1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _init_q(last: Tensor, L: int, K: int, init: str) -> Tensor:
    """Draft distributions ``(B, L, K)`` for positions no forward has predicted yet."""
    B = last.shape[0]
    if init == "random":
        return torch.full((B, L, K), 1.0 / K, device=last.device)
    return torch.nn.functional.one_hot(last, K).float()[:, None].expand(B, L, K)


def decode_image_span(model, first: Tensor, first_logprob: Tensor, first_unguided: Tensor,
                      n_codes: int, *, start_slot: int, start_pos: Tensor,
                      params: SamplingParams, n_branches: int, guidance_scale: float | None = None,
                      image_guidance_scale: float | None = None, want_unguided: bool,
                      generator: torch.Generator | None, window: int,
                      init: str = "random", scale: float | None = None,
                      image_scale: float | None = None) -> SpanResult:
    """Decode codes ``1..n_codes-1`` of an image span for every row, speculatively.

    The cache holds the prompt (``start_slot`` slots) for ``n_branches·B`` rows; code 0 was
    sampled from the prefill's logits by the caller.

    Args:
        model: The :class:`arm_core.model.GPT` whose KV cache holds the prompts.
        first: ``(B,)`` code 0 of each row (code index, not id).
        first_logprob, first_unguided: ``(B,)`` its log-probs.
        n_codes: Codes every row owes (including code 0).
        start_slot: Cache slot of code 0 (the padded prompt length ``P``).
        start_pos: ``(n_branches·B,)`` RoPE position of code 0 per branch row.
        params: Sampling parameters (greedy when the temperature is 0).
        n_branches, guidance_scale, image_guidance_scale: Guidance, as in
            :func:`combine_guidance` (its ``scale`` / ``image_scale``; required).
        want_unguided: Also compute the conditional branch's log-probs.
        generator: RNG of the draws (unused when greedy).
        window: Drafts ``L`` verified per forward (``>= 1``).
        init: One of :data:`SPECULATIVE_INITS` (ignored when greedy: the last code repeated).
        scale, image_scale: deprecated names of ``guidance_scale`` / ``image_guidance_scale``.
    """
    guidance_scale = renamed_argument("decode_image_span", "scale", "guidance_scale", scale, guidance_scale)
    image_guidance_scale = renamed_argument("decode_image_span", "image_scale", "image_guidance_scale",
                                            image_scale, image_guidance_scale)
    if window < 1:
        raise ValueError(f"speculative window must be >= 1, got {window}")
    if init not in SPECULATIVE_INITS:
        raise ValueError(f"speculative_init must be one of {SPECULATIVE_INITS}, got {init!r}")
    cfg = model.config
    kv = model.kv_cache
    dev, B, K, L = first.device, first.shape[0], cfg.image_codebook_size, window
    off, greedy = cfg.image_offset, params.greedy
    temp = params.temperature if params.temperature > 0 else 1.0
    width = n_codes + L + 1              # scratch columns past n_codes: no clamped duplicates
    toks = torch.zeros(B, width, dtype=torch.long, device=dev)
    lps = torch.zeros(B, width, device=dev)
    ulps = torch.zeros(B, width, device=dev)
    toks[:, 0], lps[:, 0], ulps[:, 0] = first, first_logprob, first_unguided
    n = torch.ones(B, dtype=torch.long, device=dev)          # codes generated per row
    accepted = torch.zeros(B, dtype=torch.long, device=dev)
    ar = torch.arange(L + 1, device=dev)
    gen_dev = generator.device if generator is not None else dev
    q = None if greedy else _init_q(first, L, K, init)
    drafts = first[:, None].expand(B, L).clone() if (greedy or init == "repeat") else \
        _multinomial(q.reshape(B * L, K), generator).view(B, L)
    track_run = getattr(model, "image_pos_embed", None) is not None
    forwards = 0
    while True:
        rem = n_codes - n                                       # (B,) codes still owed
        max_rem = int(rem.max())                                # the loop's one host sync
        if max_rem == 0:
            break
        Lw = min(L, max_rem - 1)                                # drafts beyond the span are useless
        T = Lw + 1
        last = toks.gather(1, (n - 1)[:, None])                 # (B, 1)
        ids = torch.cat([last, drafts[:, :Lw]], 1) + off        # (B, T)
        slots = start_slot + (n - 1)[:, None] + ar[:T]          # (B, T) per-row slots
        pos = start_pos[:, None] + (n - 1).repeat(n_branches)[:, None] + ar[:T]
        slots_br = slots.repeat(n_branches, 1)
        run_before = kv.image_run.clone() if track_run else None
        kv.mark(slots_br, torch.ones_like(slots_br, dtype=torch.bool))
        hidden = model._forward_cached(ids.repeat(n_branches, 1), pos, slots_br)
        logits = model.image_head(model.norm(hidden)).float()  # (n_br·B, T, K)
        forwards += 1
        logp = sampling_logprobs(combine_guidance(logits, n_branches, guidance_scale, image_guidance_scale),
                                 params)

        # verify d_1..d_Lw against p_0..p_{Lw-1}; k = the accepted prefix
        d = drafts[:, :Lw]
        if Lw == 0:
            k = torch.zeros(B, dtype=torch.long, device=dev)
        else:
            if greedy:
                ok = d == logp[:, :Lw].argmax(-1)
            else:
                p_d = logp[:, :Lw].gather(-1, d[..., None]).squeeze(-1).exp()
                q_d = q[:, :Lw].gather(-1, d[..., None]).squeeze(-1)
                u = torch.rand((B, Lw), generator=generator, device=gen_dev).to(dev)
                ok = u * q_d < p_d                              # u < p/q without dividing by 0
            k = ok.long().cumprod(1).sum(1)

        # the code after the accepted prefix: residual on rejection, bonus after a full window
        p_k = logp.gather(1, k[:, None, None].expand(B, 1, K)).squeeze(1)       # (B, K)
        if greedy:
            new = p_k.argmax(-1)
        else:
            probs = p_k.exp()
            if Lw > 0:
                q_k = q.gather(1, k.clamp(max=Lw - 1)[:, None, None].expand(B, 1, K)).squeeze(1)
                resid = (probs - torch.where((k < Lw)[:, None], q_k, 0.0)).clamp(min=0)
                # a rejection implies p(d) < q(d), so the residual has mass; guard rounding
                resid = torch.where(resid.sum(-1, keepdim=True) > 0, resid, probs)
            else:
                resid = probs
            new = _multinomial(resid, generator)

        cand = torch.cat([d, new[:, None]], 1)                 # (B, T): d_1..d_Lw, new
        cand.scatter_(1, k[:, None], new[:, None])
        gain = torch.minimum(k + 1, rem)                        # 0 for finished rows
        idx = n[:, None] + ar[:T]                               # distinct per row, < width
        keep = ar[:T][None] < gain[:, None]
        lp_c = logp.gather(-1, cand[..., None]).squeeze(-1)
        toks.scatter_(1, idx, torch.where(keep, cand, toks.gather(1, idx)))
        lps.scatter_(1, idx, torch.where(keep, lp_c, lps.gather(1, idx)))
        if want_unguided:
            ulp_c = (logits[:B] / temp).log_softmax(-1).gather(-1, cand[..., None]).squeeze(-1)
            ulps.scatter_(1, idx, torch.where(keep, ulp_c, ulps.gather(1, idx)))
        accepted += (gain - 1).clamp(min=0)
        n = n + gain

        # roll back: rows keep codes 0..n-2 cached (code n-1 is the next window's input 0)
        kv.rollback((start_slot + n - 1).repeat(n_branches))
        if track_run:
            kv.image_run.copy_(run_before + gain.repeat(n_branches))

        # Jacobi update: draft i of the next window is code n + i, predicted by p_{gain + i}
        col = gain[:, None] + ar[:L]                            # (B, L)
        avail = col <= Lw
        colc = col.clamp(max=Lw)
        last_new = toks.gather(1, (n - 1)[:, None]).squeeze(1)
        if greedy:
            from_p = logp.argmax(-1).gather(1, colc)
            drafts = torch.where(avail, from_p, last_new[:, None])
        else:
            p_next = logp.gather(1, colc[..., None].expand(B, L, K)).exp()
            q = torch.where(avail[..., None], p_next, _init_q(last_new, L, K, init))
            drafts = _multinomial(q.reshape(B * L, K), generator).view(B, L)
    return SpanResult(toks[:, :n_codes], lps[:, :n_codes], ulps[:, :n_codes], forwards, accepted)

"""Generation engine: KV-cached prefill + decode with constraints, CFG and log-probs.

gpt-fast-style: the cache is allocated once per (batch, length); prompts of different
lengths are left-padded so all rows share cache slots, while each row keeps its own RoPE
positions (``0`` at its first real token) and padding slots are masked out. The decode
step (:meth:`GPT.decode_step` + :func:`sample_step`) has static shapes and no host syncs;
with ``compile=True`` both are compiled with ``fullgraph=True``. Output buffers are
preallocated. Stopping early (every row finished) is checked every ``sync_every`` steps,
the only host sync in the loop.

Image spans score only the image codes: while every row owes an image code (the prompt
ended in ``boi``), the step runs :meth:`GPT.decode_step_image` + :func:`sample_image_step`,
whose head and sampler span the ``K`` codes instead of the ``V`` ids (ARM: 152k text ids
beside the codebook). Inside a span the constraint allows exactly the codes, so the
distribution is the same; :func:`score_guided` does the same for image positions.

Guidance (see :mod:`arm_core.sampling` for the formulas) runs the branches as one stacked
batch: ``[cond; uncond]`` for text-to-image, ``[full; image; uncond]`` for editing; every
branch receives the same sampled token.

Speculative Jacobi decoding (``Engine(speculative=W)``, :mod:`arm_core.speculative`): while
every row owes image codes, one forward verifies ``W`` draft codes per row and keeps a
prefix by speculative sampling (the same distribution; greedy: the same tokens), rows
keeping different counts at their own cache slots; the steps around the span are the plain
(compiled) ones.

Log-probabilities (for RL):

- ``logprobs``: of each sampled token under the distribution it was sampled from (guided,
  constrained, temperature, top-k/top-p);
- ``unguided_logprobs`` (``return_unguided_logprobs=True``): of the same tokens under the
  conditional branch alone, constrained and temperature-scaled but not truncated —
  exactly what :func:`score` computes for the finished sequences (tested), so
  "unguided policy scored on guided samples" is consistent between rollout and training;
- :func:`score_guided` recomputes ``logprobs`` (guided, truncated) for given completions
  by teacher forcing all branches at once (differentiable; tested equal to generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from arm_tokenizer.framework.deprecation import renamed_argument, renamed_attribute
from torch import Tensor
from tqdm.auto import tqdm

from arm_core.constraints import ImageSpanConstraint, SpanState, SpanTables
from arm_core.model import GPT
from arm_core.sampling import (
    SamplingParams,
    combine_guidance,
    gumbel_noise,
    sample_with_logprobs,
    sampling_logprobs,
)
from arm_core.speculative import SPECULATIVE_INITS, decode_image_span

__all__ = ["Guidance", "GenerationOutput", "Engine", "generate", "score", "score_guided",
           "sample_step", "left_pad"]


@dataclass(init=False)
class Guidance:
    """Classifier-free guidance.

    Args:
        uncond_prompts: One unconditional prompt per row (the conditional prompt with the
            text dropped, e.g. ``[shape, boi]`` for T2I; the same as what training with
            condition dropout saw).
        guidance_scale: Text (instruction) guidance scale ``s`` / ``s_txt`` (ARM: 1.5;
            default 1.5).
        image_prompts: Editing only: the source image without the instruction, one per row.
            Given: three-branch editing guidance; ``None``: two-branch T2I guidance.
        image_guidance_scale: Editing image guidance scale ``s_img`` (ARM: 1.25; default 1.25).
        scale, image_scale: deprecated names of ``guidance_scale`` / ``image_guidance_scale``
            (they warn; the attributes of those names too).
    """

    uncond_prompts: Sequence[Sequence[int]]
    guidance_scale: float = 1.5
    image_prompts: Sequence[Sequence[int]] | None = None
    image_guidance_scale: float = 1.25

    def __init__(self, uncond_prompts: Sequence[Sequence[int]], guidance_scale: float | None = None,
                 image_prompts: Sequence[Sequence[int]] | None = None,
                 image_guidance_scale: float | None = None, *, scale: float | None = None,
                 image_scale: float | None = None) -> None:
        self.uncond_prompts = uncond_prompts
        self.guidance_scale = renamed_argument("Guidance", "scale", "guidance_scale", scale,
                                               guidance_scale, 1.5)
        self.image_prompts = image_prompts
        self.image_guidance_scale = renamed_argument("Guidance", "image_scale", "image_guidance_scale",
                                                     image_scale, image_guidance_scale, 1.25)

    @property
    def n_branches(self) -> int:
        return 2 if self.image_prompts is None else 3

    # the old attribute names, for one release
    scale = renamed_attribute("Guidance", "scale", "guidance_scale")
    image_scale = renamed_attribute("Guidance", "image_scale", "image_guidance_scale")


@dataclass
class GenerationOutput:
    """Result of :meth:`Engine.generate` for ``B`` prompts and ``N = max_new_tokens``.

    Attributes:
        tokens: ``(B, N)`` generated ids; ``pad_id`` after a row stopped.
        logprobs: ``(B, N)`` log-prob of each token under its sampling distribution; 0 on padding.
        mask: ``(B, N)`` bool, True on generated (non-padding) positions.
        lengths: ``(B,)`` generated tokens per row (including the stop token).
        finished: ``(B,)`` bool, True where a stop id was produced.
        unguided_logprobs: ``(B, N)`` conditional-branch log-probs, when asked for.
        forward_passes: Model forwards this call ran (prefill, decode steps and
            speculative verify passes; each covers every guidance branch).
        accepted_drafts: ``(B,)`` speculative drafts kept per row (codes gained beyond one
            per forward); ``None`` when speculative decoding did not run.
    """

    tokens: Tensor
    logprobs: Tensor
    mask: Tensor
    lengths: Tensor
    finished: Tensor
    unguided_logprobs: Tensor | None = None
    forward_passes: int = 0
    accepted_drafts: Tensor | None = None

    def to_lists(self) -> list[list[int]]:
        """Generated ids per row, without padding."""
        return [row[:n].tolist() for row, n in zip(self.tokens.cpu(), self.lengths.cpu().tolist(), strict=True)]


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0,
             device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Stack prompts right-aligned: ``ids`` ``(B, P)`` and ``valid`` ``(B, P)`` bool."""
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    lens = [len(p) for p in prompts]
    if min(lens) == 0:
        raise ValueError(f"prompt {lens.index(0)} is empty; every prompt needs >= 1 token")
    P = max(lens)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    valid = torch.zeros(len(prompts), P, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        valid[i, P - len(p):] = True
    return ids.to(device), valid.to(device)


def sample_step(logits: Tensor, state: SpanState | None, tables: SpanTables | None,
                uniform: Tensor | None, params: SamplingParams, n_branches: int, scale: float,
                image_scale: float, want_unguided: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Guidance -> constraint mask -> sampling for one step (no host syncs).

    ``logits`` ``(n_branches·B, V)``; returns ``tokens``, ``logprobs``, ``unguided_logprobs``
    (zeros when not wanted), each ``(B,)``.
    """
    allowed = tables.allowed(state) if tables is not None else None
    return _guided_sample(logits, allowed, uniform, params, n_branches, scale, image_scale,
                          want_unguided)


def sample_image_step(code_logits: Tensor, uniform: Tensor | None, params: SamplingParams,
                      n_branches: int, scale: float, image_scale: float, want_unguided: bool,
                      image_offset: int) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`sample_step` for a step where every row must emit an image code.

    ``code_logits`` ``(n_branches·B, K)`` score the codes alone (:meth:`GPT.image_head`). The
    constraint allows every code and nothing else there, so its mask is dropped and the
    softmax, top-k and top-p run over ``K`` entries instead of ``V``: the same distribution,
    hence the same greedy tokens and log-probs. Returns token *ids* (``image_offset + k``).
    """
    k, logp, unguided = _guided_sample(code_logits, None, uniform, params, n_branches, scale,
                                       image_scale, want_unguided)
    return k + image_offset, logp, unguided


def _guided_sample(logits: Tensor, allowed: Tensor | None, uniform: Tensor | None,
                   params: SamplingParams, n_branches: int, scale: float, image_scale: float,
                   want_unguided: bool) -> tuple[Tensor, Tensor, Tensor]:
    logits = logits.float()
    guided = combine_guidance(logits, n_branches, scale, image_scale)
    if allowed is not None:
        guided = guided.masked_fill(~allowed, float("-inf"))
    tokens, logp = sample_with_logprobs(guided, params, uniform)
    if want_unguided:
        cond = logits[: guided.shape[0]]
        if allowed is not None:
            cond = cond.masked_fill(~allowed, float("-inf"))
        t = params.temperature if params.temperature > 0 else 1.0
        unguided = (cond / t).log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
    else:
        unguided = torch.zeros_like(logp)
    return tokens, logp, unguided


def image_head_applies(constraint: ImageSpanConstraint | None, config: Any) -> bool:
    """Whether the model's image head scores exactly the constraint's image codes (then steps
    inside an image span can use :meth:`GPT.image_head` instead of the full head)."""
    return (constraint is not None and config.image_codebook_size > 0
            and constraint.image_offset == config.image_offset
            and constraint.codebook_size == config.image_codebook_size)


class Engine:
    """Batched KV-cached generation with a fixed-size cache.

    Args:
        model: The LM (run in eval mode during ``generate``; its mode is restored after).
        max_seq_len: Cache slots (prompt + new tokens); default ``model.config.max_seq_len``.
        compile: Compile the decode step and the sampler with ``fullgraph=True``.
        compile_mode: ``torch.compile`` mode (e.g. ``"reduce-overhead"`` for CUDA graphs).
        compile_backend: ``torch.compile`` backend (``"eager"`` only captures graphs: a
            cheap check that the step is graph-break free).
        sync_every: Check for "every row finished" every this many steps (a host sync).
        compile_options: Inductor options instead of ``compile_mode`` (torch.compile takes
            one or the other), e.g. ``{"triton.cudagraphs": True,
            "coordinate_descent_tuning": True}`` for CUDA graphs with tuned batch-1 kernels.
        image_head_steps: While every row is inside an image span with codes left (a
            text-to-image or edit prompt ending in ``boi``, under a constraint), compute
            only the image codes' logits (:meth:`GPT.decode_step_image`) and sample over
            them. Same distribution, greedy tokens and log-probs as the full head; the
            sampling noise is drawn over ``K`` instead of ``V`` entries, so seeded samples
            differ from ``False``. ``False``: the full head at every step.
        speculative: Speculative Jacobi decoding of image spans (:mod:`arm_core.speculative`):
            drafts verified per forward while every row owes image codes; ``0`` (default)
            = off. Samples follow the same distribution as plain decoding (greedy: the same
            tokens) with fewer forwards, each over ``speculative + 1`` tokens per row: a
            gain where a step is memory-bound (GPU, small batches), possibly a loss where it
            is compute-bound (CPU, large batches). Runs eagerly even with ``compile=True``
            and needs ``speculative`` spare cache slots (with ``compile`` the window shrinks
            to what ``max_seq_len`` leaves, and plain decoding runs when none is left).
        speculative_init: Drafts the verify window starts from where no forward has
            predicted them: ``"random"`` (uniform codes, as Teng et al. 2024) or
            ``"repeat"`` (the last code repeated: flat image regions repeat codes).
    """

    def __init__(self, model: GPT, max_seq_len: int | None = None, compile: bool = False,
                 compile_mode: str | None = None, compile_backend: str = "inductor",
                 sync_every: int = 16, compile_options: dict[str, Any] | None = None,
                 image_head_steps: bool = True, speculative: int = 0,
                 speculative_init: str = "random") -> None:
        if speculative < 0:
            raise ValueError(f"Engine: speculative must be >= 0 (drafts per forward; 0 = off), "
                             f"got {speculative}")
        if speculative_init not in SPECULATIVE_INITS:
            raise ValueError(f"Engine: speculative_init must be one of {SPECULATIVE_INITS}, "
                             f"got {speculative_init!r}")
        self.speculative = speculative
        self.speculative_init = speculative_init
        self.model = model
        self.max_seq_len = max_seq_len or model.config.max_seq_len
        if self.max_seq_len > model.config.max_seq_len:
            raise ValueError(f"max_seq_len={self.max_seq_len} exceeds the model's "
                             f"{model.config.max_seq_len}")
        self.sync_every = max(1, sync_every)
        self.image_head_steps = image_head_steps
        self._decode = model.decode_step
        self._sample = sample_step
        self._decode_image = model.decode_step_image
        self._sample_image = sample_image_step
        self._compiled = compile
        if compile_mode is not None and compile_options is not None:
            raise ValueError("Engine: pass compile_mode or compile_options, not both "
                             "(torch.compile accepts one of them)")
        self._cudagraphs = compile and (
            (compile_mode is not None and "reduce-overhead" in compile_mode)
            or bool((compile_options or {}).get("triton.cudagraphs")))
        if compile:
            kw: dict[str, Any] = dict(fullgraph=True, backend=compile_backend, dynamic=False)
            if compile_mode is not None:
                kw["mode"] = compile_mode
            if compile_options is not None:
                kw["options"] = dict(compile_options)
            self._decode = torch.compile(model.decode_step, **kw)
            self._sample = torch.compile(sample_step, **kw)
            self._decode_image = torch.compile(model.decode_step_image, **kw)
            self._sample_image = torch.compile(sample_image_step, **kw)

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    def release(self) -> None:
        """Free the model's KV cache (e.g. before a training step)."""
        self.model.release_kv_cache()

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
                 eos_ids: Sequence[int] = (), constraint: ImageSpanConstraint | None = None,
                 guidance: Guidance | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None,
                 return_unguided_logprobs: bool = False, pad_id: int = 0,
                 progress: bool | str = False) -> GenerationOutput:
        """Generate up to ``max_new_tokens`` per prompt (in eval mode, without autograd; the
        model's train/eval mode is restored afterwards).

        Args:
            prompts: ``B`` token-id lists (any lengths).
            max_new_tokens: Tokens to generate per row at most.
            temperature, top_k, top_p: Sampling (see :class:`SamplingParams`; 0 = greedy).
            eos_ids: A row stops after producing any of these.
            constraint: Image-span grammar; ``None`` = unconstrained.
            guidance: Classifier-free guidance; ``None`` = none.
            seed: Seed for a fresh generator (ignored when ``generator`` is given); ``None``
                draws one from torch's global RNG (differs per call, follows ``manual_seed``).
            generator: RNG for sampling noise.
            return_unguided_logprobs: Also return conditional-branch log-probs.
            pad_id: Id written after a row stops (and used for left padding).
            progress: A tqdm bar over the decode steps (a string names it), for long
                generations such as large image grids.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            # no_grad, not inference_mode: the outputs feed training code (RL), and
            # inference tensors cannot be saved for backward
            with torch.no_grad():
                return self._generate(prompts, max_new_tokens, SamplingParams(temperature, top_k, top_p),
                                      eos_ids, constraint, guidance, seed, generator,
                                      return_unguided_logprobs, pad_id, progress)
        finally:
            self.model.train(was_training)

    def _generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                  params: SamplingParams, eos_ids: Sequence[int],
                  constraint: ImageSpanConstraint | None, guidance: Guidance | None,
                  seed: int | None, generator: torch.Generator | None,
                  return_unguided_logprobs: bool, pad_id: int,
                  progress: bool | str = False) -> GenerationOutput:
        cfg = self.model.config
        B = len(prompts)
        if B == 0:
            raise ValueError("generate got no prompts (an empty prompt list)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        branches = [list(prompts)]
        if guidance is not None:
            extra = ([guidance.image_prompts] if guidance.image_prompts is not None else [])
            extra.append(guidance.uncond_prompts)
            for name, group in zip(("image_prompts", "uncond_prompts")[-len(extra):], extra,
                                       strict=True):
                if len(group) != B:
                    raise ValueError(f"guidance.{name} has {len(group)} prompts for {B} prompts")
            branches[1:] = [list(g) for g in extra]
        n_br = len(branches)
        for name, group in zip(("prompt", "guidance prompt", "guidance prompt"), branches,
                               strict=False):
            check_prompt_ids(group, cfg.vocab_size, name)
        all_prompts = [p for g in branches for p in g]
        ids, valid = left_pad(all_prompts, pad_id, self.device)
        P = ids.shape[1]
        if P + max_new_tokens > self.max_seq_len:
            raise ValueError(f"longest prompt ({P} tokens) + max_new_tokens ({max_new_tokens}) "
                             f"exceeds the context of {self.max_seq_len}; shorten the prompt or "
                             "lower max_new_tokens")
        dev = self.device
        tables = state = None
        if constraint is not None:
            tables = constraint.tables(cfg.vocab_size, dev)
            state, _ = tables.scan(ids[:B], valid[:B])
            blind = (ids[:B, -1] == constraint.boi_id) & (state.remaining == 0)
            if bool(blind.any()):
                raise ValueError(f"prompt {int(blind.nonzero()[0, 0])} ends with boi but no height "
                                 "and width shape tokens precede it: the image grid is unknown")
            need = torch.where(state.in_image, state.remaining + 1, torch.zeros_like(state.remaining))
            if int(need.max()) > max_new_tokens:
                raise ValueError(f"a prompt opens an image of {int(need.max()) - 1} codes but "
                                 f"max_new_tokens={max_new_tokens} cannot hold it and its eoi")
        # steps [0, image_steps): every row owes an image code, so only codes are scored
        image_steps = spec_steps = 0
        if image_head_applies(constraint, cfg):
            owed = int(torch.where(state.owes_code, state.remaining, 0).min())
            image_steps = owed if self.image_head_steps else 0
            spec_steps = owed if self.speculative and owed >= 2 else 0
        if generator is None and not params.greedy:
            generator = torch.Generator(device=dev if dev.type != "mps" else "cpu")
            # seed=None: draw one from torch's global RNG, so repeated calls differ (RL
            # rollouts) yet a run seeded with torch.manual_seed stays reproducible
            generator.manual_seed(int(torch.randint(0, 2**62, (1,))) if seed is None else seed)

        # prefill: one stacked batch for all guidance branches
        # compiled: always max_seq_len slots, so shapes (and the compiled graphs) stay fixed
        # across calls; eager: just what this call needs (less attention work per step)
        slots = (self.max_seq_len if self._compiled
                 else min(self.max_seq_len, P + max_new_tokens + (self.speculative if spec_steps else 0)))
        # the verify window writes up to `window` slots past the span's last code
        window = min(self.speculative, slots - P - max_new_tokens)
        if window < 1:
            spec_steps = 0
        self.model.setup_kv_cache(n_br * B, slots, dev)
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        logits = self.model.prefill(ids, pos, valid)                       # (n_br·B, V)
        forwards = 1
        next_pos = pos[:, -1:] + 1                                          # (n_br·B, 1)
        cache_pos = torch.tensor([P], device=dev)

        out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=dev)
        out_lp = torch.zeros(B, max_new_tokens, device=dev)
        out_ulp = torch.zeros(B, max_new_tokens, device=dev) if return_unguided_logprobs else None
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        lengths = torch.zeros(B, dtype=torch.long, device=dev)
        eos = torch.tensor(sorted(set(int(e) for e in eos_ids)) or [-1], device=dev)
        scale = guidance.guidance_scale if guidance is not None else 1.0
        image_scale = guidance.image_guidance_scale if guidance is not None else 1.0
        V = cfg.vocab_size
        bar = None
        if progress:
            bar = tqdm(total=max_new_tokens, desc=progress if isinstance(progress, str) else "decode",
                       unit="tok", leave=False)
        off, K = cfg.image_offset, cfg.image_codebook_size

        def record(step: int, tok: Tensor, lp: Tensor, ulp: Tensor) -> None:
            nonlocal state
            alive = ~finished
            out[:, step] = torch.where(alive, tok, torch.full_like(tok, pad_id))
            out_lp[:, step] = torch.where(alive, lp, torch.zeros_like(lp))
            if out_ulp is not None:
                out_ulp[:, step] = torch.where(alive, ulp, torch.zeros_like(ulp))
            lengths.add_(alive.long())
            finished.logical_or_(alive & torch.isin(tok, eos))
            if tables is not None:
                state = tables.advance(state, tok)

        start, accepted = 0, None
        if spec_steps:
            # code 0 from the prefill's logits (as the plain path draws it), the rest of the
            # span speculatively; then one plain step feeds the last code (-> eoi's logits)
            u = None if params.greedy else gumbel_noise((B, K), generator, dev)
            tok0, lp0, ulp0 = self._sample_image(logits[:, off: off + K].contiguous(), u, params,
                                                 n_br, scale, image_scale,
                                                 return_unguided_logprobs, off)
            span = decode_image_span(self.model, tok0 - off, lp0, ulp0, spec_steps,
                                     start_slot=P, start_pos=next_pos[:, 0], params=params,
                                     n_branches=n_br, guidance_scale=scale, image_guidance_scale=image_scale,
                                     want_unguided=return_unguided_logprobs,
                                     generator=generator, window=window,
                                     init=self.speculative_init)
            forwards += span.forwards
            accepted = span.accepted
            for step in range(spec_steps):
                record(step, span.tokens[:, step] + off, span.logprobs[:, step],
                       span.unguided[:, step])
            if bar is not None:
                bar.update(spec_steps)
            start = spec_steps
            if spec_steps < max_new_tokens and not bool(finished.all()):
                if self._cudagraphs:
                    torch.compiler.cudagraph_mark_step_begin()
                next_pos = next_pos + spec_steps - 1
                cache_pos = cache_pos + spec_steps - 1
                logits = self._decode(span.tokens[:, -1].repeat(n_br)[:, None] + off, next_pos,
                                      cache_pos)
                forwards += 1
                next_pos, cache_pos = next_pos + 1, cache_pos + 1
            else:
                start = max_new_tokens
        elif image_steps:
            # contiguous, as decode_step_image's outputs are: one compiled sampler per shape
            logits = logits[:, off: off + K].contiguous()
        for step in range(start, max_new_tokens):
            if step < image_steps:          # logits are the codes' (n_br·B, K)
                u = None if params.greedy else gumbel_noise((B, K), generator, dev)
                tok, lp, ulp = self._sample_image(logits, u, params, n_br, scale, image_scale,
                                                  return_unguided_logprobs, off)
            else:
                u = None if params.greedy else gumbel_noise((B, V), generator, dev)
                tok, lp, ulp = self._sample(logits, state, tables, u, params, n_br, scale,
                                            image_scale, return_unguided_logprobs)
            record(step, tok, lp, ulp)
            if bar is not None:
                bar.update(1)
            if step == max_new_tokens - 1 or (step % self.sync_every == self.sync_every - 1
                                              and bool(finished.all())):
                break
            if self._cudagraphs:          # outputs of the previous replay are consumed
                torch.compiler.cudagraph_mark_step_begin()
            decode = self._decode_image if step + 1 < image_steps else self._decode
            logits = decode(tok.repeat(n_br)[:, None], next_pos, cache_pos)
            forwards += 1
            next_pos = next_pos + 1
            cache_pos = cache_pos + 1
        if bar is not None:
            bar.close()
        mask = torch.arange(max_new_tokens, device=dev)[None] < lengths[:, None]
        return GenerationOutput(out, out_lp, mask, lengths, finished, out_ulp, forwards, accepted)


    def score(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        """:func:`score` with this engine's model."""
        return score(self.model, input_ids, attention_mask, **kwargs)


def check_prompt_ids(prompts: Sequence[Sequence[int]], vocab_size: int, name: str = "prompt") -> None:
    """Refuse ids the model has no embedding for, naming the prompt (a clear error instead of
    an ``IndexError`` from inside the embedding)."""
    for i, p in enumerate(prompts):
        bad = [int(t) for t in p if not 0 <= int(t) < vocab_size]
        if bad:
            raise ValueError(f"{name} {i} has ids {bad[:5]} outside [0, {vocab_size}) "
                             "(a tokenizer/vocabulary that does not match this model?)")


def _check_id_tensor(ids: Tensor, mask: Tensor | None, vocab_size: int, name: str) -> None:
    out = (ids < 0) | (ids >= vocab_size)
    if mask is not None:
        out &= mask.bool()
    if out.any():
        row = int(out.any(1).nonzero()[0])
        raise ValueError(f"{name} row {row} has ids {ids[row][out[row]][:5].tolist()} outside "
                         f"[0, {vocab_size}) (a tokenizer/vocabulary that does not match this model?)")


def generate(model: GPT, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             **kwargs) -> GenerationOutput:
    """One-shot :meth:`Engine.generate` (allocates a cache sized for this call)."""
    if len(prompts) == 0:
        raise ValueError("generate got no prompts (an empty prompt list)")
    longest = max(len(p) for p in prompts)
    if kwargs.get("guidance") is not None:
        g = kwargs["guidance"]
        longest = max([longest, *map(len, g.uncond_prompts), *map(len, g.image_prompts or [])])
    return Engine(model, max_seq_len=min(model.config.max_seq_len, longest + max_new_tokens)
                  ).generate(prompts, max_new_tokens, **kwargs)


def score(model: GPT, input_ids: Tensor, attention_mask: Tensor | None = None, *,
          temperature: float = 1.0, constraint: ImageSpanConstraint | None = None) -> Tensor:
    """Log-probabilities of given sequences in one forward pass (differentiable; for RL).

    ``out[b, t] = log p(input_ids[b, t] | input_ids[b, :t])`` with logits masked by the
    image-span ``constraint`` (state from the sequence itself) and divided by
    ``temperature``; each row's first real token and padded positions get 0. Equals the
    ``unguided_logprobs`` that :meth:`Engine.generate` reports for its samples.

    Args:
        model: The LM.
        input_ids: ``(B, T)`` prompt + completion ids.
        attention_mask: ``(B, T)`` bool, False on padding (left or right); ``None``: no padding.
        temperature: Divide logits by this (> 0).
        constraint: Image-span grammar applied to the logits, as in generation.
    """
    if temperature <= 0:
        raise ValueError(f"score needs temperature > 0, got {temperature}")
    _check_id_tensor(input_ids, attention_mask, model.config.vocab_size, "input_ids")
    B, T = input_ids.shape
    if attention_mask is None:
        logits = model(input_ids)
        valid = torch.ones_like(input_ids, dtype=torch.bool)
    else:
        valid = attention_mask.bool()
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        doc = torch.where(valid, torch.zeros_like(input_ids), torch.full_like(input_ids, -1))
        logits = model(input_ids, position_ids=pos, doc_ids=doc)
    logits = logits[:, :-1].float()                                           # predicts t = 1..T-1
    if constraint is not None:
        tables = constraint.tables(model.config.vocab_size, input_ids.device)
        _, before = tables.scan(input_ids, valid)
        allowed = torch.stack([tables.allowed(s) for s in before[1:]], dim=1)  # (B, T-1, V)
        logits = logits.masked_fill(~allowed, float("-inf"))
    logp = (logits / temperature).log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    has_context = valid[:, 1:] & valid[:, :-1]          # a row's first real token has none
    logp = torch.where(has_context, logp, torch.zeros_like(logp))
    return torch.cat([torch.zeros_like(logp[:, :1]), logp], dim=1)


def score_guided(model: GPT, prompts: Sequence[Sequence[int]], completions: Tensor,
                 completion_mask: Tensor | None = None, *, guidance: Guidance | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
                 constraint: ImageSpanConstraint | None = None,
                 return_untruncated: bool = False,
                 image_head: bool = True) -> Tensor | tuple[Tensor, Tensor]:
    """Log-probs ``(B, N)`` of ``completions`` under the distribution :meth:`Engine.generate`
    samples from (guidance, constraint, temperature, top-k/top-p), in one batched forward of
    all guidance branches (teacher forcing; differentiable). With the generation's own
    arguments it reproduces ``GenerationOutput.logprobs``.

    With ``return_untruncated`` it returns ``(logp, logp_untruncated)``, the second under the
    same distribution without top-k/top-p, from the same forward. A token the truncated
    sampler can no longer draw has log-prob ``-inf`` there; the untruncated one stays finite
    (what a KL estimate between two models needs).

    Positions where the constraint allows only image codes are scored by the image head
    alone (:meth:`GPT.image_head`: the same log-probs without ``(B, N, V)`` logits); the
    others (``eoi``, text) by the full head.

    Args:
        model: The LM.
        prompts: ``B`` conditional prompts.
        completions: ``(B, N)`` generated ids (e.g. ``GenerationOutput.tokens``).
        completion_mask: ``(B, N)`` bool, False after a row stopped (log-prob 0 there).
        guidance: The same :class:`Guidance` used for sampling, or ``None``.
        temperature, top_k, top_p: The sampling parameters used.
        constraint: The image-span constraint used.
        return_untruncated: Also return the log-probs without top-k/top-p.
        image_head: Score image-code positions with the image head alone (``False``: the
            full head everywhere; the same values, more memory).
    """
    params = SamplingParams(temperature, top_k, top_p)
    V = model.config.vocab_size
    check_prompt_ids(prompts, V, "prompt")
    if guidance is not None:
        check_prompt_ids(guidance.uncond_prompts, V, "guidance prompt")
        check_prompt_ids(guidance.image_prompts or [], V, "guidance prompt")
    _check_id_tensor(completions, completion_mask, V, "completions")
    B, N = completions.shape
    branches = [list(prompts)]
    if guidance is not None:
        if guidance.image_prompts is not None:
            branches.append(list(guidance.image_prompts))
        branches.append(list(guidance.uncond_prompts))
    n_br = len(branches)
    comp = completions.tolist()
    rows = [list(p) + c for group in branches for p, c in zip(group, comp, strict=True)]
    ids, valid = left_pad(rows, 0, completions.device)
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    doc = torch.where(valid, torch.zeros_like(ids), torch.full_like(ids, -1))
    hidden = model.forward_hidden(ids, position_ids=pos, doc_ids=doc)[:, -N - 1:-1]  # (n_br·B, N, C)
    scales = ((guidance.guidance_scale, guidance.image_guidance_scale) if guidance is not None
              else (1.0, 1.0))
    variants = [params] + ([SamplingParams(temperature, None, 1.0)] if return_untruncated else [])
    before: list[SpanState] = []
    tables = None
    if constraint is not None:
        tables = constraint.tables(model.config.vocab_size, completions.device)
        P = ids.shape[1] - N
        state, _ = tables.scan(ids[:B, :P], valid[:B, :P])
        _, before = tables.scan(completions, None, state)
    # positions where the constraint allows exactly the image codes: scored by the image
    # head alone (same distribution, no (B, N, V) logits); the rest by the full head
    code_pos = torch.zeros(B, N, dtype=torch.bool, device=completions.device)
    if image_head and image_head_applies(constraint, model.config):
        code_pos = torch.stack([s_.owes_code for s_ in before], dim=1)
    outs = [torch.zeros(B, N, device=completions.device) for _ in variants]
    if bool(code_pos.any()):
        off, K = model.config.image_offset, model.config.image_codebook_size
        guided = combine_guidance(model.image_head(hidden).float(), n_br, *scales)  # (B, N, K)
        k = completions - off
        is_code = (k >= 0) & (k < K)
        for i, p in enumerate(variants):
            lp = sampling_logprobs(guided, p).gather(-1, k.clamp(0, K - 1)[..., None]).squeeze(-1)
            lp = torch.where(is_code, lp, torch.full_like(lp, float("-inf")))
            outs[i] = torch.where(code_pos, lp, outs[i])
    cols = (~code_pos).any(0).nonzero().squeeze(-1).tolist()       # columns needing all ids
    if cols:
        every = len(cols) == N                      # no code positions: plain slices, no copies
        h = hidden if every else hidden[:, cols]
        guided = combine_guidance(model.head(h).float(), n_br, *scales)              # (B, n, V)
        if tables is not None:
            allowed = torch.stack([tables.allowed(before[j]) for j in cols], dim=1)
            guided = guided.masked_fill(~allowed, float("-inf"))
        idx = torch.tensor(cols, device=completions.device)
        comp = completions if every else completions[:, cols]
        for i, p in enumerate(variants):
            lp = sampling_logprobs(guided, p).gather(-1, comp[..., None]).squeeze(-1)
            outs[i] = lp if every else torch.where(code_pos, outs[i], outs[i].index_copy(1, idx, lp))

    def finish(lp: Tensor) -> Tensor:
        if completion_mask is not None:
            lp = torch.where(completion_mask, lp, torch.zeros_like(lp))
        return lp

    if not return_untruncated:
        return finish(outs[0])
    return finish(outs[0]), finish(outs[1])

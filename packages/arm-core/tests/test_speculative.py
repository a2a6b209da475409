"""Speculative Jacobi decoding of image spans (arm_core.speculative through Engine).

The distribution test compares sampled codes with the *exact* distribution plain sampling
draws from (enumerated over every prefix of the first codes with the same guidance,
temperature and top-k/top-p), by chi-square tests; greedy decoding must give the very
tokens of plain greedy decoding; reported log-probs must be the target distribution's.
"""

from __future__ import annotations

import math

import pytest
import torch
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Engine, Guidance, score_guided
from arm_core.kv_cache import KVCache
from arm_core.model import GPT
from arm_core.sampling import SamplingParams, combine_guidance, sampling_logprobs

# tiny preset layout: text 0..47, specials 48..63, image codes 64..95 (K = 32)
BOI, EOI, OFF, K = 50, 51, 64, 32
SHAPES = {52: (2, 3), 53: (4, 4)}
CONSTRAINT = ImageSpanConstraint(boi_id=BOI, eoi_id=EOI, image_offset=OFF, codebook_size=K,
                                 shape_tokens=SHAPES)
# two prompts of different lengths (left padding, different acceptance per row)
PROMPTS = [[1, 2, 3, 52, BOI], [7, 52, BOI]]
UNCOND = [52, BOI]
IMAGE = [[9, 9, 52, BOI], [11, 52, BOI]]          # editing's image-only branch (3-branch CFG)
# a p-value below this fails a chi-square test (5 tests: a false alarm about once in 2,000 runs)
P_FAIL = 1e-4


def _sharpened(cfg: Config, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    m = GPT(cfg)
    with torch.no_grad():             # sharper logits than the 0.02 init: peaked, varied p
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(10)
    return m.eval()


@pytest.fixture(scope="module")
def model() -> GPT:
    return _sharpened(Config.from_name("tiny"))


def _gen(model, speculative: int, prompts=PROMPTS, n_new: int = 7, **kw):
    return Engine(model, speculative=speculative, **{k: kw.pop(k) for k in list(kw)
                                                      if k == "speculative_init"}).generate(
        prompts, n_new, constraint=CONSTRAINT, eos_ids=[EOI], **kw)


def _guidance(n_branches: int, rows: int = 2) -> Guidance | None:
    if n_branches == 1:
        return None
    if n_branches == 2:
        return Guidance([UNCOND] * rows, guidance_scale=1.5)
    return Guidance([UNCOND] * rows, guidance_scale=1.5, image_prompts=IMAGE[:rows], image_guidance_scale=1.25)


@pytest.mark.parametrize("n_branches", [1, 2, 3])
def test_greedy_equals_plain_greedy(model, n_branches):
    g = _guidance(n_branches)
    plain = _gen(model, 0, n_new=17, prompts=[[1, 2, 3, 53, BOI], [7, 53, BOI]], temperature=0,
                 guidance=_guidance(n_branches), return_unguided_logprobs=True)
    assert plain.accepted_drafts is None and plain.forward_passes == 17
    for window in (1, 3, 8):
        spec = _gen(model, window, n_new=17, prompts=[[1, 2, 3, 53, BOI], [7, 53, BOI]],
                    temperature=0, guidance=g, return_unguided_logprobs=True)
        assert torch.equal(spec.tokens, plain.tokens), window
        assert torch.allclose(spec.logprobs, plain.logprobs, atol=1e-5)
        assert torch.allclose(spec.unguided_logprobs, plain.unguided_logprobs, atol=1e-5)
        assert spec.accepted_drafts is not None and spec.forward_passes <= plain.forward_passes


def _exact_joint(model, prompt, depth: int, params: SamplingParams, scale: float) -> torch.Tensor:
    """``(K,)*depth`` probabilities of the first ``depth`` codes under plain sampling:
    every prefix enumerated, 2-branch guidance, temperature, top-k/top-p."""
    joint = torch.ones(())
    prefixes = torch.zeros(1, 0, dtype=torch.long)
    for _ in range(depth):
        n = prefixes.shape[0]
        cond = torch.cat([torch.tensor(prompt).expand(n, -1), prefixes + OFF], 1)
        unc = torch.cat([torch.tensor(UNCOND).expand(n, -1), prefixes + OFF], 1)
        with torch.no_grad():
            lc = model(cond)[:, -1, OFF:OFF + K]
            lu = model(unc)[:, -1, OFF:OFF + K]
        p = sampling_logprobs(combine_guidance(torch.cat([lc, lu]), 2, scale), params).exp()
        joint = joint[..., None] * p.view(*joint.shape, K)
        prefixes = torch.cat([prefixes.repeat_interleave(K, 0),
                              torch.arange(K).repeat(n)[:, None]], 1)
    return joint


def _chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square test of ``counts`` against ``probs`` (cells expecting < 5 merged)."""
    n = counts.sum()
    expected = probs.double() * n
    order = expected.argsort(descending=True)
    exp_s, cnt_s = expected[order], counts.double()[order]
    big = exp_s >= 5
    e = torch.cat([exp_s[big], exp_s[~big].sum()[None]])
    c = torch.cat([cnt_s[big], cnt_s[~big].sum()[None]])
    if e[-1] < 5:                      # fold a too-small tail into the smallest big cell
        e = torch.cat([e[:-2], (e[-2] + e[-1])[None]])
        c = torch.cat([c[:-2], (c[-2] + c[-1])[None]])
    stat = ((c - e) ** 2 / e).sum()
    dof = len(e) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat / 2))


def test_sampled_codes_follow_the_plain_distribution(model, arm_test_seed):
    """Per-row acceptance, 2-branch CFG, temperature, top-k and top-p at once."""
    params = SamplingParams(1.0, top_k=20, top_p=0.95)
    scale, n_rows, depth = 1.5, 2000, 3
    prompts = PROMPTS * n_rows                      # rows alternate the two prompts
    out = _gen(model, 4, prompts=prompts, temperature=1.0, top_k=20, top_p=0.95,
               guidance=Guidance([UNCOND] * len(prompts), guidance_scale=scale), seed=arm_test_seed)
    codes = out.tokens[:, :6] - OFF
    assert ((codes >= 0) & (codes < K)).all() and (out.tokens[:, 6] == EOI).all()
    # rows accept different numbers of drafts (the batch runs until its slowest row is done)
    assert out.accepted_drafts.unique().numel() > 3 and out.accepted_drafts.float().mean() > 0.5
    for i, prompt in enumerate(PROMPTS):
        joint = _exact_joint(model, prompt, depth, params, scale)
        c = codes[i::2]
        # the exact marginals are far from uniform (what accepting every uniform draft gives),
        # so the tests below can tell
        assert 0.5 * (joint.sum((0, 2)) - 1 / K).abs().sum() > 0.2
        pvals = {}
        for pos in (1, 2):
            marg = joint.sum(tuple(d for d in range(depth) if d != pos))
            pvals[f"code {pos}"] = _chi2_pvalue(torch.bincount(c[:, pos], minlength=K), marg)
        # dependence between codes 1 and 2: their joint over 4 x 4 bins (code mod 4)
        binned = joint.sum(0).view(K // 4, 4, K // 4, 4).sum((0, 2)).reshape(-1)
        pvals["codes 1-2"] = _chi2_pvalue(torch.bincount((c[:, 1] % 4) * 4 + c[:, 2] % 4,
                                                         minlength=16), binned)
        assert min(pvals.values()) > P_FAIL, (prompt, pvals)


@pytest.mark.parametrize("n_branches", [1, 3])
def test_logprobs_are_the_target_distributions(model, arm_test_seed, n_branches):
    """RL's log-probs: each kept code's, under the guided truncated distribution plain sampling
    uses (score_guided recomputes it by teacher forcing), and the conditional branch's."""
    g = _guidance(n_branches)
    out = _gen(model, 5, n_new=17, prompts=[[1, 2, 3, 53, BOI], [7, 53, BOI]], temperature=0.8,
               top_k=12, guidance=g, seed=arm_test_seed, return_unguided_logprobs=True)
    assert out.accepted_drafts.sum() > 0
    prompts = [[1, 2, 3, 53, BOI], [7, 53, BOI]]
    ref = score_guided(model, prompts, out.tokens, out.mask, guidance=g, temperature=0.8,
                       top_k=12, constraint=CONSTRAINT)
    assert torch.allclose(out.logprobs, ref, atol=1e-4)
    unguided = score_guided(model, prompts, out.tokens, out.mask, temperature=0.8,
                            constraint=CONSTRAINT)
    assert torch.allclose(out.unguided_logprobs, unguided, atol=1e-4)


def test_fewer_forwards_than_tokens(model, arm_test_seed):
    n_new = 17                                    # a 4x4 grid and eoi
    prompts = [[1, 2, 3, 53, BOI], [7, 53, BOI]]
    plain = _gen(model, 0, prompts=prompts, n_new=n_new, temperature=1.0, seed=arm_test_seed)
    assert plain.forward_passes == n_new          # prefill + one decode per later token
    for init in ("random", "repeat"):
        spec = _gen(model, 8, prompts=prompts, n_new=n_new, temperature=1.0, seed=arm_test_seed,
                    speculative_init=init)
        assert spec.lengths.tolist() == [n_new] * 2 and spec.forward_passes < n_new - 2, init


def test_learned_image_positions_follow_the_kept_codes():
    """A model with learned image positions indexes each code by the codes cached before it;
    rejected drafts must not advance that count."""
    m = _sharpened(Config.from_name("tiny", image_position_slots=16))
    with torch.no_grad():
        m.image_pos_embed.weight.normal_(0, 1.0)
    prompts = [[1, 2, 3, 53, BOI], [7, 53, BOI]]
    plain = _gen(m, 0, prompts=prompts, n_new=17, temperature=0)
    spec = _gen(m, 4, prompts=prompts, n_new=17, temperature=0)
    assert torch.equal(spec.tokens, plain.tokens)
    ref = score_guided(m, prompts, spec.tokens, spec.mask, temperature=1.0, constraint=CONSTRAINT)
    sampled = _gen(m, 4, prompts=prompts, n_new=17, temperature=1.0, seed=3)
    assert sampled.accepted_drafts.sum() > 0
    ref = score_guided(m, prompts, sampled.tokens, sampled.mask, constraint=CONSTRAINT)
    assert torch.allclose(sampled.logprobs, ref, atol=1e-4)


def test_off_outside_image_spans_and_compiled_engine(model):
    """Prompts that do not open an image decode exactly as without the option; with
    compile=True the plain steps stay compiled and the span runs eagerly."""
    text = [[1, 2, 3], [4, 5]]
    a = Engine(model).generate(text, 6, constraint=CONSTRAINT, seed=1)
    b = Engine(model, speculative=4).generate(text, 6, constraint=CONSTRAINT, seed=1)
    assert torch.equal(a.tokens, b.tokens) and b.accepted_drafts is None
    prompts = [[1, 2, 3, 53, BOI], [7, 53, BOI]]
    plain = _gen(model, 0, prompts=prompts, n_new=17, temperature=0)
    comp = Engine(model, compile=True, compile_backend="eager", speculative=4).generate(
        prompts, 17, temperature=0, constraint=CONSTRAINT, eos_ids=[EOI])
    assert torch.equal(comp.tokens, plain.tokens) and comp.accepted_drafts is not None


def test_kv_cache_per_row_slots_and_rollback():
    kv = KVCache(1, 2, 1, 6, 1)
    k = torch.arange(4.0).view(2, 1, 2, 1)
    kv.layers[0].update(torch.tensor([[1, 2], [3, 4]]), k, k)
    assert kv.layers[0].k[0, 0, :, 0].tolist() == [0, 0, 1, 0, 0, 0]
    assert kv.layers[0].k[1, 0, :, 0].tolist() == [0, 0, 0, 2, 3, 0]
    kv.mark(torch.tensor([[0, 1, 2], [0, 1, 2]]), torch.ones(2, 3, dtype=torch.bool))
    mask = kv.attention_mask(torch.tensor([[1], [2]]))[:, 0, 0]
    assert mask.tolist() == [[True, True, False, False, False, False],
                             [True, True, True, False, False, False]]
    kv.rollback(torch.tensor([1, 3]))
    assert kv.valid.tolist() == [[True, False, False, False, False, False],
                                 [True, True, True, False, False, False]]


def test_bad_options_name_the_argument(model):
    with pytest.raises(ValueError, match="speculative must be >= 0"):
        Engine(model, speculative=-1)
    with pytest.raises(ValueError, match="speculative_init must be one of"):
        Engine(model, speculative=2, speculative_init="zeros")


def test_pvalue_helper_rejects_a_wrong_distribution():
    """The chi-square helper has power: 4,000 draws from one distribution against another 0.1
    away in total variation fail, and against their own distribution pass."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(K, generator=g), 0)
    q = 0.8 * p + 0.2 * torch.softmax(torch.randn(K, generator=g), 0)
    draws = torch.multinomial(p, 4000, replacement=True, generator=g)
    counts = torch.bincount(draws, minlength=K)
    assert _chi2_pvalue(counts, p) > P_FAIL
    assert 0.5 * (p - q).abs().sum() > 0.05 and _chi2_pvalue(counts, q) < P_FAIL
    assert math.isfinite(_chi2_pvalue(counts, p))


def test_decode_image_span_old_scale_names_warn_and_decode_the_same(model, monkeypatch):
    """``decode_image_span(scale=, image_scale=)``: deprecated names of ``guidance_scale`` /
    ``image_guidance_scale`` (issue 32); the engine's spans called with them are the same."""
    import arm_core.generation as generation

    real = generation.decode_image_span

    def old_spelling(*args, guidance_scale, image_guidance_scale, **kw):
        return real(*args, scale=guidance_scale, image_scale=image_guidance_scale, **kw)

    kw = dict(temperature=1.0, seed=2, guidance=_guidance(3), return_unguided_logprobs=True)
    new = _gen(model, 3, **kw)
    monkeypatch.setattr(generation, "decode_image_span", old_spelling)
    with pytest.warns(DeprecationWarning) as caught:
        old = _gen(model, 3, **kw)
    said = {str(w.message).split(" (")[0] for w in caught}
    assert said == {"decode_image_span: scale= is deprecated, use guidance_scale=",
                    "decode_image_span: image_scale= is deprecated, use image_guidance_scale="}
    assert torch.equal(old.tokens, new.tokens) and torch.equal(old.logprobs, new.logprobs)
    assert torch.equal(old.unguided_logprobs, new.unguided_logprobs)

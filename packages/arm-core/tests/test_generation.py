"""Generation: cache vs recompute, sampling, constraints, guidance, log-probs, scoring, errors."""

from __future__ import annotations

import pytest
import torch
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Engine, Guidance, generate, left_pad, score, score_guided
from arm_core.model import GPT
from arm_core.sampling import (
    SamplingParams,
    combine_guidance,
    sample_with_logprobs,
    truncate_logits,
)

# tiny preset layout: text 0..47, specials 48..63, image codes 64..95
BOI, EOI = 50, 51
SHAPES = {52: (2, 3), 53: (1, 2), 54: (3, 1)}
CONSTRAINT = ImageSpanConstraint(boi_id=BOI, eoi_id=EOI, image_offset=64, codebook_size=32,
                                 shape_tokens=SHAPES)


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    m = GPT(Config.from_name("tiny"))
    with torch.no_grad():             # sharper logits than the 0.02 init: less ties, more signal
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(10)
    return m.eval()


def greedy_by_recompute(model, prompt, n):
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt):]


def test_greedy_cache_equals_full_recompute(model):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8], [30, 31, 32, 33]]
    out = Engine(model).generate(prompts, 12, temperature=0)
    for i, p in enumerate(prompts):
        assert out.tokens[i].tolist() == greedy_by_recompute(model, p, 12), i
    assert out.mask.all() and out.lengths.tolist() == [12] * 3


def test_seeds_reproducible_and_topk1_is_greedy(model):
    eng = Engine(model)
    prompts = [[1, 2, 3], [4, 5]]
    a = eng.generate(prompts, 10, temperature=1.0, seed=7)
    b = eng.generate(prompts, 10, temperature=1.0, seed=7)
    c = eng.generate(prompts, 10, temperature=1.0, seed=8)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.tokens, c.tokens)
    g = eng.generate(prompts, 10, temperature=0)
    k1 = eng.generate(prompts, 10, temperature=0.7, top_k=1, seed=3)
    p0 = eng.generate(prompts, 10, temperature=0.7, top_p=1e-6, seed=3)
    assert torch.equal(g.tokens, k1.tokens) and torch.equal(g.tokens, p0.tokens)
    assert torch.allclose(k1.logprobs, torch.zeros_like(k1.logprobs))   # a point mass


def test_eos_stops_rows_and_pads(model):
    prompts = [[1, 2, 3], [7, 7]]
    ref = Engine(model).generate(prompts, 8, temperature=0)
    stop = int(ref.tokens[0, 2])
    out = Engine(model, sync_every=1).generate(prompts, 8, temperature=0, eos_ids=[stop], pad_id=0)
    first = ref.tokens[0].tolist().index(stop)
    assert out.lengths[0] == first + 1 and out.finished[0]
    assert out.tokens[0, first + 1:].eq(0).all() and out.logprobs[0, first + 1:].eq(0).all()
    assert out.to_lists()[0] == ref.tokens[0, :first + 1].tolist()


def test_gumbel_sampling_matches_softmax_and_truncation():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]]).expand(20000, 5)
    tok, lp = sample_with_logprobs(logits, SamplingParams(1.0), torch.rand(20000, 5))
    freq = torch.bincount(tok, minlength=5).float() / 20000
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.015)
    assert torch.allclose(lp, logits[0].log_softmax(-1)[tok])
    t = truncate_logits(logits[:1], top_k=2, top_p=1.0)
    assert torch.isinf(t).tolist() == [[False, False, True, True, True]]
    p = logits[0].softmax(-1)                          # 0.56, 0.21, 0.12, 0.03, 0.08
    t = truncate_logits(logits[:1], top_k=None, top_p=0.7)
    assert torch.isfinite(t).tolist() == [[True, True, False, False, False]], p
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


def test_combine_guidance_formulas():
    c, i, u = torch.randn(3, 2, 7)
    assert torch.allclose(combine_guidance(torch.cat([c, u]), 2, scale=1.5), u + 1.5 * (c - u))
    got = combine_guidance(torch.cat([c, i, u]), 3, scale=1.5, image_scale=1.25)
    assert torch.allclose(got, u + 1.25 * (i - u) + 1.5 * (c - i))
    assert torch.allclose(combine_guidance(torch.cat([c, i, u]), 3, 1.0, 1.0), c)


def _check_grammar(prompt, gen):
    """Replays the image-span rules over prompt + generated tokens."""
    seq = list(prompt) + list(gen)
    pending, remaining, in_img = 0, 0, False
    for t_idx, t in enumerate(seq):
        is_code = 64 <= t < 96
        if t_idx >= len(prompt):
            if in_img:
                assert (is_code if remaining > 0 else t == EOI), (t_idx, t, remaining)
            else:
                assert not is_code and t != EOI and (t != BOI or pending > 0), (t_idx, t)
        if t in SHAPES:
            pending = SHAPES[t][0] * SHAPES[t][1]
        if t == BOI:
            in_img, remaining = True, pending
        elif is_code and in_img:
            remaining -= 1
        elif t == EOI:
            in_img, pending, remaining = False, 0, 0


def test_constrained_image_spans(model):
    prompts = [[1, 2, 52, BOI], [3, 53, BOI], [4, 5, 6], [54]]
    out = Engine(model).generate(prompts, 30, temperature=1.5, constraint=CONSTRAINT, seed=0)
    gen = out.to_lists()
    assert all(64 <= t < 96 for t in gen[0][:6]) and gen[0][6] == EOI
    assert all(64 <= t < 96 for t in gen[1][:2]) and gen[1][2] == EOI
    for p, g in zip(prompts, gen, strict=True):
        _check_grammar(p, g)
    # without the constraint this random model does emit image codes in text spans
    free = Engine(model).generate(prompts[2:], 30, temperature=1.5, seed=0).tokens
    assert ((free >= 64) & (free < 96)).any()


def test_constraint_errors():
    with pytest.raises(ValueError, match="inside the image-code range"):
        ImageSpanConstraint(boi_id=70, eoi_id=51, image_offset=64, codebook_size=32,
                            shape_tokens=SHAPES)
    with pytest.raises(ValueError, match="height_tokens and width_tokens"):
        ImageSpanConstraint(BOI, EOI, 64, 32, height_tokens={52: 2})
    with pytest.raises(ValueError, match="vocab_size is 96"):
        ImageSpanConstraint(BOI, EOI, 64, 64, shape_tokens=SHAPES).tables(96)


def test_guidance_scale_one_equals_conditional(model):
    prompts = [[1, 2, 52, BOI], [3, 53, BOI]]
    eng = Engine(model)
    plain = eng.generate(prompts, 8, temperature=0, constraint=CONSTRAINT)
    g1 = eng.generate(prompts, 8, temperature=0, constraint=CONSTRAINT,
                      guidance=Guidance([[52, BOI], [53, BOI]], guidance_scale=1.0))
    e1 = eng.generate(prompts, 8, temperature=0, constraint=CONSTRAINT,
                      guidance=Guidance([[52, BOI], [53, BOI]], guidance_scale=1.0,
                                        image_prompts=[[2, 52, BOI], [53, BOI]], image_guidance_scale=1.0))
    assert torch.equal(plain.tokens, g1.tokens) and torch.equal(plain.tokens, e1.tokens)
    assert torch.allclose(plain.logprobs, g1.logprobs, atol=1e-5)


def _guided_reference(model, cond, uncond, image, gen, scale, image_scale, temperature, top_k):
    """Recompute each step's guided, constrained, truncated distribution by full forwards."""
    tables = CONSTRAINT.tables(96)
    state, _ = tables.scan(torch.tensor([cond]))
    lps = []
    with torch.no_grad():
        for t in range(len(gen)):
            branch = [model(torch.tensor([p + gen[:t]]))[0, -1] for p in (cond, image, uncond) if p]
            lg = combine_guidance(torch.stack(branch), len(branch), scale, image_scale)
            lg = tables.mask_logits(lg, state)
            lg = truncate_logits(lg / temperature, top_k, 1.0)
            lps.append(float(lg.log_softmax(-1)[0, gen[t]]))
            state = tables.advance(state, torch.tensor([gen[t]]))
    return torch.tensor(lps)


@pytest.mark.parametrize("edit", [False, True], ids=["t2i", "edit"])
def test_logprobs_come_from_the_sampling_distribution(model, edit):
    cond, uncond = [[1, 2, 52, BOI], [9, 53, BOI]], [[52, BOI], [53, BOI]]
    image = [[2, 52, BOI], [53, BOI]] if edit else None
    gd = Guidance(uncond, guidance_scale=1.5, image_prompts=image, image_guidance_scale=1.25)
    out = Engine(model).generate(cond, 7, temperature=0.8, top_k=5, constraint=CONSTRAINT,
                                 guidance=gd, seed=1, return_unguided_logprobs=True,
                                 eos_ids=[EOI])
    for i in range(2):
        n = int(out.lengths[i])
        gen = out.tokens[i, :n].tolist()
        ref = _guided_reference(model, cond[i], uncond[i], image[i] if edit else None, gen,
                                1.5, 1.25, 0.8, 5)
        assert torch.allclose(out.logprobs[i, :n], ref, atol=1e-4)
    # score_guided reproduces them by teacher forcing all branches in one forward
    with torch.no_grad():
        sg = score_guided(model, cond, out.tokens, out.mask, guidance=gd, temperature=0.8,
                          top_k=5, constraint=CONSTRAINT)
    assert torch.allclose(sg, out.logprobs, atol=1e-4)
    # generation outputs feed training: differentiable re-scoring works on them directly
    model.train()
    sg = score_guided(model, cond, out.tokens, out.mask, guidance=gd, temperature=0.8,
                      top_k=5, constraint=CONSTRAINT)
    sg.sum().backward()
    assert model.visual_head.weight.grad is not None
    model.zero_grad(set_to_none=True)
    model.eval()
    # the unguided log-probs are what score() computes on the same sequences
    seqs = [c + g for c, g in zip(cond, out.to_lists(), strict=True)]
    ids, valid = left_pad(seqs)
    with torch.no_grad():
        s = score(model, ids, valid, temperature=0.8, constraint=CONSTRAINT)
    for i in range(len(seqs)):
        n = int(out.lengths[i])
        assert torch.allclose(s[i, -n:], out.unguided_logprobs[i, :n], atol=1e-4)
        assert not torch.allclose(out.logprobs[i, :n], out.unguided_logprobs[i, :n])


def _count_image_steps(model, monkeypatch) -> dict[str, int]:
    """Count the engine's codes-only decode steps (``calls["image"]``)."""
    calls = {"image": 0}
    real = model.decode_step_image

    def spy(*a):
        calls["image"] += 1
        return real(*a)

    monkeypatch.setattr(model, "decode_step_image", spy)
    return calls


@pytest.mark.parametrize("branches", [1, 2, 3], ids=["plain", "t2i-cfg", "edit-cfg"])
def test_image_head_steps_change_the_cost_not_the_distribution(model, branches, monkeypatch):
    cond = [[1, 2, 52, BOI], [9, 52, BOI]]
    gd = None if branches == 1 else Guidance(
        [[52, BOI], [52, BOI]], guidance_scale=1.5, image_guidance_scale=1.25,
        image_prompts=[[2, 52, BOI], [52, BOI]] if branches == 3 else None)
    kw = dict(constraint=CONSTRAINT, guidance=gd, eos_ids=[EOI], return_unguided_logprobs=True)
    calls = _count_image_steps(model, monkeypatch)
    fast = Engine(model).generate(cond, 8, temperature=0, **kw)
    assert calls["image"] == 2 * 3 - 1            # steps 1..5 of the 2x3 grid; step 0 is prefill's
    full = Engine(model, image_head_steps=False).generate(cond, 8, temperature=0, **kw)
    assert calls["image"] == 5
    assert torch.equal(fast.tokens, full.tokens) and fast.lengths.tolist() == [7, 7]
    assert torch.allclose(fast.logprobs, full.logprobs, atol=1e-5)
    assert torch.allclose(fast.unguided_logprobs, full.unguided_logprobs, atol=1e-5)

    # sampled with truncation: the same log-probs as the full-head scorer reports
    out = Engine(model).generate(cond, 8, temperature=0.9, top_k=7, top_p=0.9, seed=3, **kw)
    assert CONSTRAINT.image_offset <= int(out.tokens[:, :6].min())
    assert out.tokens[:, 6].eq(EOI).all()
    score_kw = dict(guidance=gd, temperature=0.9, top_k=7, top_p=0.9, constraint=CONSTRAINT,
                    return_untruncated=True)
    fast_lp = score_guided(model, cond, out.tokens, out.mask, **score_kw)
    full_lp = score_guided(model, cond, out.tokens, out.mask, image_head=False, **score_kw)
    for f, r in zip(fast_lp, full_lp, strict=True):
        assert torch.allclose(f, r, atol=1e-5)
    assert torch.allclose(fast_lp[0], out.logprobs, atol=1e-4)
    grads = []                                    # and the same gradient (RL's loss)
    for image_head in (True, False):
        model.zero_grad(set_to_none=True)
        lp = score_guided(model, cond, out.tokens, out.mask, image_head=image_head, **score_kw)[0]
        lp.sum().backward()
        grads.append(torch.cat([model.visual_head.weight.grad.flatten(),
                                model.layers[0].mlp.down_proj.weight.grad.flatten()]))
    model.zero_grad(set_to_none=True)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_image_head_steps_wait_for_every_row(model, monkeypatch):
    calls = _count_image_steps(model, monkeypatch)
    eng = Engine(model)
    # one row has 2 codes left (a 1x2 grid), the other 6: codes-only for the first 2 steps
    eng.generate([[53, BOI], [52, BOI]], 8, temperature=0, constraint=CONSTRAINT)
    assert calls["image"] == 1
    # a row still in text: the full head from the start
    eng.generate([[1, 2, 3], [52, BOI]], 8, temperature=0, constraint=CONSTRAINT)
    assert calls["image"] == 1


def test_a_completion_that_breaks_the_grammar_scores_as_with_the_full_head(model):
    # text inside the span gets -inf, as under the full head's mask (and the span then
    # owes one more code, so eoi is out of place too)
    bad = torch.tensor([[5, 64, 65, 66, 67, 68, EOI]])
    lp = score_guided(model, [[52, BOI]], bad, constraint=CONSTRAINT)
    ref = score_guided(model, [[52, BOI]], bad, constraint=CONSTRAINT, image_head=False)
    assert lp[0, 0] == float("-inf") and lp[0, -1] == float("-inf")
    assert torch.allclose(lp, ref, atol=1e-5)


def test_score_is_differentiable_and_padding_invariant(model):
    a, b = [1, 2, 3, 4, 5, 6], [7, 8, 9]
    ids, valid = left_pad([a, b])
    s = score(model, ids, valid)
    alone = score(model, torch.tensor([b]))
    assert torch.allclose(s[1, -3:], alone[0], atol=1e-5)
    assert s[1, :4].eq(0).all()
    ref = model(torch.tensor([a])).log_softmax(-1)[0, :-1].gather(-1, torch.tensor(a[1:])[:, None])
    assert torch.allclose(s[0, 1:], ref[:, 0], atol=1e-5)
    s.sum().backward()
    assert model.embed_tokens.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_bad_input_errors(model):
    eng = Engine(model)
    with pytest.raises(ValueError, match="exceeds the context of 128"):
        eng.generate([[1] * 120], 10)
    with pytest.raises(ValueError, match=r"outside \[0, 96\)"):
        eng.generate([[1, 200]], 3)
    with pytest.raises(ValueError, match="uncond_prompts has 1 prompts for 2"):
        eng.generate([[1], [2]], 3, guidance=Guidance([[1]]))
    with pytest.raises(ValueError, match="max_new_tokens=3 cannot hold"):
        eng.generate([[52, BOI]], 3, constraint=CONSTRAINT)
    with pytest.raises(ValueError, match="empty"):
        eng.generate([[]], 3)


def test_generate_helper_sizes_cache_to_the_call(model):
    out = generate(model, [[1, 2]], 4, temperature=0)
    assert out.tokens.shape == (1, 4)
    assert model.kv_cache.max_seq_len == 6


def test_height_width_tokens_from_vocab_layout():
    from arm_data.vocab import VocabLayout
    layout = VocabLayout(text_vocab_size=20, codebook_size=16, max_grid_h=4, max_grid_w=4)
    c = ImageSpanConstraint.from_layout(layout)
    cfg = Config.from_name("tiny", vocab_size=layout.total_size, text_vocab_size=20,
                           image_offset=layout.image_offset, image_codebook_size=16)
    torch.manual_seed(3)
    m = GPT(cfg).eval()
    h, w = layout.shape_token_ids(3, 2)
    prompts = [[1, h, w, layout.boi_id], [2, 3]]
    out = Engine(m).generate(prompts, 24, temperature=2.0, constraint=c, seed=0)
    gen = out.to_lists()
    assert all(layout.is_image_id(t) for t in gen[0][:6]) and gen[0][6] == layout.eoi_id
    assert not any(layout.is_image_id(t) for t in gen[1][:1])
    # replay: every generated image span has exactly H*W codes, no codes outside spans
    seq, height, width, i = gen[1], 0, 0, 0
    while i < len(seq):
        t = seq[i]
        assert not layout.is_image_id(t), (i, t)
        if layout.is_height_id(t):
            height = layout.height_from_id(t)
        elif layout.is_width_id(t):
            width = layout.width_from_id(t)
        elif t == layout.boi_id:
            assert height and width
            span = seq[i + 1:i + 1 + height * width]
            if len(span) == height * width:
                assert all(layout.is_image_id(x) for x in span)
                if i + 1 + height * width < len(seq):
                    assert seq[i + 1 + height * width] == layout.eoi_id
            i += height * width + 1
            height = width = 0
        i += 1
    with pytest.raises(ValueError, match="no height and width"):
        Engine(m).generate([[1, h, layout.boi_id]], 10, constraint=c)


def test_engine_restores_train_mode_and_releases_cache():
    m = GPT(Config.from_name("tiny")).train()
    eng = Engine(m)
    eng.generate([[1, 2]], 3, temperature=0)
    assert m.training and m.kv_cache is not None
    assert not any("kv_cache" in n for n, _ in m.named_buffers())   # never broadcast by DDP
    eng.release()
    assert m.kv_cache is None


def test_unseeded_calls_differ_but_follow_global_seed(model):
    eng = Engine(model)
    torch.manual_seed(123)
    a = eng.generate([[1, 2, 3]], 12, temperature=1.0).tokens
    b = eng.generate([[1, 2, 3]], 12, temperature=1.0).tokens
    torch.manual_seed(123)
    c = eng.generate([[1, 2, 3]], 12, temperature=1.0).tokens
    assert not torch.equal(a, b) and torch.equal(a, c)


def test_image_positions_cached_equal_full_recompute():
    """Learned image positions: the index counts codes since the last non-code token, the
    cached decode carries it across prefill and steps, and log-probs match one full forward."""
    torch.manual_seed(0)
    m = GPT(Config.from_name("tiny", image_position_slots=12))
    torch.manual_seed(0)                  # the option leaves every other weight's init as is
    for k, v in GPT(Config.from_name("tiny")).state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(10)
        m.image_pos_embed.weight.normal_(0.0, 1.0)          # zero-init would hide a wrong index
    m.eval()
    idx, run = m.image_positions(torch.tensor([[1, 64, 65, 66, 2, 70, 71], [64, 65, 1, 64, 3, 4, 5]]))
    assert idx.tolist() == [[-1, 0, 1, 2, -1, 0, 1], [0, 1, -1, 0, -1, -1, -1]]
    assert run.tolist() == [2, 0]
    idx, run = m.image_positions(torch.tensor([[64, 65, 1, 64]]), torch.tensor([3]))
    assert idx.tolist() == [[3, 4, -1, 0]] and run.tolist() == [1]

    # constrained image spans: a prompt that ends inside an image (2 of 6 codes given), one
    # that opens an image, one padded on the left
    prompts = [[1, 2, 52, BOI, 64, 70], [9, 8, 53, BOI], [30, 54, BOI]]
    out = Engine(m).generate(prompts, 8, temperature=1.5, seed=0, constraint=CONSTRAINT)
    seqs = [p + out.tokens[i].tolist() for i, p in enumerate(prompts)]
    assert all(64 <= t < 96 for t in out.tokens[0, :4].tolist() + out.tokens[1, :2].tolist())
    with torch.no_grad():
        for i, s in enumerate(seqs):
            want = score(m, torch.tensor([s]), temperature=1.5, constraint=CONSTRAINT)[0, -8:]
            torch.testing.assert_close(out.logprobs[i], want, atol=1e-4, rtol=1e-4)
        # the positions change what the model computes
        plain = GPT(Config.from_name("tiny"))
        plain.load_state_dict({k: v for k, v in m.state_dict().items() if k != "image_pos_embed.weight"})
        assert not torch.allclose(plain(torch.tensor([seqs[0]])), m(torch.tensor([seqs[0]])))

    with pytest.raises(ValueError, match="image_position_slots=12"):
        m(torch.tensor([[1] + [64] * 13]))


def test_ids_outside_the_vocabulary_and_empty_prompt_lists_are_clear_errors(model):
    V = model.config.vocab_size
    with pytest.raises(ValueError, match=rf"input_ids row 1 has ids \[{V}\] outside \[0, {V}\)"):
        score(model, torch.tensor([[1, 2, 3], [1, V, 2]]))
    with pytest.raises(ValueError, match=r"prompt 0 has ids \[-3\]"):
        score_guided(model, [[1, -3]], torch.tensor([[4]]))
    with pytest.raises(ValueError, match=rf"completions row 0 has ids \[{V + 5}\]"):
        score_guided(model, [[1, 2]], torch.tensor([[V + 5]]))
    with pytest.raises(ValueError, match="no prompts"):
        generate(model, [], 4)
    with pytest.raises(ValueError, match="no prompts"):
        Engine(model).generate([], 4)


def test_progress_bar_over_decode_steps_changes_nothing(model, capsys):
    a = Engine(model).generate([[1, 2, 3]], 6, seed=3)
    b = Engine(model).generate([[1, 2, 3]], 6, seed=3, progress="decoding")
    assert torch.equal(a.tokens, b.tokens)
    assert "decoding" in capsys.readouterr().err


def test_guidance_old_names_warn_and_guide_the_same(model):
    """``Guidance(scale=, image_scale=)`` and ``.scale`` / ``.image_scale``: deprecated names
    of ``guidance_scale`` / ``image_guidance_scale`` (issue 32)."""
    import dataclasses

    cond, uncond, image = [[1, 2, 52, BOI], [9, 53, BOI]], [[52, BOI], [53, BOI]], [[2, 52, BOI], [53, BOI]]
    new = Guidance(uncond, guidance_scale=2.0, image_prompts=image, image_guidance_scale=1.5)
    with pytest.warns(DeprecationWarning, match="Guidance: scale= is deprecated, use guidance_scale="):
        old = Guidance(uncond, scale=2.0, image_prompts=image, image_guidance_scale=1.5)
    with pytest.warns(DeprecationWarning, match="Guidance: image_scale= is deprecated, use image_guidance_scale="):
        old_img = Guidance(uncond, 2.0, image, image_scale=1.5)
    assert new == old == old_img
    with pytest.warns(DeprecationWarning, match=r"Guidance\.scale is deprecated: use guidance_scale"):
        assert old.scale == 2.0
    with pytest.warns(DeprecationWarning, match=r"Guidance\.image_scale is deprecated: use image_guidance_scale"):
        assert old.image_scale == 1.5
    with pytest.raises(TypeError, match="both guidance_scale= and its deprecated name scale="):
        Guidance(uncond, guidance_scale=2.0, scale=2.0)
    assert (Guidance(uncond).guidance_scale, Guidance(uncond).image_guidance_scale) == (1.5, 1.25)
    assert dataclasses.replace(new, guidance_scale=3.0).guidance_scale == 3.0
    kw = dict(temperature=0.8, top_k=5, constraint=CONSTRAINT, seed=1, eos_ids=[EOI])
    a, b = (Engine(model).generate(cond, 7, guidance=g, **kw) for g in (new, old))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)

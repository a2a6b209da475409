"""ContinueDocument on a tiny LM trained (in the fixture) on two edit-chain documents.

The LM memorises ``[A, "make it blue", B]`` and ``[B, "make it red", A]`` (``A``/``B``: 4x4
code grids). Continuing a document must then decide, as the training documents do, whether
text or an image comes next, draw the image span the document continues with, and end the
document with ``<eos>``. As in test_pipelines, the fixture trains until every decision the
tests expect has probability >= MIN_PROB (not for a fixed number of steps), so the greedy
outputs hold on any CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.documents import Continuation, ContinueDocument
from arm_core.generation import score
from arm_core.lightning_module import lm_loss
from arm_core.model import GPT
from arm_core.pipelines import PipelineError
from arm_data.datamodules.tokens import collate_rows
from arm_data.formats import ImageTokens
from arm_data.tasks import get_task, vocab_specials
from arm_data.text_tokenizer import TextTokenizer
from arm_data.vocab import DEFAULT_SPECIAL_TOKENS

TEXTS = ["make it blue", "make it red"]
MIN_PROB = 0.9
MAX_STEPS = 1500
CHECK_EVERY = 10


def _codes():
    a = ImageTokens([(3 * i) % 16 for i in range(16)], 4, 4)
    b = ImageTokens([(5 * i + 7) % 16 for i in range(16)], 4, 4)
    return a, b


@pytest.fixture(scope="module")
def setup(arm_test_seed):
    text = TextTokenizer.train(TEXTS * 4, vocab_size=300)
    layout = text.layout(codebook_size=16, max_grid_h=8, max_grid_w=8,
                         special_tokens=vocab_specials(["interleaved"]))
    task = get_task("interleaved")
    A, B = _codes()
    docs = [(A, text.encode(TEXTS[0]), B), (B, text.encode(TEXTS[1]), A)]
    seqs = [task.sequence(layout, d) for d in docs]
    batch = collate_rows([[s] for s in seqs], max(len(s) for s in seqs), layout.pad_id)  # one per row
    ids, tgt = batch["input_ids"], batch["targets"]
    # the decisions tested: everything after the first image (whose codes the two documents
    # disagree on, so nothing can be sure of them)
    first_eoi = [s.input_ids.index(layout.eoi_id) for s in seqs]
    check = torch.zeros_like(ids, dtype=torch.bool)
    for i, (s, e) in enumerate(zip(seqs, first_eoi, strict=True)):
        check[i, e + 1: len(s)] = True
    cfg = Config.from_name("tiny", n_embd=64, intermediate_size=128).with_vocab(
        layout.total_size, layout.image_offset, layout.codebook_size, text_vocab_size=layout.text_vocab_size)
    torch.manual_seed(arm_test_seed)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    constraint = ImageSpanConstraint.from_layout(layout)
    step, weakest = 0, 0.0
    while step < MAX_STEPS:
        for _ in range(CHECK_EVERY):
            loss = lm_loss(model(ids), tgt)[0]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        step += CHECK_EVERY
        with torch.no_grad():
            lp = score(model.eval(), ids, ids != layout.pad_id, temperature=1.0, constraint=constraint)
        model.train()
        weakest = math.exp(float(lp[check].min()))
        if weakest >= MIN_PROB:
            break
    else:
        raise AssertionError(f"the tiny LM did not memorise its documents within {MAX_STEPS} steps "
                             f"(seed {arm_test_seed}): least sure decision p={weakest:.3f}")
    model.eval()
    pipe = ContinueDocument.from_model(model, layout, text, visual_tokenizer=None)
    return dict(pipe=pipe, layout=layout, A=A, B=B, text=text, model=model)


def test_after_an_instruction_the_model_opens_the_edited_image_then_ends(setup):
    pipe, A, B = setup["pipe"], setup["A"], setup["B"]
    out = pipe([[A, TEXTS[0]], [B, TEXTS[1]]], max_segments=3, guidance_scale=1.0, temperature=0,
               decode=False)
    assert all(isinstance(o, Continuation) for o in out)
    for o, want in zip(out, (B, A), strict=True):
        assert len(o.segments) == 1 and isinstance(o.segments[0], ImageTokens)
        assert (o.segments[0].h, o.segments[0].w) == (4, 4) and o.segments[0].codes == want.codes
        assert o.opened_image == [True] and o.ended and o.stop == "eos"
        assert torch.equal(o.codes[0], torch.tensor(want.codes))


def test_after_an_image_the_model_writes_the_instruction_then_draws(setup):
    pipe, A, B = setup["pipe"], setup["A"], setup["B"]
    out = pipe([[A]], max_segments=2, guidance_scale=1.0, temperature=0, decode=False)[0]
    assert out.segments[0] == TEXTS[0] and out.segments[1].codes == B.codes
    assert out.stop == "max_segments" and not out.ended
    # one segment at a time: the text alone
    assert pipe([[A]], max_segments=1, decode=False)[0].segments == [TEXTS[0]]


def test_guided_image_spans_are_well_formed_and_use_the_tasks_branches(setup):
    pipe, layout, A = setup["pipe"], setup["layout"], setup["A"]
    task = get_task("interleaved")
    seen = []
    generate = pipe.engine.generate

    def spy(prompts, n, **kw):
        seen.append((list(prompts), kw.get("guidance")))
        return generate(prompts, n, **kw)

    pipe.engine.generate = spy
    try:
        doc = [A, TEXTS[0]]
        prompts = task.prompts(layout, {"segments": [A, setup["text"].encode(TEXTS[0])]}, (2, 8))
        for kw, uncond, image in [
            (dict(guidance_scale=1.5), "image", None),
            (dict(guidance_scale=1.5, drop_images=True), "uncond", None),
            (dict(guidance_scale=1.5, image_guidance_scale=1.25), "uncond", "image"),
        ]:
            seen.clear()
            out = pipe([doc], next="image", grid=(2, 8), temperature=1.0, seed=1, decode=False, **kw)[0]
            img = out.segments[0]
            assert (img.h, img.w) == (2, 8) and len(img.codes) == 16 and all(0 <= c < 16 for c in img.codes)
            assert out.opened_image == [False] and out.stop == "max_segments"
            (p, g), = seen
            assert p == [prompts["full"]] and g.uncond_prompts == [prompts[uncond]]
            assert (g.image_prompts is None) if image is None else g.image_prompts == [prompts[image]]
    finally:
        pipe.engine.generate = generate


def test_bad_input_is_named(setup):
    pipe, A = setup["pipe"], setup["A"]
    with pytest.raises(PipelineError, match="next must be 'auto' or 'image'"):
        pipe([[A]], next="text")
    with pytest.raises(PipelineError, match="document 0 segment 1: expected text"):
        pipe([[A, 3]])
    with pytest.raises(PipelineError, match="document 1 must be a list of segments"):
        pipe([[A], "make it blue"])
    with pytest.raises(PipelineError, match=r"document 0 segment 1 contains '<boi>'"):
        pipe([[A, "make <boi> it"]])


def test_a_vocabulary_without_the_document_token_is_refused(setup):
    text, model = setup["text"], setup["model"]
    plain = text.layout(codebook_size=16, max_grid_h=8, max_grid_w=8, special_tokens=DEFAULT_SPECIAL_TOKENS)
    cfg = model.config.with_vocab(plain.total_size, plain.image_offset, plain.codebook_size,
                                  text_vocab_size=plain.text_vocab_size)
    with pytest.raises(PipelineError, match="no <doc> token: it was not trained on interleaved documents"):
        ContinueDocument.from_model(GPT(cfg), plain, text, visual_tokenizer=None)


def test_old_text_guidance_scale_warns_and_continues_the_same(setup):
    """``ContinueDocument(text_guidance_scale=)``: the deprecated name of ``guidance_scale``."""
    pipe, A = setup["pipe"], setup["A"]
    kw = dict(next="image", max_segments=1, temperature=1.0, seed=4, decode=False)
    new = pipe([[A, TEXTS[0]]], guidance_scale=2.0, **kw)[0]
    with pytest.warns(DeprecationWarning, match="ContinueDocument: text_guidance_scale= is deprecated"):
        old = pipe([[A, TEXTS[0]]], text_guidance_scale=2.0, **kw)[0]
    assert old.segments[0].codes == new.segments[0].codes
    with pytest.raises(TypeError, match="both guidance_scale="):
        pipe([[A, TEXTS[0]]], guidance_scale=2.0, text_guidance_scale=2.0, **kw)

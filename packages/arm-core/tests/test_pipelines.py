"""Pipelines on a tiny LM trained (in the fixture) on a few ARM-format sequences.

The LM memorises: two captions -> two image-code grids, two images -> their colour
names, one edit. If the pipelines build prompts that differ from the training format, or
decode the wrong span, these answers come out wrong.

The fixture trains until the model is sure of every answer the tests below expect (not for a
fixed number of steps: float results differ across CPUs, and so does where a run lands), so the
greedy outputs the tests compare exactly hold on any machine once the fixture returns.
"""

from __future__ import annotations

import math

import pytest
import torch
from arm_core.checkpoint import load_lm, save_lm
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Guidance, score_guided
from arm_core.lightning_module import lm_loss
from arm_core.model import GPT
from arm_core.pipelines import Edit, PipelineError, TextToImage, Understand
from arm_data.datamodules.tokens import collate_rows
from arm_data.formats import ImageTokens, TaskFormatter
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.testing.toys import ToyDecoder, tiny_projected_tokenizer
from arm_tokenizer.tokenizer import VisualTokenizer, images_to_tensor
from PIL import Image

CAPTIONS = ["a red circle", "a blue square"]
QUESTION = "what color is it?"
ANSWERS = ["red", "blue"]
EDIT = "make it blue"

# The fixture's stopping rule. Every token a test below expects from greedy decoding must have
# probability >= MIN_PROB under the exact (guided, constrained) distribution the pipeline decodes
# from: then it beats every other token by >= log(0.9 / 0.1) = 2.2 nats of logit, far beyond
# the ~1e-5 that batching, KV caching or another CPU change. The loss bound is a sanity check.
MIN_PROB = 0.9
MAX_LOSS = 0.05
CHECK_EVERY = 10
MAX_STEPS = 1500        # seeds 0-15 took 60-290 steps (a few seconds); the cap leaves 5x room
# The random visual tokenizer must give the two images different codes, and each code must
# be robust: FSQ with 2 levels takes the sign of each pre-quantization value, so none may lie
# within this distance of 0 (else batch size or CPU could flip a code between two encodes).
MIN_PRE_QUANT = 1e-3


def _images() -> list[Image.Image]:
    red = Image.new("RGB", (32, 32), (230, 30, 30))
    blue = Image.new("RGB", (32, 32), (30, 30, 230))
    blue.paste((250, 250, 250), (0, 0, 16, 16))
    return [red, blue]


def _visual_tokenizer(seed: int, imgs: list[Image.Image]) -> VisualTokenizer:
    """A random toy tokenizer (constructed, not trained) whose codes for ``imgs`` are distinct
    and robust; draws again (a bounded number of times) when one is not."""
    worst = None
    for attempt in range(16):
        torch.manual_seed(seed * 16 + attempt)
        vis = tiny_projected_tokenizer().eval()
        with torch.no_grad():
            pre = vis(images_to_tensor(imgs, vis.image_size)).pre_quant
        codes = vis.encode(imgs)
        margin = float(pre.abs().min())
        if not torch.equal(codes[0], codes[1]) and margin >= MIN_PRE_QUANT:
            return vis
        worst = (attempt, margin, torch.equal(codes[0], codes[1]))
    raise AssertionError(f"no toy visual tokenizer with distinct, robust codes in 16 draws (seed {seed}; "
                         f"last: margin {worst[1]:.2e}, codes equal {worst[2]})")


def _expected_decisions(fmt: TaskFormatter, text: TextTokenizer, layout, codes: torch.Tensor):
    """What the tests expect greedy decoding to produce: (name, prompt, completion, guidance),
    with the prompts and guidance branches the pipelines build for those calls."""
    A, B = (ImageTokens(c, 4, 4) for c in codes)

    def image(c) -> list[int]:
        return [layout.image_offset + int(k) for k in c] + [layout.eoi_id]

    out = []
    for i, caption in enumerate(CAPTIONS):                      # TextToImage at scales 1 and 1.5
        out.append((f"t2i[{i}] cfg=1", fmt.t2i_prompt(caption, 4, 4), image(codes[i]), None))
        out.append((f"t2i[{i}] cfg=1.5", fmt.t2i_prompt(caption, 4, 4), image(codes[i]),
                    Guidance([fmt.t2i_prompt(None, 4, 4)], guidance_scale=1.5)))
    out.append(("t2i 2x8 cfg=1.5", fmt.t2i_prompt(CAPTIONS[0], 2, 8), image(torch.arange(16) % 16),
                Guidance([fmt.t2i_prompt(None, 2, 8)], guidance_scale=1.5)))
    for i, (im, answer) in enumerate(zip((A, B), ANSWERS, strict=True)):   # Understand (greedy)
        out.append((f"und[{i}]", fmt.und_prompt(im, QUESTION), text.encode(answer) + [layout.eos_id], None))
    p = fmt.edit_cfg_prompts(A, EDIT)                           # Edit at three guidance settings
    out.append(("edit 1/1", p["full"], image(codes[1]), None))
    out.append(("edit 1.5/1", p["full"], image(codes[1]), Guidance([p["image"]], guidance_scale=1.5)))
    out.append(("edit 1.5/1.25", p["full"], image(codes[1]),
                Guidance([p["uncond"]], guidance_scale=1.5, image_prompts=[p["image"]], image_guidance_scale=1.25)))
    return out


@torch.no_grad()
def _weakest(model: GPT, decisions, constraint: ImageSpanConstraint) -> tuple[str, float]:
    """The expected decision the model is least sure of, and its probability."""
    model.eval()
    worst = ("", 1.0)
    for name, prompt, completion, guidance in decisions:
        lp = score_guided(model, [prompt], torch.tensor([completion]), guidance=guidance,
                          temperature=0.0, constraint=constraint)
        p = math.exp(float(lp.min()))
        if p < worst[1]:
            worst = (name, p)
    model.train()
    return worst


@pytest.fixture(scope="module")
def setup(tmp_path_factory, arm_test_seed):
    root = tmp_path_factory.mktemp("pipe")
    text = TextTokenizer.train(CAPTIONS * 3 + [QUESTION, EDIT] + ANSWERS * 3, vocab_size=300)
    text.save(root / "tt")
    imgs = _images()
    vis = _visual_tokenizer(arm_test_seed, imgs)
    layout = text.layout(codebook_size=vis.codebook_size, max_grid_h=8, max_grid_w=8)
    codes = vis.encode(imgs)
    A, B = (ImageTokens(c, 4, 4) for c in codes)
    wide = ImageTokens(torch.arange(16) % vis.codebook_size, 2, 8)
    fmt = TaskFormatter(layout, text)
    seqs = [fmt.t2i(CAPTIONS[0], A), fmt.t2i(CAPTIONS[1], B), fmt.t2i(None, A),
            fmt.und(A, QUESTION, ANSWERS[0]), fmt.und(B, QUESTION, ANSWERS[1]),
            fmt.edit(A, EDIT, B), fmt.edit(A, None, A), fmt.edit(None, None, A),
            fmt.edit(None, EDIT, B), fmt.t2i(CAPTIONS[0], wide)]
    batch = collate_rows([[s] for s in seqs], max(len(s) for s in seqs), layout.pad_id)  # one per row
    ids, tgt = batch["input_ids"], batch["targets"]
    cfg = Config.from_name("tiny", n_embd=64, intermediate_size=128).with_vocab(
        layout.total_size, layout.image_offset, layout.codebook_size,
        text_vocab_size=layout.text_vocab_size)
    torch.manual_seed(arm_test_seed)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    decisions = _expected_decisions(fmt, text, layout, codes)
    constraint = ImageSpanConstraint.from_layout(layout)
    step, loss, weakest = 0, float("inf"), ("", 0.0)
    while step < MAX_STEPS:
        for _ in range(CHECK_EVERY):
            batch_loss = lm_loss(model(ids), tgt)[0]
            opt.zero_grad()
            batch_loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # fewer loss spikes at lr 1e-2
            opt.step()
        step += CHECK_EVERY
        with torch.no_grad():
            loss = float(lm_loss(model.eval()(ids), tgt)[0])
        weakest = _weakest(model, decisions, constraint)
        if loss < MAX_LOSS and weakest[1] >= MIN_PROB:
            break
    else:
        raise AssertionError(
            f"the tiny LM did not memorise its sequences within the cap of {MAX_STEPS} steps "
            f"(seed {arm_test_seed}): loss {loss:.4f} (needs < {MAX_LOSS}), least sure of "
            f"{weakest[0]!r} at p={weakest[1]:.3f} (needs >= {MIN_PROB})")
    model.eval()
    print(f"test_pipelines fixture: seed {arm_test_seed}, {step} steps, loss {loss:.5f}, "
          f"weakest decision {weakest[0]!r} p={weakest[1]:.4f}")
    vis.save_pretrained(root / "tok")
    save_lm(root / "lm", model, cfg, layout=layout, text_tokenizer=root / "tt",
            visual_tokenizer_dir=root / "tok")
    save_lm(root / "lm-noref", model, cfg, layout=layout, text_tokenizer=root / "tt")
    lm = load_lm(root / "lm")
    return dict(lm=lm, vis=vis, codes=codes, imgs=imgs, layout=layout, root=root,
                steps=step, loss=loss)


def test_text_to_image_follows_prompt(setup) -> None:
    pipe = TextToImage(setup["lm"], setup["vis"])
    for scale in (1.0, 1.5):
        images, codes = pipe(CAPTIONS, guidance_scale=scale, temperature=0, return_codes=True)
        assert torch.equal(codes, setup["codes"]), scale
    assert [im.size for im in images] == [(32, 32), (32, 32)]
    # batching (with a progress bar) does not change results
    _, codes1 = pipe(CAPTIONS, temperature=0, batch_size=1, progress=True, return_codes=True)
    assert torch.equal(codes1, setup["codes"])
    # sampling: seeded, reproducible, several images per prompt
    a = pipe(CAPTIONS[0], temperature=1.0, seed=3, num_images_per_prompt=2, return_codes=True)[1]
    b = pipe(CAPTIONS[0], temperature=1.0, seed=3, num_images_per_prompt=2, return_codes=True)[1]
    assert a.shape == (2, 16) and torch.equal(a, b)


def test_text_to_image_other_aspect_ratio(setup) -> None:
    pipe = TextToImage(setup["lm"], setup["vis"])
    images, codes = pipe(CAPTIONS[0], grid=(2, 8), temperature=0, return_codes=True)
    assert codes.shape == (1, 16) and images[0].size == (64, 16)   # PIL size is (w, h)
    assert codes[0].tolist() == (torch.arange(16) % 16).tolist()


def test_understand_answers(setup) -> None:
    und = Understand(setup["lm"], setup["vis"])
    assert und(setup["imgs"], [QUESTION, QUESTION]) == ANSWERS
    assert und(None, [QUESTION], image_codes=setup["codes"][1:]) == ["blue"]


def test_edit_two_branch_guidance(setup) -> None:
    edit = Edit(setup["lm"], setup["vis"])
    for ts, is_ in ((1.0, 1.0), (1.5, 1.0), (1.5, 1.25)):
        out, codes = edit(setup["imgs"][0], EDIT, guidance_scale=ts, image_guidance_scale=is_,
                          temperature=0, return_codes=True)
        assert torch.equal(codes[0], setup["codes"][1]), (ts, is_)
        assert out[0].size == (32, 32)


def test_bad_input_errors(setup) -> None:
    lm, vis = setup["lm"], setup["vis"]
    t2i, und, edit = TextToImage(lm, vis), Understand(lm, vis), Edit(lm, vis)
    with pytest.raises(PipelineError, match=r"context of 128.*shorten"):
        t2i("red " * 200)
    with pytest.raises(PipelineError, match=r"'<boi>'.*is a special token.*remove it"):
        t2i("a <boi> circle")
    with pytest.raises(PipelineError, match=r"'<foo>'.*not one of.*known"):
        t2i("a <foo> circle")
    with pytest.raises(PipelineError, match=r"grid 9x4 .*1\.\.8"):
        t2i("a red circle", grid=(9, 4))
    with pytest.raises(PipelineError, match=r"15 tokens but the grid 4x4 needs 16"):
        und(None, QUESTION, image_codes=[list(range(15))])
    with pytest.raises(PipelineError, match=r"codes span \[0, 99\].*\[0, 16\)"):
        und(None, QUESTION, image_codes=[[99] + [0] * 15])
    with pytest.raises(PipelineError, match="2 source images for 3 instructions"):
        edit(setup["imgs"], [EDIT] * 3)
    with pytest.raises(PipelineError, match="no prompts"):
        t2i([])
    with pytest.raises(PipelineError, match="context"):
        und(setup["imgs"][0], QUESTION, max_new_tokens=500)


def test_from_pretrained_checks_tokenizer_vocabulary(setup, monkeypatch) -> None:
    """A visual tokenizer with another codebook than the LM: a clear error."""
    import arm_tokenizer.tokenizer as tk

    other = VisualTokenizer(CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=16),
                            FSQQuantizer(levels=[2, 2, 2]), ToyDecoder(in_dim=16, patch_size=8),
                            proj_in=LinearProjection(16, 3), proj_out=LinearProjection(3, 16),
                            image_size=32)
    monkeypatch.setattr(tk.VisualTokenizer, "from_pretrained", classmethod(lambda cls, d: other))
    with pytest.raises(ValueError, match=r"has 8 codes but the LM .* 16"):
        TextToImage.from_pretrained(setup["root"] / "lm", tokenizer_dir=setup["root"])
    with pytest.raises(ValueError, match="no visual tokenizer found"):
        load_lm(setup["root"] / "lm-noref").load_visual_tokenizer()


def test_from_pretrained_and_cli(setup, tmp_path, capsys) -> None:
    """The exported LM + the tokenizer it references, loaded from disk (and via `arm-lm generate`)."""
    from arm_core.cli import EXTRA_COMMANDS

    pipe = TextToImage.from_pretrained(setup["root"] / "lm")      # tokenizer: the referenced one
    assert torch.equal(pipe(CAPTIONS, temperature=0, return_codes=True)[1], setup["codes"])
    gen = EXTRA_COMMANDS["generate"]
    assert gen(["t2i", "--lm", str(setup["root"] / "lm"), "--prompt", *CAPTIONS,
                "--temperature", "0", "--guidance-scale", "1.5", "--out", str(tmp_path / "out")]) == 0
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 2 and Image.open(files[0]).size == (32, 32)
    setup["imgs"][0].save(tmp_path / "red.png")
    assert gen(["understand", "--lm", str(setup["root"] / "lm"), "--image", str(tmp_path / "red.png"),
                "--prompt", QUESTION]) == 0
    assert "A: red" in capsys.readouterr().out


def test_from_model_in_memory(setup) -> None:
    """RL and the demo wrap a live model without exporting it."""
    lm = setup["lm"]
    pipe = TextToImage.from_model(lm.model, setup["layout"], lm.text_tokenizer_path, setup["vis"])
    assert torch.equal(pipe(CAPTIONS, temperature=0, return_codes=True)[1], setup["codes"])
    from arm_data.vocab import VocabLayout

    other = VocabLayout(text_vocab_size=setup["layout"].text_vocab_size + 1, codebook_size=16,
                        max_grid_h=8, max_grid_w=8)
    with pytest.raises(ValueError, match="not the layout's"):
        Understand.from_model(lm.model, other, lm.text_tokenizer_path, setup["vis"])


# ---------------------------------------------------------------- one name for guidance (issue 32)
def test_edit_old_text_guidance_scale_warns_and_gives_the_same_images(setup) -> None:
    """``Edit(text_guidance_scale=)`` is the deprecated name of ``guidance_scale``."""
    edit = Edit(setup["lm"], setup["vis"])
    kw = dict(image_guidance_scale=1.25, temperature=1.0, seed=5, return_codes=True)
    new = edit(setup["imgs"][0], EDIT, guidance_scale=2.0, **kw)[1]
    with pytest.warns(DeprecationWarning, match=r"Edit: text_guidance_scale= is deprecated, use guidance_scale="):
        old = edit(setup["imgs"][0], EDIT, text_guidance_scale=2.0, **kw)[1]
    assert torch.equal(old, new)
    with pytest.raises(TypeError, match="both guidance_scale= and its deprecated name text_guidance_scale="):
        edit(setup["imgs"][0], EDIT, guidance_scale=2.0, text_guidance_scale=2.0)


def test_task_guidance_old_argument_names_warn() -> None:
    from arm_core.pipelines import task_guidance

    rows = [{"full": [1, 2], "image": [2], "uncond": [3]}]
    new = task_guidance("edit", rows, 1.5, 1.25)
    with pytest.warns(DeprecationWarning, match="task_guidance: text_scale= is deprecated, use guidance_scale="):
        old = task_guidance("edit", rows, text_scale=1.5, image_guidance_scale=1.25)
    with pytest.warns(DeprecationWarning, match="image_scale= is deprecated, use image_guidance_scale="):
        old_img = task_guidance("edit", rows, 1.5, image_scale=1.25)
    assert new == old == old_img
    assert (new.guidance_scale, new.image_guidance_scale, new.image_prompts) == (1.5, 1.25, [[2]])


def test_generate_cli_old_flags_warn_and_give_the_same_images(setup, tmp_path) -> None:
    """`arm-lm generate --cfg / --image-cfg`: hidden aliases of --guidance-scale /
    --image-guidance-scale."""
    from arm_core.cli import EXTRA_COMMANDS

    setup["imgs"][0].save(tmp_path / "red.png")
    base = ["edit", "--lm", str(setup["root"] / "lm"), "--image", str(tmp_path / "red.png"),
            "--prompt", EDIT, "--temperature", "1", "--seed", "3"]
    gen = EXTRA_COMMANDS["generate"]
    assert gen(base + ["--guidance-scale", "2", "--image-guidance-scale", "1.5",
                       "--out", str(tmp_path / "new")]) == 0
    with pytest.warns(DeprecationWarning) as caught:
        assert gen(base + ["--cfg", "2", "--image-cfg", "1.5", "--out", str(tmp_path / "old")]) == 0
    said = {str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)}
    assert {"arm-lm generate: --cfg is deprecated, use --guidance-scale (the old flag goes in the next release)",
            "arm-lm generate: --image-cfg is deprecated, use --image-guidance-scale (the old flag goes in the "
            "next release)"} <= said
    new, old = (sorted((tmp_path / d).glob("*.png")) for d in ("new", "old"))
    assert len(new) == len(old) == 1
    assert Image.open(new[0]).tobytes() == Image.open(old[0]).tobytes()
